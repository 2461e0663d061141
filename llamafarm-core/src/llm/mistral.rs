//! Local GGUF chat models run in-process by mistral.rs.
//!
//! The engine renders the GGUF's chat template and tokenises the prompt (a
//! `Tokenize` request), we add the thinking prefill where needed, and send the ids
//! as a completion request with our own [`TokenControl`] logits processor. That
//! processor sees every step, so it
//! - closes a thinking block by force when `thinking_budget` is spent,
//! - ends the answer with EOS after `max_tokens` answer tokens (`finish_reason: length`),
//! - stops within one token when the caller cancels (client disconnect),
//! - counts generated tokens exactly.
//!
//! Concurrent requests queue (one generation at a time per model): batching several
//! sequences in mistral.rs 0.8.1 on CPU mixed tokens between them in our tests.

use super::control::{prepare_prompt, unthinking, PreparedPrompt, Sampler, Step, StopMatcher, TokenPolicy};
use super::grammar::{Constraint, GrammarVocab};
use super::native::tokenizer::GgufTokenizer;
use super::think::{ThinkSplitter, THINK_CLOSE, THINK_OPEN};
use super::{CancelFlag, ChatMessage, ChatModel, FinishReason, Generation, GenerationParams, Sink};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use either::Either;
use mistralrs::{CustomLogitsProcessor, GgufModelBuilder, Model, RequestLike, Response, SamplingParams, StopTokens, TextMessageRole, TextMessages};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A GGUF chat model loaded in mistral.rs.
pub struct MistralRsModel {
    id: String,
    model: Model,
    /// Decodes generated ids inside the logits processor (the engine's own tokenizer
    /// is behind its request channel).
    decoder: Arc<GgufTokenizer>,
    eos: Vec<u32>,
    /// Ids of `\n</think>\n\n`, forced when the thinking budget is spent.
    close_think: Vec<u32>,
    /// Ids of `<think>\n`, prefilled when thinking is asked for and the template has no switch.
    open_think: Vec<u32>,
    /// The template knows `enable_thinking` (Qwen3 style).
    template_thinks: bool,
    /// The vocabulary for constrained decoding (built on first use).
    grammar: std::sync::OnceLock<std::result::Result<Arc<GrammarVocab>, String>>,
    /// One generation at a time: with several sequences batched, mistral.rs 0.8.1 on
    /// CPU was seen to mix tokens between them (our concurrency test caught it), so
    /// concurrent requests queue here instead.
    turn: Mutex<()>,
    // Keeps the engine's async context alive.
    _rt: tokio::runtime::Runtime,
}

impl MistralRsModel {
    /// Load `gguf` (CPU). The chat template and tokenizer come from the file.
    pub fn load(id: &str, gguf: &Path) -> Result<Self> {
        let t0 = Instant::now();
        let mut f = std::fs::File::open(gguf).map_err(|e| Error::io(gguf, e))?;
        let ct = gguf_file::Content::read(&mut f).map_err(|e| Error::invalid("model", format!("'{id}' is not a readable GGUF file: {e}")))?;
        let meta_str = |k: &str| ct.metadata.get(k).and_then(|v| v.to_string().ok()).cloned();
        let template = meta_str("tokenizer.chat_template").unwrap_or_default();
        let mut eos: Vec<u32> = ct.metadata.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()).into_iter().collect();
        // Our reader of the GGUF's vocabulary (SentencePiece or byte-level BPE).
        let decoder = GgufTokenizer::from_gguf(&ct.metadata)?;
        drop(f);
        for t in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "</s>"] {
            if let Some(i) = decoder.id(t) {
                if template.contains(t) && !eos.contains(&i) {
                    eos.push(i);
                }
            }
        }
        if eos.is_empty() {
            return Err(Error::invalid("model", format!("'{id}' names no end-of-sequence token in its GGUF file")));
        }

        let dir = gguf.parent().unwrap_or(Path::new(".")).to_string_lossy().to_string();
        let file = gguf.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lf-mistralrs")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("tokio runtime: {e}")))?;
        let model = rt
            .block_on(GgufModelBuilder::new(dir, vec![file]).with_force_cpu().build())
            .map_err(|e| Error::unavailable(format!("model '{id}'"), format!("mistral.rs could not load it: {e}")))?;
        let tokenize = |text: &str| -> Result<Vec<u32>> {
            rt.block_on(model.tokenize(Either::Right(text.to_string()), None, false, false, None)).map_err(|e| Error::internal(format!("tokenize: {e}")))
        };
        let close_think = tokenize(&format!("\n{THINK_CLOSE}\n\n"))?;
        let open_think = tokenize(&format!("{THINK_OPEN}\n"))?;
        tracing::info!(model = id, secs = t0.elapsed().as_secs_f32(), "loaded GGUF chat model");
        Ok(Self {
            id: id.to_string(),
            model,
            decoder: Arc::new(decoder),
            eos,
            close_think,
            open_think,
            template_thinks: template.contains("enable_thinking"),
            grammar: std::sync::OnceLock::new(),
            turn: Mutex::new(()),
            _rt: rt,
        })
    }

    /// Render `messages` with the model's template and tokenise them (what generation uses).
    pub fn prompt_ids(&self, messages: &[ChatMessage], think: bool) -> Result<Vec<u32>> {
        let mut tm = TextMessages::new();
        for m in messages {
            let role = match m.role.as_str() {
                "system" => TextMessageRole::System,
                "assistant" => TextMessageRole::Assistant,
                "tool" => TextMessageRole::Tool,
                _ => TextMessageRole::User,
            };
            tm = tm.add_message(role, &m.content);
        }
        let enable = if self.template_thinks { Some(think) } else { None };
        futures::executor::block_on(self.model.tokenize(Either::Left(tm), None, true, true, enable))
            .map_err(|e| Error::invalid("chat template", format!("of model '{}' does not render: {e}", self.id)))
    }
}

