//! Token-level generation control shared by the local engines.
//!
//! [`TokenPolicy`] decides, before each generated token, whether the engine may
//! sample freely, must emit a forced token (the closing tag of a thinking block
//! whose budget is spent) or must end (answer `max_tokens` reached, caller
//! cancelled). It tracks where the thinking block ends so `max_tokens` counts only
//! answer tokens and the usage can split reasoning tokens out. mistral.rs applies
//! it inside a logits processor; llama.cpp applies it in our own decode loop.
//!
//! [`StopMatcher`] finds stop sequences in streamed text for engines that have no
//! stop handling of their own, holding back text that may be the start of one.

use super::grammar::Constraint;
use super::think::{THINK_CLOSE, THINK_OPEN};
use super::{CancelFlag, GenerationParams};
use std::collections::VecDeque;
use std::time::Instant;

/// What the engine does for the next token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Sample as usual.
    Free,
    /// Emit exactly this token.
    Force(u32),
    /// End the generation now (the flags say why).
    End,
}

/// Per-request token policy (see the module docs).
pub(crate) struct TokenPolicy {
    /// Policy decisions made (one per generated token, plus the final `End`).
    pub steps: usize,
    forced: VecDeque<u32>,
    /// Generated-token index where the answer starts (after `</think>`), once known.
    pub answer_start: Option<usize>,
    in_thinking: bool,
    budget_forced: bool,
    /// `max_tokens` answer tokens were generated.
    pub length_forced: bool,
    /// The caller cancelled.
    pub cancelled: bool,
    /// When the first decision was asked for (the prompt is processed by then).
    pub first_token_at: Option<Instant>,
    close_think: Vec<u32>,
    max_tokens: usize,
    budget: usize,
    cancel: CancelFlag,
}

impl TokenPolicy {
    /// `prefilled`: the prompt already opened a thinking block.
    pub fn new(close_think: Vec<u32>, max_tokens: usize, budget: usize, prefilled: bool, cancel: CancelFlag) -> Self {
        Self {
            steps: 0,
            forced: VecDeque::new(),
            answer_start: None,
            in_thinking: prefilled,
            budget_forced: false,
            length_forced: false,
            cancelled: false,
            first_token_at: None,
            close_think,
            max_tokens: max_tokens.max(1),
            budget: budget.max(1),
            cancel,
        }
    }

    /// Decide the next token, given the tokens generated so far and a decoder for them.
    pub fn next(&mut self, gen: &[u32], decode: impl Fn(&[u32]) -> String) -> Step {
        self.steps += 1;
        if self.first_token_at.is_none() {
            self.first_token_at = Some(Instant::now());
        }
        if let Some(t) = self.forced.pop_front() {
            if self.forced.is_empty() && self.answer_start.is_none() && self.budget_forced {
                // The closing tag is complete once this token is emitted.
                self.answer_start = Some(gen.len() + 1);
                self.in_thinking = false;
            }
            return Step::Force(t);
        }
        if self.cancel.is_cancelled() {
            self.cancelled = true;
            return Step::End;
        }
        // Where are we: thinking or answering?
        if self.answer_start.is_none() && !gen.is_empty() {
            let text = decode(gen);
            if self.in_thinking {
                if text.contains(THINK_CLOSE) {
                    self.answer_start = Some(gen.len());
                    self.in_thinking = false;
                }
            } else {
                let t = text.trim_start();
                if t.starts_with(THINK_OPEN) {
                    self.in_thinking = true;
                    if t.contains(THINK_CLOSE) {
                        self.answer_start = Some(gen.len());
                        self.in_thinking = false;
                    }
                } else if !THINK_OPEN.starts_with(t) {
                    self.answer_start = Some(0);
                }
            }
        }
        if self.in_thinking && gen.len() >= self.budget && !self.budget_forced && !self.close_think.is_empty() {
            self.budget_forced = true;
            self.forced = self.close_think.iter().copied().collect();
            let t = self.forced.pop_front().unwrap_or_default();
            if self.forced.is_empty() {
                self.answer_start = Some(gen.len() + 1);
                self.in_thinking = false;
            }
            return Step::Force(t);
        }
        let answer_tokens = match self.answer_start {
            Some(s) => gen.len().saturating_sub(s),
            None if self.in_thinking => 0,
            None => gen.len(),
        };
        if answer_tokens >= self.max_tokens {
            self.length_forced = true;
            return Step::End;
        }
        Step::Free
    }

    /// Reasoning tokens among `completion_tokens` (`saw_thinking`: the text had a thinking block).
    pub fn reasoning_tokens(&self, completion_tokens: usize, saw_thinking: bool) -> usize {
        match self.answer_start {
            Some(s) => s.min(completion_tokens),
            None if saw_thinking => completion_tokens,
            None => 0,
        }
    }
}

