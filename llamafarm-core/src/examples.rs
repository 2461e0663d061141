//! Example projects: a directory holding `llamafarm.yaml` and its data, imported as a
//! new project or into an existing one.
//!
//! An example's id is its directory name. Its data is `files/` (every file below it,
//! hidden ones excepted); an example with several datasets may give each its own
//! `files/{dataset}/`. An optional `manifest.yaml` sets `title`, `description`,
//! `primaryModel` and `tags`; without one they are taken from the config.

use crate::config::{LlamaFarmConfig, Vars};
use crate::error::{Error, ResourceKind, Result};
use crate::LlamaFarm;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One dataset of an example.
#[derive(Debug, Clone)]
pub struct ExampleDataset {
    /// Its name in the example's config.
    pub name: String,
    /// Its database.
    pub database: String,
    /// Its processing strategy.
    pub data_processing_strategy: Option<String>,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Bytes of its files.
    pub size_bytes: u64,
}

/// An example project.
#[derive(Debug, Clone)]
pub struct Example {
    /// Directory name.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it shows.
    pub description: String,
    /// The default chat model of its config.
    pub primary_model: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Its datasets.
    pub datasets: Vec<ExampleDataset>,
    /// Bytes of its data.
    pub data_size_bytes: u64,
    /// Bytes of its config and other project files.
    pub project_size_bytes: u64,
    /// Newest change among its files.
    pub updated_at: SystemTime,
    /// Its directory.
    pub dir: PathBuf,
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Namespace.
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Datasets created or filled.
    pub datasets: Vec<String>,
    /// Processing tasks started (with `process`).
    pub task_ids: Vec<String>,
    /// Files uploaded (content already in a dataset is not counted).
    pub files_uploaded: usize,
}

/// The example directories, searched in order (the first with an id wins).
#[derive(Debug, Clone, Default)]
pub struct ExampleDirs(pub Vec<PathBuf>);

