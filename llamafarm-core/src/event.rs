//! Event logs: one JSON file per event under `{project}/event_logs/`
//! (`evt_{YYYYmmdd_HHMMSS}_{type}_{rand}.json`, as in the original), written atomically.

use crate::error::{Error, ResourceKind, Result};
use crate::Project;
use serde::Serialize;
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;

/// A listed event (without its full data).
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    /// `evt_...`.
    pub event_id: String,
    /// `rag_processing`, `inference`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339.
    pub timestamp: String,
    /// A few headline numbers.
    pub summary: Value,
}

/// Event log operations on a project: `project.events()`.
pub struct Events {
    project: Project,
}

impl Project {
    /// The project's event log.
    pub fn events(&self) -> Events {
        Events { project: self.clone() }
    }
}

fn valid_id(id: &str) -> bool {
    id.starts_with("evt_") && id.len() < 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Events {
    fn dir(&self) -> PathBuf {
        self.project.dir().join("event_logs")
    }

    /// Record an event; returns its id.
    pub fn record(&self, kind: &str, summary: Value, data: Value, sub_events: Vec<Value>) -> Result<String> {
        let now = chrono::Utc::now();
        let kind_safe: String = kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let id = format!("evt_{}_{kind_safe}_{}", now.format("%Y%m%d_%H%M%S"), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let doc = json!({
            "event_id": id,
            "type": kind,
            "timestamp": now.to_rfc3339(),
            "summary": summary,
            "data": data,
            "sub_events": sub_events,
        });
        crate::fsutil::atomic_write(&self.dir().join(format!("{id}.json")), &serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
        Ok(id)
    }

    /// Events newest first, filtered by type and time (RFC 3339 bounds), paginated
    /// (`limit` 1..=100, `offset` from 0). Returns the total matching and the page.
    pub fn list(&self, kind: Option<&str>, start: Option<&str>, end: Option<&str>, limit: i64, offset: i64) -> Result<(usize, Vec<EventSummary>)> {
        if !(1..=100).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be between 1 and 100, got {limit}")));
        }
        if offset < 0 {
            return Err(Error::invalid("offset", format!("must be at least 0, got {offset}")));
        }
        let (limit, offset) = (limit as usize, offset as usize);
        let parse_t = |s: &str, what: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map(|n| n.and_utc()))
                .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()))
                .map_err(|_| Error::invalid(what, format!("must be an ISO 8601 time, got '{s}'")))
        };
        let start = start.map(|s| parse_t(s, "start_time")).transpose()?;
        let end = end.map(|s| parse_t(s, "end_time")).transpose()?;
        let mut all: Vec<EventSummary> = Vec::new();
        if let Ok(rd) = fs::read_dir(self.dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.starts_with("evt_") || !name.ends_with(".json") {
                    continue;
                }
                let Ok(bytes) = fs::read(e.path()) else { continue };
                let Ok(v) = serde_json::from_slice::<Value>(&bytes) else { continue };
                let s = EventSummary {
                    event_id: v["event_id"].as_str().unwrap_or("").into(),
                    kind: v["type"].as_str().unwrap_or("").into(),
                    timestamp: v["timestamp"].as_str().unwrap_or("").into(),
                    summary: v["summary"].clone(),
                };
                if kind.is_some_and(|k| k != s.kind) {
                    continue;
                }
                let t = chrono::DateTime::parse_from_rfc3339(&s.timestamp).ok().map(|d| d.with_timezone(&chrono::Utc));
                if start.is_some_and(|st| t.is_none_or(|t| t < st)) || end.is_some_and(|en| t.is_none_or(|t| t > en)) {
                    continue;
                }
                all.push(s);
            }
        }
        all.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then_with(|| b.event_id.cmp(&a.event_id)));
        let total = all.len();
        Ok((total, all.into_iter().skip(offset).take(limit).collect()))
    }

    /// One event with its data and sub-events.
    pub fn get(&self, id: &str) -> Result<Value> {
        if !valid_id(id) {
            return Err(Error::missing(ResourceKind::Event, id));
        }
        let p = self.dir().join(format!("{id}.json"));
        let bytes = fs::read(&p).map_err(|_| Error::missing(ResourceKind::Event, id))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Parse { what: format!("event '{id}'"), message: e.to_string() })
    }
}
