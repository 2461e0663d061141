//! Bodies of the Universal Runtime listener: health, embeddings, rerank, models.

use super::LIST;
use base64::Engine as _;
use llamafarm_core::llm::ListedModel;
use llamafarm_core::rag::rerank::Ranking;
use llamafarm_core::runtime::Embeddings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health` of the runtime.
#[derive(Serialize, ToSchema)]
pub(crate) struct RuntimeHealth {
    /// Worst of the components (a missing default model is `degraded`).
    pub(crate) status: super::HealthStatusDto,
    pub(crate) version: String,
    /// Each component's check (storage, the default models).
    pub(crate) components: Vec<super::system::ComponentHealthDto>,
    /// Chat models in memory.
    pub(crate) loaded_models: Vec<LoadedModelDto>,
    /// Model downloads in progress.
    pub(crate) downloading: Vec<String>,
    /// Models found in the local model cache.
    pub(crate) cached_models: Vec<String>,
    /// The CPU's SIMD features in use.
    pub(crate) simd: Vec<&'static str>,
}

/// A chat model in memory.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoadedModelDto {
    id: String,
    /// `local` (in this process) or `http` (an OpenAI-compatible endpoint).
    kind: &'static str,
    /// Seconds since its last use.
    idle_s: u64,
    keep_loaded: bool,
    /// Generations running now.
    running: usize,
    /// Generations waiting for a slot (`lf serve --max-queued-generations` bounds it).
    queued: usize,
    /// Size of the weights file of a local model (held in memory while it is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    weights_bytes: Option<u64>,
}

impl From<llamafarm_core::llm::LoadedModel> for LoadedModelDto {
    fn from(m: llamafarm_core::llm::LoadedModel) -> Self {
        Self { id: m.id, kind: m.kind, idle_s: m.idle_s, keep_loaded: m.keep_loaded, running: m.running, queued: m.queued, weights_bytes: m.weights_bytes }
    }
}

/// `input` of an embeddings request: one string or a list of strings.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl EmbeddingInput {
    /// The texts, and whether `encoding_format` asks for base64 (`float`, the default, or `base64`).
    pub(crate) fn texts(self, encoding_format: Option<&str>) -> Result<(Vec<String>, bool), crate::ApiError> {
        let texts = match self {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v,
        };
        match encoding_format {
            None | Some("float") => Ok((texts, false)),
            Some("base64") => Ok((texts, true)),
            Some(other) => Err(llamafarm_core::Error::invalid("encoding_format", format!("must be float or base64, got '{other}'")).into()),
        }
    }
}

/// Body of `POST /v1/embeddings`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct EmbeddingsRequest {
    /// A local sentence-transformers model id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub(crate) model: String,
    pub(crate) input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32, what the OpenAI SDKs ask for).
    #[serde(default)]
    pub(crate) encoding_format: Option<String>,
    /// Accepted for compatibility; must equal the model's dimension when given.
    #[serde(default)]
    pub(crate) dimensions: Option<usize>,
    /// Accepted for compatibility.
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) user: Option<String>,
}

/// One vector: floats, or base64 of little-endian f32.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f64>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// One embedding of the list.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddingItem {
    /// Always `embedding`.
    object: &'static str,
    /// Position of its input.
    index: usize,
    embedding: EmbeddingVector,
}

/// Token counts of an embeddings request.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddingUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// The OpenAI embeddings list.
#[derive(Serialize, ToSchema)]
pub(crate) struct EmbeddingList {
    /// Always `list`.
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: EmbeddingUsage,
}

impl EmbeddingList {
    /// `base64`: each vector as base64 of its little-endian f32 bytes.
    pub(crate) fn new(e: Embeddings, base64: bool) -> Self {
        let data = e
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    EmbeddingVector::Float(v.into_iter().map(f64::from).collect())
                };
                EmbeddingItem { object: "embedding", index, embedding }
            })
            .collect();
        Self { object: LIST, data, model: e.model, usage: EmbeddingUsage { prompt_tokens: e.prompt_tokens, total_tokens: e.prompt_tokens } }
    }
}

/// Body of `POST /v1/rerank`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct RerankRequest {
    /// A cross-encoder, or any sentence-transformers model (scored by embedding similarity).
    pub(crate) model: String,
    pub(crate) query: String,
    pub(crate) documents: Vec<String>,
    /// Return only the best n.
    #[serde(default)]
    pub(crate) top_n: Option<usize>,
    /// Include the document text in each result.
    #[serde(default)]
    pub(crate) return_documents: Option<bool>,
}

/// A document's text in a rerank result.
#[derive(Serialize, ToSchema)]
pub(crate) struct RerankDocument {
    text: String,
}

/// One scored document.
#[derive(Serialize, ToSchema)]
pub(crate) struct RerankResult {
    /// Position in the request's `documents`.
    index: usize,
    /// 0..1, higher is more relevant.
    relevance_score: f64,
    /// With `return_documents: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<RerankDocument>,
}

