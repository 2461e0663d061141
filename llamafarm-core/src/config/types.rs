//! Typed `llamafarm.yaml`.
//!
//! Every key of the original's `config/schema.yaml` and `rag/schema.yaml` has a
//! field here. Optional keys are `Option`s so that a load/save round trip keeps
//! exactly the keys the user wrote, and every struct carries an `extra` map
//! (`#[serde(flatten)]`) that keeps keys we do not model. Component-specific
//! `config:` blocks (a parser's chunk size, a store's collection name, ...) stay
//! free-form maps here; the engines that use them read them through typed views.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Unknown keys, kept verbatim and written back on save.
pub type Extra = Map<String, Value>;

/// A free-form `config:` block.
pub type ConfigMap = Map<String, Value>;

/// The whole `llamafarm.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaFarmConfig {
    /// Always `v1`.
    pub version: String,
    /// Project name.
    pub name: String,
    /// Project namespace.
    pub namespace: String,
    /// Reusable components (top-level form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsDefinition>,
    /// Named prompt sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<PromptSet>>,
    /// Retrieval-augmented generation: databases and processing strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagConfig>,
    /// Datasets (uploaded files and how they are processed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasets: Option<Vec<DatasetConfig>>,
    /// Models available to chat.
    pub runtime: RuntimeConfig,
    /// Model Context Protocol servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpConfig>,
    /// Voice chat settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceConfig>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `prompts[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSet {
    /// `^[a-z][a-z0-9_]*$`.
    pub name: String,
    /// The messages of the set.
    #[serde(default)]
    pub messages: Vec<PromptMessage>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One message of a prompt set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// May contain `{{var}}` and `{{var | default}}`.
    pub content: String,
    /// Tool call id (tool messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `datasets[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetConfig {
    /// Dataset name (a safe path segment).
    pub name: String,
    /// Processing strategy; defaults to `universal_rag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_strategy: Option<String>,
    /// Target database.
    pub database: String,
    /// Process uploads immediately (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_process: Option<bool>,
    /// SHA-256 hashes of the files in the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl DatasetConfig {
    /// The processing strategy, with the original's default.
    pub fn strategy(&self) -> &str {
        self.data_processing_strategy.as_deref().unwrap_or(crate::config::BUILTIN_STRATEGY)
    }
}

