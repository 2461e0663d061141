//! Property tests (`proptest`) over the code that reads what users send: the config
//! loader, `${VAR}` substitution, the chunkers, every parser and the metadata filter.
//! None may panic on any input, and the invariants below hold.

use crate::config::{substitute_env_with, LlamaFarmConfig};
use crate::ingest::chunk::{chunk, ChunkConfig};
use crate::ingest::parse::{ParseInput, ParsedDoc, Registry, Section};
use crate::store::MetadataFilter;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z$]{0,6}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop_oneof!["[a-z]{1,4}", "\\$(eq|ne|gt|gte|lt|lte|in|nin|or|x)"], inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `${VAR}` substitution of one string.
fn substitute_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut v = Value::String(s.to_string());
    substitute_env_with(&mut v, lookup);
    v.as_str().unwrap_or_default().to_string()
}

/// Every non-whitespace character of `s`, counted.
fn letters(s: &str) -> std::collections::HashMap<char, usize> {
    let mut m = std::collections::HashMap::new();
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        *m.entry(c).or_default() += 1;
    }
    m
}

const TEMPLATE: &str = include_str!("../../examples/projects/local_notes/llamafarm.yaml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any text, YAML or not, loads or fails with an error.
    #[test]
    fn config_loader_never_panics(text in ".{0,300}") {
        let _ = LlamaFarmConfig::from_yaml_str(&text);
    }

    /// A real config with one character changed loads or fails with an error; a loaded
    /// config writes back to YAML that loads to the same config.
    #[test]
    fn mutated_configs_load_or_fail_cleanly(at in 0usize..4000, c in any::<char>()) {
        let mut chars: Vec<char> = TEMPLATE.chars().collect();
        let i = at % chars.len();
        chars[i] = c;
        let text: String = chars.into_iter().collect();
        if let Ok(cfg) = LlamaFarmConfig::from_yaml_str(&text) {
            let again = LlamaFarmConfig::from_yaml_str(&cfg.to_yaml_string().unwrap()).unwrap();
            prop_assert_eq!(again.to_value(), cfg.to_value());
        }
    }

    /// Text without `$` is unchanged; a set variable is replaced, an unset one takes its
    /// default or stays as written; `$${` escapes.
    #[test]
    fn substitution(prefix in "[^$]{0,20}", name in "[A-Z_][A-Z0-9_]{0,8}", value in "[^$]{0,12}", default in "[a-z ]{0,8}", noise in ".{0,40}") {
        let set = |n: &str| (n == name).then(|| value.clone());
        let unset = |_: &str| None;
        prop_assert_eq!(substitute_str(&prefix, &set), prefix.clone());
        prop_assert_eq!(substitute_str(&format!("{prefix}${{{name}}}"), &set), format!("{prefix}{value}"));
        prop_assert_eq!(substitute_str(&format!("${{{name}:-{default}}}"), &unset), default.clone());
        prop_assert_eq!(substitute_str(&format!("${{{name}}}"), &unset), format!("${{{name}}}"));
        prop_assert_eq!(substitute_str(&format!("$${{{name}}}"), &set), format!("${{{name}}}"));
        let _ = substitute_str(&noise, &set);
    }

    /// Every chunking strategy covers the text: each non-whitespace character appears in
    /// the chunks at least as often as in the text; no chunk is blank; `characters`
    /// windows keep to `chunk_size` and repeat no more than the overlap.
    #[test]
    fn chunks_cover_the_text(
        words in prop::collection::vec("[a-zA-Z0-9éß.,!?]{1,12}", 0..120),
        seps in prop::collection::vec(prop_oneof![Just(" "), Just("\n"), Just("\n\n"), Just(". ")], 0..120),
        strategy in prop_oneof![Just("characters"), Just("sentences"), Just("paragraphs"), Just("sections"), Just("rows")],
        size in 1usize..200,
        overlap_pct in 0usize..60,
        min in 0usize..60,
    ) {
        let mut text = String::new();
        for (i, w) in words.iter().enumerate() {
            text.push_str(w);
            text.push_str(seps.get(i).copied().unwrap_or(" "));
        }
        let overlap = size * overlap_pct / 100;
        let cfg = ChunkConfig { strategy: strategy.into(), chunk_size: size, chunk_overlap: overlap, min_chunk_size: min, max_chunk_size: 8000 };
        let doc = ParsedDoc { sections: vec![Section { text: text.clone(), ..Default::default() }], ..Default::default() };
        let chunks = chunk(&doc, &cfg);
        let want = letters(&text);
        let got = letters(&chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" "));
        for (c, n) in &want {
            prop_assert!(got.get(c).copied().unwrap_or(0) >= *n, "{c:?} appears {n} times in the text, fewer in {chunks:?}");
        }
        prop_assert!(chunks.iter().all(|c| !c.text.trim().is_empty()));
        if strategy == "characters" && min == 0 {
            // Windows hold at most `chunk_size` characters and repeat at most `overlap`
            // of the previous window (less where it would start inside a word).
            prop_assert!(chunks.iter().all(|c| c.text.chars().count() <= size), "{chunks:?}");
            let total: usize = got.values().sum();
            let text_total: usize = want.values().sum();
            prop_assert!(total <= text_total + overlap.min(size / 2) * chunks.len().saturating_sub(1), "{total} > {text_total} + overlap");
            if overlap == 0 {
                prop_assert_eq!(total, text_total);
            }
        }
    }

    /// No parser panics on any bytes, under any file name it claims.
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), ext in prop_oneof![
        Just("txt"), Just("md"), Just("csv"), Just("json"), Just("jsonl"), Just("html"), Just("xml"), Just("pdf"), Just("docx"), Just("xlsx"), Just("py"), Just("png")
    ]) {
        let name = format!("f.{ext}");
        if let Ok(p) = Registry::global().for_file("auto", &name) {
            let _ = p.parse(&ParseInput::new(&bytes, &name));
        }
    }

    /// Text-like formats get text-like input: still no panic.
    #[test]
    fn parsers_never_panic_on_text(text in ".{0,400}", ext in prop_oneof![Just("md"), Just("csv"), Just("json"), Just("jsonl"), Just("html"), Just("txt")]) {
        let name = format!("f.{ext}");
        if let Ok(p) = Registry::global().for_file("auto", &name) {
            let _ = p.parse(&ParseInput::new(text.as_bytes(), &name));
        }
    }

    /// Any filter parses or fails with an error, and matching never panics; a filter made
    /// of a record's own scalar values matches that record.
    #[test]
    fn metadata_filters(filter in json(), meta in prop::collection::btree_map("[a-z]{1,4}", json(), 0..5)) {
        let meta: Map<String, Value> = meta.into_iter().collect();
        if let Ok(f) = MetadataFilter::parse(&filter) {
            let _ = f.matches(&meta);
        }
        let own: Map<String, Value> = meta.iter().filter(|(_, v)| matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_))).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !own.is_empty() {
            let f = MetadataFilter::from_map(&own).unwrap();
            prop_assert!(f.matches(&meta), "{own:?} does not match {meta:?}");
        }
    }
}
