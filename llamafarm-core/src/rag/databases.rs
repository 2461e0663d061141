//! Database CRUD inside `llamafarm.yaml`, and the per-document listing.

use super::{Rag, RagEngine};
use crate::config::{DatabaseConfig, LlamaFarmConfig, RagConfig};
use crate::error::{Error, ResourceKind, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A strategy in a database listing.
#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Priority (embedding strategies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Whether it is the database's default.
    pub is_default: bool,
}

/// A database in `GET .../rag/databases`.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSummary {
    /// Name.
    pub name: String,
    /// Store type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it is the project's default database.
    pub is_default: bool,
    /// Embedding strategies.
    pub embedding_strategies: Vec<StrategySummary>,
    /// Retrieval strategies.
    pub retrieval_strategies: Vec<StrategySummary>,
}

/// A database in detail: its config plus the datasets that use it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseInfo {
    /// The database config as written.
    #[serde(flatten)]
    pub config: DatabaseConfig,
    /// Datasets whose `database` is this one.
    pub dependent_datasets: Vec<String>,
}

/// One source document in a database.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentSummary {
    /// File hash.
    pub id: String,
    /// Original file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Chunks in the index.
    pub chunk_count: usize,
    /// Size of the source file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Parser that produced the chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parser_used: Option<String>,
    /// When it was processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_ingested: Option<Value>,
    /// Document-level metadata (from its first chunk), if any.
    pub metadata: Option<Map<String, Value>>,
}

fn summary(cfg: &LlamaFarmConfig, db: &DatabaseConfig) -> DatabaseSummary {
    let default_db = cfg.default_database().map(|d| d.name.clone());
    let embs = cfg.embedding_strategies_of(db);
    let default_emb = db.default_embedding_strategy.clone().or_else(|| embs.first().map(|e| e.name.clone()));
    let rets = cfg.retrieval_strategies_of(db);
    let default_ret = db.default_retrieval_strategy.clone().or_else(|| rets.iter().find(|r| r.default == Some(true)).or(rets.first()).map(|r| r.name.clone()));
    DatabaseSummary {
        name: db.name.clone(),
        kind: db.kind.clone(),
        is_default: default_db.as_deref() == Some(db.name.as_str()),
        embedding_strategies: embs
            .iter()
            .map(|e| StrategySummary {
                name: e.name.clone(),
                kind: e.kind.clone(),
                priority: Some(e.priority.unwrap_or(0)),
                is_default: Some(&e.name) == default_emb.as_ref(),
            })
            .collect(),
        retrieval_strategies: rets
            .iter()
            .map(|r| StrategySummary { name: r.name.clone(), kind: r.kind.clone(), priority: None, is_default: Some(&r.name) == default_ret.as_ref() })
            .collect(),
    }
}

fn dependents(cfg: &LlamaFarmConfig, db: &str) -> Vec<String> {
    cfg.dataset_list().iter().filter(|d| d.database == db).map(|d| d.name.clone()).collect()
}

impl Rag {
    /// All databases with their strategies, and the default database's name.
    pub fn databases(&self) -> Result<(Vec<DatabaseSummary>, Option<String>)> {
        let cfg = self.project.config()?;
        let list = cfg.databases().iter().map(|d| summary(&cfg, d)).collect();
        Ok((list, cfg.default_database().map(|d| d.name.clone())))
    }

    /// One database in detail.
    pub fn database(&self, name: &str) -> Result<DatabaseInfo> {
        let cfg = self.project.config()?;
        let db = cfg.database(name).cloned().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
        Ok(DatabaseInfo { dependent_datasets: dependents(&cfg, name), config: db })
    }

    /// Add a database to the config (validated). 409 if the name exists.
    pub fn create_database(&self, db: DatabaseConfig) -> Result<DatabaseSummary> {
        let name = db.name.clone();
        let cfg = self.project.update_config(|cfg| {
            if cfg.database(&name).is_some() {
                return Err(Error::exists(ResourceKind::Database, name.as_str()));
            }
            let rag = cfg.rag.get_or_insert_with(RagConfig::default);
            rag.databases.get_or_insert_with(Vec::new).push(db);
            if rag.default_database.is_none() && rag.databases.as_ref().is_some_and(|d| d.len() == 1) {
                rag.default_database = Some(name.clone());
            }
            Ok(())
        })?;
        let db = cfg.database(&name).cloned().ok_or_else(|| Error::internal("database vanished"))?;
        Ok(summary(&cfg, &db))
    }

