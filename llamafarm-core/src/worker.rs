//! An ingestion worker (`lf worker`): takes jobs from the Redis queue ([`crate::queue`]),
//! parses, chunks and embeds the files on this machine, and sends the embedded chunks
//! to the API server, which indexes them and keeps the task's record.
//!
//! Per job, the worker
//! 1. takes its part of the task from the server
//!    (`POST /v1/internal/tasks/{ns}/{project}/{task}/claim`), which answers with the
//!    project's config and the part's files still to do;
//! 2. mirrors the project in its own data directory (config only; a scratch copy deleted
//!    after the job) so the same [`IngestPlan`] the server would use parses and embeds;
//! 3. per batch of files: fetches each file (`GET .../datasets/{ds}/files/{hash}`),
//!    prepares and embeds the batch, sends outcomes and chunks
//!    (`POST .../results`), and tells the queue it is still on the job;
//! 4. says its part is done (`POST .../finish`; the server ends the task with its last
//!    part) and acknowledges the queue entry.
//!
//! A worker killed mid-job leaves its entry pending; another takes it over after the
//! claim timeout and goes on with the files that have no outcome. Chunks the server
//! holds already are skipped by id, so nothing is indexed twice.

use crate::error::{Error, Result};
use crate::ingest::{FileOutcome, IngestPlan, Prepared};
use crate::queue::{QueuedJob, RedisQueue};
use crate::store::ChunkRecord;
use crate::task::WorkerJob;
use crate::LlamaFarm;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Files fetched, prepared and sent per batch.
const BATCH_FILES: usize = 8;

/// How a worker reaches the API server and the queue.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The API server, e.g. `http://10.0.0.2:8000`.
    pub server: String,
    /// The API key it expects (`Authorization: Bearer`), if it has keys.
    pub api_key: Option<String>,
    /// This worker's consumer name in the queue's group (unique per worker).
    pub name: String,
    /// A job left unacknowledged this long by another worker is taken over.
    pub claim_after: Duration,
    /// How long one read of the queue waits for a job.
    pub poll: Duration,
}

/// What one job did ([`Worker::process`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobReport {
    /// Files this worker sent outcomes for.
    pub files: usize,
    /// Chunks it sent.
    pub chunks: usize,
    /// The task's state when the worker left it (`None`: the task had ended before).
    pub state: Option<String>,
}

/// An ingestion worker: a library instance (its models, a scratch data directory),
/// the queue, and the API server.
pub struct Worker {
    lf: LlamaFarm,
    queue: RedisQueue,
    opts: WorkerOptions,
    http: ureq::Agent,
}

