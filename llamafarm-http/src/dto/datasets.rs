//! Bodies of `/v1/projects/{namespace}/{project}/datasets/*`, `/tasks/*` and `/event_logs/*`.

use llamafarm_core::dataset::{ActionOutcome, DatasetDetails, DatasetInfo, FileMeta, UploadOutcome};
use llamafarm_core::event::EventSummary;
use llamafarm_core::task::{CancelReport, TaskRecord, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// What is known about an uploaded file.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileMetaDto {
    /// The name it was uploaded under.
    original_file_name: String,
    /// A safe display name: `{stem}_{timestamp}.{ext}`.
    resolved_file_name: String,
    /// Upload time, seconds since the epoch.
    timestamp: f64,
    size: u64,
    mime_type: String,
    /// SHA-256 of the content.
    hash: String,
}

impl From<FileMeta> for FileMetaDto {
    fn from(m: FileMeta) -> Self {
        Self {
            original_file_name: m.original_file_name,
            resolved_file_name: m.resolved_file_name,
            timestamp: m.timestamp,
            size: m.size,
            mime_type: m.mime_type,
            hash: m.hash,
        }
    }
}

/// Per-file details of a dataset.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetDetailsDto {
    total_files: usize,
    total_size_bytes: u64,
    files_metadata: Vec<FileMetaDto>,
}

impl From<DatasetDetails> for DatasetDetailsDto {
    fn from(d: DatasetDetails) -> Self {
        Self { total_files: d.total_files, total_size_bytes: d.total_size_bytes, files_metadata: d.files_metadata.into_iter().map(Into::into).collect() }
    }
}

/// A dataset.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetDto {
    name: String,
    /// Process uploads right away.
    auto_process: bool,
    data_processing_strategy: String,
    /// Target database.
    database: String,
    /// File hashes.
    files: Vec<String>,
    /// Per-file details, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<DatasetDetailsDto>,
}

impl From<DatasetInfo> for DatasetDto {
    fn from(d: DatasetInfo) -> Self {
        Self {
            name: d.name,
            auto_process: d.auto_process,
            data_processing_strategy: d.data_processing_strategy,
            database: d.database,
            files: d.files,
            details: d.details.map(Into::into),
        }
    }
}

/// `{total, datasets}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetList {
    total: usize,
    datasets: Vec<DatasetDto>,
}

impl From<Vec<DatasetInfo>> for DatasetList {
    fn from(list: Vec<DatasetInfo>) -> Self {
        Self { total: list.len(), datasets: list.into_iter().map(Into::into).collect() }
    }
}

/// `{dataset}`: the answer of create and delete.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetResponse {
    dataset: DatasetDto,
}

impl From<DatasetInfo> for DatasetResponse {
    fn from(d: DatasetInfo) -> Self {
        Self { dataset: d.into() }
    }
}

/// The processing strategies and databases a dataset may use.
#[derive(Serialize, ToSchema)]
pub(crate) struct StrategiesResponse {
    data_processing_strategies: Vec<String>,
    databases: Vec<String>,
}

impl From<(Vec<String>, Vec<String>)> for StrategiesResponse {
    fn from((data_processing_strategies, databases): (Vec<String>, Vec<String>)) -> Self {
        Self { data_processing_strategies, databases }
    }
}

/// Body of `POST .../datasets`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateDataset {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) data_processing_strategy: Option<String>,
    pub(crate) database: String,
    #[serde(default)]
    pub(crate) auto_process: Option<bool>,
}

/// Query of `GET .../datasets`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct DetailsParam {
    /// Include per-file details (default true).
    pub(crate) include_extra_details: Option<bool>,
}

/// Query of the upload routes.
#[derive(Deserialize, IntoParams)]
pub(crate) struct UploadParams {
    /// Process right after upload (default: the dataset's `auto_process`).
    pub(crate) auto_process: Option<bool>,
}

/// A task queued by an upload or an action, and where to poll it.
pub(crate) struct QueuedTask {
    pub(crate) task_uri: String,
    pub(crate) task_id: String,
}

/// `POST .../datasets/{dataset}/data`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UploadResponse {
    filename: String,
    /// SHA-256 of the content.
    hash: String,
    /// Always false: processing, when queued, runs in the task.
    processed: bool,
    /// True when the same content was already in the dataset.
    skipped: bool,
    /// `skipped`, `processing` or `uploaded`.
    status: &'static str,
    /// Where to poll the processing task, when one was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    task_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
}

