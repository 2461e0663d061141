//! A GGUF's byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`) as a
//! `tokenizers::Tokenizer`: the GGUF's tokens and merges, the GPT-2 pre-tokenizer
//! (with digits split one by one first for `tokenizer.ggml.pre = smollm`, as the model's
//! own `tokenizer.json` does), control tokens as special tokens, and each token's raw
//! bytes for streaming.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::Value;
use std::collections::{HashMap, HashSet};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token types.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// See the module docs.
pub struct GgufTokenizer {
    tk: Tokenizer,
    pieces: Vec<Vec<u8>>,
    /// Text of each token (control tokens by name).
    texts: Vec<String>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Prepend BOS to a prompt that does not already start with it.
    pub add_bos: bool,
    eog: HashSet<u32>,
}

/// GPT-2's byte-to-character table, inverted: the byte each printable stand-in means.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut keep: Vec<u8> = (b'!'..=b'~').chain(0xa1..=0xac).chain(0xae..=0xff).collect();
    let mut chars: Vec<u32> = keep.iter().map(|&b| b as u32).collect();
    let mut n = 0;
    for b in 0..=255u8 {
        if !keep.contains(&b) {
            keep.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    keep.into_iter().zip(chars).filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b))).collect()
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("GGUF tokenizer: {what}"))
}

impl GgufTokenizer {
    /// Whether [`from_gguf`](Self::from_gguf) can build this GGUF's tokenizer.
    pub fn supported(md: &HashMap<String, Value>) -> bool {
        let s = |k: &str| md.get(k).and_then(|v| v.to_string().ok()).map(String::as_str);
        s("tokenizer.ggml.model") == Some("gpt2") && matches!(s("tokenizer.ggml.pre"), None | Some("smollm" | "gpt-2" | "gpt2" | "default"))
    }

    /// Build from GGUF metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self> {
        if !Self::supported(md) {
            return Err(bad("only byte-level BPE vocabularies (tokenizer.ggml.model = gpt2) are supported by the native engine"));
        }
        let list = |k: &str| -> Result<&Vec<Value>> { md.get(k).and_then(|v| v.to_vec().ok()).ok_or_else(|| bad(format!("missing {k}"))) };
        let tokens: Vec<String> = list("tokenizer.ggml.tokens")?.iter().map(|v| v.to_string().cloned().map_err(bad)).collect::<Result<_>>()?;
        let merges: Vec<(String, String)> = list("tokenizer.ggml.merges")?
            .iter()
            .filter_map(|v| v.to_string().ok())
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
        let types: Vec<i32> =
            md.get("tokenizer.ggml.token_type").and_then(|v| v.to_vec().ok()).map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect()).unwrap_or_default();
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(bad)?;
        let mut tk = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str);
        if pre == Some("smollm") {
            let seq = Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), PreTokenizerWrapper::ByteLevel(byte_level)]);
            tk.with_pre_tokenizer(Some(seq));
        } else {
            tk.with_pre_tokenizer(Some(byte_level));
        }
        tk.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL) | Some(&USER_DEFINED)))
            .map(|(_, t)| AddedToken::from(t.clone(), true))
            .collect();
        tk.add_special_tokens(&specials);
        let table = unicode_to_byte();
        let pieces = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| match types.get(i) {
                Some(&CONTROL) => Vec::new(),
                Some(&USER_DEFINED) => t.as_bytes().to_vec(),
                _ => t.chars().map(|c| table.get(&c).copied().unwrap_or(b'?')).collect(),
            })
            .collect();
        let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok()).filter(|&i| (i as usize) < tokens.len());
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let mut eog: HashSet<u32> = [eos, id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")].into_iter().flatten().collect();
        // What llama.cpp also treats as end of generation.
        for (i, t) in tokens.iter().enumerate() {
            if types.get(i) == Some(&CONTROL) && ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|eom_id|>"].contains(&t.as_str()) {
                eog.insert(i as u32);
            }
        }
        let add_bos = md.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        Ok(Self { tk, pieces, texts: tokens, bos, eos, add_bos, eog })
    }

    /// Token ids of `text` (special tokens written in it are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tk.encode(text, false).map_err(bad)?.get_ids().to_vec())
    }

    /// The bytes token `t` stands for (empty for control tokens).
    pub fn piece(&self, t: u32) -> &[u8] {
        self.pieces.get(t as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Text of `ids`, control tokens written by name.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &t in ids {
            match self.pieces.get(t as usize) {
                Some(p) if !p.is_empty() => bytes.extend_from_slice(p),
                _ => bytes.extend_from_slice(self.text(t).as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The vocabulary entry of `t`.
    pub fn text(&self, t: u32) -> &str {
        self.texts.get(t as usize).map(String::as_str).unwrap_or("")
    }

    /// Whether `t` ends a generation.
    pub fn is_eog(&self, t: u32) -> bool {
        self.eog.contains(&t)
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// The vocabulary is empty (never for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}
