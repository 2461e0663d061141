//! Text embeddings: the [`Embedder`] trait and its backends.
//!
//! - [`BertEmbedder`]: sentence-transformers models (BERT family) run in-process
//!   on our own encoder (kernels from `llamafarm-kernels`): safetensors + `config.json` + `tokenizer.json`, pooling and
//!   normalisation as the model's `modules.json` says, attention-mask pooling
//!   (padding never leaks into the mean), batched by length.
//! - [`CandleEmbedder`]: the architectures beyond BERT (nomic-bert, XLM-RoBERTa,
//!   ModernBERT) on candle-transformers, with the same pooling rules.
//! - [`HttpEmbedder`]: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI,
//!   Ollama, our own Universal Runtime, an inference fleet).
//! - [`Prefixed`]: the query and document prefixes some models expect
//!   (`search_query: ` / `search_document: ` for nomic-embed-text), around any of them.
//!
//! Config types map onto them in [`EmbedderSpec::from_strategy`]:
//! `UniversalEmbedder`, `SentenceTransformerEmbedder` and `HuggingFaceEmbedder` run
//! locally; `OllamaEmbedder` and `OpenAIEmbedder` call HTTP.

mod bert;
mod candle_models;
pub(crate) mod encoder;
mod http;

pub(crate) use llamafarm_kernels::{bgemm, gemm, qgemm};

pub use bert::{read_head, BertEmbedder, Head, Pooling};
pub use candle_models::CandleEmbedder;
pub use encoder::{BertEncoder, Precision};
pub use http::HttpEmbedder;
pub use llamafarm_kernels::bgemm::{has_amx, has_bf16};
pub use llamafarm_kernels::qgemm::{int8_kernel, Int8Kernel};
pub use llamafarm_kernels::KernelOptions;

use crate::config::EmbeddingStrategyConfig;
use crate::error::{Error, Result};
use serde_json::Value;

/// The embedding engine's options: which kernels run, and how batches are cut. The
/// default is what a plain start gets (every kernel the CPU has, the fastest of each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedOptions {
    /// The kernels' options (instruction sets to leave out, the int8 kernel).
    pub kernels: KernelOptions,
    /// Most tokens in one forward pass of a local model (besides [`LOCAL_MICRO_BATCH`]
    /// texts): long texts go in smaller batches, so activations stay in cache.
    pub batch_tokens: usize,
    /// Keep an int8 model's attention in fp32 (its linear layers stay int8).
    pub fp32_attention: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { kernels: KernelOptions::default(), batch_tokens: bert::BATCH_TOKENS, fp32_attention: false }
    }
}

impl EmbedOptions {
    /// The options named by the `LF_*` switches of the `lf` command line, their values
    /// looked up with `var` (the CLI passes the environment; the library reads none):
    /// `LF_NO_AVX512`, `LF_NO_VNNI`, `LF_NO_BF16`, `LF_NO_AMX`, `LF_INT8_ACT8` and
    /// `LF_FP32_ATTENTION` (on when set to anything but `0`), `LF_INT8_KERNEL`
    /// ([`Int8Kernel::from_name`]) and `LF_EMBED_BATCH_TOKENS` (a positive count).
    /// Unset names keep the defaults.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let flag = |name: &str| var(name).is_some_and(|v| v != "0");
        let mut o = EmbedOptions::default();
        o.kernels.no_avx512 = flag("LF_NO_AVX512");
        o.kernels.no_vnni = flag("LF_NO_VNNI");
        o.kernels.no_bf16 = flag("LF_NO_BF16");
        o.kernels.no_amx = flag("LF_NO_AMX");
        o.kernels.int8_kernel = var("LF_INT8_KERNEL").and_then(|v| Int8Kernel::from_name(&v));
        o.kernels.int8_act8 = flag("LF_INT8_ACT8");
        o.fp32_attention = flag("LF_FP32_ATTENTION");
        if let Some(n) = var("LF_EMBED_BATCH_TOKENS").and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0) {
            o.batch_tokens = n;
        }
        o
    }
}