impl UploadResponse {
    pub(crate) fn new(o: UploadOutcome, task: Option<QueuedTask>) -> Self {
        let status = if o.skipped {
            "skipped"
        } else if task.is_some() {
            "processing"
        } else {
            "uploaded"
        };
        let (task_uri, task_id) = task.map(|t| (t.task_uri, t.task_id)).unzip();
        Self { filename: o.filename, hash: o.hash, processed: false, skipped: o.skipped, status, task_uri, task_id }
    }
}

/// A stored file of a bulk upload.
#[derive(Serialize, ToSchema)]
pub(crate) struct UploadedFile {
    filename: String,
    hash: String,
    size: u64,
}

/// A duplicate of a bulk upload (nothing stored).
#[derive(Serialize, ToSchema)]
pub(crate) struct SkippedFile {
    filename: String,
    hash: String,
}

/// A file of a bulk upload that could not be stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct FailedFile {
    pub(crate) filename: String,
    pub(crate) error: String,
}

/// `POST .../datasets/{dataset}/data/bulk`.
#[derive(Serialize, ToSchema)]
pub(crate) struct BulkUploadResponse {
    uploaded: Vec<UploadedFile>,
    skipped: Vec<SkippedFile>,
    failed: Vec<FailedFile>,
    /// `processing` or `uploaded`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
}

impl BulkUploadResponse {
    pub(crate) fn new(outcomes: Vec<UploadOutcome>, failed: Vec<FailedFile>, task: Option<QueuedTask>) -> Self {
        let (mut uploaded, mut skipped) = (Vec::new(), Vec::new());
        for o in outcomes {
            if o.skipped {
                skipped.push(SkippedFile { filename: o.filename, hash: o.hash });
            } else {
                uploaded.push(UploadedFile { filename: o.filename, hash: o.hash, size: o.size });
            }
        }
        let status = if task.is_some() { "processing" } else { "uploaded" };
        let (task_uri, task_id) = task.map(|t| (t.task_uri, t.task_id)).unzip();
        Self { uploaded, skipped, failed, status, task_uri, task_id }
    }
}

/// Query of `DELETE .../data/{file_hash}`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct RemoveParams {
    /// Also delete the stored file.
    pub(crate) remove_from_disk: Option<bool>,
}

/// `DELETE .../datasets/{dataset}/data/{file_hash}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RemoveFileResponse {
    pub(crate) file_hash: String,
    /// Chunks that left the index.
    pub(crate) chunks_removed: usize,
}

/// Body of `POST .../datasets/{dataset}/actions`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ActionRequest {
    /// `process` (alias `ingest`), `delete_file_chunks`, `delete_dataset_chunks`.
    pub(crate) action_type: String,
    /// For `delete_file_chunks`.
    #[serde(default)]
    pub(crate) file_hash: Option<String>,
    /// Parser settings for this run, keyed by parser type or `*`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) parser_overrides: Option<Map<String, Value>>,
}

/// The answer to an action: `{message, task_uri, task_id}` for `process`,
/// `{message, deleted_chunks[, file_hash]}` for the deletions.
#[derive(Serialize, ToSchema)]
pub(crate) struct ActionResponse {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_chunks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_hash: Option<String>,
}

impl ActionResponse {
    /// `task_uri` makes the polling address of a task id.
    pub(crate) fn new(o: ActionOutcome, task_uri: impl FnOnce(&str) -> String) -> Self {
        let none = Self { message: String::new(), task_uri: None, task_id: None, deleted_chunks: None, file_hash: None };
        match o {
            ActionOutcome::Queued { task_id } => Self { message: "Accepted".into(), task_uri: Some(task_uri(&task_id)), task_id: Some(task_id), ..none },
            ActionOutcome::FileChunksDeleted { file_hash, chunks } => {
                Self { message: format!("Deleted {chunks} chunk(s) of file {file_hash}"), deleted_chunks: Some(chunks), file_hash: Some(file_hash), ..none }
            }
            ActionOutcome::DatasetChunksDeleted { dataset, chunks } => {
                Self { message: format!("Deleted {chunks} chunk(s) of dataset {dataset}"), deleted_chunks: Some(chunks), ..none }
            }
        }
    }
}

/// A task's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum TaskStateDto {
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

