//! End-to-end tests of the HTTP API over a real socket (the `lf` binary has its
//! own in `llamafarm-cli/tests/lf.rs`, where cargo guarantees the binary is built).

mod audit;
mod bad_input;
mod chat_api;
mod chroma_store;
mod examples_api;
mod http_api;
mod ingest_api;
mod limits_api;
mod mcp_client;
mod ml_anomaly_api;
mod ml_classifier_api;
mod models_api;
mod openapi;
mod rag_api;
mod readme_tour;
mod security_api;
mod support;
mod vision_api;
mod web_app;
