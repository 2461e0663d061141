//! A GGUF's own vocabulary as a tokenizer, built from the file's metadata the way
//! llama.cpp reads it, so that a prompt gets the token ids llama.cpp gives it:
//!
//! - **SentencePiece** (`tokenizer.ggml.model = llama`: Gemma, Llama 2, Mistral, Phi-3):
//!   spaces become `▁` (and a leading one is added when `add_space_prefix` says so), the
//!   text is split into characters, and adjacent pieces are merged highest score first
//!   while the merge is a vocabulary entry; a piece that is not an entry is written as
//!   its `<0xXX>` byte tokens (byte fallback). Ours, since no crate reads a GGUF's
//!   scores (`tokenizers` builds SentencePiece models from merges, candle's GGUF reader
//!   handles byte-level BPE only).
//! - **Byte-level BPE** (`tokenizer.ggml.model = gpt2`): the text is split by the
//!   pre-tokenizer `tokenizer.ggml.pre` names (the regular expressions llama.cpp uses for
//!   `llama-bpe`, `qwen2`, `smollm`, `gpt-2`, `tekken`, ...), each piece's bytes are
//!   mapped to GPT-2's printable stand-ins and merged by the GGUF's merge ranks: a
//!   `tokenizers` BPE model over the GGUF's tokens and merges.
//!
//! In both, the vocabulary's control, user-defined and unknown tokens are cut out of
//! the text first, longest first (llama.cpp's special-token partition), so a template's
//! `<start_of_turn>` or `<|im_start|>` is one token and never split.
//! Each token also keeps its raw bytes ([`GgufTokenizer::piece`]) for streaming.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::Value;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// GGUF token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// Llama 3's pre-tokenizer (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2/2.5/3's (`LLAMA_VOCAB_PRE_TYPE_QWEN2`): digits one by one.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral Nemo's (`LLAMA_VOCAB_PRE_TYPE_TEKKEN`).
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE pre-tokenizer llama.cpp knows, by its `tokenizer.ggml.pre` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre {
    /// GPT-2's expression (also llama.cpp's fallback for `default`).
    Gpt2,
    /// Digits one by one, then GPT-2's expression (SmolLM, StarCoder).
    Smollm,
    Llama3,
    Qwen2,
    Tekken,
}

impl Pre {
    fn named(name: Option<&str>) -> Option<Self> {
        Some(match name.unwrap_or("default") {
            "default" | "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de" | "roberta-bpe" => Pre::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => Pre::Smollm,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => Pre::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "megrez" => Pre::Qwen2,
            "tekken" => Pre::Tekken,
            _ => return None,
        })
    }

    fn build(self) -> Result<PreTokenizerWrapper> {
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            let s = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(bad)?;
            Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Split(s),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
            ])))
        };
        Ok(match self {
            Pre::Gpt2 => PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, true)),
            Pre::Smollm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, true)),
            ])),
            Pre::Llama3 => split(LLAMA3)?,
            Pre::Qwen2 => split(QWEN2)?,
            Pre::Tekken => split(TEKKEN)?,
        })
    }
}

/// SentencePiece merging by score (llama.cpp's `llm_tokenizer_spm`).
struct Spm {
    scores: Vec<f32>,
    /// `<0xXX>` tokens.
    bytes: Box<[Option<u32>; 256]>,
}

/// A candidate merge of two adjacent pieces.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Highest score first; among equal scores the leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}

