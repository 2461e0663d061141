//! The wire types of the API: every request and response body, with its OpenAPI
//! schema, and the conversions from the core's domain values. One module per
//! section of the API reference, beside `routes/`.

pub(crate) mod chat;
pub(crate) mod datasets;
pub(crate) mod examples;
pub(crate) mod ml_anomaly;
pub(crate) mod ml_classifier;
pub(crate) mod models;
pub(crate) mod projects;
pub(crate) mod rag;
pub(crate) mod runtime;
pub(crate) mod system;
pub(crate) mod vision;

use llamafarm_core::HealthStatus;
use serde::Serialize;
use utoipa::ToSchema;

/// A component's state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatusDto {
    /// Working.
    Healthy,
    /// Working with reduced function (e.g. a model is missing).
    Degraded,
    /// Not working.
    Unhealthy,
}

impl From<HealthStatus> for HealthStatusDto {
    fn from(s: HealthStatus) -> Self {
        match s {
            HealthStatus::Healthy => Self::Healthy,
            HealthStatus::Degraded => Self::Degraded,
            HealthStatus::Unhealthy => Self::Unhealthy,
        }
    }
}

/// The OpenAI list envelope's `object` value.
pub(crate) const LIST: &str = "list";