/// The logits processor of one request: applies the shared [`TokenPolicy`].
struct TokenControl {
    policy: Mutex<TokenPolicy>,
    prompt_len: usize,
    decoder: Arc<GgufTokenizer>,
    eos: u32,
    /// With a `seed`: our seeded sampler picks each free token (mistral.rs has no seed),
    /// and the engine is handed only that token.
    sampler: Option<Mutex<Sampler>>,
    /// The grammar of a constrained request, and how many generated tokens it has seen.
    constraint: Option<Mutex<(Constraint, usize)>>,
}

impl TokenControl {
    fn force(logits: &Tensor, token: u32) -> candle_core::Result<Tensor> {
        let mut v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let keep = v.get(token as usize).copied().unwrap_or(0.0).max(0.0);
        v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        if let Some(x) = v.get_mut(token as usize) {
            *x = keep;
        }
        Tensor::from_vec(v, logits.dims().to_vec(), &Device::Cpu)
    }
}

impl CustomLogitsProcessor for TokenControl {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        let mut policy = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let gen = context.get(self.prompt_len..).unwrap_or(&[]);
        let mut grammar = self.constraint.as_ref().map(|c| c.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(g) = grammar.as_mut() {
            // The tokens the engine chose since the last call.
            let (c, seen) = &mut **g;
            for &t in &gen[(*seen).min(gen.len())..] {
                c.accept(t).map_err(candle_core::Error::msg)?;
            }
            *seen = gen.len();
            if c.is_done() {
                return Self::force(logits, self.eos);
            }
        }
        match policy.next(gen, |ids| self.decoder.decode(ids)) {
            Step::Free if grammar.is_some() || self.sampler.is_some() => {
                let mut v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
                if let Some(g) = grammar.as_mut() {
                    g.0.mask(&mut v).map_err(candle_core::Error::msg)?;
                }
                match &self.sampler {
                    Some(s) => {
                        let t = s.lock().unwrap_or_else(|p| p.into_inner()).sample(&v);
                        Self::force(logits, t)
                    }
                    None => Tensor::from_vec(v, logits.dims().to_vec(), &Device::Cpu),
                }
            }
            Step::Free => Ok(logits.clone()),
            Step::Force(t) => Self::force(logits, t),
            // The engine ends on EOS.
            Step::End => Self::force(logits, self.eos),
        }
    }
}

/// A completion request of raw token ids with our processor (mistral.rs's builders
/// only take chat messages).
struct TokenRequest {
    ids: Option<Vec<u32>>,
    sampling: Option<SamplingParams>,
    processor: Option<Arc<dyn CustomLogitsProcessor>>,
}

impl RequestLike for TokenRequest {
    fn messages_ref(&self) -> &[indexmap::IndexMap<String, mistralrs::MessageContent>] {
        &[]
    }
    fn images_ref(&self) -> &[image::DynamicImage] {
        &[]
    }
    fn take_messages(&mut self) -> mistralrs::core::RequestMessage {
        mistralrs::core::RequestMessage::CompletionTokens(self.ids.take().unwrap_or_default())
    }
    fn take_logits_processors(&mut self) -> Option<Vec<Arc<dyn CustomLogitsProcessor>>> {
        self.processor.take().map(|p| vec![p])
    }
    fn take_adapters(&mut self) -> Option<Vec<String>> {
        None
    }
    fn return_logprobs(&self) -> bool {
        false
    }
    fn enable_search(&self) -> Option<bool> {
        None
    }
    fn take_constraint(&mut self) -> mistralrs::Constraint {
        mistralrs::Constraint::None
    }
    fn take_tools(&mut self) -> Option<(Vec<mistralrs::Tool>, mistralrs::ToolChoice)> {
        None
    }
    fn take_sampling_params(&mut self) -> SamplingParams {
        self.sampling.take().unwrap_or_else(SamplingParams::deterministic)
    }
    fn take_web_search_options(&mut self) -> Option<mistralrs::WebSearchOptions> {
        None
    }
}

