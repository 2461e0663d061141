//! Durable background tasks (dataset processing).
//!
//! Each task is a JSON record at `{project}/tasks/{task_id}.json`, rewritten
//! atomically as it advances, so its state survives a restart; a task cut off by
//! a crash is marked FAILURE with a reason when the data directory is next opened.
//! Tasks run on in-process worker threads; within a task, files are parsed and
//! chunked a wave at a time in parallel, then embedded and committed in groups
//! (one index commit for many small files; see [`ingest::IngestPlan`]).
//!
//! With a Redis queue ([`crate::LlamaFarmBuilder::task_queue`]) tasks go to
//! [`crate::queue`] instead and `lf worker` processes ([`crate::worker`]) run them:
//! a worker takes a task ([`TaskRunner::claim`]), sends each batch of embedded chunks
//! back ([`TaskRunner::accept`]) and ends it ([`TaskRunner::finish`]). The records and
//! the index stay here, written only by this process.
//!
//! States: PENDING, STARTED, SUCCESS, FAILURE, REVOKED (cancelled).

use crate::error::{Error, ResourceKind, Result};
use crate::ingest::{self, FileOutcome};
use crate::{LlamaFarm, Project};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A task's state (Celery's names, as the original's clients expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    /// Queued.
    Pending,
    /// Running.
    Started,
    /// Finished (some files may have failed; see the result).
    Success,
    /// Could not run, or was cut off by a restart.
    Failure,
    /// Cancelled.
    Revoked,
}

impl TaskState {
    /// The name as the API writes it (`PENDING`, `STARTED`, `SUCCESS`, `FAILURE`, `REVOKED`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Started => "STARTED",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Revoked => "REVOKED",
        }
    }

    /// Finished one way or another.
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Failure | TaskState::Revoked)
    }
}

/// Progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskMeta {
    /// Files finished.
    pub current: usize,
    /// Files in the task.
    pub total: usize,
}

/// The persisted record of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Id.
    pub task_id: String,
    /// `process_dataset`.
    pub kind: String,
    /// Namespace of the project.
    pub namespace: String,
    /// Project name.
    pub project: String,
    /// Dataset processed.
    pub dataset: String,
    /// State.
    pub state: TaskState,
    /// Progress.
    pub meta: TaskMeta,
    /// Final result (per-file outcomes and counts).
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Extra failure context.
    pub traceback: Option<String>,
    /// Whether a cancel was requested.
    pub cancelled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// File hashes to process, in order.
    pub files: Vec<String>,
    /// Outcomes so far.
    pub outcomes: Vec<FileOutcome>,
    /// `parser_overrides` for this run.
    pub overrides: Option<Map<String, Value>>,
    /// Files whose chunks were removed on cancel.
    #[serde(default)]
    pub files_reverted: usize,
    /// Files whose chunks could not be removed on cancel.
    #[serde(default)]
    pub files_failed_to_revert: usize,
    /// Errors while reverting.
    #[serde(default)]
    pub revert_errors: Vec<Value>,
}

impl TaskRecord {
    /// The result shape of the original's ProcessDatasetResponse.
    fn summarize(&self) -> Value {
        let count = |s: &str| self.outcomes.iter().filter(|o| o.status == s).count();
        json!({
            "dataset": self.dataset,
            "processed_files": count("processed"),
            "skipped_files": count("skipped"),
            "failed_files": count("failed"),
            "total_chunks": self.outcomes.iter().map(|o| o.chunks).sum::<usize>(),
            "details": self.outcomes,
        })
    }
}

/// The answer to a cancel request.
#[derive(Debug, Clone, Serialize)]
pub struct CancelReport {
    /// Human-readable.
    pub message: String,
    /// Task id.
    pub task_id: String,
    /// Whether the task is (now) cancelled.
    pub cancelled: bool,
    /// Files that never started.
    pub pending_tasks_cancelled: usize,
    /// Files running when the cancel arrived.
    pub running_tasks_at_cancel: usize,
    /// Files whose chunks were removed.
    pub files_reverted: usize,
    /// Files whose chunks could not be removed.
    pub files_failed_to_revert: usize,
    /// Errors while reverting.
    pub errors: Option<Vec<Value>>,
    /// The task had finished before the request.
    pub already_completed: bool,
    /// The task had been cancelled before.
    pub already_cancelled: bool,
}

struct Job {
    namespace: String,
    project: String,
    task_id: String,
}