/// Open the thinking block in the prompt when thinking is asked for and the template
/// has no switch of its own (and the rendered prompt does not already open one).
/// Returns whether the generation starts inside a thinking block, and the thinking
/// budget the policy should enforce.
pub(crate) fn prepare_thinking(ids: &mut Vec<u32>, prompt_text: &str, params: &GenerationParams, template_thinks: bool, open_think: &[u32]) -> (bool, usize) {
    let opened = prompt_text.trim_end().ends_with(THINK_OPEN);
    let prefilled = if params.think && !template_thinks && !opened {
        ids.extend_from_slice(open_think);
        true
    } else {
        params.think && opened
    };
    let budget = if params.think { params.thinking_budget } else { params.thinking_budget.min(super::DEFAULT_THINKING_BUDGET) };
    (prefilled, budget)
}

/// `params` with thinking off when the answer is constrained (the grammar applies from
/// the first generated token, so there is no room for a thinking block).
pub(crate) fn unthinking(params: &GenerationParams, constrained: bool) -> std::borrow::Cow<'_, GenerationParams> {
    if constrained && params.think {
        std::borrow::Cow::Owned(GenerationParams { think: false, ..params.clone() })
    } else {
        std::borrow::Cow::Borrowed(params)
    }
}

/// A request's prompt, ready for a local engine.
pub(crate) struct PreparedPrompt {
    /// Token ids, with a thinking block opened when asked for.
    pub ids: Vec<u32>,
    /// Generation starts inside a thinking block.
    pub prefilled: bool,
    /// The thinking budget to enforce.
    pub budget: usize,
    /// When the request started.
    pub t0: Instant,
}

/// What every local engine's `generate` does first (its caller holds the model's turn):
/// refuse a request cancelled while it queued, render and tokenise the prompt (`ids`),
/// open the thinking block if needed, and check the prompt fits `n_ctx`.
pub(crate) fn prepare_prompt(
    model: &str,
    n_ctx: usize,
    cancel: &CancelFlag,
    params: &GenerationParams,
    template_thinks: bool,
    open_think: &[u32],
    ids: impl FnOnce() -> crate::error::Result<Vec<u32>>,
    decode: impl Fn(&[u32]) -> String,
) -> crate::error::Result<PreparedPrompt> {
    use crate::error::Error;
    if cancel.is_cancelled() {
        return Err(Error::invalid("request", "was cancelled before it started"));
    }
    let t0 = Instant::now();
    let mut ids = ids()?;
    let prompt_text = decode(&ids);
    let (prefilled, budget) = prepare_thinking(&mut ids, &prompt_text, params, template_thinks, open_think);
    if ids.len() + 1 >= n_ctx {
        return Err(Error::invalid("prompt", format!("is {} tokens; model '{model}' has a context of {n_ctx} tokens (extra_body.n_ctx)", ids.len())));
    }
    Ok(PreparedPrompt { ids, prefilled, budget, t0 })
}

impl TokenPolicy {
    /// The finished [`Generation`](super::Generation): text and thinking from `splitter`,
    /// token counts, timings from `t0`.
    pub fn generation(
        &self,
        splitter: super::think::ThinkSplitter,
        prompt_tokens: usize,
        completion_tokens: usize,
        finish_reason: super::FinishReason,
        t0: Instant,
    ) -> super::Generation {
        let reasoning_tokens = self.reasoning_tokens(completion_tokens, splitter.saw_thinking());
        let (content, thinking) = splitter.into_parts();
        super::Generation {
            content,
            thinking,
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens,
            reasoning_tokens,
            finish_reason,
            ttft_ms: self.first_token_at.map(|t| (t - t0).as_secs_f64() * 1000.0),
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
            tool_calls: Vec::new(),
            logprobs: None,
        }
    }
}

/// Finds stop sequences in streamed text (see the module docs).
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    /// Text not yet released (may be the start of a stop sequence).
    pending: String,
    hit: bool,
}