/// `POST /v1/rerank`: results best first.
#[derive(Serialize, ToSchema)]
pub(crate) struct RerankResponse {
    /// Always `list`.
    object: &'static str,
    model: String,
    /// `cross-encoder` or `bi-encoder`.
    method: &'static str,
    results: Vec<RerankResult>,
}

impl RerankResponse {
    /// `documents`: the request's, for `return_documents`.
    pub(crate) fn new(r: Ranking, documents: Option<&[String]>) -> Self {
        let results = r
            .ranked
            .into_iter()
            .map(|(index, score)| RerankResult {
                index,
                relevance_score: f64::from(score),
                document: documents.and_then(|d| d.get(index)).map(|t| RerankDocument { text: t.clone() }),
            })
            .collect();
        Self { object: LIST, model: r.model, method: r.method, results }
    }
}

/// A model of `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RuntimeModel {
    /// Model id.
    id: String,
    /// Always `model`.
    object: &'static str,
    created: i64,
    /// Always `llamafarm`.
    owned_by: &'static str,
    /// In memory now.
    loaded: bool,
    /// `local` or `http`, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// Seconds since last use, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_s: Option<u64>,
}

impl From<ListedModel> for RuntimeModel {
    fn from(m: ListedModel) -> Self {
        Self {
            id: m.id,
            object: "model",
            created: 0,
            owned_by: "llamafarm",
            loaded: m.loaded.is_some(),
            kind: m.loaded.as_ref().map(|l| l.kind),
            idle_s: m.loaded.as_ref().map(|l| l.idle_s),
        }
    }
}

/// `GET /v1/models`: loaded models first, then every model of the model cache.
#[derive(Serialize, ToSchema)]
pub(crate) struct RuntimeModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<RuntimeModel>,
}

impl From<Vec<ListedModel>> for RuntimeModelList {
    fn from(list: Vec<ListedModel>) -> Self {
        Self { object: LIST, data: list.into_iter().map(Into::into).collect() }
    }
}

/// Body of `POST /v1/ner`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NerRequest {
    /// A Hugging Face token-classification model id in the model cache, e.g. `dslim/bert-base-NER`.
    pub(crate) model: String,
    /// Texts to tag.
    pub(crate) texts: Vec<String>,
}

/// One entity.
#[derive(Serialize, ToSchema)]
pub(crate) struct EntityDto {
    pub(crate) text: String,
    /// `PER`, `ORG`, `LOC`, `MISC`, ...
    pub(crate) label: String,
    /// Character offset of the first character.
    pub(crate) start: usize,
    /// Character offset past the last character.
    pub(crate) end: usize,
    pub(crate) score: f32,
}

/// One text's entities.
#[derive(Serialize, ToSchema)]
pub(crate) struct NerItem {
    pub(crate) index: usize,
    pub(crate) entities: Vec<EntityDto>,
}

/// Response of `POST /v1/ner`.
#[derive(Serialize, ToSchema)]
pub(crate) struct NerResponse {
    /// `list`.
    pub(crate) object: &'static str,
    pub(crate) data: Vec<NerItem>,
    pub(crate) model: String,
}

impl NerResponse {
    pub(crate) fn new(model: String, out: Vec<Vec<llamafarm_core::ml::pretrained::Entity>>) -> Self {
        let data = out
            .into_iter()
            .enumerate()
            .map(|(index, es)| NerItem {
                index,
                entities: es.into_iter().map(|e| EntityDto { text: e.text, label: e.label, start: e.start, end: e.end, score: e.score }).collect(),
            })
            .collect();
        Self { object: LIST, data, model }
    }
}
