//! A fleet of OpenAI-compatible servers that serve one model: which one to send the next
//! request to, and which are taken out after failing. Remote chat models
//! ([`crate::llm::OpenAiChatModel`]) and remote embedders ([`crate::embed::HttpEmbedder`])
//! both spread their requests over one.
//!
//! Requests go round-robin over the servers in service. A server that fails is taken out
//! for a cooldown (1 s, doubling per failure in a row up to 30 s); when its cooldown is
//! over, `GET {base_url}/models` must answer within 2 s before requests go to it again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One server and what is known of its health.
struct Server {
    base_url: String,
    /// (failures in a row, out until).
    health: Mutex<(u32, Option<Instant>)>,
}

/// Longest time a failed server is taken out.
const MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// Servers of one model, with their health.
pub(crate) struct Fleet {
    servers: Vec<Server>,
    next: AtomicUsize,
    probe: ureq::Agent,
    api_key: Option<String>,
    /// What the servers serve, for the log (`model 'x'`).
    label: String,
}

impl Fleet {
    /// Servers at `base_urls` (trailing slashes dropped); `fallback` when the list is empty.
    pub(crate) fn new(base_urls: &[String], fallback: &str, api_key: Option<String>, label: String) -> Self {
        let probe: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).http_status_as_error(false).build().into();
        let mut urls: Vec<&str> = base_urls.iter().map(|u| u.trim_end_matches('/')).collect();
        if urls.is_empty() {
            urls.push(fallback);
        }
        let servers = urls.into_iter().map(|u| Server { base_url: u.to_string(), health: Mutex::new((0, None)) }).collect();
        Self { servers, next: AtomicUsize::new(0), probe, api_key, label }
    }

    /// How many servers.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// The base URL of server `i`.
    pub(crate) fn url(&self, i: usize) -> &str {
        &self.servers[i].base_url
    }

    /// Attempts a request gets: 1 plus `max_retries`, or by default one per other server (at least 2).
    pub(crate) fn attempts(&self, max_retries: Option<u32>) -> usize {
        1 + max_retries.map_or(self.len().saturating_sub(1).max(1), |r| r as usize)
    }

    /// The backoff before attempt `attempt` (0-based): none, then 100 ms doubling.
    pub(crate) fn backoff(attempt: usize) -> Duration {
        if attempt == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(100u64 << (attempt - 1).min(4))
        }
    }

    /// The next server to try: round-robin over those in service and not tried yet; a
    /// server whose cooldown is over must answer its probe first. With none left, the
    /// untried one back soonest. Once every server was tried, `tried` is cleared.
    pub(crate) fn pick(&self, tried: &mut Vec<usize>) -> Option<usize> {
        let n = self.servers.len();
        if tried.len() >= n {
            tried.clear();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for k in 0..n {
            let i = (start + k) % n;
            if tried.contains(&i) {
                continue;
            }
            let until = self.servers[i].health.lock().unwrap_or_else(|p| p.into_inner()).1;
            match until {
                None => return Some(i),
                Some(t) if t <= now => {
                    if self.probe_ok(i) {
                        return Some(i);
                    }
                    self.mark_down(i);
                }
                Some(_) => {}
            }
        }
        (0..n).filter(|i| !tried.contains(i)).min_by_key(|&i| self.servers[i].health.lock().unwrap_or_else(|p| p.into_inner()).1)
    }

    fn probe_ok(&self, i: usize) -> bool {
        let mut req = self.probe.get(format!("{}/models", self.servers[i].base_url));
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        req.call().is_ok_and(|r| r.status().is_success())
    }

    /// Server `i` failed: take it out for its cooldown.
    pub(crate) fn mark_down(&self, i: usize) {
        let mut h = self.servers[i].health.lock().unwrap_or_else(|p| p.into_inner());
        let failures = h.0.saturating_add(1);
        let cooldown = Duration::from_secs(1).saturating_mul(1 << (failures - 1).min(5)).min(MAX_COOLDOWN);
        *h = (failures, Some(Instant::now() + cooldown));
        tracing::warn!(server = %self.servers[i].base_url, what = %self.label, cooldown_s = cooldown.as_secs(), "remote server failed; taken out");
    }

    /// Server `i` answered: back in service.
    pub(crate) fn mark_up(&self, i: usize) {
        let mut h = self.servers[i].health.lock().unwrap_or_else(|p| p.into_inner());
        if h.0 > 0 {
            tracing::info!(server = %self.servers[i].base_url, what = %self.label, "remote server back in service");
        }
        *h = (0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_servers_taken_out_until_their_probe_answers() {
        // Nothing listens on these ports: probes fail.
        let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}/v1", 1 + i)).collect();
        let f = Fleet::new(&urls, "unused", None, "test".into());
        let mut seen: Vec<usize> = (0..3).map(|_| f.pick(&mut Vec::new()).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2], "round-robin");
        f.mark_down(1);
        for _ in 0..6 {
            assert_ne!(f.pick(&mut Vec::new()), Some(1), "a server in its cooldown is not picked while others are in service");
        }
        // Every other server tried: the one back soonest.
        assert_eq!(f.pick(&mut vec![0, 2]), Some(1));
        // All tried: the list starts over.
        let mut tried = vec![0, 1, 2];
        assert!(f.pick(&mut tried).is_some());
        assert!(tried.is_empty());
        f.mark_up(1);
        assert_eq!(f.attempts(None), 3);
        assert_eq!(f.attempts(Some(0)), 1);
        assert_eq!((Fleet::backoff(0), Fleet::backoff(2)), (Duration::ZERO, Duration::from_millis(200)));
    }
}