#[derive(serde::Deserialize, Default)]
struct Manifest {
    title: Option<String>,
    description: Option<String>,
    #[serde(alias = "primary_model", rename = "primaryModel")]
    primary_model: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn size_of(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.len()).sum()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ExampleDirs {
    /// Every example, by id.
    pub fn list(&self, vars: &Vars) -> Vec<Example> {
        let mut out: Vec<Example> = Vec::new();
        for root in &self.0 {
            for e in fs::read_dir(root).into_iter().flatten().flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                if !valid_id(&id) || out.iter().any(|x| x.id == id) {
                    continue;
                }
                if let Ok(ex) = load(&e.path(), &id, vars) {
                    out.push(ex);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One example.
    pub fn get(&self, id: &str, vars: &Vars) -> Result<Example> {
        if valid_id(id) {
            for root in &self.0 {
                let dir = root.join(id);
                if crate::project::find_config(&dir).is_some() {
                    return load(&dir, id, vars);
                }
            }
        }
        Err(Error::missing(ResourceKind::Example, id))
    }
}

fn load(dir: &Path, id: &str, vars: &Vars) -> Result<Example> {
    let path = crate::project::find_config(dir).ok_or_else(|| Error::missing(ResourceKind::Example, id))?;
    let cfg = crate::project::load_config_with(&path, vars)?;
    let manifest: Manifest = fs::read_to_string(dir.join("manifest.yaml")).ok().and_then(|t| serde_yaml::from_str(&t).ok()).unwrap_or_default();
    let files_root = dir.join("files");
    let all_files = walk(&files_root);
    let datasets: Vec<ExampleDataset> = cfg
        .dataset_list()
        .iter()
        .map(|d| {
            let own = files_root.join(&d.name);
            let files = if own.is_dir() { walk(&own) } else { all_files.iter().filter(|f| !has_dataset_dir(&files_root, f, &cfg)).cloned().collect() };
            ExampleDataset {
                name: d.name.clone(),
                database: d.database.clone(),
                data_processing_strategy: d.data_processing_strategy.clone(),
                size_bytes: size_of(&files),
                files,
            }
        })
        .collect();
    let everything = walk(dir);
    let data_size_bytes = size_of(&all_files);
    let project_size_bytes = size_of(&everything).saturating_sub(data_size_bytes);
    let updated_at = everything.iter().filter_map(|f| fs::metadata(f).ok()?.modified().ok()).max().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut tags = manifest.tags;
    if tags.is_empty() {
        if !cfg.databases().is_empty() {
            tags.push("rag".into());
        }
        let exts: Vec<String> = all_files.iter().filter_map(|f| f.extension().map(|e| e.to_string_lossy().to_lowercase())).collect();
        if exts.iter().any(|e| e == "pdf") {
            tags.push("pdf".into());
        }
        if exts.iter().any(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg" | "tiff")) {
            tags.push("ocr".into());
        }
    }
    let title = manifest.title.unwrap_or_else(|| {
        id.split(['_', '-'])
            .filter(|w| !w.is_empty())
            .map(|w| {
                let up = w.to_uppercase();
                if matches!(up.as_str(), "RAG" | "FDA" | "OCR" | "API") {
                    up
                } else {
                    let mut c = w.chars();
                    c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let description = manifest.description.unwrap_or_else(|| {
        let strategy = cfg.rag.as_ref().and_then(|r| r.data_processing_strategies.as_ref()).and_then(|s| s.iter().find_map(|s| s.description.clone()));
        strategy.unwrap_or_else(|| format!("{} dataset(s), {} file(s)", datasets.len(), all_files.len()))
    });
    Ok(Example {
        id: id.to_string(),
        title,
        description,
        primary_model: manifest.primary_model.or_else(|| cfg.default_model().map(|m| m.model)),
        tags,
        datasets,
        data_size_bytes,
        project_size_bytes,
        updated_at,
        dir: dir.to_path_buf(),
    })
}

/// Whether `f` sits in the `files/{dataset}/` folder of some dataset of `cfg`.
fn has_dataset_dir(files_root: &Path, f: &Path, cfg: &LlamaFarmConfig) -> bool {
    cfg.dataset_list().iter().any(|d| f.starts_with(files_root.join(&d.name)))
}

/// Example operations: `lf.examples()`.
pub struct Examples<'a> {
    pub(crate) lf: &'a LlamaFarm,
}

/// How [`Examples::import_data`] brings an example's data into a project.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Only this dataset of the example.
    pub dataset: Option<String>,
    /// Its name in the project (with `dataset`; default the example's name).
    pub target_dataset: Option<String>,
    /// Add the example's databases and processing strategies the project lacks, and
    /// keep each dataset's own; otherwise new datasets use the project's default
    /// database and its first processing strategy.
    pub include_strategies: bool,
    /// Start a processing task per dataset.
    pub process: bool,
}

impl Examples<'_> {
    /// Every example.
    pub fn list(&self) -> Vec<Example> {
        self.lf.inner.examples.list(self.lf.vars())
    }

    /// One example.
    pub fn get(&self, id: &str) -> Result<Example> {
        self.lf.inner.examples.get(id, self.lf.vars())
    }

    /// Create project `namespace/name` from example `id` (its config, datasets and
    /// files); with `process`, start a processing task per dataset.
    pub fn import_project(&self, id: &str, namespace: &str, name: &str, process: bool) -> Result<Imported> {
        let ex = self.get(id)?;
        let mut cfg = crate::project::load_config_with(&crate::project::find_config(&ex.dir).unwrap_or_default(), self.lf.vars())?;
        for d in cfg.datasets.iter_mut().flatten() {
            d.files = Some(Vec::new());
        }
        let project = self.lf.projects().create_with_config(namespace, name, cfg)?;
        let mut out = Imported { namespace: namespace.into(), project: name.into(), datasets: Vec::new(), task_ids: Vec::new(), files_uploaded: 0 };
        for d in &ex.datasets {
            fill(&project, &d.name, d, process, &mut out)?;
        }
        Ok(out)
    }

    /// Bring example `id`'s data into the existing project `namespace/project`.
    pub fn import_data(&self, id: &str, namespace: &str, project: &str, opts: &ImportOptions) -> Result<Imported> {
        let ex = self.get(id)?;
        let project = self.lf.project(namespace, project)?;
        let picked: Vec<&ExampleDataset> = match &opts.dataset {
            Some(n) => vec![ex.datasets.iter().find(|d| &d.name == n).ok_or_else(|| Error::missing_in(ResourceKind::Dataset, n, format!("in example '{id}'")))?],
            None => ex.datasets.iter().collect(),
        };
        let source = crate::project::load_config_with(&crate::project::find_config(&ex.dir).unwrap_or_default(), self.lf.vars())?;
        project.update_config(|cfg| {
            if opts.include_strategies {
                merge_rag(cfg, &source);
            }
            let default_db = cfg.rag.as_ref().and_then(|r| r.default_database.clone()).or_else(|| cfg.databases().first().map(|d| d.name.clone()));
            for d in &picked {
                let target = opts.target_dataset.clone().filter(|_| opts.dataset.is_some()).unwrap_or_else(|| d.name.clone());
                if cfg.dataset_list().iter().any(|x| x.name == target) {
                    continue;
                }
                let (database, strategy) = if opts.include_strategies {
                    (d.database.clone(), d.data_processing_strategy.clone())
                } else {
                    let db = default_db.clone().ok_or_else(|| Error::invalid("project", "has no RAG database to import data into (pass include_strategies)"))?;
                    // The project's first strategy (the built-in one when it defines none).
                    (db, cfg.strategy_names().first().cloned())
                };
                cfg.datasets.get_or_insert_with(Vec::new).push(crate::config::DatasetConfig {
                    name: target,
                    data_processing_strategy: strategy,
                    database,
                    auto_process: None,
                    files: Some(Vec::new()),
                    extra: Default::default(),
                });
            }
            Ok(())
        })?;
        let mut out =
            Imported { namespace: project.namespace().into(), project: project.name().into(), datasets: Vec::new(), task_ids: Vec::new(), files_uploaded: 0 };
        for d in picked {
            let target = opts.target_dataset.clone().filter(|_| opts.dataset.is_some()).unwrap_or_else(|| d.name.clone());
            fill(&project, &target, d, opts.process, &mut out)?;
        }
        Ok(out)
    }
}

/// Add the databases and processing strategies of `source` that `cfg` lacks.
fn merge_rag(cfg: &mut LlamaFarmConfig, source: &LlamaFarmConfig) {
    let Some(src) = &source.rag else { return };
    let rag = cfg.rag.get_or_insert_with(Default::default);
    for db in src.databases.iter().flatten() {
        let list = rag.databases.get_or_insert_with(Vec::new);
        if !list.iter().any(|d| d.name == db.name) {
            list.push(db.clone());
        }
    }
    for s in src.data_processing_strategies.iter().flatten() {
        let list = rag.data_processing_strategies.get_or_insert_with(Vec::new);
        if !list.iter().any(|d| d.name == s.name) {
            list.push(s.clone());
        }
    }
}

/// Upload an example dataset's files into `target` and start processing them.
fn fill(project: &crate::Project, target: &str, d: &ExampleDataset, process: bool, out: &mut Imported) -> Result<()> {
    let datasets = project.datasets();
    let mut hashes = Vec::new();
    for f in &d.files {
        let bytes = fs::read(f).map_err(|e| Error::io(f, e))?;
        let name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let o = datasets.upload_bytes(target, &name, &bytes)?;
        if !o.skipped {
            out.files_uploaded += 1;
        }
        hashes.push(o.hash);
    }
    out.datasets.push(target.to_string());
    if process && !hashes.is_empty() {
        if let Some(t) = datasets.start_processing(target, hashes, Some(true), None)? {
            out.task_ids.push(t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_safe_segments() {
        assert!(valid_id("quick_rag") && valid_id("fda-rag.v2"));
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
