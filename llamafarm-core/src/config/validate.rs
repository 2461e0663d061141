//! The schema's rules (patterns, enums, ranges, lengths) and the cross references
//! the original only checked at run time (a dataset's database must exist, ...).
//! Every issue names its path, e.g. `rag.databases[0].name`.

use super::types::*;
use crate::error::ValidationIssue;
use serde_json::Value;
use std::collections::HashSet;

/// `^[a-z][a-z0-9_]*$`, the schema's identifier pattern.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z')) && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

const IDENT_RULE: &str = "must match ^[a-z][a-z0-9_]*$";
const PROVIDERS: &[&str] = &["openai", "ollama", "lemonade", "universal"];
const TOOL_CALL_STRATEGIES: &[&str] = &["native_api", "prompt_based"];
const ENCODER_TASKS: &[&str] = &["embedding", "classification", "reranking", "ner"];
const TRANSPORTS: &[&str] = &["stdio", "http", "sse"];
const STT_MODELS: &[&str] = &["tiny", "base", "small", "medium", "large-v3", "distil-large-v3-turbo"];
/// Store types of the `Database.type` enum.
pub const DATABASE_TYPES: &[&str] = &["ChromaStore", "QdrantStore"];
/// Embedder types of the schema.
pub const EMBEDDER_TYPES: &[&str] = &["HuggingFaceEmbedder", "OllamaEmbedder", "OpenAIEmbedder", "SentenceTransformerEmbedder", "UniversalEmbedder"];
/// Retrieval strategy types of the schema (legacy names included).
pub const RETRIEVAL_TYPES: &[&str] = &[
    "VectorRetriever",
    "HybridRetriever",
    "BM25Retriever",
    "RerankedRetriever",
    "GraphRetriever",
    "ElasticRetriever",
    "BasicSimilarityStrategy",
    "MetadataFilteredStrategy",
    "MultiQueryStrategy",
    "RerankedStrategy",
    "HybridUniversalStrategy",
    "CrossEncoderRerankedStrategy",
    "MultiTurnRAGStrategy",
];

struct V {
    issues: Vec<ValidationIssue>,
}

impl V {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ValidationIssue { path: path.into(), message: message.into() });
    }
    fn ident(&mut self, path: &str, s: &str, max: Option<usize>) {
        if !is_identifier(s) {
            self.err(path, IDENT_RULE);
        }
        if let Some(max) = max {
            if s.chars().count() > max {
                self.err(path, format!("must be at most {max} characters"));
            }
        }
    }
    fn one_of(&mut self, path: &str, s: &str, allowed: &[&str]) {
        if !allowed.contains(&s) {
            self.err(path, format!("must be one of {}, got '{s}'", allowed.join(", ")));
        }
    }
    fn range_f(&mut self, path: &str, v: Option<f64>, lo: f64, hi: f64) {
        if let Some(x) = v {
            if !(lo..=hi).contains(&x) {
                self.err(path, format!("must be between {lo} and {hi}, got {x}"));
            }
        }
    }
    fn range_i(&mut self, path: &str, v: Option<i64>, lo: i64, hi: i64) {
        if let Some(x) = v {
            if !(lo..=hi).contains(&x) {
                self.err(path, format!("must be between {lo} and {hi}, got {x}"));
            }
        }
    }
    fn unique<'a>(&mut self, path: &str, names: impl Iterator<Item = &'a str>, what: &str) {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if !seen.insert(n) {
                self.err(format!("{path}[{i}].name"), format!("duplicate {what} name '{n}'"));
            }
        }
    }
    /// An integer in a free-form map (e.g. `extra_body.n_threads`), if present.
    fn map_int_min(&mut self, path: &str, map: Option<&ConfigMap>, key: &str, min: i64) {
        let Some(v) = map.and_then(|m| m.get(key)) else { return };
        match v.as_i64() {
            Some(x) if x >= min => {}
            Some(x) => self.err(format!("{path}.{key}"), format!("must be at least {min}, got {x}")),
            None if v.is_null() => {}
            None => self.err(format!("{path}.{key}"), "must be an integer"),
        }
    }
}

