//! Chat sessions: history on disk (`{project}/sessions/{id}/history.json`, a JSON
//! list of OpenAI messages, written atomically), cached in memory for 30 minutes of
//! idleness. Turns on one session run one at a time (a turn holds the session from
//! prompt building to persisting the answer), so concurrent requests never lose or
//! interleave messages.

use crate::error::{Error, ResourceKind, Result};
use crate::llm::ChatMessage;
use crate::Project;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Idle time after which a session leaves memory (it stays on disk).
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

struct Entry {
    id: String,
    file: PathBuf,
    history: Mutex<Option<Vec<ChatMessage>>>,
    busy: Mutex<bool>,
    freed: Condvar,
    last_used: Mutex<Instant>,
}

/// Process-wide cache of open sessions.
#[derive(Default)]
pub struct SessionCache {
    map: Mutex<HashMap<PathBuf, Arc<Entry>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Session ids become directory names: 1..=128 of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn validate_session_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { kind: ResourceKind::Session, name: id.to_string(), reason: "use 1-128 letters, digits, '_', '-' or '.'".into() })
    }
}

fn sessions_dir(project: &Project) -> PathBuf {
    project.dir().join("sessions")
}

fn read_history(file: &Path) -> Result<Vec<ChatMessage>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::parse(format!("chat history {}", crate::error::file_name(file)), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(file, e)),
    }
}

/// What a session holds, for listing sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    /// The session id.
    pub id: String,
    /// Stored messages.
    pub messages: usize,
    /// The first user message, cut to 80 characters (a title for the session).
    pub title: String,
    /// When the history was last written.
    pub updated: Option<std::time::SystemTime>,
}

/// A session held for one turn; dropping it lets the next turn in.
pub struct SessionHandle {
    entry: Arc<Entry>,
}

impl SessionHandle {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// The stored messages.
    pub fn history(&self) -> Vec<ChatMessage> {
        lock(&self.entry.history).clone().unwrap_or_default()
    }

    /// Append messages and persist (atomic write).
    pub fn append(&self, msgs: &[ChatMessage]) -> Result<()> {
        let mut h = lock(&self.entry.history);
        let mut next = h.clone().unwrap_or_default();
        next.extend_from_slice(msgs);
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| Error::internal(e.to_string()))?;
        crate::fsutil::atomic_write(&self.entry.file, &bytes)?;
        *h = Some(next);
        Ok(())
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        *lock(&self.entry.busy) = false;
        *lock(&self.entry.last_used) = Instant::now();
        self.entry.freed.notify_one();
    }
}

impl SessionCache {
    fn evict_idle(&self) {
        let mut map = lock(&self.map);
        map.retain(|_, e| Arc::strong_count(e) > 1 || *lock(&e.busy) || lock(&e.last_used).elapsed() < SESSION_TTL);
    }

    /// Sessions currently in memory.
    pub fn in_memory(&self) -> usize {
        lock(&self.map).len()
    }

    /// Open (or create) a session and hold it for one turn; waits while another turn runs on it.
    pub fn open(&self, project: &Project, id: &str) -> Result<SessionHandle> {
        validate_session_id(id)?;
        self.evict_idle();
        let dir = sessions_dir(project).join(id);
        let entry = lock(&self.map)
            .entry(dir.clone())
            .or_insert_with(|| {
                Arc::new(Entry {
                    id: id.to_string(),
                    file: dir.join("history.json"),
                    history: Mutex::new(None),
                    busy: Mutex::new(false),
                    freed: Condvar::new(),
                    last_used: Mutex::new(Instant::now()),
                })
            })
            .clone();
        {
            let mut busy = lock(&entry.busy);
            while *busy {
                busy = entry.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            *busy = true;
        }
        let handle = SessionHandle { entry };
        {
            let mut h = lock(&handle.entry.history);
            if h.is_none() {
                *h = Some(read_history(&handle.entry.file)?);
            }
        }
        *lock(&handle.entry.last_used) = Instant::now();
        Ok(handle)
    }

    /// Stored messages of a session (404 when it has never been stored).
    pub fn history(&self, project: &Project, id: &str) -> Result<Vec<ChatMessage>> {
        validate_session_id(id)?;
        let dir = sessions_dir(project).join(id);
        if let Some(e) = lock(&self.map).get(&dir).cloned() {
            if let Some(h) = lock(&e.history).clone() {
                if !h.is_empty() || e.file.exists() {
                    return Ok(h);
                }
            }
        }
        let file = dir.join("history.json");
        if !file.exists() {
            return Err(Error::missing(ResourceKind::Session, id));
        }
        read_history(&file)
    }

    /// Delete a session (memory and disk); 404 when unknown.
    pub fn delete(&self, project: &Project, id: &str) -> Result<()> {
        validate_session_id(id)?;
        let dir = sessions_dir(project).join(id);
        let in_mem = lock(&self.map).remove(&dir).is_some();
        if !dir.exists() {
            return if in_mem { Ok(()) } else { Err(Error::missing(ResourceKind::Session, id)) };
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))
    }

