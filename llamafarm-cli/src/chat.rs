//! `lf chat`: one message (streamed), piped stdin, or an interactive session.

use crate::client::{encode_segment as seg, Client};
use anyhow::{bail, Result};
use clap::Args;
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct ChatArgs {
    /// `[NAMESPACE/PROJECT] [MESSAGE]`: the project defaults to ./llamafarm.yaml; without a
    /// message, stdin is read when piped, else an interactive chat opens.
    #[arg(num_args = 0..=2)]
    args: Vec<String>,
    #[command(flatten)]
    pub(crate) sel: crate::ProjectSel,
    /// A `runtime.models` name of the project.
    #[arg(long)]
    model: Option<String>,
    /// Answer without retrieval.
    #[arg(long)]
    no_rag: bool,
    /// Database to retrieve from.
    #[arg(long)]
    database: Option<String>,
    /// Retrieval strategy of the database (default: its default one).
    #[arg(long)]
    retrieval_strategy: Option<String>,
    /// Chunks to retrieve.
    #[arg(long)]
    rag_top_k: Option<u32>,
    /// Minimum relevance of a chunk (0..1).
    #[arg(long)]
    rag_score_threshold: Option<f64>,
    /// Append a file's text to the message (repeatable).
    #[arg(long, short = 'f')]
    file: Vec<PathBuf>,
    /// Continue this session (its id); default: stateless for one message, a new session interactively.
    #[arg(long)]
    session: Option<String>,
    /// Reasoning mode (models whose template supports it).
    #[arg(long)]
    think: bool,
    /// Most thinking tokens.
    #[arg(long)]
    thinking_budget: Option<u32>,
    /// Most answer tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f64>,
    /// Print the retrieved sources after the answer.
    #[arg(long)]
    sources: bool,
    /// Make the model call this tool (an MCP tool of the project, or one of the model's
    /// config `tools`) before it answers; `none` offers no tools.
    #[arg(long)]
    tool: Option<String>,
}

fn looks_like_project(s: &str) -> bool {
    let mut parts = s.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() && !s.contains(char::is_whitespace))
}

fn body(a: &ChatArgs, message: &str) -> Value {
    let mut b = json!({"messages": [{"role": "user", "content": message}], "stream": true});
    let o = b.as_object_mut().expect("object");
    let mut set = |k: &str, v: Value| {
        o.insert(k.to_string(), v);
    };
    if let Some(m) = &a.model {
        set("model", json!(m));
    }
    if a.no_rag {
        set("rag_enabled", json!(false));
    }
    match a.tool.as_deref() {
        None => {}
        Some(c @ ("none" | "auto" | "required")) => set("tool_choice", json!(c)),
        Some(name) => set("tool_choice", json!({"type": "function", "function": {"name": name}})),
    }
    if let Some(d) = &a.database {
        set("database", json!(d));
    }
    if let Some(r) = &a.retrieval_strategy {
        set("rag_retrieval_strategy", json!(r));
    }
    if let Some(k) = a.rag_top_k {
        set("rag_top_k", json!(k));
    }
    if let Some(t) = a.rag_score_threshold {
        set("rag_score_threshold", json!(t));
    }
    if a.think {
        set("think", json!(true));
    }
    if let Some(t) = a.thinking_budget {
        set("thinking_budget", json!(t));
    }
    if let Some(t) = a.max_tokens {
        set("max_tokens", json!(t));
    }
    if let Some(t) = a.temperature {
        set("temperature", json!(t));
    }
    if a.sources {
        set("include_sources", json!(true));
    }
    b
}