pub(crate) fn validate(cfg: &LlamaFarmConfig) -> Vec<ValidationIssue> {
    let mut v = V { issues: Vec::new() };
    if cfg.version != "v1" {
        v.err("version", format!("must be one of v1, got '{}'", cfg.version));
    }
    if cfg.name.trim().is_empty() {
        v.err("name", "must not be empty");
    }
    if cfg.namespace.trim().is_empty() {
        v.err("namespace", "must not be empty");
    }

    // prompts
    let prompts = cfg.prompts.as_deref().unwrap_or(&[]);
    for (i, p) in prompts.iter().enumerate() {
        v.ident(&format!("prompts[{i}].name"), &p.name, None);
    }
    v.unique("prompts", prompts.iter().map(|p| p.name.as_str()), "prompt set");
    let prompt_names: HashSet<&str> = prompts.iter().map(|p| p.name.as_str()).collect();

    // mcp
    let mcp_servers = cfg.mcp.as_ref().and_then(|m| m.servers.as_deref()).unwrap_or(&[]);
    for (i, s) in mcp_servers.iter().enumerate() {
        v.one_of(&format!("mcp.servers[{i}].transport"), &s.transport, TRANSPORTS);
    }
    v.unique("mcp.servers", mcp_servers.iter().map(|s| s.name.as_str()), "MCP server");
    let mcp_names: HashSet<&str> = mcp_servers.iter().map(|s| s.name.as_str()).collect();

    // rag
    let db_names: HashSet<&str> = cfg.databases().iter().map(|d| d.name.as_str()).collect();
    if let Some(rag) = &cfg.rag {
        validate_rag(&mut v, cfg, rag);
    }

    // runtime
    let models = cfg.runtime.models.as_deref().unwrap_or(&[]);
    if let Some(p) = &cfg.runtime.provider {
        v.one_of("runtime.provider", p, PROVIDERS);
    }
    for (i, m) in models.iter().enumerate() {
        let path = format!("runtime.models[{i}]");
        if m.name.trim().is_empty() {
            v.err(format!("{path}.name"), "must not be empty");
        }
        v.one_of(&format!("{path}.provider"), &m.provider, PROVIDERS);
        if m.model.trim().is_empty() {
            v.err(format!("{path}.model"), "must not be empty");
        }
        if let Some(t) = &m.tool_call_strategy {
            v.one_of(&format!("{path}.tool_call_strategy"), t, TOOL_CALL_STRATEGIES);
        }
        if let Some(enc) = &m.encoder_config {
            if let Some(t) = &enc.task {
                v.one_of(&format!("{path}.encoder_config.task"), t, ENCODER_TASKS);
            }
            if let Some(l) = enc.max_length {
                if l < 1 {
                    v.err(format!("{path}.encoder_config.max_length"), format!("must be at least 1, got {l}"));
                }
            }
        }
        let eb = m.extra_body.as_ref();
        v.map_int_min(&format!("{path}.extra_body"), eb, "n_batch", 1);
        v.map_int_min(&format!("{path}.extra_body"), eb, "n_gpu_layers", -1);
        v.map_int_min(&format!("{path}.extra_body"), eb, "n_threads", 1);
        v.map_int_min(&format!("{path}.extra_body"), eb, "n_ctx", 0);
        for (j, p) in m.prompts.as_deref().unwrap_or(&[]).iter().enumerate() {
            if !prompt_names.contains(p.as_str()) {
                v.err(format!("{path}.prompts[{j}]"), format!("unknown prompt set '{p}'"));
            }
        }
        for (j, s) in m.mcp_servers.as_deref().unwrap_or(&[]).iter().enumerate() {
            if !mcp_names.contains(s.as_str()) {
                v.err(format!("{path}.mcp_servers[{j}]"), format!("unknown MCP server '{s}'"));
            }
        }
        for (j, t) in m.tools.as_deref().unwrap_or(&[]).iter().enumerate() {
            v.one_of(&format!("{path}.tools[{j}].type"), &t.kind, &["function"]);
        }
        if let Some(db) = &m.target_database {
            if !db_names.contains(db.as_str()) {
                v.err(format!("{path}.target_database"), format!("unknown database '{db}'"));
            }
        }
    }
    v.unique("runtime.models", models.iter().map(|m| m.name.as_str()), "model");
    if let Some(d) = &cfg.runtime.default_model {
        if !models.iter().any(|m| &m.name == d) {
            v.err("runtime.default_model", format!("unknown model '{d}'"));
        }
    }

    // datasets
    let datasets = cfg.dataset_list();
    let strategies = cfg.strategy_names();
    for (i, d) in datasets.iter().enumerate() {
        let path = format!("datasets[{i}]");
        if let Err(e) = crate::paths::validate_segment(crate::ResourceKind::Dataset, &d.name) {
            v.err(format!("{path}.name"), e.to_string());
        }
        if cfg.rag.is_some() && !db_names.contains(d.database.as_str()) {
            v.err(format!("{path}.database"), format!("unknown database '{}'", d.database));
        }
        if let Some(s) = &d.data_processing_strategy {
            if !strategies.iter().any(|x| x == s) {
                v.err(format!("{path}.data_processing_strategy"), format!("unknown data processing strategy '{s}' (defined: {})", strategies.join(", ")));
            }
        }
        for (j, h) in d.files.as_deref().unwrap_or(&[]).iter().enumerate() {
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                v.err(format!("{path}.files[{j}]"), "must be a SHA-256 hex digest");
            }
        }
    }
    v.unique("datasets", datasets.iter().map(|d| d.name.as_str()), "dataset");

    // voice
    if let Some(voice) = &cfg.voice {
        if let Some(m) = &voice.llm_model {
            if !models.iter().any(|x| &x.name == m) && !cfg.models().iter().any(|x| &x.name == m) {
                v.err("voice.llm_model", format!("unknown model '{m}'"));
            }
        }
        if let Some(t) = &voice.tts {
            v.range_f("voice.tts.speed", t.speed, 0.5, 2.0);
            v.range_f("voice.tts.temperature", t.temperature, 0.1, 2.0);
            v.range_i("voice.tts.top_k", t.top_k, 1, 5000);
            v.range_f("voice.tts.top_p", t.top_p, 0.0, 1.0);
            v.range_f("voice.tts.repetition_penalty", t.repetition_penalty, 1.0, 2.0);
        }
        if let Some(s) = voice.stt.as_ref().and_then(|s| s.model.as_ref()) {
            v.one_of("voice.stt.model", s, STT_MODELS);
        }
        if let Some(t) = &voice.turn_detection {
            v.range_f("voice.turn_detection.base_silence_duration", t.base_silence_duration, 0.1, 2.0);
            v.range_f("voice.turn_detection.thinking_silence_duration", t.thinking_silence_duration, 0.3, 5.0);
            v.range_f("voice.turn_detection.max_silence_duration", t.max_silence_duration, 0.5, 10.0);
        }
        if let Some(e) = &voice.emotion {
            v.range_f("voice.emotion.confidence_threshold", e.confidence_threshold, 0.0, 1.0);
        }
    }

    if let Some(c) = &cfg.components {
        validate_components(&mut v, "components", c);
    }
    v.issues
}