impl ChatModel for MistralRsModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let constraint = super::native::constraint_for(&self.grammar, &self.decoder, params)?;
        let params = &*unthinking(params, constraint.is_some());
        let PreparedPrompt { ids, prefilled, budget, t0 } = prepare_prompt(
            &self.id,
            usize::MAX,
            cancel,
            params,
            self.template_thinks,
            &self.open_think,
            || self.prompt_ids(messages, params.think),
            |ids| self.decoder.decode(ids),
        )?;
        let prompt_tokens = ids.len();
        let control = Arc::new(TokenControl {
            policy: Mutex::new(TokenPolicy::new(self.close_think.clone(), params.max_tokens, budget, prefilled, cancel.clone())),
            prompt_len: prompt_tokens,
            decoder: self.decoder.clone(),
            eos: self.eos[0],
            sampler: params.seed.map(|_| Sampler::new(params)).filter(|s| !s.is_greedy()).map(Mutex::new),
            constraint: constraint.map(|c| Mutex::new((c, 0))),
        });
        let mut sampling = match params.temperature {
            None => SamplingParams::deterministic(),
            Some(t) if t <= 0.0 => SamplingParams::deterministic(),
            Some(t) => {
                let mut s = SamplingParams::deterministic();
                s.temperature = Some(t);
                s.top_k = params.top_k;
                s.top_p = params.top_p;
                s
            }
        };
        if params.temperature.is_none() || params.temperature == Some(0.0) {
            if let Some(k) = params.top_k.filter(|k| *k > 1) {
                // top_k without a temperature: sample at temperature 1 among the top k.
                sampling.temperature = Some(1.0);
                sampling.top_k = Some(k);
                sampling.top_p = params.top_p;
            }
        }
        // Hard cap: thinking + closing tag + answer + EOS.
        sampling.max_len = Some(budget + self.close_think.len() + params.max_tokens + 2);
        sampling.stop_toks = if params.stop.is_empty() { None } else { Some(StopTokens::Seqs(params.stop.clone())) };
        let request = TokenRequest { ids: Some(ids), sampling: Some(sampling), processor: Some(control.clone()) };

        let mut splitter = ThinkSplitter::new(prefilled);
        let mut stops = StopMatcher::new(&params.stop);
        let mut failure: Option<Error> = None;
        let mut finish_text: Option<String> = None;
        futures::executor::block_on(async {
            let mut stream = match self.model.stream_chat_request(request).await {
                Ok(s) => s,
                Err(e) => {
                    failure = Some(Error::internal(format!("mistral.rs: {e}")));
                    return;
                }
            };
            let mut gone = false;
            while let Some(resp) = stream.next().await {
                match resp {
                    Response::CompletionChunk(c) => {
                        for ch in &c.choices {
                            // mistral.rs stops at a stop sequence but may pass it (and
                            // what follows it in the same chunk) through: cut it ourselves.
                            let text = stops.push(&ch.text);
                            if !gone {
                                splitter.push(&text, &mut |ev| {
                                    if !sink(ev) {
                                        gone = true;
                                    }
                                });
                                if gone {
                                    cancel.cancel();
                                }
                            }
                            if let Some(r) = &ch.finish_reason {
                                finish_text = Some(r.clone());
                            }
                        }
                        if stops.hit() {
                            finish_text = Some("stop".into());
                        }
                        if finish_text.is_some() {
                            break;
                        }
                    }
                    Response::CompletionDone(d) => {
                        for ch in &d.choices {
                            let text = stops.push(&ch.text);
                            splitter.push(&text, &mut |ev| {
                                let _ = sink(ev);
                            });
                            finish_text = Some(ch.finish_reason.clone());
                        }
                        break;
                    }
                    Response::InternalError(e) | Response::ValidationError(e) => {
                        failure = Some(Error::internal(format!("mistral.rs: {e}")));
                        break;
                    }
                    Response::CompletionModelError(e, _) | Response::ModelError(e, _) => {
                        failure = Some(Error::internal(format!("mistral.rs: {e}")));
                        break;
                    }
                    _ => {}
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if !stops.hit() {
            splitter.push(&stops.finish(), &mut |ev| {
                let _ = sink(ev);
            });
        }
        splitter.finish(&mut |ev| {
            let _ = sink(ev);
        });
        let st = control.policy.lock().unwrap_or_else(|p| p.into_inner());
        let finish_reason = if st.cancelled || cancel.is_cancelled() {
            FinishReason::Cancelled
        } else if st.length_forced || finish_text.as_deref() == Some("length") {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        // Each processor call produced one token. The last one is an EOS (natural, or
        // forced for max_tokens / cancel) unless the engine's length cap ended it or a
        // stop sequence did (whose tokens OpenAI counts).
        let engine_cap = finish_text.as_deref() == Some("length") && !st.length_forced;
        let last_is_eos = st.steps > 0 && !engine_cap && (params.stop.is_empty() || st.length_forced || st.cancelled);
        let completion_tokens = st.steps - usize::from(last_is_eos);
        Ok(st.generation(splitter, prompt_tokens, completion_tokens, finish_reason, t0))
    }
}