/// Send one message and stream the answer to stdout; returns the session id the server used.
async fn turn(c: &Client, path: &str, a: &ChatArgs, message: &str, session: Option<&str>, json_out: bool) -> Result<Option<String>> {
    let headers: Vec<(&str, String)> = match session {
        Some(s) => vec![("X-Session-ID", s.to_string())],
        None => vec![("X-No-Session", "true".to_string())],
    };
    let resp = c.post_raw(path, &body(a, message), &headers).await?;
    let sid = resp.headers().get("x-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut thinking_open = false;
    let mut sources: Vec<Value> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    'outer: while let Some(bytes) = stream.next().await {
        let bytes = bytes?;
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                break 'outer;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
            if json_out {
                events.push(v.clone());
            }
            if let Some(e) = v["error"]["message"].as_str() {
                bail!("{e}");
            }
            if v["type"] == "sources" {
                sources = v["sources"].as_array().cloned().unwrap_or_default();
                continue;
            }
            let delta = &v["choices"][0]["delta"];
            if json_out {
                continue;
            }
            // Tool calls as they happen: those the server ran over MCP, with their results,
            // and those the model asks the caller to run.
            if let Some(s) = v.get("tool_step").filter(|s| s.is_object()) {
                let f = &s["tool_call"]["function"];
                let mark = if s["ok"].as_bool() == Some(true) { "" } else { " (failed)" };
                writeln!(
                    err,
                    "[tool] {}({}) on {}{mark}",
                    f["name"].as_str().unwrap_or("?"),
                    f["arguments"].as_str().unwrap_or(""),
                    s["server"].as_str().unwrap_or("?")
                )?;
                let result: String = s["content"].as_str().unwrap_or("").chars().take(400).collect();
                writeln!(err, "[tool result] {result}")?;
                continue;
            }
            for c in delta["tool_calls"].as_array().into_iter().flatten() {
                if let Some(name) = c["function"]["name"].as_str() {
                    write!(err, "[tool call] {name}(")?;
                }
                if let Some(args) = c["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                    writeln!(err, "{args})")?;
                }
            }
            if let Some(t) = delta["reasoning_content"].as_str() {
                if !thinking_open {
                    write!(err, "[thinking] ")?;
                    thinking_open = true;
                }
                write!(err, "{t}")?;
                err.flush()?;
            }
            if let Some(t) = delta["content"].as_str() {
                if thinking_open && !t.is_empty() {
                    writeln!(err, "\n[/thinking]")?;
                    thinking_open = false;
                }
                write!(out, "{t}")?;
                out.flush()?;
            }
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"session_id": sid, "events": events}))?);
    } else {
        writeln!(out)?;
        if a.sources && !sources.is_empty() {
            writeln!(err, "Sources:")?;
            for s in &sources {
                let name = s["metadata"]["filename"].as_str().or(s["metadata"]["source"].as_str()).unwrap_or(s["document_id"].as_str().unwrap_or(""));
                writeln!(err, "  {:.3}  {name}", s["score"].as_f64().unwrap_or(0.0))?;
            }
        }
    }
    Ok(sid)
}

pub(crate) async fn chat(c: &Client, mut a: ChatArgs, cwd: &Path, json_out: bool) -> Result<()> {
    let mut args = std::mem::take(&mut a.args);
    let project_arg = match args.len() {
        2 => Some(args.remove(0)),
        1 if looks_like_project(&args[0]) => Some(args.remove(0)),
        _ => None,
    };
    let (ns, p) = crate::resolve_project(project_arg.as_deref(), &a.sel, cwd)?;
    let path = format!("/v1/projects/{}/{}/chat/completions", seg(&ns), seg(&p));
    let mut message = args.pop();
    if message.is_none() && !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        if !s.trim().is_empty() {
            message = Some(s);
        }
    }
    let mut attachments = String::new();
    for f in &a.file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        attachments.push_str(&format!("\n\n--- {} ---\n{text}", f.display()));
    }
    if let Some(m) = message {
        turn(c, &path, &a, &format!("{m}{attachments}"), a.session.as_deref(), json_out).await?;
        return Ok(());
    }
    // Interactive: one session for the whole conversation.
    eprintln!("Chatting with {ns}/{p}. Type /exit or press Ctrl-D to leave.");
    let mut session = a.session.clone().or_else(|| Some(uuid_like()));
    let mut first = true;
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/exit" || line == "/quit" {
            break;
        }
        let msg = if first { format!("{line}{attachments}") } else { line.to_string() };
        first = false;
        match turn(c, &path, &a, &msg, session.as_deref(), json_out).await {
            Ok(sid) => session = sid.or(session),
            Err(e) => eprintln!("Error: {e:#}"),
        }
    }
    if let Some(s) = session {
        eprintln!("Session {s} (continue with --session {s})");
    }
    Ok(())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cli-{:x}-{:x}", nanos, std::process::id())
}