/// The worker pool. One per [`LlamaFarm`].
#[derive(Default)]
pub struct TaskRunner {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    cancels: Mutex<HashMap<String, Arc<AtomicBool>>>,
    running: Mutex<HashMap<String, usize>>,
    /// Final records that could not be written (a full disk): served from here and
    /// written at the next read, so a task never looks running after it ended.
    unsaved: Mutex<HashMap<String, TaskRecord>>,
    /// Tasks run to their end since the process started, by final state: (count, seconds).
    finished: Mutex<HashMap<TaskState, (u64, f64)>>,
    started: AtomicBool,
    /// The Redis queue tasks go to, when `lf worker` processes run them.
    remote: std::sync::OnceLock<Arc<crate::queue::RedisQueue>>,
    /// Serialises the workers' calls that rewrite a record.
    remote_lock: Mutex<()>,
}

/// What an `lf worker` needs to run a task ([`TaskRunner::claim`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The task.
    pub task_id: String,
    /// The dataset whose files it processes.
    pub dataset: String,
    /// The files still to process (those without an outcome yet), by hash.
    pub files: Vec<String>,
    /// `parser_overrides` of the run.
    pub overrides: Option<Map<String, Value>>,
    /// The project's config with its `${VAR}`s filled in.
    pub config: crate::config::LlamaFarmConfig,
}

/// The task queue now and what it has run ([`TaskRunner::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskStats {
    /// Tasks waiting for a worker.
    pub queued: usize,
    /// Tasks being processed.
    pub running: usize,
    /// Tasks that ended since the process started: (final state, count, seconds they ran in all).
    pub finished: Vec<(TaskState, u64, f64)>,
    /// With a Redis queue: the `lf worker` processes alive, with the seconds since each one's
    /// last heartbeat.
    pub workers: Vec<(String, f64)>,
}

/// Worker threads (each runs one task at a time; a task uses both cores itself).
const WORKERS: usize = 2;

/// Files per queue job when `lf worker` processes run the tasks: a large task is spread
/// over the workers in parts of this many files.
const JOB_FILES: usize = 16;

fn tasks_dir(project_dir: &Path) -> PathBuf {
    project_dir.join("tasks")
}

fn valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn save(project_dir: &Path, rec: &mut TaskRecord) -> Result<()> {
    rec.updated_at = chrono::Utc::now().to_rfc3339();
    crate::fsutil::atomic_write(&tasks_dir(project_dir).join(format!("{}.json", rec.task_id)), &serde_json::to_vec_pretty(rec).unwrap_or_default()).map_err(|e| {
        match e {
            Error::StorageFull { .. } => Error::StorageFull { what: format!("the record of task {}", rec.task_id) },
            e => e,
        }
    })
}

/// Read a task record.
pub fn load(project_dir: &Path, task_id: &str) -> Result<TaskRecord> {
    if !valid_task_id(task_id) {
        return Err(Error::missing(ResourceKind::Task, task_id));
    }
    let p = tasks_dir(project_dir).join(format!("{task_id}.json"));
    let bytes = std::fs::read(&p).map_err(|_| Error::missing(ResourceKind::Task, task_id))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Parse { what: format!("task '{task_id}'"), message: e.to_string() })
}

/// Mark every task that a crash or restart cut off as FAILURE (run at open).
pub fn recover_interrupted(projects_dir: &Path) {
    let Ok(namespaces) = std::fs::read_dir(projects_dir) else { return };
    for ns in namespaces.flatten() {
        let Ok(projects) = std::fs::read_dir(ns.path()) else { continue };
        for p in projects.flatten() {
            let Ok(tasks) = std::fs::read_dir(tasks_dir(&p.path())) else { continue };
            for t in tasks.flatten() {
                let Ok(bytes) = std::fs::read(t.path()) else { continue };
                let Ok(mut rec) = serde_json::from_slice::<TaskRecord>(&bytes) else { continue };
                if !rec.state.is_final() {
                    rec.state = TaskState::Failure;
                    rec.error = Some(format!(
                        "interrupted: the server stopped while the task was {} ({} of {} files done); run the dataset's process action again",
                        if rec.meta.current > 0 { "running" } else { "queued" },
                        rec.meta.current,
                        rec.meta.total
                    ));
                    rec.result = Some(rec.summarize());
                    let _ = save(&p.path(), &mut rec);
                }
            }
        }
    }
}