fn installed() -> &'static std::sync::RwLock<EmbedOptions> {
    static OPTS: std::sync::OnceLock<std::sync::RwLock<EmbedOptions>> = std::sync::OnceLock::new();
    OPTS.get_or_init(|| std::sync::RwLock::new(EmbedOptions::default()))
}

/// Install `opts` for the whole process (and its kernel options, see
/// [`llamafarm_kernels::configure`]). Call it at start-up, before any model loads:
/// models loaded earlier keep the kernels and precision they were packed for.
pub fn configure(opts: EmbedOptions) {
    llamafarm_kernels::configure(&opts.kernels);
    *installed().write().unwrap_or_else(|p| p.into_inner()) = opts;
}

/// The options installed by [`configure`] (the default if it was never called).
pub fn options() -> EmbedOptions {
    installed().read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether the embedding kernels may use AVX-512 (the active [`llamafarm_kernels::Cpu`]
/// has AVX-512 F, and [`KernelOptions::no_avx512`] is not set).
pub fn has_avx512() -> bool {
    llamafarm_kernels::Cpu::active().avx512()
}

/// Whether the AVX-512 VNNI int8 kernel may run here.
pub fn has_vnni() -> bool {
    llamafarm_kernels::Cpu::active().avx512_vnni()
}

/// Whether the AVX-VNNI int8 kernel may run here.
pub fn has_avx_vnni() -> bool {
    llamafarm_kernels::Cpu::active().avx_vnni()
}

/// Texts per forward pass for local models (the packed encoder has no padding;
/// measured fastest on 2 cores: 8 to 16).
pub const LOCAL_MICRO_BATCH: usize = 8;

/// The model the built-in templates embed with.
pub const DEFAULT_EMBEDDING_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Turns texts into vectors. Implementations are thread-safe and shared.
pub trait Embedder: Send + Sync {
    /// The model id (as configured).
    fn model_id(&self) -> &str;
    /// Length of each vector.
    fn dimension(&self) -> usize;
    /// Embed a batch of texts, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Tokens `text` costs (for usage accounting), when the backend knows.
    fn count_tokens(&self, _text: &str) -> Option<usize> {
        None
    }
    /// Embed one text.
    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        self.embed(&[text])?.pop().ok_or_else(|| Error::Internal("embedder returned no vector".into()))
    }
    /// Embed search queries (where a model wants queries marked apart from documents,
    /// see [`Prefixed`]; the same as [`Embedder::embed`] otherwise).
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts)
    }
    /// Embed one search query.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        self.embed_queries(&[text])?.pop().ok_or_else(|| Error::Internal("embedder returned no vector".into()))
    }
}

/// An embedder whose documents and queries get the prefixes their model was trained
/// with (nomic-embed-text: `search_document: ` and `search_query: `; e5:
/// `passage: ` and `query: `).
pub struct Prefixed<E: ?Sized> {
    /// Before each document ([`Embedder::embed`]).
    pub document: String,
    /// Before each query ([`Embedder::embed_queries`]).
    pub query: String,
    /// The embedder.
    pub inner: std::sync::Arc<E>,
}

impl<E: Embedder + ?Sized> Prefixed<E> {
    fn with(prefix: &str, texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| format!("{prefix}{t}")).collect()
    }
}

