//! The Universal Runtime listener (default port 11540): OpenAI-compatible model
//! endpoints sharing the library instance with the main API.

use super::blocking;
use crate::error::{ApiResult, ErrorBody, Json};
use crate::AppState;
use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(runtime_health)).routes(routes!(embeddings)).routes(routes!(rerank))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuntimeHealth {
    status: String,
    version: String,
    /// Models found in the local model cache.
    cached_models: Vec<String>,
    simd: Vec<&'static str>,
}

/// Runtime health.
#[utoipa::path(get, path = "/health", tag = "runtime", responses((status = 200, body = RuntimeHealth)))]
async fn runtime_health(State(st): State<AppState>) -> Json<RuntimeHealth> {
    let lf = st.lf.clone();
    let cached_models = tokio::task::spawn_blocking(move || lf.models().list().into_iter().map(|m| m.id).collect())
        .await
        .unwrap_or_default();
    Json(RuntimeHealth {
        status: "healthy".into(),
        version: llamafarm_core::system::VERSION.into(),
        cached_models,
        simd: llamafarm_core::system::simd_features(),
    })
}

/// `input` of an embeddings request: one string or a list of strings.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

/// The texts of an embeddings request and whether base64 output was asked for.
pub(crate) fn embedding_texts(input: EmbeddingInput, encoding_format: Option<&str>) -> Result<(Vec<String>, bool), crate::ApiError> {
    let texts = match input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    match encoding_format {
        None | Some("float") => Ok((texts, false)),
        Some("base64") => Ok((texts, true)),
        Some(other) => Err(llamafarm_core::Error::Invalid(format!("encoding_format must be float or base64, got '{other}'")).into()),
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct EmbeddingsRequest {
    /// A local sentence-transformers model id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    model: String,
    input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32, what the OpenAI SDKs ask for).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Accepted for compatibility; must equal the model's dimension when given.
    #[serde(default)]
    dimensions: Option<usize>,
    /// Accepted for compatibility.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// OpenAI-compatible embeddings from a local model.
#[utoipa::path(post, path = "/v1/embeddings", tag = "runtime", request_body = EmbeddingsRequest,
    responses((status = 200, description = "OpenAI embeddings list", body = Object), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn embeddings(State(st): State<AppState>, Json(req): Json<EmbeddingsRequest>) -> ApiResult<Json<Value>> {
    let (texts, base64) = embedding_texts(req.input, req.encoding_format.as_deref())?;
    let lf = st.lf.clone();
    blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = lf.embed(&req.model, &refs)?;
        if let (Some(d), Some(v)) = (req.dimensions, out.vectors.first()) {
            if d != v.len() {
                return Err(llamafarm_core::Error::Invalid(format!("model '{}' produces {} dimensions; `dimensions: {d}` is not supported", req.model, v.len())));
            }
        }
        Ok(Json(embeddings_json(&out.model, &out.vectors, out.prompt_tokens, base64)))
    })
    .await
}

/// The OpenAI embeddings list (`float` arrays or base64 of little-endian f32).
pub(crate) fn embeddings_json(model: &str, vectors: &[Vec<f32>], prompt_tokens: usize, base64: bool) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RerankRequest {
    /// A cross-encoder, or any sentence-transformers model (scored by embedding similarity).
    model: String,
    query: String,
    documents: Vec<String>,
    /// Return only the best n.
    #[serde(default)]
    top_n: Option<usize>,
    /// Include the document text in each result.
    #[serde(default)]
    return_documents: Option<bool>,
}

/// Score documents against a query, best first.
#[utoipa::path(post, path = "/v1/rerank", tag = "runtime", request_body = RerankRequest,
    responses((status = 200, description = "Results with index and relevance_score", body = Object), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn rerank(State(st): State<AppState>, Json(req): Json<RerankRequest>) -> ApiResult<Json<Value>> {
    let lf = st.lf.clone();
    blocking(move || {
        let docs: Vec<&str> = req.documents.iter().map(String::as_str).collect();
        let r = lf.rerank(&req.model, &req.query, &docs)?;
        let mut order: Vec<usize> = (0..docs.len()).collect();
        order.sort_by(|&a, &b| r.scores[b].total_cmp(&r.scores[a]));
        let n = req.top_n.unwrap_or(docs.len()).min(docs.len());
        let results: Vec<Value> = order
            .into_iter()
            .take(n)
            .map(|i| {
                let mut o = json!({"index": i, "relevance_score": r.scores[i]});
                if req.return_documents == Some(true) {
                    o["document"] = json!({"text": docs[i]});
                }
                o
            })
            .collect();
        Ok(Json(json!({"object": "list", "model": r.model, "method": r.method, "results": results})))
    })
    .await
}