impl TaskRunner {
    fn ensure_workers(&self, lf: &LlamaFarm) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        for i in 0..WORKERS {
            let weak = lf.downgrade();
            std::thread::Builder::new().name(format!("lf-task-{i}")).spawn(move || worker(weak)).expect("spawning a task worker");
        }
    }

    /// Queue processing of `files` of a dataset; returns the task id.
    pub fn submit_process(&self, project: &Project, dataset: &str, files: Vec<String>, overrides: Option<Map<String, Value>>) -> Result<String> {
        let lf = project.llamafarm();
        let id = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let mut rec = TaskRecord {
            task_id: id.clone(),
            kind: "process_dataset".into(),
            namespace: project.namespace().into(),
            project: project.name().into(),
            dataset: dataset.into(),
            state: TaskState::Pending,
            meta: TaskMeta { current: 0, total: files.len() },
            result: None,
            error: None,
            traceback: None,
            cancelled: false,
            created_at: now.clone(),
            updated_at: now,
            files,
            outcomes: Vec::new(),
            overrides,
            files_reverted: 0,
            files_failed_to_revert: 0,
            revert_errors: Vec::new(),
        };
        save(project.dir(), &mut rec)?;
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), Arc::new(AtomicBool::new(false)));
        if let Some(q) = self.remote.get() {
            // One job per part of the files, so that several workers share a large task.
            let parts: Vec<&[String]> = if rec.files.is_empty() { vec![&[][..]] } else { rec.files.chunks(JOB_FILES).collect() };
            if let Err(e) = parts.iter().try_for_each(|part| q.push(&rec.namespace, &rec.project, &id, part).map(|_| ())) {
                self.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                rec.state = TaskState::Failure;
                rec.error = Some(e.public_message());
                rec.result = Some(rec.summarize());
                self.save_final(project.dir(), rec);
                return Err(e);
            }
            return Ok(id);
        }
        self.ensure_workers(lf);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(Job { namespace: rec.namespace.clone(), project: rec.project.clone(), task_id: id.clone() });
        self.ready.notify_one();
        Ok(id)
    }

    /// Send tasks to `queue` for `lf worker` processes from now on.
    pub(crate) fn use_queue(&self, queue: Arc<crate::queue::RedisQueue>) {
        let _ = self.remote.set(queue);
    }

    /// The Redis queue tasks go to, if any.
    pub fn queue(&self) -> Option<&Arc<crate::queue::RedisQueue>> {
        self.remote.get()
    }

    /// A worker takes a part of a task (`part`: file hashes; empty for all): the task is
    /// STARTED, and the answer lists the files of the part that have no outcome yet (a part
    /// taken over from a worker that died goes on where it stopped). `None`: the task has
    /// ended (its queue entry can be dropped).
    pub fn claim(&self, project: &Project, task_id: &str, part: &[String]) -> Result<Option<WorkerJob>> {
        let _g = self.remote_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(project, task_id)?;
        if rec.state.is_final() {
            return Ok(None);
        }
        if rec.state == TaskState::Pending {
            rec.state = TaskState::Started;
            save(project.dir(), &mut rec)?;
        }
        let done: std::collections::HashSet<&str> = rec.outcomes.iter().map(|o| o.file_hash.as_str()).collect();
        Ok(Some(WorkerJob {
            task_id: rec.task_id.clone(),
            dataset: rec.dataset.clone(),
            files: rec.files.iter().filter(|h| !done.contains(h.as_str()) && (part.is_empty() || part.contains(h))).cloned().collect(),
            overrides: rec.overrides.clone(),
            config: project.config_substituted()?,
        }))
    }

    /// A worker's results for some files of a task: their chunks go into the dataset's
    /// database (ids already there are skipped, so a file sent twice is indexed once) and
    /// their outcomes into the record. Returns whether the worker should stop: the task
    /// was cancelled or has ended.
    pub fn accept(&self, project: &Project, task_id: &str, outcomes: Vec<FileOutcome>, records: Vec<crate::store::ChunkRecord>) -> Result<bool> {
        let _g = self.remote_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(project, task_id)?;
        if rec.state.is_final() {
            return Ok(true);
        }
        if let Some(bad) = outcomes.iter().find(|o| !rec.files.contains(&o.file_hash)) {
            return Err(Error::invalid("outcomes", format!("name file '{}', which is not part of task {task_id}", bad.file_hash)));
        }
        if let Some(bad) = records.iter().find(|r| !outcomes.iter().any(|o| o.file_hash == r.file_hash)) {
            return Err(Error::invalid("records", format!("hold chunk '{}' of a file without an outcome", bad.id)));
        }
        let db = project.datasets().get(&rec.dataset)?.database;
        let mut per_file: HashMap<String, usize> = HashMap::new();
        let files_of: HashMap<String, String> = records.iter().map(|r| (r.id.clone(), r.file_hash.clone())).collect();
        let report = if records.is_empty() { Default::default() } else { project.rag().store_records(&db, records)? };
        for id in &report.skipped_ids {
            if let Some(f) = files_of.get(id) {
                *per_file.entry(f.clone()).or_default() += 1;
            }
        }
        for mut o in outcomes {
            let dup = per_file.get(&o.file_hash).copied().unwrap_or(0).min(o.chunks);
            if dup > 0 {
                o.chunks -= dup;
                o.skipped_chunks += dup;
                if o.chunks == 0 {
                    o.status = "skipped".into();
                }
            }
            match rec.outcomes.iter_mut().find(|x| x.file_hash == o.file_hash) {
                Some(x) => *x = o,
                None => rec.outcomes.push(o),
            }
        }
        rec.meta.current = rec.outcomes.len();
        save(project.dir(), &mut rec)?;
        let flag = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).is_some_and(|f| f.load(Ordering::SeqCst));
        Ok(flag || rec.cancelled)
    }

    /// A worker is done with its part of a task. When every file has an outcome (or the
    /// task was cancelled) the task ends: reverted when cancelled, else SUCCESS, the record
    /// and its event written as for a task run here. Answers the task's state (STARTED
    /// while other parts are out).
    pub fn finish(&self, project: &Project, task_id: &str) -> Result<TaskState> {
        let _g = self.remote_lock.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self.get(project, task_id)?;
        if rec.state.is_final() {
            return Ok(rec.state);
        }
        let flag = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).is_some_and(|f| f.load(Ordering::SeqCst));
        let done: std::collections::HashSet<&str> = rec.outcomes.iter().map(|o| o.file_hash.as_str()).collect();
        if !flag && !rec.cancelled && !rec.files.iter().all(|h| done.contains(h.as_str())) {
            return Ok(rec.state);
        }
        let started = chrono::DateTime::parse_from_rfc3339(&rec.created_at)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default())
            .unwrap_or_default();
        let cancelled = flag || rec.cancelled;
        let state = conclude(project, rec, cancelled, started);
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let e = finished.entry(*state.as_ref().unwrap_or(&TaskState::Failure)).or_default();
        e.0 += 1;
        e.1 += started.as_secs_f64();
        state
    }

    /// The queue now and what it has run.
    pub fn stats(&self) -> TaskStats {
        let mut finished: Vec<(TaskState, u64, f64)> = self.finished.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(s, (n, t))| (*s, *n, *t)).collect();
        finished.sort_by_key(|f| f.0.as_str());
        let remote = self.remote.get().and_then(|q| q.depth().ok()).unwrap_or(0) as usize;
        let workers = self.remote.get().and_then(|q| q.workers().ok()).unwrap_or_default();
        TaskStats {
            workers,
            queued: self.queue.lock().unwrap_or_else(|p| p.into_inner()).len() + remote,
            running: self.running.lock().unwrap_or_else(|p| p.into_inner()).len(),
            finished,
        }
    }

    /// A task of `project` by id (404 when unknown).
    pub fn get(&self, project: &Project, task_id: &str) -> Result<TaskRecord> {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rec) = unsaved.get_mut(task_id).filter(|r| r.namespace == project.namespace() && r.project == project.name()) {
            let out = rec.clone();
            if save(project.dir(), rec).is_ok() {
                unsaved.remove(task_id);
            }
            return Ok(out);
        }
        drop(unsaved);
        load(project.dir(), task_id)
    }

    /// Save a task's final record; when that fails, keep it in memory (served by
    /// [`TaskRunner::get`], written at its next call) and log why.
    fn save_final(&self, project_dir: &Path, mut rec: TaskRecord) {
        if let Err(e) = save(project_dir, &mut rec) {
            tracing::error!(task = %rec.task_id, error = %e, "could not write the task's final state; it is kept in memory until it can be");
            self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.task_id.clone(), rec);
        }
    }

    /// Cancel a task: pending files never start, the running ones stop at a safe
    /// point, and files already processed are removed from the index. Idempotent.
    pub fn cancel(&self, project: &Project, task_id: &str) -> Result<CancelReport> {
        let rec = self.get(project, task_id)?;
        let base = |rec: &TaskRecord, message: String, already_completed: bool, already_cancelled: bool| CancelReport {
            message,
            task_id: task_id.into(),
            cancelled: rec.state == TaskState::Revoked || rec.cancelled,
            pending_tasks_cancelled: 0,
            running_tasks_at_cancel: 0,
            files_reverted: rec.files_reverted,
            files_failed_to_revert: rec.files_failed_to_revert,
            errors: if rec.revert_errors.is_empty() { None } else { Some(rec.revert_errors.clone()) },
            already_completed,
            already_cancelled,
        };
        if rec.state == TaskState::Revoked || (rec.cancelled && rec.state.is_final()) {
            return Ok(base(&rec, "Task already cancelled".into(), false, true));
        }
        if rec.state.is_final() {
            let s = format!("{:?}", rec.state).to_lowercase();
            return Ok(base(&rec, format!("Task already {s}"), true, false));
        }
        let pending = rec.meta.total - rec.meta.current;
        let running = *self.running.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).unwrap_or(&0);
        let flag = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(task_id).cloned();
        match flag {
            Some(f) => f.store(true, Ordering::SeqCst),
            None => {
                // Not known to this process (e.g. queued before a restart): revoke on disk.
                let mut r = rec.clone();
                r.cancelled = true;
                r.state = TaskState::Revoked;
                save(project.dir(), &mut r)?;
            }
        }
        // Wait for the worker to stop and revert (bounded).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut rec = self.get(project, task_id)?;
        while !rec.state.is_final() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
            rec = self.get(project, task_id)?;
        }
        if rec.state.is_final() && !rec.cancelled {
            // It finished (its last commit done) before it saw the cancel: nothing was
            // cancelled.
            let s = format!("{:?}", rec.state).to_lowercase();
            return Ok(base(&rec, format!("Task already {s}"), true, false));
        }
        let message = if rec.files_failed_to_revert > 0 {
            format!("Task cancelled with cleanup issues: {} reverted, {} failed", rec.files_reverted, rec.files_failed_to_revert)
        } else {
            format!("Task cancelled and {} file(s) reverted", rec.files_reverted)
        };
        let mut r = base(&rec, message, false, false);
        r.cancelled = true;
        r.pending_tasks_cancelled = pending.saturating_sub(running);
        r.running_tasks_at_cancel = running;
        Ok(r)
    }
}

