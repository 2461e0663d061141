//! Request and response types of the HTTP API (wire shapes, OpenAPI schemas and
//! the conversions from the core's domain values), by route group.

pub(crate) mod ml_anomaly;
pub(crate) mod ml_classifier;