impl Worker {
    /// A worker over `lf` (opened on a scratch data directory, with the model cache the
    /// embedders load from) and the queue at `queue_url`.
    pub fn new(lf: LlamaFarm, queue_url: &str, opts: WorkerOptions) -> Result<Self> {
        let queue = RedisQueue::open(queue_url)?;
        let http: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(600))).http_status_as_error(false).build().into();
        Ok(Self { lf, queue, opts: WorkerOptions { server: opts.server.trim_end_matches('/').to_string(), ..opts }, http })
    }

    /// The queue this worker reads.
    pub fn queue(&self) -> &RedisQueue {
        &self.queue
    }

    /// Take and run jobs until `stop` is set. A job that fails (the server unreachable)
    /// is left unacknowledged, so it is taken over after the claim timeout.
    pub fn run(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.queue.heartbeat(&self.opts.name) {
                tracing::warn!(error = %e, "cannot reach the queue");
            }
            match self.queue.next(&self.opts.name, self.opts.claim_after, self.opts.poll) {
                Ok(Some(job)) => match self.process(&job) {
                    Ok(r) => tracing::info!(task = %job.task_id, files = r.files, chunks = r.chunks, state = ?r.state, "job done"),
                    Err(e) => {
                        tracing::error!(task = %job.task_id, error = %e, "job failed; it will be taken over after the claim timeout");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the queue");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Error {
        Error::unavailable(format!("API server {}", self.opts.server), e.to_string())
    }

    fn send(&self, req: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &Value) -> Result<Value> {
        match self.send_status(req, body)? {
            (200..=299, v) => Ok(v),
            (status, v) => Err(self.unavailable(format!("answered {status}: {}", v["detail"].as_str().unwrap_or(&v.to_string())))),
        }
    }

    /// A request and the server's status and JSON answer, whatever the status.
    fn send_status(&self, req: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &Value) -> Result<(u16, Value)> {
        let req = match &self.opts.api_key {
            Some(k) => req.header("Authorization", &format!("Bearer {k}")),
            None => req,
        };
        let mut resp = req.send_json(body).map_err(|e| self.unavailable(format!("unreachable: {e}")))?;
        let status = resp.status();
        let v: Value = resp.body_mut().read_json().map_err(|e| self.unavailable(format!("answered {status} unreadably: {e}")))?;
        Ok((status.as_u16(), v))
    }

    fn task_url(&self, job: &QueuedJob, action: &str) -> String {
        format!("{}/v1/internal/tasks/{}/{}/{}/{action}", self.opts.server, job.namespace, job.project, job.task_id)
    }

    /// A file of the dataset: its uploaded name and content.
    fn fetch(&self, job: &QueuedJob, dataset: &str, hash: &str) -> Result<(String, Vec<u8>)> {
        let url = format!("{}/v1/internal/projects/{}/{}/datasets/{dataset}/files/{hash}", self.opts.server, job.namespace, job.project);
        let mut req = self.http.get(&url);
        if let Some(k) = &self.opts.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req.call().map_err(|e| self.unavailable(format!("unreachable: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.unavailable(format!("answered {status} for file {hash}")));
        }
        let name = resp.headers().get("x-lf-file-name").and_then(|v| v.to_str().ok()).map(crate::paths::decode_segment).unwrap_or_else(|| hash.to_string());
        let bytes = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().map_err(|e| self.unavailable(format!("file {hash} broke off: {e}")))?;
        Ok((name, bytes))
    }

    /// Run one job to its end and acknowledge it.
    pub fn process(&self, job: &QueuedJob) -> Result<JobReport> {
        let claimed = match self.send_status(self.http.post(self.task_url(job, "claim")), &json!({"files": job.files}))? {
            (200..=299, v) => v,
            // The project or the task is gone (deleted): the job is dropped, not retried.
            (404, v) => {
                tracing::warn!(task = %job.task_id, detail = %v["detail"], "the task no longer exists; its job is dropped");
                self.queue.ack(&job.entry)?;
                return Ok(JobReport::default());
            }
            (status, v) => return Err(self.unavailable(format!("answered {status}: {}", v["detail"].as_str().unwrap_or(&v.to_string())))),
        };
        if claimed["job"].is_null() {
            self.queue.ack(&job.entry)?;
            return Ok(JobReport::default());
        }
        let spec: WorkerJob = serde_json::from_value(claimed["job"].clone()).map_err(|e| self.unavailable(format!("sent a job this worker cannot read: {e}")))?;
        let projects = self.lf.projects();
        // A scratch mirror of the project: its config, without the file lists (the
        // files come one batch at a time).
        let _ = projects.delete(&job.namespace, &job.project);
        let mut cfg = spec.config.clone();
        for d in cfg.datasets.iter_mut().flatten() {
            d.files = None;
        }
        let mirror = projects.create_with_config(&job.namespace, &job.project, cfg)?;
        let result = self.run_job(job, &spec, &mirror);
        let _ = projects.delete(&job.namespace, &job.project);
        let mut report = result?;
        let end = self.send(self.http.post(self.task_url(job, "finish")), &json!({}))?;
        report.state = end["state"].as_str().map(String::from);
        self.queue.ack(&job.entry)?;
        Ok(report)
    }

    fn run_job(&self, job: &QueuedJob, spec: &WorkerJob, mirror: &crate::Project) -> Result<JobReport> {
        use rayon::prelude::*;
        let mut report = JobReport::default();
        let never = AtomicBool::new(false);
        let plan = match IngestPlan::new(mirror, &spec.dataset, spec.overrides.clone()) {
            Ok(p) => p,
            Err(e) => {
                // Nothing can be processed (unknown strategy or embedder): each file says why.
                let outcomes: Vec<FileOutcome> = spec.files.iter().map(|h| FileOutcome::failed(h, h, &e)).collect();
                report.files = outcomes.len();
                self.send(self.http.post(self.task_url(job, "results")), &json!({"outcomes": outcomes, "records": []}))?;
                return Ok(report);
            }
        };
        let datasets = mirror.datasets();
        for batch in spec.files.chunks(BATCH_FILES) {
            let mut outcomes: Vec<FileOutcome> = Vec::new();
            let mut ready: Vec<String> = Vec::new();
            for hash in batch {
                let (name, bytes) = self.fetch(job, &spec.dataset, hash)?;
                match datasets.upload_bytes(&spec.dataset, &name, &bytes) {
                    Ok(u) if u.hash == *hash => ready.push(hash.clone()),
                    Ok(_) => outcomes.push(FileOutcome::failed(hash, &name, &Error::internal("the content fetched does not match its hash"))),
                    Err(e) => outcomes.push(FileOutcome::failed(hash, &name, &e)),
                }
            }
            let prepared: Vec<Prepared> = ready.par_iter().map(|h| plan.prepare(h, &never)).collect();
            let mut files = Vec::new();
            for p in prepared {
                match p {
                    Prepared::Chunks(f) => files.push(f),
                    Prepared::Done(o) => outcomes.push(o),
                }
            }
            let mut records: Vec<ChunkRecord> = Vec::new();
            for (o, r) in plan.embed(files) {
                outcomes.push(o);
                records.extend(r);
            }
            report.files += outcomes.len();
            report.chunks += records.len();
            let answer = self.send(self.http.post(self.task_url(job, "results")), &json!({"outcomes": outcomes, "records": records}))?;
            for hash in &ready {
                let _ = datasets.remove_file(&spec.dataset, hash, true);
            }
            self.queue.touch(&self.opts.name, &job.entry)?;
            if answer["stop"].as_bool() == Some(true) {
                break;
            }
        }
        Ok(report)
    }
}