fn validate_rag(v: &mut V, cfg: &LlamaFarmConfig, rag: &RagConfig) {
    let comps = cfg.components();
    if let Some(c) = &rag.components {
        validate_components(v, "rag.components", c);
    }
    let named_emb: HashSet<String> = comps.embedding_strategies.iter().flatten().map(|s| s.name.clone()).collect();
    let named_ret: HashSet<String> = comps.retrieval_strategies.iter().flatten().map(|s| s.name.clone()).collect();
    let named_parsers: HashSet<String> = comps.parsers.iter().flatten().filter_map(|p| p.name.clone()).collect();

    if let Some(dbs) = &rag.databases {
        if dbs.is_empty() {
            v.err("rag.databases", "must contain at least 1 database");
        }
        for (i, db) in dbs.iter().enumerate() {
            let path = format!("rag.databases[{i}]");
            v.ident(&format!("{path}.name"), &db.name, Some(50));
            v.one_of(&format!("{path}.type"), &db.kind, DATABASE_TYPES);
            validate_store_config(v, &path, db);
            let embs = db.embedding_strategies.as_deref().unwrap_or(&[]);
            for (j, e) in embs.iter().enumerate() {
                v.one_of(&format!("{path}.embedding_strategies[{j}].type"), &e.kind, EMBEDDER_TYPES);
            }
            v.unique(&format!("{path}.embedding_strategies"), embs.iter().map(|e| e.name.as_str()), "embedding strategy");
            let rets = db.retrieval_strategies.as_deref().unwrap_or(&[]);
            for (j, r) in rets.iter().enumerate() {
                v.one_of(&format!("{path}.retrieval_strategies[{j}].type"), &r.kind, RETRIEVAL_TYPES);
                validate_retrieval_config(v, &format!("{path}.retrieval_strategies[{j}].config"), r);
            }
            v.unique(&format!("{path}.retrieval_strategies"), rets.iter().map(|r| r.name.as_str()), "retrieval strategy");
            if let Some(r) = &db.embedding_strategy {
                v.ident(&format!("{path}.embedding_strategy"), r, None);
                if !named_emb.contains(r) {
                    v.err(format!("{path}.embedding_strategy"), format!("unknown component embedding strategy '{r}'"));
                }
            }
            if let Some(r) = &db.retrieval_strategy {
                v.ident(&format!("{path}.retrieval_strategy"), r, None);
                if !named_ret.contains(r) {
                    v.err(format!("{path}.retrieval_strategy"), format!("unknown component retrieval strategy '{r}'"));
                }
            }
            let effective_emb = cfg.embedding_strategies_of(db);
            if let Some(d) = &db.default_embedding_strategy {
                if !effective_emb.iter().any(|e| &e.name == d) {
                    v.err(format!("{path}.default_embedding_strategy"), format!("unknown embedding strategy '{d}'"));
                }
            }
            let effective_ret = cfg.retrieval_strategies_of(db);
            if let Some(d) = &db.default_retrieval_strategy {
                if !effective_ret.iter().any(|r| &r.name == d) {
                    v.err(format!("{path}.default_retrieval_strategy"), format!("unknown retrieval strategy '{d}'"));
                }
            }
        }
        v.unique("rag.databases", dbs.iter().map(|d| d.name.as_str()), "database");
    }
    if let Some(d) = &rag.default_database {
        v.ident("rag.default_database", d, None);
        if !cfg.databases().iter().any(|db| &db.name == d) {
            v.err("rag.default_database", format!("unknown database '{d}'"));
        }
    }
    if let Some(strats) = &rag.data_processing_strategies {
        for (i, s) in strats.iter().enumerate() {
            let path = format!("rag.data_processing_strategies[{i}]");
            v.ident(&format!("{path}.name"), &s.name, Some(50));
            if let Some(d) = &s.description {
                if d.chars().count() > 500 {
                    v.err(format!("{path}.description"), "must be at most 500 characters");
                }
            }
            if s.parsers.is_empty() {
                v.err(format!("{path}.parsers"), "must contain at least 1 parser");
            }
            for (j, p) in s.parsers.iter().enumerate() {
                let ppath = format!("{path}.parsers[{j}]");
                match p {
                    ParserRef::Named(n) => {
                        v.ident(&ppath, n, None);
                        if !named_parsers.contains(n) {
                            v.err(&ppath, format!("unknown component parser '{n}'"));
                        }
                    }
                    ParserRef::Inline(p) => validate_parser(v, &ppath, p),
                }
            }
            for (j, e) in s.extractors.as_deref().unwrap_or(&[]).iter().enumerate() {
                v.range_i(&format!("{path}.extractors[{j}].priority"), e.priority, 0, 1000);
                if e.kind.trim().is_empty() {
                    v.err(format!("{path}.extractors[{j}].type"), "must not be empty");
                }
            }
        }
        v.unique("rag.data_processing_strategies", strats.iter().map(|s| s.name.as_str()), "data processing strategy");
    }
}

