//! The ingestion job queue on Redis: a stream with a consumer group, so that
//! `lf worker` processes on any machine share the jobs that `lf serve --queue` writes.
//!
//! - A job is one stream entry (`namespace`, `project`, `task_id`, and `files`: the hashes
//!   of a part of the task's files, comma-separated), so the files of one large task are
//!   spread over the workers. The task's record stays on the API server, which is the only
//!   writer of records and of the index, and ends the task when every file has an outcome.
//! - Workers read with `XREADGROUP` (each entry goes to one consumer) and acknowledge with
//!   `XACK` once the server has the task's end. An entry a worker took but did not
//!   acknowledge stays pending; when it has been idle longer than the claim timeout (the
//!   worker died), another worker takes it over with `XAUTOCLAIM`. A worker busy with a long
//!   job keeps its entry fresh with `XCLAIM ... JUSTID` after each batch of files.
//! - Delivery is at least once; processing is idempotent (the server skips files that
//!   have an outcome and chunk ids that are in the index), so a file ends in the index
//!   once however many workers saw it.
//!
//! Commands are sent as plain `redis::cmd` calls over short-lived connections.

use crate::error::{Error, Result};
use redis::Value as RV;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The stream jobs are written to.
pub const STREAM: &str = "lf:ingest";
/// The consumer group of the workers.
pub const GROUP: &str = "lf-workers";
/// Prefix of the workers' heartbeat keys (`lf:worker:{name}`: the Unix time of its last
/// sign of life, expiring after [`HEARTBEAT_TTL`] seconds).
pub const HEARTBEAT_PREFIX: &str = "lf:worker:";
/// Seconds a heartbeat lives: a worker gone this long is no longer listed.
pub const HEARTBEAT_TTL: u64 = 300;

/// A job read from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The stream entry id (acknowledge it when done).
    pub entry: String,
    /// Namespace of the project.
    pub namespace: String,
    /// Project name.
    pub project: String,
    /// The task to run.
    pub task_id: String,
    /// The part of the task's files this job covers (by hash).
    pub files: Vec<String>,
}

/// A Redis stream used as the job queue.
pub struct RedisQueue {
    client: redis::Client,
    /// `host:port` (no credentials), as errors name the server.
    endpoint: String,
    /// Commands sent, for the operations-per-file figure.
    commands: AtomicU64,
}