impl<E: Embedder + ?Sized> Embedder for Prefixed<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let t = Self::with(&self.document, texts);
        self.inner.embed(&t.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.inner.count_tokens(&format!("{}{text}", self.document))
    }
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let t = Self::with(&self.query, texts);
        self.inner.embed(&t.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// The prefixes a model's card asks for, by its id: nomic-embed-text's
/// `search_document: ` / `search_query: `, e5's `passage: ` / `query: `; none otherwise.
pub fn default_prefixes(model: &str) -> (Option<String>, Option<String>) {
    let m = model.to_ascii_lowercase();
    if m.contains("nomic-embed-text") {
        (Some("search_document: ".into()), Some("search_query: ".into()))
    } else if m.contains("/e5-") || m.contains("multilingual-e5") {
        (Some("passage: ".into()), Some("query: ".into()))
    } else {
        (None, None)
    }
}

/// Where an embedding strategy's vectors come from.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedderSpec {
    /// A local sentence-transformers model, by id (resolved in the model cache).
    Local {
        /// Model id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
        model: String,
        /// The dimension the config promises, if it says one.
        dimension: Option<usize>,
        /// Texts per forward pass.
        batch_size: usize,
        /// Before each document (config `document_prefix`; default: the model card's,
        /// see [`default_prefixes`]).
        document_prefix: Option<String>,
        /// Before each search query (config `query_prefix`; default as above).
        query_prefix: Option<String>,
    },
    /// An OpenAI-compatible HTTP endpoint.
    Http {
        /// Base URL ending before `/embeddings` (e.g. `http://localhost:11434/v1`).
        base_url: String,
        /// More servers of the same model (`base_urls`): requests spread over all of them.
        base_urls: Vec<String>,
        /// Further attempts after a failure (`max_retries`; default one per other server).
        max_retries: Option<u32>,
        /// Model name sent in the request.
        model: String,
        /// Bearer token.
        api_key: Option<String>,
        /// The dimension the config promises, if it says one.
        dimension: Option<usize>,
        /// Texts per request.
        batch_size: usize,
        /// Request timeout in seconds.
        timeout_s: u64,
    },
}

fn cfg_str(cfg: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    cfg.get(key).and_then(|v| v.as_str()).map(str::to_string).filter(|s| !s.is_empty())
}

/// `base_urls`: the other servers of a remote embedder, each as `base_url` is read.
fn more_bases(cfg: &serde_json::Map<String, Value>) -> Result<Vec<String>> {
    match cfg.get("base_urls") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|u| {
                u.as_str()
                    .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                    .map(openai_base)
                    .ok_or_else(|| Error::invalid("base_urls", format!("must be a list of http(s) URLs, got {u}")))
            })
            .collect(),
        Some(other) => Err(Error::invalid("base_urls", format!("must be a list of http(s) URLs, got {other}"))),
    }
}

fn max_retries(cfg: &serde_json::Map<String, Value>) -> Result<Option<u32>> {
    match cfg.get("max_retries") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().filter(|n| *n <= 100).map(|n| Some(n as u32)).ok_or_else(|| Error::invalid("max_retries", format!("must be between 0 and 100, got {v}")))
        }
    }
}

fn cfg_usize(cfg: &serde_json::Map<String, Value>, key: &str) -> Option<usize> {
    cfg.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
}

