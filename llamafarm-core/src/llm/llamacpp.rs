//! Local GGUF chat models run in-process by llama.cpp (the `llama-cpp-2` crate,
//! optional feature `llm-llamacpp`).
//!
//! The prompt is rendered from the GGUF's own Jinja template by
//! [`ChatTemplate`](super::template::ChatTemplate) (the same text mistral.rs renders),
//! tokenised by llama.cpp, prefilled in batches of `n_batch`, then decoded one token
//! at a time in the decode loop shared with the native engine, which applies the
//! token policy (thinking budget, answer-only `max_tokens`, cancel) and stop sequences.
//! Each request gets a fresh context sized to what it can use (prompt + thinking
//! budget + `max_tokens`, capped at `n_ctx` or the model's training context), so
//! nothing leaks between requests; requests to one model queue.
//!
//! Settings come from the model's `extra_body` (the original's llama.cpp keys):
//! `n_ctx`, `n_batch`, `n_threads`, `use_mmap`, `use_mlock`.

use super::control::{decode_loop, prepare_prompt, unthinking, Decoder, PreparedPrompt, Sampler, TokenPolicy};
use super::grammar::{Constraint, GrammarVocab};
use super::template::ChatTemplate;
use super::think::{THINK_CLOSE, THINK_OPEN};
use super::{CancelFlag, ChatMessage, ChatModel, Generation, GenerationParams, LocalOptions, Sink};
use crate::error::{Error, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// llama.cpp's process-wide backend (initialised once; the first caller's `log` decides
/// whether llama.cpp's own log goes to `tracing`).
fn backend(log: bool) -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load step to stderr; route it to tracing (off unless asked).
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(log));
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::unavailable("llama.cpp backend", e.to_string()))
}

/// A GGUF chat model loaded in llama.cpp.
pub struct LlamaCppModel {
    id: String,
    /// Shared with the grammar engine's tokenizer.
    model: Arc<LlamaModel>,
    template: ChatTemplate,
    /// The rendered text starts with the BOS text itself (no BOS token added then).
    bos_text: String,
    close_think: Vec<u32>,
    open_think: Vec<u32>,
    n_ctx: u32,
    n_batch: u32,
    n_threads: i32,
    /// The vocabulary for constrained decoding (built on first use).
    grammar: OnceLock<std::result::Result<Arc<GrammarVocab>, String>>,
    turn: Mutex<()>,
}

