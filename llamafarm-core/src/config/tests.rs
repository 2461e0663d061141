use super::*;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream")
}

/// Load, validate, save, reload: the second load equals the first, and every key
/// of the original document is still there.
fn round_trip(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = LlamaFarmConfig::from_yaml_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let saved = cfg.to_yaml_string().unwrap();
    let again = LlamaFarmConfig::from_yaml_str(&saved).unwrap();
    assert_eq!(cfg, again, "{}", path.display());
    let original: Value = parse_yaml_value(&text).unwrap();
    let after: Value = parse_yaml_value(&saved).unwrap();
    assert_same_keys(&original, &after, "", path);
}

/// Every key and leaf of `a` is in `b` with the same value (explicit nulls may be dropped).
fn assert_same_keys(a: &Value, b: &Value, at: &str, file: &Path) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                if v.is_null() {
                    continue;
                }
                let w = y.get(k).unwrap_or_else(|| panic!("{}: key {at}.{k} lost", file.display()));
                assert_same_keys(v, w, &format!("{at}.{k}"), file);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{}: {at}", file.display());
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_same_keys(v, w, &format!("{at}[{i}]"), file);
            }
        }
        (Value::Number(x), Value::Number(y)) => assert_eq!(x.as_f64(), y.as_f64(), "{}: {at}", file.display()),
        _ => assert_eq!(a, b, "{}: {at}", file.display()),
    }
}

#[test]
fn upstream_templates_and_examples_load_unchanged() {
    for f in ["template_default.yaml", "template_advanced.yaml", "example_fda_rag.llamafarm.yaml", "example_quick_rag.llamafarm.yaml"] {
        round_trip(&fixtures().join(f));
    }
}

#[test]
fn shared_example_projects_load_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/llamafarm-examples");
    let Ok(entries) = std::fs::read_dir(&root) else {
        eprintln!("SKIP shared_example_projects_load_unchanged: {} is absent", root.display());
        return;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path().join("llamafarm.yaml");
        if p.is_file() {
            round_trip(&p);
            n += 1;
        }
    }
    assert!(n >= 5, "expected the five example projects, found {n}");
}

#[test]
fn advanced_template_keeps_unmodelled_keys() {
    let text = std::fs::read_to_string(fixtures().join("template_advanced.yaml")).unwrap();
    let cfg = LlamaFarmConfig::from_yaml_str(&text).unwrap();
    let s = &cfg.rag.as_ref().unwrap().data_processing_strategies.as_ref().unwrap()[0];
    assert!(s.extra.contains_key("directory_config"));
    assert!(cfg.to_yaml_string().unwrap().contains("directory_config"));
}

fn base() -> Value {
    serde_json::json!({
        "version": "v1", "name": "p", "namespace": "n",
        "runtime": {"models": [{"name": "m", "provider": "universal", "model": "a/b:Q4_1"}]},
        "rag": {"databases": [{"name": "main_db", "type": "ChromaStore",
            "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
            "retrieval_strategies": [{"name": "r", "type": "BasicSimilarityStrategy", "default": true}]}]},
        "datasets": [{"name": "d", "database": "main_db"}]
    })
}

