//! The wire types of the API: every request and response body, with its OpenAPI
//! schema, and the conversions from the core's domain values. One module per
//! section of the API reference, beside `routes/`.

pub(crate) mod chat;
pub(crate) mod datasets;
pub(crate) mod examples;
pub(crate) mod internal;
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

#[cfg(test)]
mod tests {
    /// The OpenAPI document names each schema by its type name, and utoipa keeps only
    /// the last of two types with one name, so a route would document another's body.
    #[test]
    fn wire_type_names_are_unique() {
        let sources = [
            include_str!("chat.rs"),
            include_str!("datasets.rs"),
            include_str!("examples.rs"),
            include_str!("ml_anomaly.rs"),
            include_str!("ml_classifier.rs"),
            include_str!("models.rs"),
            include_str!("projects.rs"),
            include_str!("rag.rs"),
            include_str!("runtime.rs"),
            include_str!("system.rs"),
            include_str!("vision.rs"),
            include_str!("../error.rs"),
        ];
        let mut seen = std::collections::HashSet::new();
        for line in sources.iter().flat_map(|s| s.lines()) {
            let l = line.trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
            if let Some(name) = l.strip_prefix("struct ").or_else(|| l.strip_prefix("enum ")) {
                let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                assert!(seen.insert(name.clone()), "two wire types are named {name}");
            }
        }
        assert!(seen.len() > 50, "{}", seen.len());
    }
}
