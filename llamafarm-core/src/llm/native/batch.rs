//! Continuous batching: the forward passes of concurrent requests to one model run
//! together, one batched pass per step over every sequence that is ready.
//!
//! Each request keeps its own thread, decode loop and KV cache; only the forward pass is
//! shared. A request [`join`](Batcher::join)s the model's batcher, and each of its
//! passes (a prompt chunk or one generated token) is a step handed to
//! [`Batcher::run`]. The first waiting request to see every member's step pending (or
//! to have waited 2 ms for a member busy sampling or streaming) becomes the
//! leader: it takes every pending step, runs them in one
//! [`Llama::forward_batch`](super::llama::Llama::forward_batch) on the model's thread
//! team and hands each request its logits back. A new request joins at the next step; a
//! finished, cancelled or disconnected one leaves when its membership drops, and nobody
//! waits for it again. One request alone runs its steps at once, so a single stream pays
//! nothing for this.
//!
//! Long prompts are cut into [`PREFILL_CHUNK`]-token steps, so a new prompt delays the
//! running streams by one chunk's time per step, not by its whole prefill. The chunking
//! is the same with or without company, and a sequence's rows are computed on their own
//! in a batched pass, so greedy output does not depend on what else runs.

use super::attention::KvCache;
use super::llama::Llama;
use super::team::Team;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Tokens per prompt step.
pub const PREFILL_CHUNK: usize = 128;

/// Longest a ready step waits for the other members' steps before running without them.
const GATHER: Duration = Duration::from_millis(2);

/// Most tokens in one batched pass (prompt chunks of further requests wait a step).
const MAX_BATCH_TOKENS: usize = 512;

struct Step {
    ticket: u64,
    tokens: Vec<u32>,
    cache: KvCache,
}

#[derive(Default)]
struct State {
    /// Requests generating.
    members: usize,
    pending: Vec<Step>,
    /// A leader is running a pass.
    busy: bool,
    done: HashMap<u64, (KvCache, Result<Vec<f32>>)>,
    next: u64,
    /// Most sequences seen in one pass.
    widest: usize,
}

/// See the module docs.
pub struct Batcher {
    state: Mutex<State>,
    ready: Condvar,
    team: Team,
}

/// A request's membership; dropping it leaves the batch.
pub struct Member<'a> {
    b: &'a Batcher,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let mut st = self.b.lock();
        st.members = st.members.saturating_sub(1);
        drop(st);
        self.b.ready.notify_all();
    }
}

impl Batcher {
    /// A batcher whose passes run on `team`.
    pub fn new(team: Team) -> Self {
        Self { state: Mutex::new(State::default()), ready: Condvar::new(), team }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Join: this request's steps are now awaited by the others' passes.
    pub fn join(&self) -> Member<'_> {
        self.lock().members += 1;
        Member { b: self }
    }

    /// Most sequences that have run in one pass so far.
    pub fn widest(&self) -> usize {
        self.lock().widest
    }

    /// Run `tokens` at `cache`'s next positions, batched with the other members' steps;
    /// returns the logits of the last token. Prompts longer than [`PREFILL_CHUNK`] run
    /// as several steps.
    pub fn run(&self, _member: &Member<'_>, model: &Llama, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        // A bad token fails its own request, not the pass it would share.
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= model.cfg.vocab) {
            return Err(Error::internal(format!("token id {t} is outside the vocabulary of {}", model.cfg.vocab)));
        }
        let mut last = None;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            last = Some(self.step(model, chunk, cache)?);
        }
        last.ok_or_else(|| Error::internal("nothing to run"))
    }

    fn step(&self, model: &Llama, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let mut st = self.lock();
        let ticket = st.next;
        st.next += 1;
        st.pending.push(Step { ticket, tokens: tokens.to_vec(), cache: std::mem::replace(cache, KvCache::new(0, 0, 0)) });
        let since = Instant::now();
        loop {
            if let Some((c, r)) = st.done.remove(&ticket) {
                *cache = c;
                return r;
            }
            let all_in = st.pending.len() >= st.members.max(1);
            if !st.busy && !st.pending.is_empty() && (all_in || since.elapsed() >= GATHER) {
                // Lead: take the pending steps (up to the token budget, oldest first).
                st.busy = true;
                let mut take = 0;
                let mut n = 0;
                for s in &st.pending {
                    if take > 0 && n + s.tokens.len() > MAX_BATCH_TOKENS {
                        break;
                    }
                    n += s.tokens.len();
                    take += 1;
                }
                let mut steps: Vec<Step> = st.pending.drain(..take).collect();
                st.widest = st.widest.max(steps.len());
                drop(st);
                let result = {
                    let mut seqs: Vec<(&[u32], &mut KvCache)> = steps.iter_mut().map(|s| (s.tokens.as_slice(), &mut s.cache)).collect();
                    model.forward_batch(&mut seqs, &self.team)
                };
                st = self.lock();
                match result {
                    Ok(all) => {
                        for (s, logits) in steps.into_iter().zip(all) {
                            st.done.insert(s.ticket, (s.cache, Ok(logits)));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for s in steps {
                            st.done.insert(s.ticket, (s.cache, Err(Error::internal(msg.clone()))));
                        }
                    }
                }
                st.busy = false;
                self.ready.notify_all();
                continue;
            }
            let wait = if st.busy || all_in { Duration::from_millis(50) } else { GATHER.saturating_sub(since.elapsed()).max(Duration::from_micros(50)) };
            st = self.ready.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}