    /// Delete every session of a project; returns the count.
    pub fn delete_all(&self, project: &Project) -> Result<usize> {
        let ids = self.list(project)?;
        let root = sessions_dir(project);
        lock(&self.map).retain(|k, _| !k.starts_with(&root));
        for id in &ids {
            let d = root.join(id);
            std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(ids.len())
    }

    /// The sessions stored on disk with their sizes and titles, the most recently
    /// written first.
    pub fn summaries(&self, project: &Project) -> Result<Vec<SessionSummary>> {
        let root = sessions_dir(project);
        let mut out = Vec::new();
        for id in self.list(project)? {
            let file = root.join(&id).join("history.json");
            let updated = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            let history = read_history(&file)?;
            let title = history.iter().find(|m| m.role == "user").map(|m| {
                let t = m.content.split_whitespace().collect::<Vec<_>>().join(" ");
                match t.char_indices().nth(80) {
                    Some((i, _)) => format!("{}…", &t[..i]),
                    None => t,
                }
            });
            out.push(SessionSummary { id, messages: history.len(), title: title.unwrap_or_default(), updated });
        }
        out.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Session ids stored on disk.
    pub fn list(&self, project: &Project) -> Result<Vec<String>> {
        let root = sessions_dir(project);
        let rd = match std::fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&root, e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| validate_session_id(n).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LlamaFarm;

    #[test]
    fn sessions_persist_serialise_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let lf = LlamaFarm::open(dir.path()).unwrap();
        let p = lf.projects().create("ns", "p", None).unwrap();
        assert!(validate_session_id("../x").is_err());
        assert!(lf.sessions().history(&p, "s1").is_err());
        {
            let h = lf.sessions().open(&p, "s1").unwrap();
            h.append(&[ChatMessage::new("user", "hi"), ChatMessage::new("assistant", "hello")]).unwrap();
        }
        // Concurrent turns on one session: each appends after the other, nothing lost.
        std::thread::scope(|s| {
            for i in 0..4 {
                let lf = lf.clone();
                let p = p.clone();
                s.spawn(move || {
                    let h = lf.sessions().open(&p, "s1").unwrap();
                    let n = h.history().len();
                    std::thread::sleep(Duration::from_millis(5));
                    h.append(&[ChatMessage::new("user", format!("m{i} after {n}"))]).unwrap();
                });
            }
        });
        assert_eq!(lf.sessions().history(&p, "s1").unwrap().len(), 6);
        // A new library instance (a restart) reads the same history from disk.
        let lf2 = LlamaFarm::open(dir.path()).unwrap();
        let p2 = lf2.project("ns", "p").unwrap();
        assert_eq!(lf2.sessions().history(&p2, "s1").unwrap().len(), 6);
        lf2.sessions().open(&p2, "s2").unwrap().append(&[ChatMessage::new("user", "x")]).unwrap();
        assert_eq!(lf2.sessions().list(&p2).unwrap(), vec!["s1", "s2"]);
        let long = format!("{}  tail", "é".repeat(100));
        lf2.sessions().open(&p2, "s2").unwrap().append(&[ChatMessage::new("assistant", "ok"), ChatMessage::new("user", long)]).unwrap();
        let sums = lf2.sessions().summaries(&p2).unwrap();
        let s1 = sums.iter().find(|s| s.id == "s1").unwrap();
        assert_eq!((s1.messages, s1.title.as_str()), (6, "hi"));
        let s2 = sums.iter().find(|s| s.id == "s2").unwrap();
        assert_eq!((s2.messages, s2.title.as_str()), (3, "x"));
        assert!(sums.iter().all(|s| s.updated.is_some()));
        lf2.sessions().open(&p2, "s3").unwrap().append(&[ChatMessage::new("user", "é".repeat(100))]).unwrap();
        let s3 = lf2.sessions().summaries(&p2).unwrap().into_iter().find(|s| s.id == "s3").unwrap();
        assert_eq!(s3.title, format!("{}…", "é".repeat(80)));
        lf2.sessions().delete(&p2, "s1").unwrap();
        assert!(lf2.sessions().delete(&p2, "s1").is_err());
        assert_eq!(lf2.sessions().delete_all(&p2).unwrap(), 2);
        assert_eq!(lf2.sessions().delete_all(&p2).unwrap(), 0);
    }
}
