//! Datasets: named sets of uploaded files bound to a database and a processing
//! strategy. Files are stored by content hash, as in the original:
//! `{project}/lf_data/datasets/{dataset}/raw/{sha256}` plus `meta/{sha256}.json`,
//! and the dataset's `files` list in `llamafarm.yaml` holds the hashes.

use crate::config::{DatasetConfig, BUILTIN_STRATEGY};
use crate::error::{Error, ResourceKind, Result};
use crate::paths::validate_segment;
use crate::Project;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What is known about an uploaded file (`meta/{hash}.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    /// The name it was uploaded under (may contain anything; never used as a path).
    pub original_file_name: String,
    /// A safe display name: `{stem}_{timestamp}.{ext}`.
    pub resolved_file_name: String,
    /// Upload time, seconds since the epoch.
    pub timestamp: f64,
    /// Bytes.
    pub size: u64,
    /// Guessed from the extension.
    pub mime_type: String,
    /// SHA-256 of the content.
    pub hash: String,
}

/// A dataset as listed.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// Name.
    pub name: String,
    /// Process uploads right away.
    pub auto_process: bool,
    /// Processing strategy.
    pub data_processing_strategy: String,
    /// Target database.
    pub database: String,
    /// File hashes.
    pub files: Vec<String>,
    /// Per-file details, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<DatasetDetails>,
}

/// Per-file details of a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetDetails {
    /// Number of files.
    pub total_files: usize,
    /// Sum of file sizes.
    pub total_size_bytes: u64,
    /// One entry per file.
    pub files_metadata: Vec<FileMeta>,
}

/// The result of storing one upload.
#[derive(Debug, Clone, Serialize)]
pub struct UploadOutcome {
    /// The uploaded name.
    pub filename: String,
    /// SHA-256 of the content.
    pub hash: String,
    /// Bytes.
    pub size: u64,
    /// True when the same content was already in the dataset (nothing stored).
    pub skipped: bool,
}

/// Dataset operations on a project: `project.datasets()`.
pub struct Datasets {
    project: Project,
}

impl Project {
    /// Dataset operations.
    pub fn datasets(&self) -> Datasets {
        Datasets { project: self.clone() }
    }
}

/// MIME type from a file name.
pub fn mime_for(name: &str) -> &'static str {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "md" | "markdown" | "mdx" => "text/markdown",
        "html" | "htm" | "xhtml" => "text/html",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "txt" | "text" | "log" => "text/plain",
        "xml" => "application/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "rs" | "py" | "js" | "ts" | "go" | "java" | "c" | "h" | "cpp" | "cs" | "sh" | "sql" | "toml" | "yaml" | "yml" | "ini" | "cfg" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The last path component of an uploaded name, without control characters
/// (`../../etc/passwd` -> `passwd`, `C:\x\y.pdf` -> `y.pdf`).
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "upload".into()
    } else {
        cleaned.chars().take(200).collect()
    }
}

/// Streams one upload to disk while hashing it; [`UploadWriter::finish`] stores it
/// (or discards it as a duplicate), or [`UploadBatch::add`] stages it with others.
pub struct UploadWriter {
    file_name: String,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
    batch: Option<UploadBatch>,
}

/// A write error of an upload: a full disk names the upload, not its temporary file.
fn upload_error(file_name: &str, tmp: &Path, e: std::io::Error) -> Error {
    if crate::error::is_storage_full(&e) {
        return Error::StorageFull { what: format!("the upload '{file_name}'") };
    }
    Error::io(tmp, e)
}

impl UploadWriter {
    /// Append bytes. Past the size limit the upload is discarded with [`Error::TooLarge`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.size += bytes.len() as u64;
        if self.size > self.max_bytes {
            self.abort();
            return Err(Error::TooLarge { what: format!("file '{}'", self.file_name), limit: self.max_bytes });
        }
        self.hasher.update(bytes);
        let f = self.file.as_mut().ok_or_else(|| Error::internal("upload already finished"))?;
        f.write_all(bytes).map_err(|e| upload_error(&self.file_name, &self.tmp, e))
    }

    fn abort(&mut self) {
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }

    /// Close the file and take its hash (nothing is synced yet).
    fn seal(&mut self) -> Result<Staged> {
        let mut f = self.file.take().ok_or_else(|| Error::internal("upload already finished"))?;
        f.flush().map_err(|e| upload_error(&self.file_name, &self.tmp, e))?;
        drop(f);
        Ok(Staged {
            file_name: std::mem::take(&mut self.file_name),
            tmp: self.tmp.clone(),
            hash: format!("{:x}", std::mem::take(&mut self.hasher).finalize()),
            size: self.size,
        })
    }

    /// Store the file under its hash and record it in the dataset (a batch of one).
    /// A file whose content is already in the dataset is `skipped` and not stored twice.
    pub fn finish(mut self) -> Result<UploadOutcome> {
        let mut batch = self.batch.take().ok_or_else(|| Error::internal("upload already finished"))?;
        let staged = self.seal()?;
        batch.staged.push(staged);
        batch.commit()?.pop().ok_or_else(|| Error::internal("upload produced no outcome"))
    }
}

/// A file received and hashed, waiting in `incoming/` for its batch to be committed.
struct Staged {
    file_name: String,
    tmp: PathBuf,
    hash: String,
    size: u64,
}

/// Many uploads stored together: each file is streamed to `incoming/` and hashed as it
/// arrives ([`UploadBatch::begin_file`], [`UploadBatch::add`]); [`UploadBatch::commit`]
/// moves them under their hashes, makes them durable with one flush of the file
/// system, and records them in the dataset with one config update. A file is listed
/// in the dataset only after its content and metadata are on disk; a crash before the
/// commit leaves only parts in `incoming/` (removed by a later batch once a day old)
/// or unlisted files under `raw/`, which a later upload of the same content reuses.
pub struct UploadBatch {
    datasets_dir: PathBuf,
    dataset: String,
    project: Project,
    staged: Vec<Staged>,
}

impl UploadBatch {
    /// Start streaming one file of the batch. `max_bytes` bounds the file.
    pub fn begin_file(&self, file_name: &str, max_bytes: u64) -> Result<UploadWriter> {
        let dir = self.datasets_dir.join(&self.dataset).join("incoming");
        let tmp = dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(UploadWriter { file_name: file_name.into(), tmp, file: Some(file), hasher: Sha256::new(), size: 0, max_bytes, batch: None })
    }

    /// Stage a file whose bytes have all been written.
    pub fn add(&mut self, mut w: UploadWriter) -> Result<()> {
        let s = w.seal()?;
        self.staged.push(s);
        Ok(())
    }

    /// Files staged so far.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Store every staged file; returns one outcome per file, in order. Content already
    /// in the dataset, or earlier in the batch, is `skipped` (one copy is kept).
    pub fn commit(mut self) -> Result<Vec<UploadOutcome>> {
        let staged = std::mem::take(&mut self.staged);
        let result = self.commit_staged(&staged);
        for s in &staged {
            let _ = fs::remove_file(&s.tmp); // moved already, or a duplicate, or the commit failed
        }
        result
    }

    fn commit_staged(&self, staged: &[Staged]) -> Result<Vec<UploadOutcome>> {
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.datasets_dir.join(&self.dataset);
        let (raw_dir, meta_dir) = (dir.join("raw"), dir.join("meta"));
        fs::create_dir_all(&raw_dir).map_err(|e| Error::io(&raw_dir, e))?;
        fs::create_dir_all(&meta_dir).map_err(|e| Error::io(&meta_dir, e))?;
        let listed: std::collections::HashSet<String> = {
            let cfg = self.project.config()?;
            let d = cfg.dataset_list().iter().find(|d| d.name == self.dataset).ok_or_else(|| Error::missing(ResourceKind::Dataset, self.dataset.as_str()))?;
            d.files.iter().flatten().cloned().collect()
        };
        // Move new content under its hash and write its metadata, unsynced.
        let mut seen = std::collections::HashSet::new();
        let mut fresh = vec![false; staged.len()];
        let mut written = Vec::new();
        let now = chrono::Utc::now();
        let ts = now.timestamp_micros() as f64 / 1e6;
        for (i, s) in staged.iter().enumerate() {
            let raw = raw_dir.join(&s.hash);
            if !seen.insert(s.hash.as_str()) || (listed.contains(&s.hash) && raw.is_file()) {
                continue;
            }
            fs::rename(&s.tmp, &raw).map_err(|e| Error::io(&raw, e))?;
            let safe = safe_file_name(&s.file_name);
            let (stem, ext) = match safe.rsplit_once('.') {
                Some((st, e)) if !st.is_empty() => (st.to_string(), format!(".{e}")),
                _ => (safe.clone(), String::new()),
            };
            let meta = FileMeta {
                original_file_name: s.file_name.clone(),
                resolved_file_name: format!("{stem}_{ts:.6}{ext}"),
                timestamp: ts,
                size: s.size,
                mime_type: mime_for(&safe).to_string(),
                hash: s.hash.clone(),
            };
            let meta_path = meta_dir.join(format!("{}.json", s.hash));
            crate::fsutil::replace_unsynced(&meta_path, &serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
            written.push(raw);
            written.push(meta_path);
            fresh[i] = true;
        }
        // One flush for all of them, then one config update that lists them.
        crate::fsutil::sync_files(&written)?;
        let mut added = vec![false; staged.len()];
        self.project.update_config(|cfg| {
            let d = cfg
                .datasets
                .as_mut()
                .and_then(|l| l.iter_mut().find(|d| d.name == self.dataset))
                .ok_or_else(|| Error::missing(ResourceKind::Dataset, self.dataset.as_str()))?;
            let files = d.files.get_or_insert_with(Vec::new);
            let mut present: std::collections::HashSet<String> = files.iter().cloned().collect();
            for (i, s) in staged.iter().enumerate() {
                if fresh[i] && present.insert(s.hash.clone()) {
                    files.push(s.hash.clone());
                    added[i] = true;
                }
            }
            Ok(())
        })?;
        Ok(staged
            .iter()
            .enumerate()
            .map(|(i, s)| UploadOutcome {
                filename: s.file_name.clone(),
                hash: s.hash.clone(),
                size: s.size,
                skipped: !(added[i] || (fresh[i] && listed.contains(&s.hash))),
            })
            .collect())
    }
}

impl Drop for UploadBatch {
    /// A batch dropped without a commit stores nothing: its parts are removed.
    fn drop(&mut self) {
        for s in &self.staged {
            let _ = fs::remove_file(&s.tmp);
        }
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.abort();
        }
    }
}

impl Datasets {
    /// `{project}/lf_data/datasets`.
    pub fn root(&self) -> PathBuf {
        self.project.dir().join("lf_data").join("datasets")
    }

    /// The stored content of a file.
    pub fn file_path(&self, dataset: &str, hash: &str) -> PathBuf {
        self.root().join(dataset).join("raw").join(hash)
    }

    /// A stored file of the dataset: its metadata and content (an `lf worker` fetches
    /// files this way). The hash must be one of the dataset's files.
    pub fn read_file(&self, dataset: &str, hash: &str) -> Result<(FileMeta, Vec<u8>)> {
        let d = self.get(dataset)?;
        if !d.files.iter().flatten().any(|h| h == hash) {
            return Err(Error::missing_in(ResourceKind::File, hash, format!("in dataset '{dataset}'")));
        }
        let meta = self.file_meta(dataset, hash)?;
        let path = self.file_path(dataset, hash);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok((meta, bytes))
    }

    /// A file's metadata.
    pub fn file_meta(&self, dataset: &str, hash: &str) -> Result<FileMeta> {
        let p = self.root().join(dataset).join("meta").join(format!("{hash}.json"));
        let text = fs::read(&p).map_err(|_| Error::missing_in(ResourceKind::File, hash, format!("in dataset '{dataset}'")))?;
        serde_json::from_slice(&text).map_err(|e| Error::Parse { what: format!("the metadata of file {hash}"), message: e.to_string() })
    }

    fn info(&self, d: &DatasetConfig, details: bool) -> DatasetInfo {
        let files = d.files.clone().unwrap_or_default();
        let details = details.then(|| {
            let metas: Vec<FileMeta> = files.iter().filter_map(|h| self.file_meta(&d.name, h).ok()).collect();
            DatasetDetails { total_files: metas.len(), total_size_bytes: metas.iter().map(|m| m.size).sum(), files_metadata: metas }
        });
        DatasetInfo {
            name: d.name.clone(),
            auto_process: d.auto_process.unwrap_or(true),
            data_processing_strategy: d.strategy().to_string(),
            database: d.database.clone(),
            files,
            details,
        }
    }

    /// All datasets.
    pub fn list(&self, details: bool) -> Result<Vec<DatasetInfo>> {
        let cfg = self.project.config()?;
        Ok(cfg.dataset_list().iter().map(|d| self.info(d, details)).collect())
    }

    /// One dataset.
    pub fn get(&self, name: &str) -> Result<DatasetConfig> {
        let cfg = self.project.config()?;
        cfg.dataset_list().iter().find(|d| d.name == name).cloned().ok_or_else(|| Error::missing(ResourceKind::Dataset, name))
    }

    /// One dataset with details.
    pub fn info_of(&self, name: &str) -> Result<DatasetInfo> {
        Ok(self.info(&self.get(name)?, true))
    }

    /// The strategies and databases a dataset may use.
    pub fn strategies(&self) -> Result<(Vec<String>, Vec<String>)> {
        let cfg = self.project.config()?;
        Ok((cfg.strategy_names(), cfg.databases().iter().map(|d| d.name.clone()).collect()))
    }

    /// Create a dataset; the strategy and database must exist. Without a strategy it
    /// gets the project's only one (or `universal_rag`, built in, when none are defined).
    pub fn create(&self, name: &str, strategy: Option<&str>, database: &str, auto_process: Option<bool>) -> Result<DatasetInfo> {
        validate_segment(ResourceKind::Dataset, name)?;
        let cfg = self.project.update_config(|cfg| {
            if cfg.dataset_list().iter().any(|d| d.name == name) {
                return Err(Error::exists(ResourceKind::Dataset, name));
            }
            if cfg.database(database).is_none() {
                return Err(Error::invalid("database", format!("'{database}' does not exist (create it under rag.databases first)")));
            }
            let strategies = cfg.strategy_names();
            // Unnamed: the project's only strategy, else the built-in one.
            let strategy = match strategy {
                Some(s) => s,
                None if strategies.len() == 1 => strategies[0].as_str(),
                None => BUILTIN_STRATEGY,
            };
            if !strategies.iter().any(|s| s == strategy) {
                return Err(Error::invalid("data_processing_strategy", format!("'{strategy}' does not exist (available: {})", strategies.join(", "))));
            }
            cfg.datasets.get_or_insert_with(Vec::new).push(DatasetConfig {
                name: name.into(),
                data_processing_strategy: Some(strategy.into()),
                database: database.into(),
                auto_process,
                files: Some(Vec::new()),
                extra: Default::default(),
            });
            Ok(())
        })?;
        let d = cfg.dataset_list().iter().find(|d| d.name == name).cloned().ok_or_else(|| Error::internal("dataset vanished"))?;
        Ok(self.info(&d, false))
    }

    /// Delete a dataset: its chunks leave the index (unless another dataset of the same
    /// database holds the same file), its files leave the disk, its entry the config.
    pub fn delete(&self, name: &str) -> Result<DatasetInfo> {
        let d = self.get(name)?;
        let info = self.info(&d, false);
        let cfg = self.project.config()?;
        let shared: std::collections::HashSet<String> =
            cfg.dataset_list().iter().filter(|o| o.name != name && o.database == d.database).flat_map(|o| o.files.clone().unwrap_or_default()).collect();
        let rag = self.project.rag();
        for h in d.files.iter().flatten() {
            if !shared.contains(h) {
                rag.delete_file(&d.database, h)?;
            }
        }
        self.project.update_config(|cfg| {
            if let Some(list) = cfg.datasets.as_mut() {
                list.retain(|x| x.name != name);
            }
            Ok(())
        })?;
        let dir = self.root().join(name);
        if dir.exists() {
            crate::fsutil::remove_dir_atomic(&dir, &self.project.llamafarm().layout().trash_dir())?;
        }
        Ok(info)
    }

    /// Start a batch of uploads into a dataset (see [`UploadBatch`]). Parts left in
    /// `incoming/` by an upload that never finished (a crash) are removed.
    pub fn begin_batch(&self, dataset: &str) -> Result<UploadBatch> {
        self.get(dataset)?;
        let dir = self.root().join(dataset).join("incoming");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
            // Only old parts: a part younger than a day may belong to an upload in flight.
            if e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < stale) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(UploadBatch { datasets_dir: self.root(), dataset: dataset.into(), project: self.project.clone(), staged: Vec::new() })
    }

    /// Start streaming one upload into a dataset. `max_bytes` bounds the file.
    pub fn begin_upload(&self, dataset: &str, file_name: &str, max_bytes: u64) -> Result<UploadWriter> {
        let batch = self.begin_batch(dataset)?;
        let mut w = batch.begin_file(file_name, max_bytes)?;
        w.batch = Some(batch);
        Ok(w)
    }

    /// Store bytes as a file of the dataset (convenience over [`Datasets::begin_upload`]).
    pub fn upload_bytes(&self, dataset: &str, file_name: &str, bytes: &[u8]) -> Result<UploadOutcome> {
        let mut w = self.begin_upload(dataset, file_name, u64::MAX)?;
        w.write(bytes)?;
        w.finish()
    }

    /// Remove a file from a dataset (its chunks leave the index); with
    /// `remove_from_disk` its stored content goes too.
    pub fn remove_file(&self, dataset: &str, hash: &str, remove_from_disk: bool) -> Result<usize> {
        let d = self.get(dataset)?;
        if !d.files.iter().flatten().any(|h| h == hash) {
            return Err(Error::missing_in(ResourceKind::File, hash, format!("in dataset '{dataset}'")));
        }
        let removed = self.project.rag().delete_file(&d.database, hash)?;
        self.project.update_config(|cfg| {
            if let Some(x) = cfg.datasets.as_mut().and_then(|l| l.iter_mut().find(|x| x.name == dataset)) {
                if let Some(f) = x.files.as_mut() {
                    f.retain(|h| h != hash);
                }
            }
            Ok(())
        })?;
        if remove_from_disk {
            let _ = fs::remove_file(self.file_path(dataset, hash));
            let _ = fs::remove_file(self.root().join(dataset).join("meta").join(format!("{hash}.json")));
        }
        Ok(removed)
    }

    /// Remove a file's chunks from the dataset's database and keep the file, so it can
    /// be processed again: the manual cleanup after a cancelled task whose automatic
    /// revert failed. Idempotent; returns the chunks removed.
    pub fn cleanup_file(&self, dataset: &str, hash: &str) -> Result<usize> {
        let d = self.get(dataset)?;
        if !d.files.iter().flatten().any(|h| h == hash) {
            return Err(Error::missing_in(ResourceKind::File, hash, format!("in dataset '{dataset}'")));
        }
        self.project.rag().delete_file(&d.database, hash)
    }
}

/// An operation on a dataset's files and chunks.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetAction {
    /// Process every file of the dataset in a background task.
    Process {
        /// Parser settings for this run, keyed by parser type or `*`.
        parser_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// Remove one file's chunks from the index (the file stays in the dataset).
    DeleteFileChunks {
        /// The file's content hash.
        file_hash: String,
    },
    /// Remove the chunks of every file of the dataset from the index.
    DeleteDatasetChunks,
}

impl DatasetAction {
    /// The action named `action_type`: `process` (alias `ingest`), `delete_file_chunks`
    /// (which needs `file_hash`) or `delete_dataset_chunks`.
    pub fn parse(action_type: &str, file_hash: Option<String>, parser_overrides: Option<serde_json::Map<String, serde_json::Value>>) -> Result<Self> {
        match action_type {
            "process" | "ingest" => Ok(Self::Process { parser_overrides }),
            "delete_file_chunks" => {
                let file_hash = file_hash.ok_or_else(|| Error::invalid("file_hash", "is required for delete_file_chunks"))?;
                Ok(Self::DeleteFileChunks { file_hash })
            }
            "delete_dataset_chunks" => Ok(Self::DeleteDatasetChunks),
            other => {
                Err(Error::invalid("action_type", format!("must be process, ingest, delete_file_chunks or delete_dataset_chunks (unknown action_type '{other}')")))
            }
        }
    }
}

/// What a [`DatasetAction`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    /// Processing was queued as this task.
    Queued {
        /// The task id.
        task_id: String,
    },
    /// One file's chunks left the index.
    FileChunksDeleted {
        /// The file's content hash.
        file_hash: String,
        /// Chunks removed.
        chunks: usize,
    },
    /// Every file's chunks left the index.
    DatasetChunksDeleted {
        /// The dataset.
        dataset: String,
        /// Chunks removed.
        chunks: usize,
    },
}

impl Datasets {
    /// Run an action on a dataset (404 when the dataset, or the file of
    /// [`DatasetAction::DeleteFileChunks`], is not in it).
    pub fn act(&self, dataset: &str, action: DatasetAction) -> Result<ActionOutcome> {
        let d = self.get(dataset)?;
        match action {
            DatasetAction::Process { parser_overrides } => {
                let files = d.files.clone().unwrap_or_default();
                let task_id = self.project.llamafarm().tasks().submit_process(&self.project, dataset, files, parser_overrides)?;
                Ok(ActionOutcome::Queued { task_id })
            }
            DatasetAction::DeleteFileChunks { file_hash } => {
                if !d.files.iter().flatten().any(|x| x == &file_hash) {
                    return Err(Error::missing_in(ResourceKind::File, &file_hash, format!("in dataset '{dataset}'")));
                }
                let chunks = self.project.rag().delete_file(&d.database, &file_hash)?;
                Ok(ActionOutcome::FileChunksDeleted { file_hash, chunks })
            }
            DatasetAction::DeleteDatasetChunks => {
                let mut chunks = 0;
                for h in d.files.iter().flatten() {
                    chunks += self.project.rag().delete_file(&d.database, h)?;
                }
                Ok(ActionOutcome::DatasetChunksDeleted { dataset: dataset.into(), chunks })
            }
        }
    }

    /// After an upload: queue processing of `files` (the new ones) when `auto_process`
    /// (else the dataset's own setting, default true) says so. Returns the task id, or
    /// `None` when nothing was queued.
    pub fn start_processing(
        &self,
        dataset: &str,
        files: Vec<String>,
        auto_process: Option<bool>,
        parser_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Option<String>> {
        let auto = match auto_process {
            Some(a) => a,
            None => self.get(dataset)?.auto_process.unwrap_or(true),
        };
        if auto && !files.is_empty() {
            Ok(Some(self.project.llamafarm().tasks().submit_process(&self.project, dataset, files, parser_overrides)?))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    #[test]
    fn actions_parse_from_their_wire_names() {
        assert_eq!(DatasetAction::parse("ingest", None, None).unwrap(), DatasetAction::Process { parser_overrides: None });
        assert_eq!(DatasetAction::parse("delete_file_chunks", Some("ab".into()), None).unwrap(), DatasetAction::DeleteFileChunks { file_hash: "ab".into() });
        assert_eq!(DatasetAction::parse("delete_dataset_chunks", None, None).unwrap(), DatasetAction::DeleteDatasetChunks);
        assert!(DatasetAction::parse("delete_file_chunks", None, None).unwrap_err().to_string().contains("file_hash is required"));
        assert!(DatasetAction::parse("explode", None, None).unwrap_err().to_string().contains("unknown action_type 'explode'"));
    }
}
