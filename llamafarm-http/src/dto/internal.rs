//! Bodies of the worker endpoints (`/v1/internal/...`), which `lf worker` calls.

use llamafarm_core::ingest::FileOutcome;
use llamafarm_core::store::ChunkRecord;
use llamafarm_core::task::{TaskState, WorkerJob};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The part of a task a worker takes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// File hashes of the part (the queue entry's); empty or absent: every file.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A task taken by a worker: what it must do, or nothing when the task has ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// The task's dataset, the files still to do, its parser overrides and the project's config.
    #[schema(value_type = Option<Object>)]
    pub job: Option<WorkerJob>,
}

/// A worker's results for a batch of files.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResultsRequest {
    /// One outcome per file (`processed`, `skipped` or `failed`).
    #[schema(value_type = Vec<Object>)]
    pub outcomes: Vec<FileOutcome>,
    /// The embedded chunks of the processed files.
    #[schema(value_type = Vec<Object>)]
    #[serde(default)]
    pub records: Vec<ChunkRecord>,
}

/// Whether the worker should stop (the task was cancelled or has ended).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsResponse {
    /// Stop and call `finish`.
    pub stop: bool,
}

/// The task's state after `finish`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FinishResponse {
    /// `SUCCESS`, `REVOKED` or `FAILURE`.
    pub state: String,
}

impl From<TaskState> for FinishResponse {
    fn from(s: TaskState) -> Self {
        Self { state: s.as_str().into() }
    }
}