fn validate_components(v: &mut V, path: &str, c: &ComponentsDefinition) {
    for (i, e) in c.embedding_strategies.as_deref().unwrap_or(&[]).iter().enumerate() {
        v.ident(&format!("{path}.embedding_strategies[{i}].name"), &e.name, None);
        v.one_of(&format!("{path}.embedding_strategies[{i}].type"), &e.kind, EMBEDDER_TYPES);
    }
    for (i, r) in c.retrieval_strategies.as_deref().unwrap_or(&[]).iter().enumerate() {
        v.ident(&format!("{path}.retrieval_strategies[{i}].name"), &r.name, None);
        v.one_of(&format!("{path}.retrieval_strategies[{i}].type"), &r.kind, RETRIEVAL_TYPES);
        validate_retrieval_config(v, &format!("{path}.retrieval_strategies[{i}].config"), r);
    }
    for (i, p) in c.parsers.as_deref().unwrap_or(&[]).iter().enumerate() {
        let ppath = format!("{path}.parsers[{i}]");
        match &p.name {
            Some(n) => v.ident(&format!("{ppath}.name"), n, None),
            None => v.err(format!("{ppath}.name"), "is required"),
        }
        validate_parser(v, &ppath, p);
    }
    if let Some(d) = &c.defaults {
        for (k, val) in [("embedding_strategy", &d.embedding_strategy), ("retrieval_strategy", &d.retrieval_strategy), ("parser", &d.parser)] {
            if let Some(val) = val {
                v.ident(&format!("{path}.defaults.{k}"), val, None);
            }
        }
    }
}

