//! Health of the library's components, each with a status and a measured latency.

use serde::Serialize;
use std::time::Instant;

/// A component's state. A missing model is `Degraded`, not `Unhealthy`: the
/// service works, the feature that needs the model does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working with reduced function.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// One component's check.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentHealth {
    /// Component name, e.g. `storage`.
    pub name: String,
    /// Its state.
    pub status: HealthStatus,
    /// What was found.
    pub message: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// Extra facts (paths, model ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// The overall report.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// Worst of the components.
    pub status: HealthStatus,
    /// `name=status, ...`.
    pub summary: String,
    /// Each component.
    pub components: Vec<ComponentHealth>,
    /// RFC 3339 time of the check.
    pub timestamp: String,
}

impl HealthReport {
    /// Build a report; the overall status is the worst component status.
    pub fn from_components(components: Vec<ComponentHealth>) -> Self {
        let status = components.iter().map(|c| c.status).fold(HealthStatus::Healthy, |acc, s| match (acc, s) {
            (HealthStatus::Unhealthy, _) | (_, HealthStatus::Unhealthy) => HealthStatus::Unhealthy,
            (HealthStatus::Degraded, _) | (_, HealthStatus::Degraded) => HealthStatus::Degraded,
            _ => HealthStatus::Healthy,
        });
        let summary = components
            .iter()
            .map(|c| format!("{}={}", c.name, serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ");
        Self { status, summary, components, timestamp: chrono::Utc::now().to_rfc3339() }
    }
}

/// Time a check that returns `(status, message, details)`.
pub fn timed<F>(name: &str, f: F) -> ComponentHealth
where
    F: FnOnce() -> (HealthStatus, String, Option<serde_json::Value>),
{
    let t = Instant::now();
    let (status, message, details) = f();
    ComponentHealth { name: name.into(), status, message, latency_ms: t.elapsed().as_secs_f64() * 1000.0, details }
}
