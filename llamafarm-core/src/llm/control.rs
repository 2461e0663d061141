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

/// Finds stop sequences in streamed text (see the module docs).
#[cfg_attr(not(feature = "llm-llamacpp"), allow(dead_code))]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(gen: &[u32]) -> String {
        // Token 1 = "<think>", 2 = "</think>", others = "x".
        gen.iter().map(|t| match t {
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