fn issues(v: Value) -> Vec<String> {
    match LlamaFarmConfig::from_value(v) {
        Ok(_) => vec![],
        Err(Error::Validation(list)) => list.iter().map(|i| i.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn validation_names_path_and_rule() {
    assert!(issues(base()).is_empty());

    let mut v = base();
    v["rag"]["databases"][0]["name"] = "Main-DB".into();
    let got = issues(v);
    assert!(got.iter().any(|s| s == "rag.databases[0].name: must match ^[a-z][a-z0-9_]*$"), "{got:?}");

    let mut v = base();
    v["runtime"]["models"][0]["provider"] = "llamacpp".into();
    let got = issues(v);
    assert!(got.iter().any(|s| s.starts_with("runtime.models[0].provider: must be one of openai, ollama")), "{got:?}");

    let mut v = base();
    v["datasets"][0]["database"] = "nope".into();
    assert!(issues(v).iter().any(|s| s.starts_with("datasets[0].database: unknown database")));

    let mut v = base();
    v["version"] = "v2".into();
    assert!(issues(v).iter().any(|s| s.starts_with("version:")));

    let mut v = base();
    v["runtime"]["default_model"] = "ghost".into();
    assert!(issues(v).iter().any(|s| s.starts_with("runtime.default_model:")));

    let mut v = base();
    v["rag"]["databases"][0]["retrieval_strategies"][0]["config"] = serde_json::json!({"top_k": 0});
    assert!(issues(v).iter().any(|s| s.contains("retrieval_strategies[0].config.top_k")));

    let mut v = base();
    v["rag"]["databases"] = serde_json::json!([]);
    assert!(issues(v).iter().any(|s| s.starts_with("rag.databases: must contain at least 1")));

    let mut v = base();
    v["datasets"][0]["name"] = "../../etc".into();
    assert!(issues(v).iter().any(|s| s.starts_with("datasets[0].name:")));
}

#[test]
fn store_types_and_chroma_server_settings_are_checked() {
    let mut v = base();
    v["rag"]["databases"][0]["type"] = "QdrantStore".into();
    let got = issues(v);
    assert!(got.iter().any(|s| s.starts_with("rag.databases[0].type: QdrantStore is not supported yet")), "{got:?}");

    let mut v = base();
    v["rag"]["databases"][0]["config"] = serde_json::json!({"host": "localhost", "port": 8000, "collection_name": "documents"});
    assert!(issues(v).is_empty());
    let mut v = base();
    v["rag"]["databases"][0]["config"] = serde_json::json!({"host": "http://localhost/x", "port": 70000, "collection_name": "a"});
    let got = issues(v);
    for want in [
        "rag.databases[0].config.port: must be a port number",
        "rag.databases[0].config.host: must be a host name",
        "rag.databases[0].config.collection_name: 'a' is not",
    ] {
        assert!(got.iter().any(|s| s.starts_with(want)), "{want}: {got:?}");
    }
    // Without a host the collection name is only a label (the embedded store).
    let mut v = base();
    v["rag"]["databases"][0]["config"] = serde_json::json!({"collection_name": "a"});
    assert!(issues(v).is_empty());
}

#[test]
fn type_errors_and_missing_keys_name_the_path() {
    let mut v = base();
    v["runtime"]["models"][0]["keep_loaded"] = "yes".into();
    let got = issues(v);
    assert!(got.iter().any(|s| s.starts_with("runtime.models[0].keep_loaded:")), "{got:?}");

    let mut v = base();
    v.as_object_mut().unwrap().remove("runtime");
    let got = issues(v);
    assert!(got.iter().any(|s| s.contains("missing field `runtime`")), "{got:?}");

    assert!(LlamaFarmConfig::from_yaml_str("version: [").is_err());
    assert!(LlamaFarmConfig::from_yaml_str("- a\n- b\n").is_err());
}

#[test]
fn env_substitution_applies_to_use_not_storage() {
    let vars: crate::config::Vars = [("LF_TEST_BASE_URL_X", "http://10.1.2.3:9000/v1"), ("LF_TEST_DB_NAME_X", "Bad Name")].into_iter().collect();
    let mut v = base();
    v["runtime"]["models"][0]["base_url"] = "${LF_TEST_BASE_URL_X}".into();
    v["runtime"]["models"][0]["api_key"] = "${LF_TEST_UNSET_KEY_X:-none}".into();
    let cfg = LlamaFarmConfig::from_value(v).unwrap();
    assert!(cfg.to_yaml_string().unwrap().contains("${LF_TEST_BASE_URL_X}"));
    let r = cfg.substituted(&vars);
    let m = &r.runtime.models.as_ref().unwrap()[0];
    assert_eq!(m.base_url.as_deref(), Some("http://10.1.2.3:9000/v1"));
    assert_eq!(m.api_key.as_deref(), Some("none"));

    // A variable that fills a patterned field is validated after substitution.
    let mut v = base();
    v["rag"]["default_database"] = "${LF_TEST_DB_NAME_X}".into();
    let cfg = LlamaFarmConfig::from_value_unvalidated(v).unwrap();
    let Err(Error::Validation(list)) = cfg.validate_with(&vars) else { panic!("validates") };
    assert!(list.iter().any(|i| i.to_string().starts_with("rag.default_database: must match")), "{list:?}");
    // Without the variable the name stays `${...}`, which breaks the same rule.
    assert!(cfg.validate().is_err());
    // A default applies when the variable is unset.
    let mut v = base();
    v["rag"]["default_database"] = "${LF_TEST_UNSET_DB_X:-main_db}".into();
    assert!(LlamaFarmConfig::from_value_unvalidated(v).unwrap().validate_with(&vars).is_ok());
}

#[test]
fn legacy_single_model_runtime_and_defaults() {
    let v = serde_json::json!({"version": "v1", "name": "p", "namespace": "n",
        "runtime": {"provider": "ollama", "model": "llama3.2:3b"}});
    let cfg = LlamaFarmConfig::from_value(v).unwrap();
    let m = cfg.default_model().unwrap();
    assert_eq!((m.name.as_str(), m.provider.as_str(), m.model.as_str()), ("default", "ollama", "llama3.2:3b"));

    let mut v = base();
    v["runtime"]["models"] = serde_json::json!([
        {"name": "a", "provider": "openai", "model": "x"},
        {"name": "b", "provider": "openai", "model": "y", "default": true}]);
    assert_eq!(LlamaFarmConfig::from_value(v.clone()).unwrap().default_model_name().as_deref(), Some("b"));
    v["runtime"]["default_model"] = "a".into();
    assert_eq!(LlamaFarmConfig::from_value(v).unwrap().default_model_name().as_deref(), Some("a"));
}

#[test]
fn component_references_resolve() {
    let mut v = base();
    v["components"] = serde_json::json!({
        "embedding_strategies": [{"name": "shared_emb", "type": "SentenceTransformerEmbedder", "config": {"model": "m"}}],
        "retrieval_strategies": [{"name": "shared_ret", "type": "BasicSimilarityStrategy"}],
        "parsers": [{"name": "pdf", "type": "PDFParser_PyPDF2", "file_extensions": [".pdf"]}],
        "defaults": {"retrieval_strategy": "shared_ret"}
    });
    let db = &mut v["rag"]["databases"][0];
    db.as_object_mut().unwrap().remove("embedding_strategies");
    db.as_object_mut().unwrap().remove("retrieval_strategies");
    db["embedding_strategy"] = "shared_emb".into();
    v["rag"]["data_processing_strategies"] = serde_json::json!([{"name": "s", "parsers": ["pdf"]}]);
    let cfg = LlamaFarmConfig::from_value(v.clone()).unwrap();
    let db = cfg.database("main_db").unwrap();
    assert_eq!(cfg.embedding_strategies_of(db)[0].kind, "SentenceTransformerEmbedder");
    assert_eq!(cfg.retrieval_strategies_of(db)[0].name, "shared_ret");

    v["rag"]["data_processing_strategies"][0]["parsers"][0] = "missing_parser".into();
    assert!(issues(v).iter().any(|s| s.contains("unknown component parser 'missing_parser'")));
}