impl EmbedderSpec {
    /// Read an embedding strategy (env variables already substituted).
    pub fn from_strategy(s: &EmbeddingStrategyConfig) -> Result<Self> {
        let empty = serde_json::Map::new();
        let cfg = s.config.as_ref().unwrap_or(&empty);
        let dimension = cfg_usize(cfg, "dimension");
        let batch = |d: usize| cfg_usize(cfg, "batch_size").filter(|b| *b > 0).unwrap_or(d);
        match s.kind.as_str() {
            "UniversalEmbedder" | "SentenceTransformerEmbedder" | "HuggingFaceEmbedder" => {
                let model = cfg_str(cfg, "model").unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_string());
                // On CPU small micro-batches are fastest (cache-resident activations, one
                // batch in flight per core); `batch_size` caps it.
                // Prefixes: the config's (an empty string for none), else the model card's.
                let (doc, query) = default_prefixes(&model);
                let prefix = |k: &str, d: Option<String>| match cfg.get(k).and_then(|v| v.as_str()) {
                    Some("") => None,
                    Some(p) => Some(p.to_string()),
                    None => d,
                };
                Ok(EmbedderSpec::Local {
                    document_prefix: prefix("document_prefix", doc),
                    query_prefix: prefix("query_prefix", query),
                    model,
                    dimension,
                    batch_size: batch(LOCAL_MICRO_BATCH).min(LOCAL_MICRO_BATCH),
                })
            }
            "OllamaEmbedder" => {
                let base = cfg_str(cfg, "base_url").unwrap_or_else(|| "http://localhost:11434".into());
                Ok(EmbedderSpec::Http {
                    base_url: openai_base(&base),
                    base_urls: more_bases(cfg)?,
                    max_retries: max_retries(cfg)?,
                    model: cfg_str(cfg, "model").unwrap_or_else(|| "nomic-embed-text".into()),
                    api_key: cfg_str(cfg, "api_key"),
                    dimension,
                    batch_size: batch(16),
                    timeout_s: cfg_usize(cfg, "timeout").unwrap_or(60) as u64,
                })
            }
            "OpenAIEmbedder" => {
                let base = cfg_str(cfg, "base_url").unwrap_or_else(|| "https://api.openai.com/v1".into());
                Ok(EmbedderSpec::Http {
                    base_url: openai_base(&base),
                    base_urls: more_bases(cfg)?,
                    max_retries: max_retries(cfg)?,
                    model: cfg_str(cfg, "model").unwrap_or_else(|| "text-embedding-3-small".into()),
                    api_key: cfg_str(cfg, "api_key"),
                    dimension,
                    batch_size: batch(100),
                    timeout_s: cfg_usize(cfg, "timeout").unwrap_or(60) as u64,
                })
            }
            other => Err(Error::invalid("embedder type", format!("'{other}' is unknown"))),
        }
    }

    /// A stable key for caching loaded embedders.
    pub fn cache_key(&self) -> String {
        match self {
            EmbedderSpec::Local { model, document_prefix: None, query_prefix: None, .. } => format!("local:{model}"),
            EmbedderSpec::Local { model, document_prefix, query_prefix, .. } => {
                format!("local:{model}|{}|{}", document_prefix.as_deref().unwrap_or(""), query_prefix.as_deref().unwrap_or(""))
            }
            EmbedderSpec::Http { base_url, base_urls, model, max_retries, .. } => {
                format!("http:{base_url}:{model}|{}|{max_retries:?}", base_urls.join(","))
            }
        }
    }

    /// The dimension the config promises, if any.
    pub fn declared_dimension(&self) -> Option<usize> {
        match self {
            EmbedderSpec::Local { dimension, .. } | EmbedderSpec::Http { dimension, .. } => *dimension,
        }
    }
}

/// `http://host:11434` -> `http://host:11434/v1`; a URL that already ends in a version
/// segment (`/v1`) is kept.
pub(crate) fn openai_base(base: &str) -> String {
    let b = base.trim_end_matches('/');
    let last = b.rsplit('/').next().unwrap_or("");
    if last.len() >= 2 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit()) {
        b.to_string()
    } else {
        format!("{b}/v1")
    }
}

