//! The Models Cache API: `/v1/models*` on the API port.

use super::system::DiskInfo;
use llamafarm_core::model_cache::{human_size, CachedModel, DeletedModel, DownloadCheck, DownloadProgress, Downloaded, QuantOption};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?provider=` of the cache endpoints.
#[derive(Deserialize, IntoParams)]
pub(crate) struct ProviderParam {
    /// Model provider; only `universal` (the Hugging Face cache) has a cache here.
    pub(crate) provider: Option<String>,
}

/// One cached model.
#[derive(Serialize, ToSchema)]
pub(crate) struct CachedModelDto {
    model_id: String,
    size_bytes: u64,
    size_human: String,
    /// RFC 3339, UTC.
    last_modified: String,
    revisions: Vec<String>,
    /// Files of the current snapshot.
    files: Vec<String>,
}

impl From<CachedModel> for CachedModelDto {
    fn from(m: CachedModel) -> Self {
        let t: chrono::DateTime<chrono::Utc> = m.last_modified.into();
        Self {
            size_human: human_size(m.size_bytes),
            model_id: m.id,
            size_bytes: m.size_bytes,
            last_modified: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revisions: m.revisions,
            files: m.files,
        }
    }
}

/// `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CachedModelList {
    data: Vec<CachedModelDto>,
}

impl From<Vec<CachedModel>> for CachedModelList {
    fn from(v: Vec<CachedModel>) -> Self {
        Self { data: v.into_iter().map(Into::into).collect() }
    }
}

/// `POST /v1/models/download` and `/v1/models/validate-download`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DownloadRequest {
    /// `universal` (default).
    #[serde(default)]
    pub(crate) provider: Option<String>,
    /// `org/name`, or `org/name:QUANT` for one GGUF quantisation (a GGUF repo named
    /// without one gets Q4_K_M, else the smallest of Q4_K_S, Q5_K_M, Q4_0, Q8_0).
    pub(crate) model_name: String,
}

/// A download's SSE events: `progress`, then `complete` or `error`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "event", rename_all = "lowercase")]
pub(crate) enum DownloadEvent {
    /// Bytes so far.
    Progress {
        downloaded: u64,
        total: u64,
        percent: u64,
        /// The file being fetched.
        file: String,
        files_done: usize,
        files_total: usize,
    },
    /// The model is in the cache.
    Complete {
        model_name: String,
        /// Its snapshot directory.
        path: String,
        revision: String,
        /// Bytes fetched by this download (0 when it was cached already).
        bytes_downloaded: u64,
        size_bytes: u64,
    },
    /// The download failed; nothing partial is in the cache (a partial file is kept
    /// aside and resumed by the next download).
    Error { message: String, status: u16 },
}

impl From<&DownloadProgress> for DownloadEvent {
    fn from(p: &DownloadProgress) -> Self {
        DownloadEvent::Progress {
            downloaded: p.downloaded,
            total: p.total,
            percent: p.percent(),
            file: p.file.clone(),
            files_done: p.files_done,
            files_total: p.files_total,
        }
    }
}

impl From<Downloaded> for DownloadEvent {
    fn from(d: Downloaded) -> Self {
        DownloadEvent::Complete {
            model_name: d.model,
            path: d.path.display().to_string(),
            revision: d.commit,
            bytes_downloaded: d.bytes_fetched,
            size_bytes: d.total_bytes,
        }
    }
}

/// `POST /v1/models/validate-download`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ValidateDownloadResponse {
    can_download: bool,
    warning: bool,
    message: String,
    available_bytes: u64,
    required_bytes: u64,
    cache_info: DiskInfo,
    system_info: DiskInfo,
}

impl From<DownloadCheck> for ValidateDownloadResponse {
    fn from(c: DownloadCheck) -> Self {
        Self {
            can_download: c.can_download,
            warning: c.warning,
            message: c.message,
            available_bytes: c.available_bytes,
            required_bytes: c.required_bytes,
            cache_info: c.cache.into(),
            system_info: c.system.into(),
        }
    }
}

/// One GGUF quantisation.
#[derive(Serialize, ToSchema)]
pub(crate) struct QuantOptionDto {
    filename: String,
    quantization: String,
    size_bytes: u64,
    size_human: String,
}

/// `GET /v1/models/{model_id}/quantizations`.
#[derive(Serialize, ToSchema)]
pub(crate) struct QuantizationList {
    options: Vec<QuantOptionDto>,
}

impl From<Vec<QuantOption>> for QuantizationList {
    fn from(v: Vec<QuantOption>) -> Self {
        Self {
            options: v
                .into_iter()
                .map(|o| QuantOptionDto { size_human: human_size(o.size_bytes), filename: o.filename, quantization: o.quantization, size_bytes: o.size_bytes })
                .collect(),
        }
    }
}

/// `DELETE /v1/models/{model_name}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeleteModelResponse {
    model_name: String,
    revisions_deleted: usize,
    size_freed: u64,
    path: String,
    /// Chat models of this repo that were in memory and were unloaded first.
    unloaded: Vec<String>,
}

impl From<(DeletedModel, Vec<String>)> for DeleteModelResponse {
    fn from((d, unloaded): (DeletedModel, Vec<String>)) -> Self {
        Self { model_name: d.model_name, revisions_deleted: d.revisions_deleted, size_freed: d.size_freed, path: d.path.display().to_string(), unloaded }
    }
}

/// `GET /v1/models/loaded`: the chat models in memory and the server's resident memory.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoadedModelList {
    models: Vec<crate::dto::runtime::LoadedModelDto>,
    /// Resident memory of the server process in bytes (absent where the OS does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_bytes: Option<u64>,
}

impl LoadedModelList {
    pub(crate) fn new(models: Vec<llamafarm_core::llm::LoadedModel>, resident_bytes: Option<u64>) -> Self {
        Self { models: models.into_iter().map(Into::into).collect(), resident_bytes }
    }
}