fn worker(lf: crate::WeakLlamaFarm) {
    loop {
        let Some(lf) = lf.upgrade() else { return };
        let runner = lf.tasks();
        let job = {
            let mut q = runner.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = q.pop_front() {
                    break Some(j);
                }
                let (g, timeout) = runner.ready.wait_timeout(q, Duration::from_secs(2)).unwrap_or_else(|p| p.into_inner());
                q = g;
                if timeout.timed_out() && q.is_empty() {
                    break None;
                }
            }
        };
        let Some(job) = job else { continue };
        // A task that fails or panics before it finishes is recorded as FAILURE with
        // the reason, and this worker goes on with the next one.
        let t0 = Instant::now();
        let (end, failure) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&lf, &job))) {
            Ok(Ok(state)) => (state, None),
            Ok(Err(e)) => {
                tracing::warn!(task = %job.task_id, error = %e, "task failed");
                (TaskState::Failure, Some(e.public_message()))
            }
            Err(p) => (TaskState::Failure, Some(format!("the task crashed: {}", ingest::panic_message(&*p)))),
        };
        {
            let mut finished = lf.tasks().finished.lock().unwrap_or_else(|p| p.into_inner());
            let e = finished.entry(end).or_default();
            e.0 += 1;
            e.1 += t0.elapsed().as_secs_f64();
        }
        if let Some(reason) = failure {
            tracing::error!(task = %job.task_id, error = %reason, "task failed");
            lf.tasks().running.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.task_id);
            lf.tasks().cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.task_id);
            if let Ok(project) = lf.project(&job.namespace, &job.project) {
                let kept = lf.tasks().unsaved.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&job.task_id);
                if let (false, Ok(mut rec)) = (kept, load(project.dir(), &job.task_id)) {
                    if !rec.state.is_final() {
                        rec.state = TaskState::Failure;
                        rec.error = Some(reason);
                        rec.result = Some(rec.summarize());
                        lf.tasks().save_final(project.dir(), rec);
                    }
                }
            }
        }
        drop(lf);
    }
}