/// Split a local embedding model id into the model and the precision its suffix asks
/// for, in the original's `model:QUANT` convention: `org/model:int8` (also `:q8` and
/// `:q8_0`) runs the encoder's linear layers in int8 ([`Precision::Int8`]),
/// `:bf16` in bfloat16 ([`Precision::Bf16`]), `:fp32` (also `:f32`) in fp32 (suffixes
/// in any case). No suffix is [`Precision::native`]: bf16 where the CPU has AVX-512
/// BF16 (on AMX tiles where it has those), else int8 where it has AVX-512 VNNI, AVX-VNNI
/// or AVX2, else fp32.
///
/// ```
/// use llamafarm_core::embed::{split_precision, Precision};
/// let id = "sentence-transformers/all-MiniLM-L6-v2";
/// assert_eq!(split_precision("sentence-transformers/all-MiniLM-L6-v2:int8"), (id, Precision::Int8));
/// assert_eq!(split_precision("sentence-transformers/all-MiniLM-L6-v2:FP32"), (id, Precision::F32));
/// assert_eq!(split_precision("sentence-transformers/all-MiniLM-L6-v2:bf16"), (id, Precision::Bf16));
/// assert_eq!(split_precision(id), (id, Precision::native()));
/// ```
pub fn split_precision(id: &str) -> (&str, Precision) {
    if let Some((base, q)) = id.rsplit_once(':') {
        if !base.is_empty() {
            let is = |names: &[&str]| names.iter().any(|s| q.eq_ignore_ascii_case(s));
            if is(&["int8", "q8", "q8_0"]) {
                return (base, Precision::Int8);
            }
            if is(&["bf16"]) {
                return (base, Precision::Bf16);
            }
            if is(&["fp32", "f32"]) {
                return (base, Precision::F32);
            }
        }
    }
    (id, Precision::native())
}

/// L2-normalise in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut d, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        d / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_switches() {
        assert_eq!(EmbedOptions::from_vars(|_| None), EmbedOptions::default());
        let vars = [("LF_NO_AVX512", "1"), ("LF_NO_VNNI", "0"), ("LF_INT8_KERNEL", "avx2"), ("LF_EMBED_BATCH_TOKENS", "512"), ("LF_FP32_ATTENTION", "yes")];
        let o = EmbedOptions::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()));
        assert!(o.kernels.no_avx512 && !o.kernels.no_vnni && o.fp32_attention && !o.kernels.int8_act8);
        assert_eq!((o.kernels.int8_kernel, o.batch_tokens), (Some(Int8Kernel::Avx2), 512));
        let o = EmbedOptions::from_vars(|n| (n == "LF_EMBED_BATCH_TOKENS").then(|| "0".to_string()));
        assert_eq!(o.batch_tokens, EmbedOptions::default().batch_tokens);
    }

    #[test]
    fn specs_from_config() {
        let s = EmbeddingStrategyConfig {
            name: "e".into(),
            kind: "OllamaEmbedder".into(),
            config: Some(serde_json::json!({"base_url": "http://h:11434", "dimension": 768}).as_object().unwrap().clone()),
            ..Default::default()
        };
        match EmbedderSpec::from_strategy(&s).unwrap() {
            EmbedderSpec::Http { base_url, model, dimension, .. } => {
                assert_eq!((base_url.as_str(), model.as_str(), dimension), ("http://h:11434/v1", "nomic-embed-text", Some(768)));
            }
            other => panic!("{other:?}"),
        }
        let s = EmbeddingStrategyConfig { name: "e".into(), kind: "UniversalEmbedder".into(), ..Default::default() };
        assert_eq!(EmbedderSpec::from_strategy(&s).unwrap().cache_key(), format!("local:{DEFAULT_EMBEDDING_MODEL}"));
        assert_eq!(openai_base("http://x:8000/v1/"), "http://x:8000/v1");
        // Prefixes: the model card's by default, the config's when given ("" for none).
        let local = |cfg: serde_json::Value| {
            let s = EmbeddingStrategyConfig { name: "e".into(), kind: "HuggingFaceEmbedder".into(), config: cfg.as_object().cloned(), ..Default::default() };
            match EmbedderSpec::from_strategy(&s).unwrap() {
                EmbedderSpec::Local { document_prefix, query_prefix, .. } => (document_prefix, query_prefix),
                other => panic!("{other:?}"),
            }
        };
        let nomic = "nomic-ai/nomic-embed-text-v1.5";
        assert_eq!(local(serde_json::json!({"model": nomic})), (Some("search_document: ".into()), Some("search_query: ".into())));
        assert_eq!(local(serde_json::json!({"model": nomic, "document_prefix": "", "query_prefix": "q: "})), (None, Some("q: ".into())));
        assert_eq!(local(serde_json::json!({})), (None, None));
    }
}