impl LlamaCppModel {
    /// Load `gguf` with `options` (`n_ctx`, `n_batch`, `n_threads`, mmap/mlock).
    pub fn load(id: &str, gguf: &Path, options: &LocalOptions, log: bool) -> Result<Self> {
        let t0 = Instant::now();
        let backend = backend(log)?;
        let params = LlamaModelParams::default().with_use_mmap(options.use_mmap.unwrap_or(true)).with_use_mlock(options.use_mlock.unwrap_or(false));
        let model = LlamaModel::load_from_file(backend, gguf, &params)
            .map_err(|e| Error::unavailable(format!("model '{id}'"), format!("llama.cpp could not load it: {e}")))?;
        let source = model.meta_val_str("tokenizer.chat_template").map_err(|_| Error::invalid("model", format!("'{id}' has no chat template in its GGUF file")))?;
        let vocab = model.vocab();
        let text_of = |t: LlamaToken| vocab.text(t).map(|c| c.to_string_lossy().to_string()).unwrap_or_default();
        let bos_text = if vocab.should_add_bos() { text_of(vocab.bos()) } else { String::new() };
        let template = ChatTemplate::new(&source, &text_of(vocab.bos()), &text_of(vocab.eos()))?;
        let ids = |s: &str| vocab.tokenize(s.as_bytes(), false, true).into_iter().map(|t| t.0 as u32).collect::<Vec<u32>>();
        let close_think = ids(&format!("\n{THINK_CLOSE}\n\n"));
        let open_think = ids(&format!("{THINK_OPEN}\n"));
        let train = model.n_ctx_train().max(1);
        let n_threads = options.n_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(2)).max(1);
        tracing::info!(model = id, secs = t0.elapsed().as_secs_f32(), engine = "llama.cpp", "loaded GGUF chat model");
        Ok(Self {
            id: id.to_string(),
            template,
            bos_text,
            close_think,
            open_think,
            n_ctx: options.n_ctx.unwrap_or(train).clamp(16, train),
            n_batch: options.n_batch.unwrap_or(512).max(1),
            n_threads,
            model: Arc::new(model),
            grammar: OnceLock::new(),
            turn: Mutex::new(()),
        })
    }

    /// Render `messages` (and `tools`, where the template takes them) with the model's
    /// template and tokenise them (what generation uses).
    pub fn prompt_ids(&self, messages: &[ChatMessage], tools: &[serde_json::Value], think: bool) -> Result<Vec<u32>> {
        let text = self.template.render_with_tools(messages, tools, think)?;
        let add_bos = !self.bos_text.is_empty() && !text.starts_with(&self.bos_text);
        Ok(self.model.vocab().tokenize(text.as_bytes(), add_bos, true).into_iter().map(|t| t.0 as u32).collect())
    }

    fn piece(&self, t: u32) -> Vec<u8> {
        self.model.vocab().token_to_piece(LlamaToken(t as i32), false, None)
    }

    /// The vocabulary for constrained decoding: llama.cpp's token pieces, control
    /// tokens by name, its end-of-generation tokens.
    fn grammar_vocab(&self) -> Result<GrammarVocab> {
        let vocab = self.model.vocab();
        let n = vocab.n_tokens().max(0) as u32;
        let mut pieces = Vec::with_capacity(n as usize);
        let mut names = Vec::with_capacity(n as usize);
        let mut eos = vec![vocab.eos().0 as u32];
        for t in 0..n {
            let tok = LlamaToken(t as i32);
            let control = vocab.is_eog(tok) || vocab.is_control(tok);
            pieces.push(if control { Vec::new() } else { self.piece(t) });
            names.push(vocab.text(tok).map(|c| c.to_string_lossy().to_string()).unwrap_or_default());
            if vocab.is_eog(tok) && !eos.contains(&t) {
                eos.push(t);
            }
        }
        // The grammar engine allows forced text only as the model's own tokenisation of it
        // (so a forced call's name and keys are the tokens the model would write).
        let model = Arc::clone(&self.model);
        let tokenize = Box::new(move |s: &[u8]| model.vocab().tokenize(s, false, false).into_iter().map(|t| t.0 as u32).collect());
        GrammarVocab::new(&pieces, &names, &eos, tokenize)
    }

    fn decode_text(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|t| self.piece(*t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn sampler(params: &GenerationParams) -> LlamaSampler {
        let t = params.temperature.unwrap_or(0.0);
        let k = params.top_k.filter(|k| *k > 1);
        if t <= 0.0 && k.is_none() {
            return LlamaSampler::greedy();
        }
        let mut chain = Vec::new();
        if let Some(k) = k {
            chain.push(LlamaSampler::top_k(k as i32));
        }
        if let Some(p) = params.top_p.filter(|p| *p < 1.0) {
            chain.push(LlamaSampler::top_p(p as f32, 1));
        }
        // top_k without a temperature samples at temperature 1 among the top k.
        chain.push(LlamaSampler::temp(if t > 0.0 { t as f32 } else { 1.0 }));
        let seed = params
            .seed
            .map(|s| (s ^ (s >> 32)) as u32)
            .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(42));
        chain.push(LlamaSampler::dist(seed));
        LlamaSampler::chain_simple(chain)
    }
}

/// One generation's llama.cpp state, as the shared decode loop drives it.
struct Run<'a> {
    m: &'a LlamaCppModel,
    ctx: llama_cpp_2::context::LlamaContext<'a>,
    batch: LlamaBatch<'a>,
    sampler: LlamaSampler,
    /// Samples constrained steps (llama.cpp's sampler cannot see our mask).
    own: Sampler,
    pos: i32,
    n_ctx: u32,
}

