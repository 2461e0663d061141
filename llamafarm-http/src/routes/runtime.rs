//! The Universal Runtime listener (default port 11540): OpenAI-compatible model
//! endpoints sharing the library instance with the main API.

use super::call;
use crate::dto::runtime::{EmbeddingList, EmbeddingsRequest, NerRequest, NerResponse, RerankRequest, RerankResponse, RuntimeHealth};
use crate::error::{ApiResult, ErrorBody, Json};
use crate::AppState;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(runtime_health)).routes(routes!(embeddings)).routes(routes!(rerank)).routes(routes!(ner))
}

/// Runtime health: the components' real states, the chat models in memory, downloads
/// in progress and the cached models.
#[utoipa::path(get, path = "/health", tag = "runtime", responses((status = 200, body = RuntimeHealth), (status = 500, body = ErrorBody)))]
async fn runtime_health(State(st): State<AppState>) -> ApiResult<Json<RuntimeHealth>> {
    let (report, loaded, downloading, cached) =
        call(&st, |lf| Ok((lf.health(), lf.llm().loaded(), lf.model_hub().downloading(), lf.models().list().into_iter().map(|m| m.id).collect::<Vec<_>>()))).await?;
    Ok(Json(RuntimeHealth {
        status: report.status.into(),
        version: llamafarm_core::system::VERSION.into(),
        components: report.components.into_iter().map(Into::into).collect(),
        loaded_models: loaded.into_iter().map(Into::into).collect(),
        downloading,
        cached_models: cached,
        simd: llamafarm_core::system::simd_features(),
    }))
}

/// OpenAI-compatible embeddings from a local model.
#[utoipa::path(post, path = "/v1/embeddings", tag = "runtime", request_body = EmbeddingsRequest,
    responses((status = 200, description = "OpenAI embeddings list", body = EmbeddingList), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn embeddings(State(st): State<AppState>, Json(req): Json<EmbeddingsRequest>) -> ApiResult<Json<EmbeddingList>> {
    let (texts, base64) = req.input.texts(req.encoding_format.as_deref())?;
    let (model, dimensions) = (req.model, req.dimensions);
    let out = call(&st, move |lf| {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        lf.embed_with_dimensions(&model, &refs, dimensions)
    })
    .await?;
    Ok(Json(EmbeddingList::new(out, base64)))
}

/// Score documents against a query, best first.
#[utoipa::path(post, path = "/v1/rerank", tag = "runtime", request_body = RerankRequest,
    responses((status = 200, description = "Results with index and relevance_score, best first", body = RerankResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn rerank(State(st): State<AppState>, Json(req): Json<RerankRequest>) -> ApiResult<Json<RerankResponse>> {
    let (ranking, req) = call(&st, move |lf| {
        let docs: Vec<&str> = req.documents.iter().map(String::as_str).collect();
        let r = lf.rank(&req.model, &req.query, &docs, req.top_n)?;
        Ok((r, req))
    })
    .await?;
    let documents = (req.return_documents == Some(true)).then_some(req.documents.as_slice());
    Ok(Json(RerankResponse::new(ranking, documents)))
}

/// Named entities in each text, from a token-classification model in the model cache.
#[utoipa::path(post, path = "/v1/ner", tag = "runtime", request_body = NerRequest,
    responses((status = 200, body = NerResponse), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn ner(State(st): State<AppState>, Json(req): Json<NerRequest>) -> ApiResult<Json<NerResponse>> {
    let model = req.model.clone();
    let out = call(&st, move |lf| lf.ml().pretrained().ner(&req.model, &req.texts)).await?;
    Ok(Json(NerResponse::new(model, out)))
}