    /// Change a database's mutable fields. `patch` is a JSON object; `name` and `type`
    /// may only repeat their current values.
    pub fn update_database(&self, name: &str, patch: &Map<String, Value>) -> Result<DatabaseInfo> {
        for key in ["name", "type"] {
            if let Some(v) = patch.get(key) {
                let current = self.database(name)?.config;
                let same = match key {
                    "name" => v.as_str() == Some(current.name.as_str()),
                    _ => v.as_str() == Some(current.kind.as_str()),
                };
                if !same {
                    return Err(Error::invalid(format!("database {key}"), "is immutable"));
                }
            }
        }
        let cfg = self.project.update_config(|cfg| {
            let rag = cfg.rag.as_mut().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            let dbs = rag.databases.as_mut().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            let db = dbs.iter_mut().find(|d| d.name == name).ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            let mut v = serde_json::to_value(&*db).map_err(|e| Error::internal(e.to_string()))?;
            if let Value::Object(o) = &mut v {
                for (k, val) in patch {
                    if k == "config" {
                        // Merge store settings key by key.
                        let base = o.entry("config").or_insert_with(|| Value::Object(Map::new()));
                        match (base, val) {
                            (Value::Object(b), Value::Object(p)) => b.extend(p.clone()),
                            (b, p) => *b = p.clone(),
                        }
                    } else if val.is_null() {
                        o.remove(k);
                    } else {
                        o.insert(k.clone(), val.clone());
                    }
                }
            }
            *db = crate::config::from_json(v)?;
            Ok(())
        })?;
        let db = cfg.database(name).cloned().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
        Ok(DatabaseInfo { dependent_datasets: dependents(&cfg, name), config: db })
    }

    /// Remove a database from the config; 409 while datasets use it. With
    /// `delete_collection` its index is deleted from disk too.
    pub fn delete_database(&self, name: &str, delete_collection: bool) -> Result<(DatabaseConfig, bool)> {
        let mut removed = None;
        self.project.update_config(|cfg| {
            let deps = dependents(cfg, name);
            if cfg.database(name).is_none() {
                return Err(Error::missing(ResourceKind::Database, name));
            }
            if !deps.is_empty() {
                return Err(Error::InUse { kind: ResourceKind::Database, name: name.to_string(), dependent_kind: ResourceKind::Dataset, dependents: deps });
            }
            let rag = cfg.rag.as_mut().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            let dbs = rag.databases.as_mut().ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            let pos = dbs.iter().position(|d| d.name == name).ok_or_else(|| Error::missing(ResourceKind::Database, name))?;
            removed = Some(dbs.remove(pos));
            if dbs.is_empty() {
                rag.databases = None;
            }
            if rag.default_database.as_deref() == Some(name) {
                rag.default_database = rag.databases.as_ref().and_then(|d| d.first()).map(|d| d.name.clone());
            }
            Ok(())
        })?;
        let removed = removed.ok_or_else(|| Error::internal("database vanished"))?;
        let mut deleted = false;
        if delete_collection {
            let dir = self.store_dir(name);
            self.engine().forget_stores_under(&dir);
            if RagEngine::store_exists(&dir) || dir.exists() {
                crate::fsutil::remove_dir_atomic(&dir, &self.project.llamafarm().layout().trash_dir())?;
                deleted = true;
            }
        }
        Ok((removed, deleted))
    }

    /// Source documents in a database, with chunk counts (at most `limit`, 1..=1000).
    pub fn documents(&self, database: &str, limit: i64) -> Result<Vec<DocumentSummary>> {
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be between 1 and 1000, got {limit}")));
        }
        let limit = limit as usize;
        let cfg = self.project.config()?;
        let db = cfg.database(database).cloned().ok_or_else(|| Error::missing(ResourceKind::Database, database))?;
        let store = self.store_of(&db)?;
        let mut docs: BTreeMap<String, DocumentSummary> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        // Walk all chunks in insertion order (the listing is an overview, not a hot path).
        for c in store.list(usize::MAX, 0)? {
            let m = &c.metadata;
            let entry = docs.entry(c.file_hash.clone()).or_insert_with(|| {
                order.push(c.file_hash.clone());
                let s = |k: &str| m.get(k).and_then(|v| v.as_str()).map(String::from);
                let mut doc_meta = Map::new();
                for k in ["document_type", "source_dataset", "mime_type", "language", "total_chunks"] {
                    if let Some(v) = m.get(k) {
                        doc_meta.insert(k.into(), v.clone());
                    }
                }
                DocumentSummary {
                    id: c.file_hash.clone(),
                    filename: s("document_name").or_else(|| s("filename")).or_else(|| s("source")),
                    chunk_count: 0,
                    size_bytes: m.get("document_size").and_then(|v| v.as_u64()),
                    parser_used: s("parser"),
                    date_ingested: m.get("processed_at").cloned(),
                    metadata: if doc_meta.is_empty() { None } else { Some(doc_meta) },
                }
            });
            entry.chunk_count += 1;
        }
        Ok(order.into_iter().take(limit).filter_map(|h| docs.remove(&h)).collect())
    }
}
