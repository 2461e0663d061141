//! Admission of generations to one local model: at most `max_concurrent` run at once
//! (the native engine batches them), at most `max_queued` wait, and a request past
//! both is refused at once with [`Error::Busy`] and an estimate of when to retry.
//! A waiting request that is cancelled (its client left) leaves the queue.

use super::{CancelFlag, ChatMessage, ChatModel, Generation, GenerationParams, Sink};
use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bounds on the generations of one model (set on [`super::LlmSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationLimits {
    /// Generations that run at once (default 16; at least 1).
    pub max_concurrent: usize,
    /// Generations that may wait for a slot (default 64); past this a request is
    /// refused with [`Error::Busy`].
    pub max_queued: usize,
}

impl Default for GenerationLimits {
    fn default() -> Self {
        Self { max_concurrent: 16, max_queued: 64 }
    }
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    queued: usize,
    /// Mean seconds of a finished generation (exponential, weight 1/8); 0 before the first.
    mean_s: f64,
}

/// A chat model behind an admission gate.
pub struct Gated {
    inner: Arc<dyn ChatModel>,
    limits: GenerationLimits,
    state: Mutex<State>,
    freed: Condvar,
}

/// How often a queued request looks at its cancel flag.
const POLL: Duration = Duration::from_millis(100);

impl Gated {
    /// Put `inner` behind `limits`.
    pub fn new(inner: Arc<dyn ChatModel>, limits: GenerationLimits) -> Self {
        let limits = GenerationLimits { max_concurrent: limits.max_concurrent.max(1), ..limits };
        Self { inner, limits, state: Mutex::new(State::default()), freed: Condvar::new() }
    }

    /// Generations running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let st = self.lock();
        (st.running, st.queued)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot, waiting in the queue when all are taken.
    fn admit(&self, cancel: &CancelFlag) -> Result<Slot<'_>> {
        let mut st = self.lock();
        if st.running >= self.limits.max_concurrent {
            if st.queued >= self.limits.max_queued {
                // Each waiting request needs one slot for about one mean generation.
                let rounds = (st.queued + 1).div_ceil(self.limits.max_concurrent) as f64;
                let retry_after_s = (rounds * st.mean_s.max(1.0)).ceil().clamp(1.0, 600.0) as u64;
                return Err(Error::Busy {
                    what: format!("model '{}'", self.inner.id()),
                    reason: format!("{} generations running, {} queued", st.running, st.queued),
                    retry_after_s,
                });
            }
            st.queued += 1;
            while st.running >= self.limits.max_concurrent {
                if cancel.is_cancelled() {
                    st.queued -= 1;
                    return Err(Error::Cancelled);
                }
                st = self.freed.wait_timeout(st, POLL).unwrap_or_else(|p| p.into_inner()).0;
            }
            st.queued -= 1;
        }
        st.running += 1;
        Ok(Slot { gate: self, started: Instant::now() })
    }
}

/// A running generation's slot; given back on drop (also on a panic).
struct Slot<'a> {
    gate: &'a Gated,
    started: Instant,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.running -= 1;
        let s = self.started.elapsed().as_secs_f64();
        st.mean_s = if st.mean_s == 0.0 { s } else { st.mean_s + (s - st.mean_s) / 8.0 };
        drop(st);
        self.gate.freed.notify_one();
    }
}

impl ChatModel for Gated {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn generate(&self, messages: &[ChatMessage], params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _slot = self.admit(cancel)?;
        self.inner.generate(messages, params, cancel, sink)
    }

    fn continue_text(&self, prompt: &str, params: &GenerationParams, cancel: &CancelFlag, sink: Sink<'_>) -> Result<Generation> {
        let _slot = self.admit(cancel)?;
        self.inner.continue_text(prompt, params, cancel, sink)
    }

    fn renders_tools(&self) -> bool {
        self.inner.renders_tools()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FinishReason;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A model that holds each generation until `release` opens, counting how many run at once.
    struct Held {
        release: Mutex<bool>,
        open: Condvar,
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl ChatModel for Held {
        fn id(&self) -> &str {
            "held"
        }
        fn generate(&self, _: &[ChatMessage], _: &GenerationParams, _: &CancelFlag, _: Sink<'_>) -> Result<Generation> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            let mut r = self.release.lock().unwrap();
            while !*r {
                r = self.open.wait(r).unwrap();
            }
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Generation {
                content: "ok".into(),
                thinking: None,
                prompt_tokens: 0,
                cached_tokens: 0,
                completion_tokens: 0,
                reasoning_tokens: 0,
                finish_reason: FinishReason::Stop,
                ttft_ms: None,
                duration_ms: 0.0,
                tool_calls: vec![],
            })
        }
    }

    fn wait_for(g: &Gated, want: (usize, usize)) {
        let t = Instant::now();
        while g.load() != want {
            assert!(t.elapsed() < Duration::from_secs(10), "gate stuck at {:?}, want {want:?}", g.load());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_at_most_max_concurrent_queues_the_rest_and_refuses_past_the_queue() {
        let held = Arc::new(Held { release: Mutex::new(false), open: Condvar::new(), now: AtomicUsize::new(0), peak: AtomicUsize::new(0) });
        let g = Arc::new(Gated::new(held.clone(), GenerationLimits { max_concurrent: 2, max_queued: 3 }));
        let mut handles = vec![];
        for _ in 0..5 {
            let g = g.clone();
            handles.push(std::thread::spawn(move || g.generate(&[], &GenerationParams::default(), &CancelFlag::new(), &mut |_| true)));
        }
        wait_for(&g, (2, 3));
        // The sixth is refused at once, with a retry estimate.
        match g.generate(&[], &GenerationParams::default(), &CancelFlag::new(), &mut |_| true) {
            Err(Error::Busy { retry_after_s, reason, .. }) => {
                assert!(retry_after_s >= 1, "{retry_after_s}");
                assert_eq!(reason, "2 generations running, 3 queued");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        *held.release.lock().unwrap() = true;
        held.open.notify_all();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap().content, "ok");
        }
        assert_eq!(held.peak.load(Ordering::SeqCst), 2);
        assert_eq!(g.load(), (0, 0));
    }

    #[test]
    fn a_cancelled_waiter_leaves_the_queue() {
        let held = Arc::new(Held { release: Mutex::new(false), open: Condvar::new(), now: AtomicUsize::new(0), peak: AtomicUsize::new(0) });
        let g = Arc::new(Gated::new(held.clone(), GenerationLimits { max_concurrent: 1, max_queued: 1 }));
        let g1 = g.clone();
        let running = std::thread::spawn(move || g1.generate(&[], &GenerationParams::default(), &CancelFlag::new(), &mut |_| true));
        wait_for(&g, (1, 0));
        let cancel = CancelFlag::new();
        let (g2, c2) = (g.clone(), cancel.clone());
        let waiting = std::thread::spawn(move || g2.generate(&[], &GenerationParams::default(), &c2, &mut |_| true));
        wait_for(&g, (1, 1));
        cancel.cancel();
        assert!(matches!(waiting.join().unwrap(), Err(Error::Cancelled)));
        assert_eq!(g.load(), (1, 0));
        *held.release.lock().unwrap() = true;
        held.open.notify_all();
        assert!(running.join().unwrap().is_ok());
        assert_eq!(g.load(), (0, 0));
    }
}