impl RedisQueue {
    /// Connect to `url` (`redis://[user:pass@]host[:port][/db]`) and create the stream and
    /// its consumer group when they do not exist.
    pub fn open(url: &str) -> Result<Self> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(Error::invalid("queue", format!("must be a redis:// URL, got '{url}'")));
        }
        let client = redis::Client::open(url).map_err(|e| Error::invalid("queue", format!("is not a usable Redis URL: {e}")))?;
        let info = client.get_connection_info();
        let endpoint = format!("{}", info.addr());
        let q = Self { client, endpoint, commands: AtomicU64::new(0) };
        match q.run(redis::cmd("XGROUP").arg("CREATE").arg(STREAM).arg(GROUP).arg("0").arg("MKSTREAM")) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        Ok(q)
    }

    /// The server, as `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Commands sent so far by this handle.
    pub fn commands_sent(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Error {
        Error::unavailable(format!("task queue Redis {}", self.endpoint), e.to_string())
    }

    fn run(&self, cmd: &redis::Cmd) -> Result<RV> {
        let mut con = self.client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| self.unavailable(e))?;
        self.run_on(&mut con, cmd)
    }

    fn run_on(&self, con: &mut redis::Connection, cmd: &redis::Cmd) -> Result<RV> {
        self.commands.fetch_add(1, Ordering::Relaxed);
        cmd.query::<RV>(con).map_err(|e| self.unavailable(e))
    }

    /// Queue a part of a task (`files`, by hash); returns the entry id.
    pub fn push(&self, namespace: &str, project: &str, task_id: &str, files: &[String]) -> Result<String> {
        let v = self.run(
            redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("namespace")
                .arg(namespace)
                .arg("project")
                .arg(project)
                .arg("task_id")
                .arg(task_id)
                .arg("files")
                .arg(files.join(",")),
        )?;
        text(&v).ok_or_else(|| self.unavailable("XADD answered without an id"))
    }

    /// The next job for `consumer`: first one that another consumer left idle for longer
    /// than `claim_after` (it died), else a new one, waiting up to `block` for it.
    pub fn next(&self, consumer: &str, claim_after: Duration, block: Duration) -> Result<Option<QueuedJob>> {
        let mut con = self.client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| self.unavailable(e))?;
        let claimed =
            self.run_on(&mut con, redis::cmd("XAUTOCLAIM").arg(STREAM).arg(GROUP).arg(consumer).arg(claim_after.as_millis() as u64).arg("0-0").arg("COUNT").arg(1))?;
        if let Some(job) = items(&claimed).get(1).and_then(|entries| entries_of(entries).into_iter().next()) {
            return Ok(Some(job));
        }
        con.set_read_timeout(Some(block + Duration::from_secs(5))).map_err(|e| self.unavailable(e))?;
        let read = self.run_on(
            &mut con,
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(">"),
        )?;
        // [[stream, [entries]]] (nil when the wait ran out).
        Ok(items(&read).first().and_then(|s| items(s).get(1).and_then(|e| entries_of(e).into_iter().next())))
    }

    /// Tell the group `consumer` is still on `entry` (resets its idle time), and beat.
    pub fn touch(&self, consumer: &str, entry: &str) -> Result<()> {
        self.run(redis::cmd("XCLAIM").arg(STREAM).arg(GROUP).arg(consumer).arg(0).arg(entry).arg("JUSTID"))?;
        self.heartbeat(consumer)
    }

    /// Record that worker `name` is alive now.
    pub fn heartbeat(&self, name: &str) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.run(redis::cmd("SET").arg(format!("{HEARTBEAT_PREFIX}{name}")).arg(now).arg("EX").arg(HEARTBEAT_TTL)).map(|_| ())
    }

    /// The workers that beat within [`HEARTBEAT_TTL`] seconds, with the seconds since
    /// their last beat, by name.
    pub fn workers(&self) -> Result<Vec<(String, f64)>> {
        let mut con = self.client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| self.unavailable(e))?;
        let (mut cursor, mut keys) = (String::from("0"), Vec::new());
        loop {
            let v = self.run_on(&mut con, redis::cmd("SCAN").arg(&cursor).arg("MATCH").arg(format!("{HEARTBEAT_PREFIX}*")).arg("COUNT").arg(100))?;
            let parts = items(&v);
            cursor = parts.first().and_then(text).unwrap_or_else(|| "0".into());
            keys.extend(parts.get(1).map(items).unwrap_or_default().iter().filter_map(text));
            if cursor == "0" {
                break;
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut out = Vec::new();
        for k in keys {
            let beat = text(&self.run_on(&mut con, redis::cmd("GET").arg(&k))?).and_then(|t| t.parse::<f64>().ok());
            if let Some(t) = beat {
                out.push((k.trim_start_matches(HEARTBEAT_PREFIX).to_string(), (now - t).max(0.0)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The job is done: acknowledge and delete its entry.
    pub fn ack(&self, entry: &str) -> Result<()> {
        let mut con = self.client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| self.unavailable(e))?;
        self.run_on(&mut con, redis::cmd("XACK").arg(STREAM).arg(GROUP).arg(entry))?;
        self.run_on(&mut con, redis::cmd("XDEL").arg(STREAM).arg(entry))?;
        Ok(())
    }

    /// Entries in the stream not yet acknowledged (waiting or being worked on).
    pub fn depth(&self) -> Result<u64> {
        match self.run(redis::cmd("XLEN").arg(STREAM))? {
            RV::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.unavailable(format!("XLEN answered {other:?}"))),
        }
    }
}

fn text(v: &RV) -> Option<String> {
    match v {
        RV::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RV::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn items(v: &RV) -> &[RV] {
    match v {
        RV::Array(a) | RV::Set(a) => a,
        _ => &[],
    }
}

/// `[[id, [field, value, ...]], ...]` as jobs (entries missing a field are skipped).
fn entries_of(v: &RV) -> Vec<QueuedJob> {
    items(v)
        .iter()
        .filter_map(|e| {
            let parts = items(e);
            let entry = text(parts.first()?)?;
            let fields = items(parts.get(1)?);
            let get = |k: &str| fields.chunks(2).find(|kv| text(&kv[0]).as_deref() == Some(k)).and_then(|kv| kv.get(1)).and_then(text);
            let files = get("files").map(|f| f.split(',').filter(|h| !h.is_empty()).map(String::from).collect()).unwrap_or_default();
            Some(QueuedJob { entry, namespace: get("namespace")?, project: get("project")?, task_id: get("task_id")?, files })
        })
        .collect()
}
