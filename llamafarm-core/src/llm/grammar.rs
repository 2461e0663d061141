//! Constrained decoding: a [`Grammar`] (a JSON schema, any JSON object, or a Lark
//! grammar) masks the logits at each step so the answer always parses.
//!
//! The grammar engine is `llguidance` (the one llama.cpp, mistral.rs and vLLM use): it
//! compiles the grammar against the model's vocabulary ([`GrammarVocab`], built once
//! per model from the token bytes) and, before each token, computes the set of tokens
//! that keep the output a prefix of a valid sentence ([`Constraint::mask`]). JSON
//! schemas are compiled with compact separators and no free whitespace, so a small
//! model cannot wander into endless blank lines.

use crate::error::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// What the answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid against this schema (`json_schema`, tool-call arguments).
    JsonSchema(Value),
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
}

impl Grammar {
    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(compact(json!({"type": "object"}))),
            Grammar::JsonSchema(s) => TopLevelGrammar::from_json_schema(compact(s.clone())),
            Grammar::Lark(l) => TopLevelGrammar::from_lark(l.clone()),
        }
    }

    /// Compile the grammar on a byte-level vocabulary: the check a request gets before
    /// any model runs (a schema the engine cannot compile is the caller's error).
    pub fn check(&self) -> Result<()> {
        static BYTES: OnceLock<Option<ParserFactory>> = OnceLock::new();
        let factory = BYTES.get_or_init(|| {
            let env: TokEnv = Arc::new(llguidance::toktrie::ApproximateTokEnv::single_byte());
            let mut f = ParserFactory::new_simple(&env).ok()?;
            f.quiet();
            Some(f)
        });
        let Some(factory) = factory else { return Err(Error::internal("the grammar engine did not start")) };
        factory.create_parser(self.top_level()).map(|_| ()).map_err(|e| self.compile_error(e))
    }

    fn compile_error(&self, e: impl std::fmt::Display) -> Error {
        let field = match self {
            Grammar::Lark(_) => "grammar",
            _ => "response_format.json_schema.schema",
        };
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim();
        Error::invalid(field, format!("cannot be compiled into a grammar: {first}"))
    }
}

/// Largest integer JSON parsers keep exactly (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Hold integers that have no bounds to ±(2^53 - 1): what JSON parsers keep exactly,
/// and a limit on the digits, so a small model cannot write digits forever.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let is_int = match m.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if is_int {
                if !m.contains_key("maximum") && !m.contains_key("exclusiveMaximum") {
                    m.insert("maximum".into(), json!(MAX_SAFE_INTEGER));
                }
                if !m.contains_key("minimum") && !m.contains_key("exclusiveMinimum") {
                    m.insert("minimum".into(), json!(-MAX_SAFE_INTEGER));
                }
            }
            for (k, x) in m.iter_mut() {
                if k != "enum" && k != "const" && k != "default" && k != "examples" {
                    bound_integers(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// A schema with llguidance's compact-JSON options (kept when the caller set their own)
/// and bounded integers.
fn compact(mut schema: Value) -> Value {
    bound_integers(&mut schema);
    if let Value::Object(m) = &mut schema {
        m.entry("x-guidance").or_insert_with(|| json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}));
    } else if schema == Value::Bool(true) {
        return json!({"x-guidance": {"whitespace_flexible": false}});
    }
    schema
}

/// A model's vocabulary as the grammar engine sees it (built once per model).
pub struct GrammarVocab {
    factory: ParserFactory,
    eos: Vec<u32>,
}

struct Vocab {
    trie: TokTrie,
    tokenize: Box<dyn Fn(&[u8]) -> Vec<u32> + Send + Sync>,
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        (self.tokenize)(s)
    }
}