/// Run one task to its end; returns its final state (an error: it failed).
fn run_job(lf: &LlamaFarm, job: &Job) -> Result<TaskState> {
    let project = lf.project(&job.namespace, &job.project)?;
    let dir = project.dir().to_path_buf();
    let mut rec = load(&dir, &job.task_id)?;
    if rec.state.is_final() {
        return Ok(rec.state);
    }
    let flag = lf.tasks().cancels.lock().unwrap_or_else(|p| p.into_inner()).get(&job.task_id).cloned().unwrap_or_default();
    rec.state = TaskState::Started;
    save(&dir, &mut rec)?;
    let started = Instant::now();
    let shared = Arc::new(Mutex::new(rec));
    let files: Vec<String> = shared.lock().unwrap_or_else(|p| p.into_inner()).files.clone();
    let overrides = shared.lock().unwrap_or_else(|p| p.into_inner()).overrides.clone();
    let ds_name = shared.lock().unwrap_or_else(|p| p.into_inner()).dataset.clone();

    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().map_err(|e| Error::internal(format!("thread pool: {e}")))?;
    pool.install(|| run_files(lf, job, &project, &ds_name, &files, overrides, &flag, &shared));
    let rec =
        Arc::try_unwrap(shared).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).unwrap_or_else(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone());
    lf.tasks().running.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.task_id);
    conclude(&project, rec, flag.load(Ordering::SeqCst), started.elapsed())
}

