//! Projects: `{data}/projects/{namespace}/{project}/llamafarm.yaml`.
//!
//! Writes are atomic (temp file, fsync, rename); an update keeps a timestamped
//! backup of the previous config under `.backups/`; deleting a project really
//! removes its directory (renamed away first, so a crash never leaves half a project).

use crate::config::{self, LlamaFarmConfig, CONFIG_FILE_NAMES};
use crate::error::{Error, ResourceKind, Result};
use crate::fsutil;
use crate::paths::validate_segment;
use crate::LlamaFarm;
use chrono::{DateTime, Utc};
use std::fs;
use std::path::{Path, PathBuf};

/// How many config backups a project keeps.
pub const MAX_BACKUPS: usize = 20;

/// The template used when a create request names none.
pub const DEFAULT_TEMPLATE: &str = "default";

/// A project as listed: its config, or why it could not be loaded.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    /// Namespace (directory name).
    pub namespace: String,
    /// Project name (directory name).
    pub name: String,
    /// The parsed config, when it loads.
    pub config: Option<LlamaFarmConfig>,
    /// Why the config did not load or validate.
    pub validation_error: Option<String>,
    /// Modification time of the config file.
    pub last_modified: Option<DateTime<Utc>>,
}

/// A handle on one existing project. Cheap to clone.
#[derive(Clone)]
pub struct Project {
    lf: LlamaFarm,
    namespace: String,
    name: String,
    dir: PathBuf,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project").field("namespace", &self.namespace).field("name", &self.name).finish()
    }
}

/// Project operations on a [`LlamaFarm`] handle: `lf.projects()`.
pub struct Projects<'a> {
    lf: &'a LlamaFarm,
}

impl<'a> Projects<'a> {
    pub(crate) fn new(lf: &'a LlamaFarm) -> Self {
        Self { lf }
    }

