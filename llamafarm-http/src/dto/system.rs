//! Bodies of `/`, `/health`, `/info` and `/v1/system/*`.

use super::HealthStatusDto;
use llamafarm_core::system::DiskUsage;
use llamafarm_core::{ComponentHealth, HealthReport};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RootResponse {
    pub(crate) message: String,
    pub(crate) version: String,
    pub(crate) docs: String,
}

/// One component's check.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComponentHealthDto {
    /// Component name, e.g. `storage`, `server`, `model:embedding`.
    name: String,
    status: HealthStatusDto,
    /// What was found.
    message: String,
    /// How long the check took.
    latency_ms: f64,
    /// Extra facts (paths, model ids, process details).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
}

impl From<ComponentHealth> for ComponentHealthDto {
    fn from(c: ComponentHealth) -> Self {
        Self { name: c.name, status: c.status.into(), message: c.message, latency_ms: c.latency_ms, details: c.details }
    }
}

/// `GET /health`: every component with its measured latency.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthReportDto {
    /// Worst of the components.
    status: HealthStatusDto,
    /// `name=status, ...`.
    summary: String,
    components: Vec<ComponentHealthDto>,
    /// RFC 3339 time of the check.
    timestamp: String,
}

impl From<HealthReport> for HealthReportDto {
    fn from(r: HealthReport) -> Self {
        Self { status: r.status.into(), summary: r.summary, components: r.components.into_iter().map(Into::into).collect(), timestamp: r.timestamp }
    }
}

/// `details` of the `server` component of `/health`.
#[derive(Serialize)]
pub(crate) struct ServerDetails {
    pub(crate) pid: u32,
    pub(crate) host: Option<String>,
    pub(crate) uptime_s: f64,
    pub(crate) simd: Vec<&'static str>,
    pub(crate) embedding_kernels: Value,
}

/// `GET /health/liveness`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Liveness {
    pub(crate) status: String,
}

/// `GET /info`.
#[derive(Serialize, ToSchema)]
pub(crate) struct InfoResponse {
    pub(crate) version: String,
    pub(crate) data_directory: String,
    pub(crate) model_cache_directory: String,
}

/// Space on one filesystem.
#[derive(Serialize, ToSchema)]
pub(crate) struct DiskInfo {
    total_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    path: String,
    percent_free: f64,
}

impl From<DiskUsage> for DiskInfo {
    fn from(d: DiskUsage) -> Self {
        Self { total_bytes: d.total_bytes, used_bytes: d.used_bytes, free_bytes: d.free_bytes, path: d.path, percent_free: d.percent_free }
    }
}

/// `GET /v1/system/disk`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DiskResponse {
    /// The model cache (Hugging Face layout).
    pub(crate) cache: DiskInfo,
    /// The filesystem root.
    pub(crate) system: DiskInfo,
    /// The LlamaFarm data directory.
    pub(crate) data: DiskInfo,
}

impl From<llamafarm_core::system::DiskReport> for DiskResponse {
    fn from(r: llamafarm_core::system::DiskReport) -> Self {
        Self { cache: r.cache.into(), system: r.system.into(), data: r.data.into() }
    }
}

/// How to install a newer version.
#[derive(Serialize, ToSchema)]
pub(crate) struct InstallHints {
    /// The cargo command.
    pub(crate) cargo: String,
}

/// `GET /v1/system/version-check`.
#[derive(Serialize, ToSchema)]
pub(crate) struct VersionCheck {
    pub(crate) current_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latest_version: Option<String>,
    /// `unknown`: the check could not be made.
    pub(crate) status: String,
    pub(crate) message: String,
    pub(crate) from_cache: bool,
    pub(crate) install: InstallHints,
}