/// One piece of the text being merged (a linked list over the characters).
#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    fn tokenize(&self, ids: &HashMap<String, u32>, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Sym> = Vec::new();
        for (i, (start, c)) in text.char_indices().enumerate() {
            let len = c.len_utf8();
            syms.push(Sym { start, len, prev: i.checked_sub(1), next: (start + len < text.len()).then_some(i + 1) });
        }
        if syms.is_empty() {
            return;
        }
        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (a, b) = (syms[l], syms[r]);
            let s = &text[a.start..b.start + b.len];
            if let Some(&id) = ids.get(s) {
                heap.push(Bigram { left: l, right: r, score: self.scores.get(id as usize).copied().unwrap_or(0.0), size: s.len() });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, Some(i - 1), Some(i));
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (syms[bg.left], syms[bg.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue;
            }
            syms[bg.left].len += r.len;
            syms[bg.right].len = 0;
            syms[bg.left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(bg.left);
            }
            let prev = syms[bg.left].prev;
            try_add(&mut heap, &syms, prev, Some(bg.left));
            let next = syms[bg.left].next;
            try_add(&mut heap, &syms, Some(bg.left), next);
        }
        // Every merged piece is an entry; a character that is not is written as bytes.
        let mut at = Some(0);
        while let Some(i) = at {
            let s = &text[syms[i].start..syms[i].start + syms[i].len];
            match ids.get(s) {
                Some(&id) => out.push(id),
                None => out.extend(s.bytes().filter_map(|b| self.bytes[b as usize])),
            }
            at = syms[i].next;
        }
    }
}

enum Model {
    Spm(Spm),
    Bpe(Box<Tokenizer>),
}

/// See the module docs.
pub struct GgufTokenizer {
    model: Model,
    /// Token ids by text (SentencePiece lookups).
    ids: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest first.
    specials: Vec<(String, u32)>,
    pieces: Vec<Vec<u8>>,
    /// Text of each token (control tokens by name).
    texts: Vec<String>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Prepend BOS to a prompt that does not already start with it.
    pub add_bos: bool,
    add_space_prefix: bool,
    eog: HashSet<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.model {
            Model::Spm(_) => "sentencepiece",
            Model::Bpe(_) => "byte-level BPE",
        };
        f.debug_struct("GgufTokenizer").field("kind", &kind).field("tokens", &self.texts.len()).finish()
    }
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

/// The byte a `<0xXX>` token stands for.
fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

fn meta_str<'a>(md: &'a HashMap<String, Value>, k: &str) -> Option<&'a str> {
    md.get(k).and_then(|v| v.to_string().ok()).map(String::as_str)
}

impl GgufTokenizer {
    /// Why [`from_gguf`](Self::from_gguf) cannot build this GGUF's tokenizer, if it cannot.
    pub fn unsupported(md: &HashMap<String, Value>) -> Option<String> {
        match meta_str(md, "tokenizer.ggml.model") {
            Some("llama") => None,
            Some("gpt2") => match meta_str(md, "tokenizer.ggml.pre") {
                p if Pre::named(p).is_some() => None,
                p => Some(format!("the byte-level BPE pre-tokenizer '{}' is not supported", p.unwrap_or("default"))),
            },
            Some(m) => Some(format!("the '{m}' tokenizer model is not supported (sentencepiece 'llama' and byte-level BPE 'gpt2' are)")),
            None => Some("the GGUF has no tokenizer (tokenizer.ggml.model)".into()),
        }
    }

    /// Whether [`from_gguf`](Self::from_gguf) can build this GGUF's tokenizer.
    pub fn supported(md: &HashMap<String, Value>) -> bool {
        Self::unsupported(md).is_none()
    }