impl Decoder for Run<'_> {
    fn sample(&mut self, constraint: Option<&mut Constraint>) -> Result<Option<u32>> {
        let t = match constraint {
            // Constrained: our sampler over the masked logits.
            Some(c) => {
                let mut logits = self.ctx.get_logits_ith(self.batch.n_tokens() - 1).to_vec();
                c.mask(&mut logits)?;
                LlamaToken(self.own.sample(&logits) as i32)
            }
            None => self.sampler.sample(&self.ctx, self.batch.n_tokens() - 1),
        };
        Ok((!self.m.model.vocab().is_eog(t)).then_some(t.0 as u32))
    }

    fn feed(&mut self, token: u32) -> Result<bool> {
        if self.pos as u32 + 1 >= self.n_ctx {
            return Ok(false);
        }
        self.batch.clear();
        self.batch.add(LlamaToken(token as i32), self.pos, &[0], true).map_err(|e| engine_err("batch", e))?;
        self.pos += 1;
        self.ctx.decode(&mut self.batch).map_err(|e| engine_err("decode", e))?;
        Ok(true)
    }

    fn piece(&self, token: u32) -> Vec<u8> {
        self.m.piece(token)
    }

    fn decode_text(&self, ids: &[u32]) -> String {
        self.m.decode_text(ids)
    }
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("llama.cpp {what}: {e}"))
}

impl ChatModel for LlamaCppModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let constraint = match &params.grammar {
            Some(g) => {
                let vocab =
                    self.grammar.get_or_init(|| self.grammar_vocab().map(Arc::new).map_err(|e| e.to_string())).as_ref().map_err(|e| Error::internal(e.clone()))?;
                Some(vocab.constraint(g)?)
            }
            None => None,
        };
        let params = &*unthinking(params, constraint.is_some());
        let PreparedPrompt { ids, prefilled, budget, t0 } = prepare_prompt(
            &self.id,
            self.n_ctx as usize,
            cancel,
            params,
            self.template.thinks,
            &self.open_think,
            || self.prompt_ids(messages, &params.tools, params.think),
            |ids| self.decode_text(ids),
        )?;
        let prompt_tokens = ids.len();
        // Room for thinking + closing tag + answer, within the context.
        let cap = budget * usize::from(params.think) + self.close_think.len() + params.max_tokens + 2;
        let want = (prompt_tokens + cap).next_multiple_of(256) as u32;
        let n_ctx = want.min(self.n_ctx);
        let n_batch = self.n_batch.min(n_ctx);
        let cparams = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(self.n_threads)
            .with_n_threads_batch(self.n_threads);
        let mut ctx = self.model.new_context(backend(false)?, cparams).map_err(|e| engine_err("context", e))?;

        // Prefill.
        let mut batch = LlamaBatch::new(n_batch as usize, 1);
        let chunks: Vec<&[u32]> = ids.chunks(n_batch as usize).collect();
        let mut pos: i32 = 0;
        for (ci, chunk) in chunks.iter().enumerate() {
            batch.clear();
            for (i, t) in chunk.iter().enumerate() {
                let last = ci + 1 == chunks.len() && i + 1 == chunk.len();
                batch.add(LlamaToken(*t as i32), pos, &[0], last).map_err(|e| engine_err("batch", e))?;
                pos += 1;
            }
            ctx.decode(&mut batch).map_err(|e| engine_err("prefill", e))?;
        }

        let policy = TokenPolicy::new(self.close_think.clone(), params.max_tokens, budget, prefilled, cancel.clone());
        let mut run = Run { m: self, ctx, batch, sampler: Self::sampler(params), own: Sampler::new(params), pos, n_ctx };
        decode_loop(&mut run, policy, constraint, params, prefilled, cancel, sink, prompt_tokens, t0)
    }
}