impl GrammarVocab {
    /// `pieces[t]`: the bytes of token `t`, empty for control tokens, whose names are
    /// `names[t]`; `eos`: the tokens that end a turn (the first one is the grammar's
    /// end); `tokenize`: the model's tokenizer over bytes.
    pub fn new(pieces: &[Vec<u8>], names: &[String], eos: &[u32], tokenize: Box<dyn Fn(&[u8]) -> Vec<u32> + Send + Sync>) -> Result<Self> {
        let first = *eos.first().ok_or_else(|| Error::internal("the model's vocabulary has no end-of-turn token"))?;
        let words: Vec<Vec<u8>> = pieces
            .iter()
            .zip(names)
            .map(|(p, n)| {
                if p.is_empty() {
                    // Control tokens: the marker the engine uses for specials, then the name.
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(n.as_bytes());
                    w
                } else {
                    p.clone()
                }
            })
            .collect();
        let info = TokRxInfo::new(words.len() as u32, first);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocab { trie, tokenize });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::internal(format!("grammar engine: {e}")))?;
        factory.quiet();
        Ok(Self { factory, eos: eos.to_vec() })
    }

    /// A fresh constraint for one generation.
    pub fn constraint(&self, g: &Grammar) -> Result<Constraint> {
        let parser = self.factory.create_parser(g.top_level()).map_err(|e| g.compile_error(e))?;
        Ok(Constraint { m: Matcher::new(Ok(parser)), eos: self.eos.clone(), mask: None })
    }
}

/// One generation's grammar state.
pub struct Constraint {
    m: Matcher,
    eos: Vec<u32>,
    mask: Option<SimpleVob>,
}

impl Constraint {
    /// Set every token the grammar does not allow next to minus infinity in `logits`.
    /// When the grammar is complete, only the end-of-turn tokens stay.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.m.compute_mask_or_eos().map_err(|e| Error::internal(format!("grammar engine: {e}")))?;
        let accepting = self.m.is_accepting().unwrap_or(false) || self.m.is_stopped();
        for (i, l) in logits.iter_mut().enumerate() {
            let t = i as u32;
            let allowed = if self.eos.contains(&t) { accepting } else { mask.is_allowed(t) };
            if !allowed {
                *l = f32::NEG_INFINITY;
            }
        }
        self.mask = Some(mask);
        Ok(())
    }

    /// Whether the grammar allows `token` next (after [`mask`](Self::mask)).
    pub fn allows(&self, token: u32) -> bool {
        self.mask.as_ref().is_none_or(|m| m.is_allowed(token))
    }

    /// Advance over `token`.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        if self.m.is_stopped() || self.eos.contains(&token) {
            return Ok(());
        }
        self.m.consume_token(token).map_err(|e| Error::internal(format!("grammar engine: {e}")))
    }

    /// The grammar is complete: nothing may follow.
    pub fn is_done(&self) -> bool {
        self.m.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: every byte, a few words, an end token.
    fn vocab() -> GrammarVocab {
        let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for w in ["{\"", "\":", "true", "false", "name", "\"}"] {
            pieces.push(w.as_bytes().to_vec());
        }
        pieces.push(Vec::new());
        let names: Vec<String> = (0..pieces.len()).map(|i| if i + 1 == pieces.len() { "<eos>".into() } else { String::new() }).collect();
        let eos = (pieces.len() - 1) as u32;
        GrammarVocab::new(&pieces, &names, &[eos], Box::new(|b: &[u8]| b.iter().map(|&x| x as u32).collect())).unwrap()
    }

    /// Greedy over "logits" that prefer `want`'s next byte: the mask decides the rest.
    fn run(v: &GrammarVocab, g: &Grammar, prefer: &[u8]) -> String {
        let mut c = v.constraint(g).unwrap();
        let mut out = Vec::new();
        for step in 0..200 {
            let mut logits = vec![0f32; 263];
            if let Some(&b) = prefer.get(step) {
                logits[b as usize] = 5.0;
            }
            c.mask(&mut logits).unwrap();
            let t = logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32;
            if t == 262 {
                break;
            }
            c.accept(t).unwrap();
            out.push(t);
        }
        out.iter().filter(|&&t| t < 256).map(|&t| t as u8 as char).collect()
    }

    #[test]
    fn a_schema_forces_valid_json() {
        let v = vocab();
        let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
        // The "model" wants to write prose; the grammar turns it into the object.
        let out = run(&v, &Grammar::JsonSchema(schema), b"hello there");
        let parsed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
        assert!(parsed["ok"].is_boolean(), "{out}");
    }

    #[test]
    fn bad_schemas_are_the_callers_error() {
        assert!(Grammar::JsonSchema(json!({"type": "object"})).check().is_ok());
        let e = Grammar::JsonSchema(json!({"type": "no-such-type"})).check().unwrap_err();
        assert!(matches!(e, Error::InvalidField { .. }), "{e:?}");
        assert!(Grammar::Lark("start: missing_rule".into()).check().is_err());
        assert!(Grammar::JsonObject.check().is_ok());
    }
}