/// The end of a task whose files are all done (or that was cancelled): a cancelled
/// task's processed files are reverted and it is REVOKED, else it is SUCCESS; the index
/// is compacted, the `rag_processing` event written, then the record.
fn conclude(project: &Project, mut rec: TaskRecord, cancelled: bool, took: Duration) -> Result<TaskState> {
    let lf = project.llamafarm();
    let dir = project.dir().to_path_buf();
    if cancelled {
        // Revert what this task indexed.
        rec.cancelled = true;
        let db = project.datasets().get(&rec.dataset).map(|d| d.database);
        for o in rec.outcomes.clone().iter().filter(|o| o.status == "processed") {
            match db.as_ref().map_err(Error::public_message).and_then(|db| project.rag().delete_file(db, &o.file_hash).map_err(|e| e.public_message())) {
                Ok(_) => rec.files_reverted += 1,
                Err(e) => {
                    rec.files_failed_to_revert += 1;
                    rec.revert_errors.push(json!({"file_hash": o.file_hash, "error": e}));
                }
            }
        }
        rec.state = TaskState::Revoked;
    } else {
        rec.state = TaskState::Success;
    }
    rec.result = Some(rec.summarize());
    // One text-index segment per database after a bulk load keeps BM25 fast.
    if rec.outcomes.iter().any(|o| o.status == "processed") {
        if let Ok(db) = project.datasets().get(&rec.dataset).map(|d| d.database) {
            if let Err(e) = project.rag().optimize(&db) {
                tracing::warn!(database = %db, error = %e, "index compaction failed");
            }
        }
    }

    // One `rag_processing` event per run, with a sub-event per file, written before
    // the final record so that a reader who sees the task finished also sees its event.
    let sub: Vec<Value> = rec.outcomes.iter().map(|o| json!({"type": "file", "data": o})).collect();
    let summary = json!({
        "dataset": rec.dataset,
        "task_id": rec.task_id,
        "state": rec.state,
        "files": rec.meta.total,
        "chunks": rec.outcomes.iter().map(|o| o.chunks).sum::<usize>(),
        "duration_ms": took.as_secs_f64() * 1000.0,
    });
    let _ = project.events().record("rag_processing", summary.clone(), json!({"result": rec.result, "summary": summary}), sub);
    if let Err(e) = save(&dir, &mut rec) {
        // The outcome stands (the index holds it); the record says the task failed
        // because its end could not be written, and keeps every file's outcome.
        rec.state = TaskState::Failure;
        rec.error = Some(e.public_message());
        lf.tasks().save_final(&dir, rec);
        return Err(e);
    }
    lf.tasks().cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.task_id);
    Ok(rec.state)
}

/// Files prepared (parsed and chunked) per wave, in parallel.
const WAVE_FILES: usize = 8;
/// A group is committed once it holds this many chunks ...
const GROUP_CHUNKS: usize = 512;
/// ... or this many files ...
const GROUP_FILES: usize = 1024;
/// ... or has waited this long since its first file was prepared.
const GROUP_WINDOW: Duration = Duration::from_secs(2);