    /// Build from GGUF metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self> {
        if let Some(why) = Self::unsupported(md) {
            return Err(Error::unavailable("GGUF tokenizer", why));
        }
        let list = |k: &str| -> Result<&Vec<Value>> { md.get(k).and_then(|v| v.to_vec().ok()).ok_or_else(|| bad(format!("missing {k}"))) };
        let tokens: Vec<String> = list("tokenizer.ggml.tokens")?.iter().map(|v| v.to_string().cloned().map_err(bad)).collect::<Result<_>>()?;
        let n = tokens.len();
        let types: Vec<i32> = md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(NORMAL)).collect())
            .unwrap_or_else(|| vec![NORMAL; n]);
        let ty = |i: usize| types.get(i).copied().unwrap_or(NORMAL);
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // Of duplicate entries the last wins, as in llama.cpp.
            ids.insert(t.clone(), i as u32);
        }
        let spm = meta_str(md, "tokenizer.ggml.model") == Some("llama");
        let (model, pieces): (Model, Vec<Vec<u8>>) = if spm {
            let scores: Vec<f32> = md
                .get("tokenizer.ggml.scores")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.iter().map(|s| s.to_f32().unwrap_or(0.0)).collect())
                .unwrap_or_else(|| vec![0.0; n]);
            let mut bytes = Box::new([None; 256]);
            for (i, t) in tokens.iter().enumerate() {
                if ty(i) == BYTE {
                    if let Some(b) = byte_token(t) {
                        bytes[b as usize].get_or_insert(i as u32);
                    }
                }
            }
            // A vocabulary without byte tokens falls back to single-character entries.
            for (b, slot) in bytes.iter_mut().enumerate() {
                if slot.is_none() && b < 0x80 {
                    *slot = ids.get(&(b as u8 as char).to_string()).copied();
                }
            }
            let pieces = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| match ty(i) {
                    CONTROL | UNKNOWN => Vec::new(),
                    BYTE => byte_token(t).map(|b| vec![b]).unwrap_or_default(),
                    USER_DEFINED => t.as_bytes().to_vec(),
                    _ => t.replace('\u{2581}', " ").into_bytes(),
                })
                .collect();
            (Model::Spm(Spm { scores, bytes }), pieces)
        } else {
            let merges: Vec<(String, String)> = list("tokenizer.ggml.merges")?
                .iter()
                .filter_map(|v| v.to_string().ok())
                .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                .collect();
            let pre = Pre::named(meta_str(md, "tokenizer.ggml.pre")).ok_or_else(|| bad("pre-tokenizer"))?;
            let vocab: tokenizers::models::bpe::Vocab = ids.iter().map(|(t, &i)| (t.clone(), i)).collect();
            let bpe = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(pre == Pre::Llama3).build().map_err(bad)?;
            let mut tk = Tokenizer::new(bpe);
            tk.with_pre_tokenizer(Some(pre.build()?));
            let table = unicode_to_byte();
            let pieces = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| match ty(i) {
                    CONTROL | UNKNOWN => Vec::new(),
                    USER_DEFINED => t.as_bytes().to_vec(),
                    _ => t.chars().map(|c| table.get(&c).copied().unwrap_or(b'?')).collect(),
                })
                .collect();
            (Model::Bpe(Box::new(tk)), pieces)
        };
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| matches!(ty(*i), CONTROL | USER_DEFINED | UNKNOWN) && !t.is_empty())
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok()).filter(|&i| (i as usize) < n);
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let mut eog: HashSet<u32> = [eos, id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")].into_iter().flatten().collect();
        // What llama.cpp also treats as end of generation.
        for (i, t) in tokens.iter().enumerate() {
            if ty(i) == CONTROL && ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|eom_id|>", "</s>"].contains(&t.as_str()) {
                eog.insert(i as u32);
            }
        }
        let flag = |k: &str, d: bool| md.get(k).and_then(|v| v.to_bool().ok()).unwrap_or(d);
        Ok(Self {
            model,
            ids,
            specials,
            pieces,
            texts: tokens,
            bos,
            eos,
            add_bos: flag("tokenizer.ggml.add_bos_token", spm),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", spm),
            eog,
        })
    }

    /// Split `text` at the special tokens written in it (longest first, as llama.cpp).
    fn partition<'t>(&self, text: &'t str) -> Vec<Result<&'t str, u32>> {
        let mut frags: Vec<Result<&'t str, u32>> = vec![Ok(text)];
        for (s, id) in &self.specials {
            if !frags.iter().any(|f| matches!(f, Ok(t) if t.contains(s.as_str()))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Ok(mut t) => {
                        while let Some(at) = t.find(s.as_str()) {
                            if at > 0 {
                                next.push(Ok(&t[..at]));
                            }
                            next.push(Err(*id));
                            t = &t[at + s.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Ok(t));
                        }
                    }
                    special => next.push(special),
                }
            }
            frags = next;
        }
        frags
    }

    /// Token ids of `text` (special tokens written in it are recognised; no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut prev_special = true;
        for f in self.partition(text) {
            match (f, &self.model) {
                (Err(id), _) => {
                    out.push(id);
                    prev_special = true;
                }
                (Ok(t), Model::Spm(spm)) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && prev_special {
                        s.push('\u{2581}');
                    }
                    s.extend(t.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
                    spm.tokenize(&self.ids, &s, &mut out);
                    prev_special = false;
                }
                (Ok(t), Model::Bpe(tk)) => {
                    out.extend_from_slice(tk.encode(t, false).map_err(bad)?.get_ids());
                    prev_special = false;
                }
            }
        }
        Ok(out)
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

    /// Text of `ids` without control tokens (what a user reads).
    pub fn decode_plain(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&t| self.piece(t).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The vocabulary entry of `t`.
    pub fn text(&self, t: u32) -> &str {
        self.texts.get(t as usize).map(String::as_str).unwrap_or("")
    }

    /// The id of the vocabulary entry `text`.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The vocabulary as the grammar engine sees it (for constrained decoding): token
    /// bytes, control tokens by name, the end-of-turn tokens.
    pub fn grammar_vocab(self: &std::sync::Arc<Self>) -> Result<crate::llm::grammar::GrammarVocab> {
        let n = self.len();
        let pieces: Vec<Vec<u8>> = (0..n as u32).map(|t| self.piece(t).to_vec()).collect();
        let names: Vec<String> = (0..n as u32).map(|t| self.text(t).to_string()).collect();
        let mut eos: Vec<u32> = self.eos.into_iter().filter(|t| self.eog.contains(t)).collect();
        let mut rest: Vec<u32> = self.eog.iter().copied().filter(|t| !eos.contains(t)).collect();
        rest.sort_unstable();
        eos.extend(rest);
        let me = self.clone();
        let tokenize = Box::new(move |b: &[u8]| me.encode(&String::from_utf8_lossy(b)).unwrap_or_default());
        crate::llm::grammar::GrammarVocab::new(&pieces, &names, &eos, tokenize)
    }

    /// Whether `t` ends a generation.
    pub fn is_eog(&self, t: u32) -> bool {
        self.eog.contains(&t)
    }

    /// Tokens that end a generation.
    pub fn eog(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{self, Content, Value as V};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// A 600-token byte-level BPE vocabulary and llama.cpp's token ids for a corpus of
    /// awkward strings under each pre-tokenizer (written by
    /// `benches/peers/gguf_bpe_golden.py` with llama-cpp-python 0.3.36).
    const GOLDEN: &str = include_str!("../../../tests/fixtures/gguf_bpe_llamacpp_golden.json");

    /// Write a vocabulary-only GGUF with `pre` and read its metadata back.
    fn tiny_gguf(dir: &std::path::Path, tokens: &[String], merges: &[String], pre: &str) -> Content {
        let path = dir.join(format!("{pre}.gguf"));
        let s = |x: &str| V::String(x.to_string());
        let mut types = vec![V::I32(CONTROL), V::I32(CONTROL)];
        types.extend((2..tokens.len()).map(|_| V::I32(NORMAL)));
        let md: Vec<(&str, V)> = vec![
            ("general.architecture", s("llama")),
            ("tokenizer.ggml.model", s("gpt2")),
            ("tokenizer.ggml.pre", s(pre)),
            ("tokenizer.ggml.tokens", V::Array(tokens.iter().map(|t| s(t)).collect())),
            ("tokenizer.ggml.merges", V::Array(merges.iter().map(|m| s(m)).collect())),
            ("tokenizer.ggml.token_type", V::Array(types)),
            ("tokenizer.ggml.bos_token_id", V::U32(0)),
            ("tokenizer.ggml.eos_token_id", V::U32(1)),
            ("tokenizer.ggml.add_bos_token", V::Bool(false)),
        ];
        let mdr: Vec<(&str, &V)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let t = QTensor::quantize(&Tensor::zeros((tokens.len(), 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &mdr, &[("token_embd.weight", &t)]).unwrap();
        Content::read(&mut std::fs::File::open(&path).unwrap()).unwrap()
    }

    #[test]
    fn bpe_pre_tokenizers_give_llama_cpp_ids() {
        let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        let strs = |v: &serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect() };
        let (tokens, merges) = (strs(&g["tokens"]), strs(&g["merges"]));
        let dir = tempfile::tempdir().unwrap();
        let cases = g["cases"].as_object().unwrap();
        assert_eq!(cases.len(), 5);
        for (pre, cases) in cases {
            let ct = tiny_gguf(dir.path(), &tokens, &merges, pre);
            let tok = GgufTokenizer::from_gguf(&ct.metadata).unwrap();
            for case in cases.as_array().unwrap() {
                let text = case[0].as_str().unwrap();
                let want: Vec<u32> = case[1].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
                assert_eq!(tok.encode(text).unwrap(), want, "{pre}: {text:?}");
            }
        }
    }

    #[test]
    fn unknown_vocabularies_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ct = tiny_gguf(dir.path(), &["<s>".into(), "</s>".into(), "a".into()], &[], "deepseek-coder");
        let e = GgufTokenizer::from_gguf(&ct.metadata).unwrap_err().to_string();
        assert!(e.contains("deepseek-coder"), "{e}");
        let mut md = ct.metadata.clone();
        md.insert("tokenizer.ggml.model".into(), V::String("bert".into()));
        assert!(GgufTokenizer::unsupported(&md).unwrap().contains("'bert'"));
    }

    /// SentencePiece merging on a hand-made vocabulary: highest score first, spaces as `▁`,
    /// byte fallback for what no entry covers, user-defined tokens cut out first.
    #[test]
    fn sentencepiece_merges_by_score_with_byte_fallback() {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![UNKNOWN, CONTROL, CONTROL];
        let mut scores = vec![0.0f32; 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(BYTE);
            scores.push(0.0);
        }
        for (t, s) in [("▁", -1.0), ("a", -2.0), ("b", -2.0), ("c", -2.0), ("ab", -3.0), ("bc", -0.5), ("▁a", -1.5), ("▁ab", -4.0), ("<tag>", 0.0)] {
            tokens.push(t.into());
            types.push(if t == "<tag>" { USER_DEFINED } else { NORMAL });
            scores.push(s);
        }
        let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
        let md: HashMap<String, Value> = [
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect())),
            ("tokenizer.ggml.token_type", Value::Array(types.iter().map(|&t| Value::I32(t)).collect())),
            ("tokenizer.ggml.scores", Value::Array(scores.iter().map(|&s| Value::F32(s)).collect())),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let tok = GgufTokenizer::from_gguf(&md).unwrap();
        // "abc": "bc" (-0.5) beats "ab" (-3.0), so a + bc.
        assert_eq!(tok.encode("abc").unwrap(), vec![id("a"), id("bc")]);
        // " ab": "▁a" (-1.5) first, then "▁ab" (-4.0).
        assert_eq!(tok.encode(" ab").unwrap(), vec![id("▁ab")]);
        // "é" is no entry: its two UTF-8 bytes.
        assert_eq!(tok.encode("é").unwrap(), vec![id("<0xC3>"), id("<0xA9>")]);
        assert_eq!(tok.encode("a<tag>b").unwrap(), vec![id("a"), id("<tag>"), id("b")]);
        assert_eq!(tok.decode_plain(&tok.encode(" abc é<tag>").unwrap()), " abc é<tag>");
        assert!(tok.add_bos, "SentencePiece vocabularies add BOS unless told not to");
    }
}