#[cfg_attr(not(feature = "llm-llamacpp"), allow(dead_code))]
impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new(), hit: false }
    }

    /// Whether a stop sequence was seen (generation should end).
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Add streamed text; returns the text that is safe to release.
    pub fn push(&mut self, text: &str) -> String {
        if self.hit {
            return String::new();
        }
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            self.hit = true;
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return out;
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && self.pending.ends_with(&s[..i]) {
                    keep = i;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        out
    }

    /// The end of the stream: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// A local engine as [`decode_loop`] drives it: the model state after the prompt.
pub(crate) trait Decoder {
    /// Choose the next token from the current logits, among those `constraint` allows
    /// (see [`Constraint::mask`]); `None` when the model ends its turn.
    fn sample(&mut self, constraint: Option<&mut Constraint>) -> crate::error::Result<Option<u32>>;
    /// Run `token` at the next position (new logits); `false` when the context is full.
    fn feed(&mut self, token: u32) -> crate::error::Result<bool>;
    /// The bytes of one token.
    fn piece(&self, token: u32) -> Vec<u8>;
    /// Text of some tokens.
    fn decode_text(&self, ids: &[u32]) -> String;
    /// The log-probability of `token` at this step, with the `top` most likely tokens
    /// (see [`token_logprob`]); `None` where the engine keeps no logits.
    fn logprob(&self, _token: u32, _top: usize) -> Option<super::TokenLogprob> {
        None
    }
}

/// `token`'s log-probability under the softmax of `logits`, with the `top` most likely
/// tokens (most likely first; ties by the lower id). `piece` gives a token's bytes.
pub(crate) fn token_logprob(logits: &[f32], token: u32, top: usize, piece: impl Fn(u32) -> Vec<u8>) -> super::TokenLogprob {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&l| f64::from(l - m).exp()).sum();
    let lse = f64::from(m) + z.ln();
    let lp = |t: u32| logits.get(t as usize).map_or(f32::NEG_INFINITY, |&l| (f64::from(l) - lse) as f32);
    let order = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    let top = top.min(logits.len());
    let mut ids: Vec<u32> = if top == 0 { Vec::new() } else { (0..logits.len() as u32).collect() };
    if top > 0 && top < ids.len() {
        ids.select_nth_unstable_by(top - 1, order);
    }
    ids.truncate(top);
    ids.sort_by(order);
    let entry = |t: u32| {
        let bytes = piece(t);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (text, bytes) = entry(token);
    super::TokenLogprob {
        token: text,
        bytes,
        logprob: lp(token),
        top: ids
            .into_iter()
            .map(|t| {
                let (token, bytes) = entry(t);
                super::TopLogprob { token, bytes, logprob: lp(t) }
            })
            .collect(),
    }
}

/// Our own decode loop, for engines without one: the [`TokenPolicy`] decides each step,
/// text is released as whole UTF-8 characters through the [`StopMatcher`] and split
/// into thinking and answer for `sink`. With a `constraint`, each free token is chosen
/// among those the grammar allows, and the generation ends when the grammar is complete.
/// Returns the finished [`Generation`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_loop(
    d: &mut dyn Decoder,
    mut policy: TokenPolicy,
    mut constraint: Option<Constraint>,
    params: &super::GenerationParams,
    prefilled: bool,
    cancel: &CancelFlag,
    sink: super::Sink<'_>,
    prompt_tokens: usize,
    t0: Instant,
) -> crate::error::Result<super::Generation> {
    use super::think::ThinkSplitter;
    use super::FinishReason;
    let mut stops = StopMatcher::new(&params.stop);
    let mut logprobs: Option<Vec<super::TokenLogprob>> = params.logprobs.map(|_| Vec::new());
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
        let token = match policy.next(&gen, |g| d.decode_text(g)) {
            Step::End => break,
            Step::Force(t) => t,
            Step::Free if constraint.as_ref().is_some_and(Constraint::is_done) => {
                natural_end = true;
                break;
            }
            Step::Free => match d.sample(constraint.as_mut())? {
                Some(t) => {
                    if let Some(c) = constraint.as_mut() {
                        c.accept(t)?;
                    }
                    t
                }
                None => {
                    natural_end = true;
                    break;
                }
            },
        };
        if let (Some(lps), Some(top)) = (logprobs.as_mut(), params.logprobs) {
            lps.extend(d.logprob(token, top));
        }
        gen.push(token);
        pending.extend(d.piece(token));
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
        if stops.hit() || !d.feed(token)? {
            break;
        }
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
    let mut g = policy.generation(splitter, prompt_tokens, gen.len(), finish_reason, t0);
    g.logprobs = logprobs;
    Ok(g)
}

/// Greedy, or temperature / top-k / top-p sampling (a per-request xorshift seeded with
/// the request's `seed`, else from the clock).
pub(crate) struct Sampler {
    temperature: f32,
    top_k: Option<usize>,
    top_p: f32,
    rng: u64,
}