    /// All projects of a namespace, sorted by name. A project whose config is
    /// broken is listed with its `validation_error` instead of failing the list.
    pub fn list(&self, namespace: &str) -> Result<Vec<ProjectSummary>> {
        validate_segment(ResourceKind::Namespace, namespace)?;
        let dir = self.lf.layout().namespace_dir(namespace);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if validate_segment(ResourceKind::Project, &name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let Some(cfg_path) = find_config(&entry.path()) else { continue };
            let last_modified = fs::metadata(&cfg_path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
            let (config, validation_error) = match load_config_with(&cfg_path, self.lf.vars()) {
                Ok(c) => (Some(c), None),
                // The text of an I/O error names a server path: log it, report less.
                Err(e @ Error::Io { .. }) => {
                    tracing::warn!(error = %e, "unreadable project config");
                    (None, Some("the config file could not be read".to_string()))
                }
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(ProjectSummary { namespace: namespace.to_string(), name, config, validation_error, last_modified });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Open an existing project.
    pub fn get(&self, namespace: &str, name: &str) -> Result<Project> {
        validate_segment(ResourceKind::Namespace, namespace)?;
        validate_segment(ResourceKind::Project, name)?;
        let dir = self.lf.layout().project_dir(namespace, name);
        if find_config(&dir).is_none() {
            return Err(Error::missing(ResourceKind::Project, format!("{namespace}/{name}")));
        }
        Ok(Project { lf: self.lf.clone(), namespace: namespace.into(), name: name.into(), dir })
    }

    /// Create a project from a built-in template (`default`, `server`, `rag`;
    /// `None` means `default`). Fails with [`Error::AlreadyExists`] if it exists.
    pub fn create(&self, namespace: &str, name: &str, template: Option<&str>) -> Result<Project> {
        validate_segment(ResourceKind::Namespace, namespace)?;
        validate_segment(ResourceKind::Project, name)?;
        let cfg = config::template(template.unwrap_or(DEFAULT_TEMPLATE), namespace, name)?;
        self.create_with_config(namespace, name, cfg)
    }

    /// Create a project from a full config (its name and namespace are set to the
    /// given ones). Fails with [`Error::AlreadyExists`] if it exists.
    pub fn create_with_config(&self, namespace: &str, name: &str, mut cfg: LlamaFarmConfig) -> Result<Project> {
        validate_segment(ResourceKind::Namespace, namespace)?;
        validate_segment(ResourceKind::Project, name)?;
        cfg.namespace = namespace.into();
        cfg.name = name.into();
        cfg.validate_with(self.lf.vars())?;
        let dir = self.lf.layout().project_dir(namespace, name);
        let lock = self.lf.project_lock(&dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if find_config(&dir).is_some() {
            return Err(Error::exists(ResourceKind::Project, format!("{namespace}/{name}")));
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        fsutil::atomic_write(&dir.join(CONFIG_FILE_NAMES[0]), cfg.to_yaml_string()?.as_bytes())?;
        Ok(Project { lf: self.lf.clone(), namespace: namespace.into(), name: name.into(), dir })
    }

    /// Replace a project's config (validated; the old one is backed up).
    pub fn update(&self, namespace: &str, name: &str, cfg: LlamaFarmConfig) -> Result<Project> {
        let project = self.get(namespace, name)?;
        project.replace_config(cfg)?;
        Ok(project)
    }

    /// Delete a project and everything under its directory. Returns the config it had.
    pub fn delete(&self, namespace: &str, name: &str) -> Result<LlamaFarmConfig> {
        let project = self.get(namespace, name)?;
        let lock = self.lf.project_lock(&project.dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let cfg = project.config()?;
        self.lf.rag_engine().forget_stores_under(&project.dir);
        fsutil::remove_dir_atomic(&project.dir, &self.lf.layout().trash_dir())?;
        // Remove the namespace directory when it became empty.
        let ns_dir = self.lf.layout().namespace_dir(namespace);
        let _ = fs::remove_dir(&ns_dir);
        Ok(cfg)
    }
}

impl Project {
    /// Namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// Project name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The project directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The library handle this project belongs to.
    pub fn llamafarm(&self) -> &LlamaFarm {
        &self.lf
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        find_config(&self.dir).unwrap_or_else(|| self.dir.join(CONFIG_FILE_NAMES[0]))
    }

    /// The current config with its `${VAR}`s filled in from the library's [`Vars`](crate::config::Vars):
    /// what the engines use. Never store it (it may hold secrets).
    pub fn config_substituted(&self) -> Result<LlamaFarmConfig> {
        Ok(self.config()?.substituted(self.lf.vars()))
    }

    /// Read and validate the current config from disk.
    pub fn config(&self) -> Result<LlamaFarmConfig> {
        match load_config_with(&self.config_path(), self.lf.vars()) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::missing(ResourceKind::Project, format!("{}/{}", self.namespace, self.name)))
            }
            other => other,
        }
    }

    /// Modification time of the config file.
    pub fn last_modified(&self) -> Option<DateTime<Utc>> {
        fs::metadata(self.config_path()).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
    }

    /// Replace the config with `cfg` (validated). Its name and namespace must match the
    /// project. This also repairs a config file that no longer parses.
    pub fn replace_config(&self, cfg: LlamaFarmConfig) -> Result<LlamaFarmConfig> {
        self.write_config(
            |current| {
                *current = cfg;
                Ok(())
            },
            true,
        )
    }

    /// Read-modify-write the config under the project's lock. The closure's result
    /// is validated before anything is written; the previous file is kept as a backup.
    /// A config file that does not parse is left alone and its parse error returned:
    /// a change to part of it cannot be applied to a file that cannot be read.
    pub fn update_config<F>(&self, f: F) -> Result<LlamaFarmConfig>
    where
        F: FnOnce(&mut LlamaFarmConfig) -> Result<()>,
    {
        self.write_config(f, false)
    }

    fn write_config<F>(&self, f: F, replaces_all: bool) -> Result<LlamaFarmConfig>
    where
        F: FnOnce(&mut LlamaFarmConfig) -> Result<()>,
    {
        let lock = self.lf.project_lock(&self.dir);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.config_path();
        let old_text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::missing(ResourceKind::Project, format!("{}/{}", self.namespace, self.name)),
            _ => Error::io(&path, e),
        })?;
        // A broken file on disk can be replaced wholesale, never edited in part.
        let mut cfg = match parse_config_text(&path, &old_text).and_then(LlamaFarmConfig::from_value_unvalidated) {
            Ok(cfg) => cfg,
            Err(_) if replaces_all => placeholder(&self.namespace, &self.name),
            Err(e) => return Err(e),
        };
        f(&mut cfg)?;
        if cfg.name != self.name {
            return Err(Error::validation("name", format!("must be '{}' (the project's name), got '{}'", self.name, cfg.name)));
        }
        if cfg.namespace != self.namespace {
            return Err(Error::validation("namespace", format!("must be '{}' (the project's namespace), got '{}'", self.namespace, cfg.namespace)));
        }
        cfg.validate_with(self.lf.vars())?;
        self.backup(&old_text)?;
        let yaml = cfg.to_yaml_string()?;
        let target = if path.extension().and_then(|e| e.to_str()) == Some("json") { self.dir.join(CONFIG_FILE_NAMES[0]) } else { path.clone() };
        fsutil::atomic_write(&target, yaml.as_bytes())?;
        if target != path {
            let _ = fs::remove_file(&path);
        }
        Ok(cfg)
    }

    /// Backups of previous configs, newest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.dir.join(".backups"))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect())
            .unwrap_or_default();
        v.sort();
        v.reverse();
        v
    }

    fn backup(&self, old_text: &str) -> Result<()> {
        let dir = self.dir.join(".backups");
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        fsutil::atomic_write(&dir.join(format!("llamafarm.{stamp}.yaml")), old_text.as_bytes())?;
        for old in self.backups().into_iter().skip(MAX_BACKUPS) {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }
}

fn placeholder(namespace: &str, name: &str) -> LlamaFarmConfig {
    LlamaFarmConfig {
        version: "v1".into(),
        name: name.into(),
        namespace: namespace.into(),
        components: None,
        prompts: None,
        rag: None,
        datasets: None,
        runtime: Default::default(),
        mcp: None,
        voice: None,
        extra: Default::default(),
    }
}

/// The config file in a project directory, trying the original's file names in order.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    CONFIG_FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn parse_config_text(path: &Path, text: &str) -> Result<serde_json::Value> {
    if path.extension().and_then(|e| e.to_str()) == Some("toml") {
        return Err(Error::invalid(
            "config",
            format!("file '{}' is TOML, which is not supported; use YAML", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()),
        ));
    }
    config::parse_yaml_value(text)
}

/// Load and validate a config file (no `${VAR}` values).
pub fn load_config(path: &Path) -> Result<LlamaFarmConfig> {
    load_config_with(path, &crate::config::Vars::none())
}

/// Load a config file and validate it with `${VAR}`s filled from `vars`.
pub fn load_config_with(path: &Path, vars: &crate::config::Vars) -> Result<LlamaFarmConfig> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    LlamaFarmConfig::from_value_with(parse_config_text(path, &text)?, vars)
}

#[cfg(test)]
mod tests {
    use crate::LlamaFarm;

    #[test]
    fn a_partial_update_leaves_an_unparsable_config_alone() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LlamaFarm::open(dir.path()).unwrap();
        let p = lf.projects().create("acme", "bot", None).unwrap();
        let path = p.config_path();
        let broken = "version: v1\nname: bot\nnamespace: acme\nruntime: [unclosed\n";
        std::fs::write(&path, broken).unwrap();
        let err = p.update_config(|c| {
            c.runtime.models = None;
            Ok(())
        });
        let err = err.expect_err("an edit of a config that does not parse must fail");
        assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken, "the file on disk is unchanged");
        assert!(p.backups().is_empty(), "nothing was written, not even a backup");
        // A whole replacement still repairs it.
        let mut fresh = lf.projects().create("acme", "other", None).unwrap().config().unwrap();
        fresh.name = "bot".into();
        p.replace_config(fresh).unwrap();
        assert!(p.config().is_ok());
    }
}