impl From<TaskState> for TaskStateDto {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Pending => Self::Pending,
            TaskState::Started => Self::Started,
            TaskState::Success => Self::Success,
            TaskState::Failure => Self::Failure,
            TaskState::Revoked => Self::Revoked,
        }
    }
}

/// Progress of a task.
#[derive(Serialize, ToSchema)]
pub(crate) struct TaskProgress {
    /// Files finished.
    current: usize,
    /// Files in the task.
    total: usize,
}

/// `GET .../tasks/{task_id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TaskResponse {
    task_id: String,
    state: TaskStateDto,
    meta: TaskProgress,
    /// Whether a cancel was requested.
    cancelled: bool,
    dataset: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// Final result: per-file outcomes and counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Extra failure context.
    #[serde(skip_serializing_if = "Option::is_none")]
    traceback: Option<String>,
}

impl From<TaskRecord> for TaskResponse {
    fn from(r: TaskRecord) -> Self {
        Self {
            task_id: r.task_id,
            state: r.state.into(),
            meta: TaskProgress { current: r.meta.current, total: r.meta.total },
            cancelled: r.cancelled,
            dataset: r.dataset,
            created_at: r.created_at,
            updated_at: r.updated_at,
            result: r.result,
            error: r.error,
            traceback: r.traceback,
        }
    }
}

/// `DELETE .../tasks/{task_id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CancelResponse {
    message: String,
    task_id: String,
    /// Whether the task is (now) cancelled.
    cancelled: bool,
    /// Files that never started.
    pending_tasks_cancelled: usize,
    /// Files running when the cancel arrived.
    running_tasks_at_cancel: usize,
    /// Files whose chunks were removed.
    files_reverted: usize,
    /// Files whose chunks could not be removed.
    files_failed_to_revert: usize,
    /// Errors while reverting.
    #[schema(value_type = Option<Vec<Object>>)]
    errors: Option<Vec<Value>>,
    /// The task had finished before the request.
    already_completed: bool,
    /// The task had been cancelled before.
    already_cancelled: bool,
}

impl From<CancelReport> for CancelResponse {
    fn from(r: CancelReport) -> Self {
        Self {
            message: r.message,
            task_id: r.task_id,
            cancelled: r.cancelled,
            pending_tasks_cancelled: r.pending_tasks_cancelled,
            running_tasks_at_cancel: r.running_tasks_at_cancel,
            files_reverted: r.files_reverted,
            files_failed_to_revert: r.files_failed_to_revert,
            errors: r.errors,
            already_completed: r.already_completed,
            already_cancelled: r.already_cancelled,
        }
    }
}

/// Query of `GET .../event_logs`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct EventParams {
    /// Event type, e.g. `rag_processing`, `inference`.
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    /// ISO 8601 lower bound.
    pub(crate) start_time: Option<String>,
    /// ISO 8601 upper bound.
    pub(crate) end_time: Option<String>,
    /// 1..=100, default 10.
    pub(crate) limit: Option<i64>,
    /// Default 0.
    pub(crate) offset: Option<i64>,
}

/// A listed event (without its data).
#[derive(Serialize, ToSchema)]
pub(crate) struct EventSummaryDto {
    /// `evt_...`.
    event_id: String,
    /// `rag_processing`, `inference`, ...
    #[serde(rename = "type")]
    kind: String,
    /// RFC 3339.
    timestamp: String,
    /// A few headline numbers.
    #[schema(value_type = Object)]
    summary: Value,
}

impl From<EventSummary> for EventSummaryDto {
    fn from(e: EventSummary) -> Self {
        Self { event_id: e.event_id, kind: e.kind, timestamp: e.timestamp, summary: e.summary }
    }
}

/// `GET .../event_logs`: newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventList {
    total: usize,
    events: Vec<EventSummaryDto>,
    limit: i64,
    offset: i64,
}

impl EventList {
    pub(crate) fn new(total: usize, events: Vec<EventSummary>, limit: i64, offset: i64) -> Self {
        Self { total, events: events.into_iter().map(Into::into).collect(), limit, offset }
    }
}

/// `GET .../event_logs/{event_id}`: the stored event, `{event_id, type, timestamp,
/// summary, data, sub_events}`.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct EventDetail(Value);

impl From<Value> for EventDetail {
    fn from(v: Value) -> Self {
        Self(v)
    }
}