impl Sampler {
    pub(crate) fn new(p: &super::GenerationParams) -> Self {
        let k = p.top_k.filter(|k| *k > 1);
        let t = p.temperature.unwrap_or(0.0) as f32;
        // top_k without a temperature samples at temperature 1 among the top k.
        let temperature = if t <= 0.0 && k.is_some() { 1.0 } else { t.max(0.0) };
        let seed = p
            .seed
            .map(|s| s.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D)
            .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(42));
        Self { temperature, top_k: k, top_p: p.top_p.unwrap_or(1.0) as f32, rng: seed | 1 }
    }

    /// Whether every step takes the top token.
    pub(crate) fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    fn uniform(&mut self) -> f32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(crate) fn sample(&mut self, logits: &[f32]) -> u32 {
        let argmax = || logits.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32;
        if self.temperature <= 0.0 {
            return argmax();
        }
        let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
        let k = self.top_k.unwrap_or(c.len()).min(c.len()).max(1);
        if k < c.len() {
            c.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            c.truncate(k);
        }
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        let m = c[0].1;
        let mut z = 0f32;
        for x in c.iter_mut() {
            x.1 = ((x.1 - m) / self.temperature).exp();
            z += x.1;
        }
        let mut keep = c.len();
        if self.top_p < 1.0 {
            let mut cum = 0f32;
            for (i, x) in c.iter().enumerate() {
                cum += x.1 / z;
                if cum >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let z: f32 = c[..keep].iter().map(|x| x.1).sum();
        let mut u = self.uniform() * z;
        for x in &c[..keep] {
            u -= x.1;
            if u <= 0.0 {
                return x.0;
            }
        }
        c[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_logprobs_are_the_log_softmax_with_the_top_tokens_first() {
        let logits = [1.0f32, 3.0, 2.0, f32::NEG_INFINITY, 3.0];
        let piece = |t: u32| vec![b'a' + t as u8];
        let t = token_logprob(&logits, 2, 3, piece);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((f64::from(t.logprob) - (2.0 - z.ln())).abs() < 1e-6, "{t:?}");
        assert_eq!((t.token.as_str(), t.bytes.as_slice()), ("c", b"c".as_slice()));
        // Most likely first; the tie between ids 1 and 4 goes to the lower id.
        assert_eq!(t.top.iter().map(|x| x.token.as_str()).collect::<Vec<_>>(), ["b", "e", "c"]);
        assert_eq!(t.top[2].logprob, t.logprob);
        // A token a grammar excluded has no probability; asking for more than the vocabulary gives all of it.
        assert_eq!(token_logprob(&logits, 3, 0, piece).logprob, f32::NEG_INFINITY);
        let all = token_logprob(&logits, 1, 99, piece);
        assert_eq!(all.top.len(), 5);
        assert!((all.top.iter().map(|x| f64::from(x.logprob).exp()).sum::<f64>() - 1.0).abs() < 1e-6);
    }

    fn words(gen: &[u32]) -> String {
        // Token 1 = "<think>", 2 = "</think>", others = "x".
        gen.iter()
            .map(|t| match t {
                1 => THINK_OPEN,
                2 => THINK_CLOSE,
                _ => "x",
            })
            .collect()
    }

    #[test]
    fn max_tokens_counts_answer_tokens_only() {
        let mut p = TokenPolicy::new(vec![2], 3, 100, false, CancelFlag::new());
        let mut gen = vec![];
        while p.next(&gen, words) == Step::Free {
            gen.push(9);
        }
        assert_eq!(gen.len(), 3);
        assert!(p.length_forced);
        assert_eq!(p.reasoning_tokens(3, false), 0);
    }

    #[test]
    fn thinking_budget_forces_the_closing_tag() {
        let mut p = TokenPolicy::new(vec![7, 2], 2, 4, true, CancelFlag::new());
        let mut gen = vec![];
        loop {
            match p.next(&gen, words) {
                Step::Free => gen.push(9),
                Step::Force(t) => gen.push(t),
                Step::End => break,
            }
        }
        // 4 thinking tokens, the two forced closing tokens, then 2 answer tokens.
        assert_eq!(gen, vec![9, 9, 9, 9, 7, 2, 9, 9]);
        assert_eq!(p.answer_start, Some(6));
        assert_eq!(p.reasoning_tokens(gen.len(), true), 6);
    }

    #[test]
    fn cancel_ends_within_one_token() {
        let c = CancelFlag::new();
        let mut p = TokenPolicy::new(vec![2], 100, 100, false, c.clone());
        assert_eq!(p.next(&[], words), Step::Free);
        c.cancel();
        assert_eq!(p.next(&[9], words), Step::End);
        assert!(p.cancelled);
    }

    #[test]
    fn stop_matcher_holds_back_partial_stops() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("hello E"), "hello ");
        assert_eq!(m.push("N"), "");
        assert_eq!(m.push("D tail"), "");
        assert!(m.hit());
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("hello E"), "hello ");
        assert_eq!(m.push("gg"), "Egg");
        assert!(!m.hit());
        assert_eq!(m.push("x EN"), "x ");
        assert_eq!(m.finish(), "EN");
    }
}