/// `runtime`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Name of the default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// The models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelConfig>>,
    /// Legacy single-model form: `runtime: {provider, model}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Legacy single-model form: the model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Legacy single-model form: base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `runtime.models[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Unique model name within the project.
    pub name: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `openai`, `ollama`, `lemonade` or `universal`.
    pub provider: String,
    /// Model id; for GGUF `org/repo:QUANT`.
    pub model: String,
    /// Provider base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Provider API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Structured-output mode (tools, json, md_json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructor_mode: Option<String>,
    /// Extra request parameters (temperature, top_p, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_api_parameters: Option<ConfigMap>,
    /// Provider-specific body parameters (n_ctx, n_threads, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<ConfigMap>,
    /// Encoder (BERT-style) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_config: Option<EncoderConfig>,
    /// Prompt set names, merged in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    /// MCP servers (omitted = all, empty = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<String>>,
    /// `native_api` (default) or `prompt_based`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_strategy: Option<String>,
    /// Tools offered to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolConfig>>,
    /// Never unload this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_loaded: Option<bool>,
    /// Per-model RAG default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag_enabled: Option<bool>,
    /// Per-model default database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    /// Marks the default model (used by the templates; not in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Prompt format hint used by the templates (not in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_format: Option<String>,
    /// More servers of the same model beside `base_url` (a fleet; ours, not in the
    /// original's schema): requests go round-robin to the healthy ones, and a failed one is
    /// retried on another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_urls: Option<Vec<String>>,
    /// Seconds to wait for a remote model's response to start (default 600; ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<f64>,
    /// How many other attempts a failed remote request gets (default: one per other
    /// server, at least 1; ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `runtime.models[].encoder_config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Maximum sequence length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<i64>,
    /// Flash attention on CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_flash_attention: Option<bool>,
    /// `embedding`, `classification`, `reranking` or `ner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `runtime.models[].tools[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolConfig {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ConfigMap>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `mcp`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct McpConfig {
    /// The servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<McpServerConfig>>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `mcp.servers[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct McpServerConfig {
    /// Server identifier.
    pub name: String,
    /// `stdio`, `http` or `sse`.
    pub transport: String,
    /// Command to launch (stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments (stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment (stdio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<ConfigMap>,
    /// Base URL (http/sse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// HTTP headers (http/sse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<ConfigMap>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `voice`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VoiceConfig {
    /// Enable the voice endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A `runtime.models[].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<String>,
    /// Text to speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts: Option<TtsConfig>,
    /// Speech to text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt: Option<SttConfig>,
    /// Let the LLM think before speaking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// End-of-turn detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_detection: Option<TurnDetectionConfig>,
    /// Emotion detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotion: Option<EmotionConfig>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `voice.tts`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TtsConfig {
    /// kokoro, chatterbox-turbo, pocket-tts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Voice id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// 0.5 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Never unload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_loaded: Option<bool>,
    /// Voice cloning profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_profiles: Option<ConfigMap>,
    /// 0.1 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// 1 to 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// 1 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `voice.stt`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SttConfig {
    /// tiny, base, small, medium, large-v3, distil-large-v3-turbo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Language code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Never unload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_loaded: Option<bool>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `voice.turn_detection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TurnDetectionConfig {
    /// On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// 0.1 to 2.0 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_silence_duration: Option<f64>,
    /// 0.3 to 5.0 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_silence_duration: Option<f64>,
    /// 0.5 to 10.0 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silence_duration: Option<f64>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `voice.emotion`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EmotionConfig {
    /// On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Classifier model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_threshold: Option<f64>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rag`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RagConfig {
    /// Reusable components (rag-level form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsDefinition>,
    /// Default database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_database: Option<String>,
    /// Databases (at least one when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<DatabaseConfig>>,
    /// Processing strategies; empty means the built-in `universal_rag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_strategies: Option<Vec<DataProcessingStrategy>>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rag.databases[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// `^[a-z][a-z0-9_]*$`, at most 50 characters.
    pub name: String,
    /// `ChromaStore` or `QdrantStore`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Store settings (collection_name, distance_function, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMap>,
    /// Embedding strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_strategies: Option<Vec<EmbeddingStrategyConfig>>,
    /// Reference to `components.embedding_strategies[].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_strategy: Option<String>,
    /// Retrieval strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_strategies: Option<Vec<RetrievalStrategyConfig>>,
    /// Reference to `components.retrieval_strategies[].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_strategy: Option<String>,
    /// Name of the default embedding strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_embedding_strategy: Option<String>,
    /// Name of the default retrieval strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retrieval_strategy: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An embedding strategy (in a database or in `components`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EmbeddingStrategyConfig {
    /// Strategy name.
    pub name: String,
    /// One of the embedder types.
    #[serde(rename = "type")]
    pub kind: String,
    /// Embedder settings (model, dimension, batch_size, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMap>,
    /// Optional condition expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Priority (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A retrieval strategy (in a database or in `components`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RetrievalStrategyConfig {
    /// Strategy name.
    pub name: String,
    /// One of the retrieval types.
    #[serde(rename = "type")]
    pub kind: String,
    /// Strategy settings (top_k, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMap>,
    /// Marks the database's default strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rag.data_processing_strategies[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataProcessingStrategy {
    /// `^[a-z][a-z0-9_]*$`, at most 50 characters.
    pub name: String,
    /// At most 500 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parsers, inline or by component name (at least one).
    #[serde(default)]
    pub parsers: Vec<ParserRef>,
    /// Metadata extractors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extractors: Option<Vec<ExtractorConfig>>,
    /// Keys we do not model (e.g. the advanced template's `directory_config`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A parser given inline or as the name of a `components.parsers[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum ParserRef {
    /// `parsers: [my_pdf_parser]`.
    Named(String),
    /// `parsers: [{type: PDFParser_PyPDF2, ...}]`.
    Inline(ParserConfig),
}

/// A parser definition (inline, or named in `components.parsers`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParserConfig {
    /// Component name (only in `components.parsers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Parser type, e.g. `PDFParser_PyPDF2` or `UniversalParser`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Parser settings (chunk_size, chunk_overlap, chunk_strategy, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMap>,
    /// File extensions such as `.pdf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_extensions: Option<Vec<String>>,
    /// Globs such as `*.pdf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_include_patterns: Option<Vec<String>>,
    /// 0 to 1000, lower is tried first (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// MIME types handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_types: Option<Vec<String>>,
    /// Parser type to try when this one fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_parser: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `extractors[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExtractorConfig {
    /// Extractor type, e.g. `KeywordExtractor`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Extractor settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigMap>,
    /// Document types this extractor is required for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for: Option<Vec<String>>,
    /// Optional condition expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Globs of files this extractor applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_include_patterns: Option<Vec<String>>,
    /// 0 to 1000 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `components` (top level or under `rag`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ComponentsDefinition {
    /// Named embedding strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_strategies: Option<Vec<EmbeddingStrategyConfig>>,
    /// Named retrieval strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_strategies: Option<Vec<RetrievalStrategyConfig>>,
    /// Named parsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsers: Option<Vec<ParserConfig>>,
    /// Defaults by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ComponentDefaults>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `components.defaults`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ComponentDefaults {
    /// Default embedding strategy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_strategy: Option<String>,
    /// Default retrieval strategy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_strategy: Option<String>,
    /// Default parser name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    /// Keys we do not model.
    #[serde(flatten)]
    pub extra: Extra,
}