fn validate_parser(v: &mut V, path: &str, p: &ParserConfig) {
    match &p.kind {
        Some(t) => {
            let ok = t == "DirectoryParser"
                || t == "auto"
                || (t.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && t.contains("Parser"));
            if !ok {
                v.err(format!("{path}.type"), format!("must match ^[A-Za-z][A-Za-z0-9_]*Parser[A-Za-z0-9_]*$|^DirectoryParser$, got '{t}'"));
            }
        }
        None => v.err(format!("{path}.type"), "is required"),
    }
    for (k, ext) in p.file_extensions.as_deref().unwrap_or(&[]).iter().enumerate() {
        let ok = ext.len() > 1 && ext.starts_with('.') && ext[1..].chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            v.err(format!("{path}.file_extensions[{k}]"), format!("must match ^\\.[a-zA-Z0-9]+$, got '{ext}'"));
        }
    }
    v.range_i(&format!("{path}.priority"), p.priority, 0, 1000);
    if let Some(cfg) = &p.config {
        for key in ["chunk_size", "chunk_overlap", "min_chunk_size", "max_chunk_size"] {
            v.map_int_min(&format!("{path}.config"), Some(cfg), key, 0);
        }
    }
}

/// Settings the engine reads from a retrieval strategy's `config`.
fn validate_retrieval_config(v: &mut V, path: &str, r: &RetrievalStrategyConfig) {
    let Some(cfg) = &r.config else { return };
    for key in ["top_k", "initial_k", "final_k"] {
        if let Some(x) = cfg.get(key) {
            match x.as_i64() {
                Some(n) if (1..=1000).contains(&n) => {}
                _ if x.is_null() => {}
                _ => v.err(format!("{path}.{key}"), format!("must be an integer between 1 and 1000, got {x}")),
            }
        }
    }
    if let Some(x) = cfg.get("score_threshold") {
        if !x.is_null() && !x.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)) {
            v.err(format!("{path}.score_threshold"), format!("must be a number between 0 and 1, got {x}"));
        }
    }
    if let Some(Value::String(m)) = cfg.get("distance_metric") {
        let allowed = ["cosine", "euclidean", "manhattan", "dot", "l2", "ip"];
        if !allowed.contains(&m.as_str()) {
            v.err(format!("{path}.distance_metric"), format!("must be one of {}, got '{m}'", allowed.join(", ")));
        }
    }
}

/// A database's store: `QdrantStore` has no client yet (refused rather than served by
/// the embedded store under its name); a `ChromaStore` with a `host` needs a valid port
/// and a collection name the Chroma server accepts.
fn validate_store_config(v: &mut V, path: &str, db: &DatabaseConfig) {
    if db.kind == "QdrantStore" {
        v.err(format!("{path}.type"), "QdrantStore is not supported yet: use ChromaStore (the embedded store, or a Chroma server with config.host and config.port)");
        return;
    }
    let Some(c) = db.config.as_ref() else { return };
    if let Some(p) = c.get("port").filter(|p| !p.is_null()) {
        if !p.as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
            v.err(format!("{path}.config.port"), format!("must be a port number (1-65535), got {p}"));
        }
    }
    if let Some(h) = c.get("host").filter(|h| !h.is_null()) {
        if !h.as_str().is_some_and(|h| !h.trim().is_empty() && !h.contains(['/', ' ', '?', '#'])) {
            v.err(format!("{path}.config.host"), format!("must be a host name or address (no scheme or path), got {h}"));
        }
        let name = c.get("collection_name").and_then(|n| n.as_str()).unwrap_or("documents");
        if !crate::store::ChromaConfig::valid_collection(name) {
            v.err(
                format!("{path}.config.collection_name"),
                format!("'{name}' is not a Chroma collection name (3-512 characters of a-z, A-Z, 0-9, '.', '_', '-', starting and ending with a letter or digit)"),
            );
        }
    }
}
