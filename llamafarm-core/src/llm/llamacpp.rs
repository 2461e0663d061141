//! Local GGUF chat models run in-process by llama.cpp (the `llama-cpp-2` crate,
//! optional feature `llm-llamacpp`).
//!
//! The prompt is rendered from the GGUF's own Jinja template by
//! [`ChatTemplate`](super::template::ChatTemplate) (the same text mistral.rs renders),
//! tokenised by llama.cpp, prefilled in batches of `n_batch`, then decoded one token
//! at a time in our own loop, which applies the shared [`TokenPolicy`] (thinking
//! budget, answer-only `max_tokens`, cancel) and [`StopMatcher`] (stop sequences).
//! Each request gets a fresh context sized to what it can use (prompt + thinking
//! budget + `max_tokens`, capped at `n_ctx` or the model's training context), so
//! nothing leaks between requests; requests to one model queue.
//!
//! Settings come from the model's `extra_body` (the original's llama.cpp keys):
//! `n_ctx`, `n_batch`, `n_threads`, `use_mmap`, `use_mlock`.

use super::control::{prepare_thinking, Step, StopMatcher, TokenPolicy};
use super::template::ChatTemplate;
use super::think::{ThinkSplitter, THINK_CLOSE, THINK_OPEN};
use super::{CancelFlag, ChatMessage, ChatModel, FinishReason, Generation, GenerationParams, LocalOptions, Sink};
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
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// llama.cpp's process-wide backend (initialised once).
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load step to stderr; route it to tracing (off unless asked).
            let on = std::env::var("LF_LLAMACPP_LOG").map(|v| v == "1").unwrap_or(false);
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(on));
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Unavailable(format!("llama.cpp backend: {e}")))
}

/// A GGUF chat model loaded in llama.cpp.
pub struct LlamaCppModel {
    id: String,
    model: LlamaModel,
    template: ChatTemplate,
    /// The rendered text starts with the BOS text itself (no BOS token added then).
    bos_text: String,
    close_think: Vec<u32>,
    open_think: Vec<u32>,
    n_ctx: u32,
    n_batch: u32,
    n_threads: i32,
    turn: Mutex<()>,
}

impl LlamaCppModel {
    /// Load `gguf` with `options` (`n_ctx`, `n_batch`, `n_threads`, mmap/mlock).
    pub fn load(id: &str, gguf: &Path, options: &LocalOptions) -> Result<Self> {
        let t0 = Instant::now();
        let backend = backend()?;
        let params = LlamaModelParams::default().with_use_mmap(options.use_mmap.unwrap_or(true)).with_use_mlock(options.use_mlock.unwrap_or(false));
        let model = LlamaModel::load_from_file(backend, gguf, &params)
            .map_err(|e| Error::Unavailable(format!("loading {id} from {} with llama.cpp: {e}", gguf.display())))?;
        let source = model.meta_val_str("tokenizer.chat_template").map_err(|_| Error::Invalid(format!("{}: the GGUF has no chat template", gguf.display())))?;
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
            model,
            turn: Mutex::new(()),
        })
    }

    /// Render `messages` with the model's template and tokenise them (what generation uses).
    pub fn prompt_ids(&self, messages: &[ChatMessage], think: bool) -> Result<Vec<u32>> {
        let text = self.template.render(messages, think)?;
        let add_bos = !self.bos_text.is_empty() && !text.starts_with(&self.bos_text);
        Ok(self.model.vocab().tokenize(text.as_bytes(), add_bos, true).into_iter().map(|t| t.0 as u32).collect())
    }

    fn piece(&self, t: u32) -> Vec<u8> {
        self.model.vocab().token_to_piece(LlamaToken(t as i32), false, None)
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
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(42);
        chain.push(LlamaSampler::dist(seed));
        LlamaSampler::chain_simple(chain)
    }
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("llama.cpp {what}: {e}"))
}

impl ChatModel for LlamaCppModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        if cancel.is_cancelled() {
            return Err(Error::Invalid("the request was cancelled before it started".into()));
        }
        let t0 = Instant::now();
        let mut ids = self.prompt_ids(messages, params.think)?;
        let prompt_text = self.decode_text(&ids);
        let (prefilled, budget) = prepare_thinking(&mut ids, &prompt_text, params, self.template.thinks, &self.open_think);
        let prompt_tokens = ids.len();
        if prompt_tokens + 1 >= self.n_ctx as usize {
            return Err(Error::Invalid(format!(
                "the prompt is {prompt_tokens} tokens; model '{}' has a context of {} tokens (extra_body.n_ctx)",
                self.id, self.n_ctx
            )));
        }
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
        let mut ctx = self.model.new_context(backend()?, cparams).map_err(|e| engine_err("context", e))?;

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

        let mut policy = TokenPolicy::new(self.close_think.clone(), params.max_tokens, budget, prefilled, cancel.clone());
        let mut sampler = Self::sampler(params);
        let mut stops = StopMatcher::new(&params.stop);
        let mut splitter = ThinkSplitter::new(prefilled);
        let mut gen: Vec<u32> = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut gone = false;
        let mut natural_end = false;
        let mut out = |text: &str, splitter: &mut ThinkSplitter, gone: &mut bool| {
            if !*gone && !text.is_empty() {
                splitter.push(text, &mut |ev| {
                    if !sink(ev) {
                        *gone = true;
                    }
                });
            }
        };
        loop {
            if gone {
                cancel.cancel();
            }
            let token = match policy.next(&gen, |g| self.decode_text(g)) {
                Step::End => break,
                Step::Force(t) => t,
                Step::Free => {
                    let t = sampler.sample(&ctx, batch.n_tokens() - 1);
                    if self.model.vocab().is_eog(t) {
                        natural_end = true;
                        break;
                    }
                    t.0 as u32
                }
            };
            gen.push(token);
            pending.extend(self.piece(token));
            // Release the longest valid UTF-8 prefix (a character may span tokens).
            let valid = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            let released = stops.push(&text);
            out(&released, &mut splitter, &mut gone);
            if stops.hit() || pos as u32 + 1 >= n_ctx {
                break;
            }
            batch.clear();
            batch.add(LlamaToken(token as i32), pos, &[0], true).map_err(|e| engine_err("batch", e))?;
            pos += 1;
            ctx.decode(&mut batch).map_err(|e| engine_err("decode", e))?;
        }
        let tail = String::from_utf8_lossy(&pending).into_owned();
        let mut rest = stops.push(&tail);
        if !stops.hit() {
            rest.push_str(&stops.finish());
        }
        out(&rest, &mut splitter, &mut gone);
        splitter.finish(&mut |ev| {
            let _ = sink(ev);
        });
        let finish_reason = if policy.cancelled || cancel.is_cancelled() {
            FinishReason::Cancelled
        } else if policy.length_forced || (!natural_end && !stops.hit()) {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let completion_tokens = gen.len();
        let reasoning_tokens = policy.reasoning_tokens(completion_tokens, splitter.saw_thinking());
        let (content, thinking) = splitter.into_parts();
        Ok(Generation {
            content,
            thinking,
            prompt_tokens,
            completion_tokens,
            reasoning_tokens,
            finish_reason,
            ttft_ms: policy.first_token_at.map(|t| (t - t0).as_secs_f64() * 1000.0),
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        })
    }
}