/// Process a task's files in groups: waves of files are parsed and chunked in
/// parallel; their chunks accumulate until a group is full, then are embedded
/// together and written in one index commit ([`ingest::IngestPlan::commit`]). A file's
/// outcome enters the task record only after the commit that holds its chunks, and
/// the record is saved once per group.
fn run_files(
    lf: &LlamaFarm,
    job: &Job,
    project: &Project,
    dataset: &str,
    files: &[String],
    overrides: Option<Map<String, Value>>,
    flag: &AtomicBool,
    shared: &Mutex<TaskRecord>,
) {
    use rayon::prelude::*;
    let dir = project.dir();
    let record = |outcomes: Vec<FileOutcome>| {
        let mut r = shared.lock().unwrap_or_else(|p| p.into_inner());
        r.outcomes.extend(outcomes);
        r.meta.current = r.outcomes.len();
        if let Err(e) = save(dir, &mut r) {
            // The index holds these files already; the record catches up at the next save.
            tracing::warn!(task = %r.task_id, error = %e, "could not save the task's progress");
        }
    };
    let plan = match ingest::IngestPlan::new(project, dataset, overrides) {
        Ok(p) => p,
        Err(e) => {
            // Nothing can be processed (missing strategy, unknown embedder, ...): each file says why.
            record(files.iter().map(|h| FileOutcome::failed(h, h, &e)).collect());
            return;
        }
    };
    let set_running = |n: usize| {
        lf.tasks().running.lock().unwrap_or_else(|p| p.into_inner()).insert(job.task_id.clone(), n);
    };
    let mut pending: Vec<ingest::PreparedFile> = Vec::new();
    let mut pending_chunks = 0;
    let mut since: Option<Instant> = None;
    let mut done: Vec<FileOutcome> = Vec::new();
    let mut waves = files.chunks(WAVE_FILES).peekable();
    while let Some(wave) = waves.next() {
        if flag.load(Ordering::SeqCst) {
            break;
        }
        set_running(pending.len() + wave.len());
        let prepared: Vec<ingest::Prepared> = wave.par_iter().map(|h| plan.prepare(h, flag)).collect();
        for p in prepared {
            match p {
                ingest::Prepared::Chunks(f) => {
                    pending_chunks += f.chunk_count();
                    since.get_or_insert_with(Instant::now);
                    pending.push(f);
                }
                // Cancelled mid-file: not reported (nothing was written).
                ingest::Prepared::Done(o) if flag.load(Ordering::SeqCst) && o.status == "failed" => {}
                ingest::Prepared::Done(o) => done.push(o),
            }
        }
        let last = waves.peek().is_none();
        let full = pending_chunks >= GROUP_CHUNKS || pending.len() >= GROUP_FILES || since.is_some_and(|t| t.elapsed() >= GROUP_WINDOW);
        if last || full {
            let group = std::mem::take(&mut pending);
            pending_chunks = 0;
            since = None;
            set_running(group.len());
            done.extend(plan.commit(group, flag));
            record(std::mem::take(&mut done));
        } else if !done.is_empty() && pending.is_empty() {
            // Only skipped or failed files so far: report them without waiting for a group.
            record(std::mem::take(&mut done));
        }
    }
    if !done.is_empty() {
        record(done);
    }
    set_running(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_cut_off_by_a_restart_become_failures() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LlamaFarm::open_with(dir.path(), crate::ModelCache::new(dir.path().join("hub"))).unwrap();
        let p = lf.projects().create("a", "b", None).unwrap();
        let mut rec = TaskRecord {
            task_id: "t-1".into(),
            kind: "process_dataset".into(),
            namespace: "a".into(),
            project: "b".into(),
            dataset: "default".into(),
            state: TaskState::Started,
            meta: TaskMeta { current: 1, total: 3 },
            result: None,
            error: None,
            traceback: None,
            cancelled: false,
            created_at: String::new(),
            updated_at: String::new(),
            files: vec!["x".into(); 3],
            outcomes: vec![],
            overrides: None,
            files_reverted: 0,
            files_failed_to_revert: 0,
            revert_errors: vec![],
        };
        save(p.dir(), &mut rec).unwrap();
        rec.task_id = "t-2".into();
        rec.state = TaskState::Success;
        save(p.dir(), &mut rec).unwrap();
        // A restart: every handle of the first instance is gone (a live one would share
        // the directory, and its tasks would be alive).
        drop(p);
        drop(lf);
        let lf = LlamaFarm::open_with(dir.path(), crate::ModelCache::new(dir.path().join("hub"))).unwrap();
        let p = lf.project("a", "b").unwrap();
        let r = load(p.dir(), "t-1").unwrap();
        assert_eq!(r.state, TaskState::Failure);
        assert!(r.error.unwrap().contains("interrupted"));
        assert_eq!(load(p.dir(), "t-2").unwrap().state, TaskState::Success, "finished tasks are left alone");
        assert!(load(p.dir(), "../etc").is_err());
    }

    /// The task's record once it has finished.
    fn finished(lf: &LlamaFarm, p: &Project, id: &str) -> TaskRecord {
        loop {
            let t = lf.tasks().get(p, id).unwrap();
            if t.state.is_final() {
                return t;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Grouped processing (many files per embedding call and per commit) writes the
    /// same chunks, with the same vectors to the bit, as processing each file alone.
    #[test]
    fn grouped_processing_matches_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LlamaFarm::open_with(dir.path(), crate::ModelCache::from_env()).unwrap();
        let words = ["aspirin", "platelet", "protein", "kinase", "tumour", "receptor", "insulin", "neuron", "cortex", "enzyme"];
        let files: Vec<(String, String)> = (0..40)
            .map(|i| {
                let len = 5 + (i * 37) % 160;
                let body: Vec<&str> = (0..len).map(|j| words[(i * 3 + j * 7 + j / 4) % words.len()]).collect();
                let text = if i % 9 == 0 { format!("# A\n\n{}\n\n# B\n\n{}\n", body.join(" "), body.join(" ")) } else { body.join(" ") };
                (format!("f{i}.md"), text)
            })
            .collect();
        let mut stores = Vec::new();
        for (name, grouped) in [("grouped", true), ("single", false)] {
            let p = lf.projects().create("t", name, None).unwrap();
            p.datasets().create("d", None, "main_database", Some(false)).unwrap();
            let hashes: Vec<String> = files.iter().map(|(n, t)| p.datasets().upload_bytes("d", n, t.as_bytes()).unwrap().hash).collect();
            if grouped {
                let id = lf.tasks().submit_process(&p, "d", hashes.clone(), None).unwrap();
                let t = finished(&lf, &p, &id);
                assert_eq!(t.state, TaskState::Success);
                assert!(t.outcomes.iter().all(|o| o.status == "processed"), "{:?}", t.outcomes);
                // Fewer groups than files: several files shared an embedding call and a commit.
                assert!(t.outcomes.iter().any(|o| o.timings_ms.get("group_files").and_then(|v| v.as_u64()).unwrap_or(0) > 1));
            } else {
                let flag = AtomicBool::new(false);
                for h in &hashes {
                    let o = ingest::process_file(&p, "d", h, None, &flag);
                    assert_eq!(o.status, "processed", "{o:?}");
                }
            }
            let cfg = p.config().unwrap();
            stores.push(p.rag().open(&cfg, Some("main_database")).unwrap().store);
        }
        let (a, b) = (&stores[0], &stores[1]);
        let mut ca = a.list(usize::MAX, 0).unwrap();
        let mut cb = b.list(usize::MAX, 0).unwrap();
        ca.sort_by(|x, y| x.id.cmp(&y.id));
        cb.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(ca.len(), cb.len());
        assert!(ca.len() > files.len(), "some files have several chunks");
        let strip = |m: &Map<String, Value>| {
            let mut m = m.clone();
            m.remove("processed_at");
            m
        };
        for (x, y) in ca.iter().zip(&cb) {
            assert_eq!((&x.id, &x.content, strip(&x.metadata)), (&y.id, &y.content, strip(&y.metadata)));
        }
        // Same vectors to the bit: the similarity of every chunk to a few probes agrees exactly.
        let ids: Vec<String> = ca.iter().map(|c| c.id.clone()).collect();
        let dim = a.dimension().unwrap();
        for seed in 0..3 {
            let probe: Vec<f32> = (0..dim).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 500.0) - 1.0).collect();
            for metric in [crate::store::Metric::Cosine, crate::store::Metric::L2] {
                let sa = a.similarities(&probe, &ids, metric).unwrap();
                let sb = b.similarities(&probe, &ids, metric).unwrap();
                let bits = |v: &[Option<f32>]| v.iter().map(|s| s.map(f32::to_bits)).collect::<Vec<_>>();
                assert_eq!(bits(&sa), bits(&sb));
            }
        }
    }

    /// A parser that panics on one file fails that file; the task and the worker go on.
    #[test]
    fn a_panicking_parser_fails_its_file_not_the_task() {
        struct Boom;
        impl crate::ingest::parse::Parser for Boom {
            fn name(&self) -> &'static str {
                "boom"
            }
            fn label(&self) -> &'static str {
                "Boom"
            }
            fn type_prefixes(&self) -> &'static [&'static str] {
                &["boom"]
            }
            fn extensions(&self) -> &'static [&'static str] {
                &["boom"]
            }
            fn parse(&self, _: &crate::ingest::parse::ParseInput<'_>) -> Result<crate::ingest::parse::ParsedDoc> {
                panic!("index out of bounds in the boom parser")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut parsers = crate::ingest::parse::Registry::builtin();
        parsers.register(Boom);
        let lf = LlamaFarm::builder(dir.path()).model_cache(crate::ModelCache::from_env()).parsers(parsers).open().unwrap();
        let p = lf.projects().create("t", "boom", None).unwrap();
        p.datasets().create("d", None, "main_database", Some(false)).unwrap();
        let files = [("a.txt", "Aspirin inhibits platelets."), ("b.boom", "anything"), ("c.txt", "Insulin lowers blood glucose.")];
        let hashes: Vec<String> = files.iter().map(|(n, t)| p.datasets().upload_bytes("d", n, t.as_bytes()).unwrap().hash).collect();
        for round in 0..3 {
            // Several runs: the worker threads survive each crash.
            let id = lf.tasks().submit_process(&p, "d", hashes.clone(), None).unwrap();
            let t = finished(&lf, &p, &id);
            assert_eq!(t.state, TaskState::Success, "round {round}: {:?}", t.error);
            let by_name: HashMap<&str, &FileOutcome> = t.outcomes.iter().map(|o| (o.filename.as_str(), o)).collect();
            let boom = by_name["b.boom"];
            assert_eq!(boom.status, "failed");
            assert!(boom.error.as_deref().unwrap_or("").contains("the parser crashed on this file: index out of bounds"), "{boom:?}");
            let ok = if round == 0 { "processed" } else { "skipped" };
            assert!(by_name["a.txt"].status == ok && by_name["c.txt"].status == ok, "{:?}", t.outcomes);
        }
    }
}
