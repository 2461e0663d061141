//! `lf datasets ...` and `lf rag ...`.

use crate::client::{encode_segment as seg, Client};
use crate::{resolve_project, ProjectSel};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum DatasetsCmd {
    /// List datasets of the project.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Create a dataset (and optionally upload files to it).
    #[command(alias = "add")]
    Create {
        /// Dataset name.
        name: String,
        /// Files, folders or globs to upload right away.
        files: Vec<String>,
        /// Processing strategy (default: the project's only one, else universal_rag).
        #[arg(short = 's', long = "data-processing-strategy")]
        strategy: Option<String>,
        /// Target database.
        #[arg(short = 'b', long)]
        database: String,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Upload files, folders or globs to a dataset.
    #[command(alias = "ingest")]
    Upload {
        /// Dataset name.
        name: String,
        /// Files, folders or globs.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Do not process after upload.
        #[arg(long)]
        no_process: bool,
        /// Process after upload (the default unless the dataset says otherwise).
        #[arg(long)]
        process: bool,
        /// Chunk size (sent as parser_overrides).
        #[arg(long)]
        chunk_size: Option<u64>,
        /// Chunk overlap (sent as parser_overrides).
        #[arg(long)]
        chunk_overlap: Option<u64>,
        /// Send the files through the bulk endpoint (many files per request), even one
        /// file; more than one file always goes this way.
        #[arg(long)]
        bulk: bool,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Process a dataset and wait for the result.
    Process {
        /// Dataset name.
        name: String,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Delete a dataset (its chunks leave the index).
    #[command(aliases = ["rm", "remove", "del"])]
    Delete {
        /// Dataset name.
        name: String,
        #[command(flatten)]
        sel: ProjectSel,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RagCmd {
    /// Search the project's documents.
    Query {
        /// The query text.
        query: String,
        /// Database.
        #[arg(long)]
        database: Option<String>,
        /// Processing strategy (accepted for compatibility).
        #[arg(short = 's', long = "data-strategy")]
        data_strategy: Option<String>,
        /// Retrieval strategy (a name from the config, or vector / bm25 / hybrid).
        #[arg(short = 'r', long = "retrieval-strategy")]
        retrieval_strategy: Option<String>,
        /// Results.
        #[arg(short = 'k', long = "top-k", default_value_t = 5)]
        top_k: u32,
        /// Metadata filter key:value (repeatable).
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// cosine, euclidean, dot, manhattan.
        #[arg(long)]
        distance_metric: Option<String>,
        /// Score threshold 0..1.
        #[arg(long)]
        score_threshold: Option<f64>,
        /// Hybrid weight of vectors (0 = BM25 only, 1 = vectors only).
        #[arg(long)]
        hybrid_alpha: Option<f64>,
        /// Rerank with this model.
        #[arg(long)]
        rerank_model: Option<String>,
        /// Also search rewrites of the query.
        #[arg(long)]
        query_expansion: bool,
        /// Cut each result to about this many tokens.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// default, json or table.
        #[arg(short = 'o', long, default_value = "default")]
        output: String,
        /// Show metadata.
        #[arg(long)]
        include_metadata: bool,
        /// Show scores.
        #[arg(long)]
        include_score: bool,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Health of a database's store and embedder.
    Health {
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Statistics of a database.
    Stats {
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Documents in a database, with their chunk counts.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        database: Option<String>,
        /// Most documents to list (1..1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Compact a database's index (merge segments, purge deletions).
    Compact {
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Clear a database and process all files of its datasets again.
    Reindex {
        #[arg(long)]
        database: Option<String>,
        /// Wait for the processing tasks to finish.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Delete every chunk of a database (its datasets and files stay).
    Clear {
        #[arg(long)]
        database: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Delete documents by id, file name or metadata (`--filter key:value`, repeatable).
    Delete {
        #[arg(long)]
        database: Option<String>,
        /// Document ids (file hashes).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// File names.
        #[arg(long = "filename")]
        filenames: Vec<String>,
        /// Metadata values, `key:value`.
        #[arg(long = "filter")]
        filters: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Write a portable copy of a database (chunks, metadata, vectors, embedding model id).
    Export {
        #[arg(long)]
        database: Option<String>,
        /// Output file (default: DATABASE.lfrag.jsonl).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Load an export into a database (refused if its embedding model or dimension differ).
    Import {
        /// The export file.
        file: PathBuf,
        #[arg(long)]
        database: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
    },
}

/// The database a maintenance command works on: `--database`, else the project's default.
async fn db_path(c: &Client, sel: &ProjectSel, cwd: &Path, database: Option<String>) -> Result<(String, String)> {
    let (ns, p) = resolve_project(None, sel, cwd)?;
    let base = format!("/v1/projects/{}/{}/rag/databases", seg(&ns), seg(&p));
    let db = match database {
        Some(d) => d,
        None => {
            let v = c.get(&base).await?;
            v["default_database"].as_str().or_else(|| v["databases"][0]["name"].as_str()).map(str::to_string).context("the project has no RAG database")?
        }
    };
    Ok((format!("{base}/{}", seg(&db)), db))
}

/// Files named by paths, folders (recursively) and globs, sorted, deduplicated.
fn expand(paths: &[String], cwd: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let path = if Path::new(p).is_absolute() { PathBuf::from(p) } else { cwd.join(p) };
        if p.contains('*') || p.contains('?') {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.to_path_buf());
            let pat = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
            for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
                if e.path().is_file() && llamafarm_core::ingest::extract::glob(&pat, &e.file_name().to_string_lossy()) {
                    out.push(e.path());
                }
            }
        } else if path.is_dir() {
            let mut stack = vec![path];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)?.flatten() {
                    let ep = e.path();
                    if e.file_name().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if ep.is_dir() {
                        stack.push(ep);
                    } else if ep.is_file() {
                        out.push(ep);
                    }
                }
            }
        } else if path.is_file() {
            out.push(path);
        } else {
            bail!("no such file or folder: {p}");
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn bar(done: usize, total: usize, label: &str) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    eprint!("\r[{}{}] {done}/{total} {label:<40.40}", "#".repeat(filled), "-".repeat(width - filled));
    let _ = std::io::stderr().flush();
    if done == total {
        eprintln!();
    }
}

/// Poll a task until it finishes, showing progress; returns the final record.
async fn wait_task(c: &Client, ns: &str, p: &str, id: &str) -> Result<Value> {
    loop {
        let t = c.get(&format!("/v1/projects/{}/{}/tasks/{}", seg(ns), seg(p), seg(id))).await?;
        let (cur, tot) = (t["meta"]["current"].as_u64().unwrap_or(0) as usize, t["meta"]["total"].as_u64().unwrap_or(0) as usize);
        let state = t["state"].as_str().unwrap_or("");
        bar(cur, tot.max(cur), state);
        if matches!(state, "SUCCESS" | "FAILURE" | "REVOKED") {
            if cur < tot {
                bar(tot, tot, state);
            }
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

fn print_outcomes(t: &Value) {
    for d in t["result"]["details"].as_array().into_iter().flatten() {
        let status = d["status"].as_str().unwrap_or("");
        let name = d["filename"].as_str().unwrap_or("");
        match status {
            "failed" => println!("  FAILED     {name}: {}", d["error"].as_str().unwrap_or("")),
            "skipped" => println!("  skipped    {name} (already indexed)"),
            _ => println!("  processed  {name}: {} chunks ({})", d["chunks"], d["parser"].as_str().unwrap_or("")),
        }
    }
    let r = &t["result"];
    println!(
        "{}: {} processed, {} skipped, {} failed, {} chunks",
        t["state"].as_str().unwrap_or(""),
        r["processed_files"],
        r["skipped_files"],
        r["failed_files"],
        r["total_chunks"]
    );
    if let Some(e) = t["error"].as_str() {
        println!("error: {e}");
    }
}

/// Files per bulk request of `upload_files`, and bytes (whichever comes first).
const BULK_FILES: usize = 500;
const BULK_BYTES: u64 = 64 << 20;

#[allow(clippy::too_many_arguments)]
async fn upload_files(c: &Client, ns: &str, p: &str, ds: &str, files: &[PathBuf], auto: Option<bool>, overrides: Option<Value>, bulk: bool) -> Result<Vec<String>> {
    // (Returns the ids of any tasks the server started for auto-processing.)
    let mut tasks = Vec::new();
    let (mut ok, mut skipped, mut failed) = (0, 0, 0);
    let count = |v: &Value, tasks: &mut Vec<String>| {
        if let Some(id) = v["task_id"].as_str() {
            tasks.push(id.to_string());
        }
    };
    let mut q = String::new();
    if let Some(a) = auto {
        q = format!("?auto_process={a}");
    }
    if (files.len() == 1 && !bulk) || overrides.is_some() {
        // One file (or per-upload parser overrides): the single-file endpoint.
        for (i, f) in files.iter().enumerate() {
            bar(i, files.len(), &f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
            match c.upload(&format!("/v1/projects/{}/{}/datasets/{}/data{q}", seg(ns), seg(p), seg(ds)), f, overrides.as_ref()).await {
                Ok(v) => {
                    if v["skipped"].as_bool() == Some(true) {
                        skipped += 1;
                    } else {
                        ok += 1;
                    }
                    count(&v, &mut tasks);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("\n  failed {}: {e:#}", f.display());
                }
            }
        }
    } else {
        // Many files: bulk requests of up to BULK_FILES files or BULK_BYTES bytes.
        let mut done = 0;
        let mut i = 0;
        while i < files.len() {
            let mut bytes = 0;
            let mut j = i;
            while j < files.len() && j - i < BULK_FILES && (j == i || bytes < BULK_BYTES) {
                bytes += std::fs::metadata(&files[j]).map(|m| m.len()).unwrap_or(0);
                j += 1;
            }
            let group = &files[i..j];
            bar(done, files.len(), &group[0].file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
            match c.upload_many(&format!("/v1/projects/{}/{}/datasets/{}/data/bulk{q}", seg(ns), seg(p), seg(ds)), group).await {
                Ok(v) => {
                    ok += v["uploaded"].as_array().map_or(0, |a| a.len());
                    skipped += v["skipped"].as_array().map_or(0, |a| a.len());
                    for f in v["failed"].as_array().into_iter().flatten() {
                        failed += 1;
                        eprintln!("\n  failed {}: {}", f["filename"].as_str().unwrap_or(""), f["error"].as_str().unwrap_or(""));
                    }
                    count(&v, &mut tasks);
                }
                Err(e) => {
                    failed += group.len();
                    eprintln!("\n  failed {} file(s) from {}: {e:#}", group.len(), group[0].display());
                }
            }
            done += group.len();
            i = j;
        }
    }
    bar(files.len(), files.len(), "uploaded");
    println!("Uploaded {ok} file(s), {skipped} skipped (already present), {failed} failed");
    if failed > 0 && ok + skipped == 0 {
        bail!("no file could be uploaded");
    }
    Ok(tasks)
}

pub async fn datasets(c: &Client, cmd: DatasetsCmd, cwd: &Path, json_out: bool) -> Result<()> {
    match cmd {
        DatasetsCmd::List { sel } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let v = c.get(&format!("/v1/projects/{}/{}/datasets", seg(&ns), seg(&p))).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{:<24} {:<24} {:<20} {:>6}", "NAME", "STRATEGY", "DATABASE", "FILES");
            for d in v["datasets"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<24} {:<20} {:>6}",
                    d["name"].as_str().unwrap_or(""),
                    d["data_processing_strategy"].as_str().unwrap_or(""),
                    d["database"].as_str().unwrap_or(""),
                    d["files"].as_array().map(|a| a.len()).unwrap_or(0)
                );
            }
        }
        DatasetsCmd::Create { name, files, strategy, database, sel } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let v = c
                .post(&format!("/v1/projects/{}/{}/datasets", seg(&ns), seg(&p)), &json!({"name": name, "data_processing_strategy": strategy, "database": database}))
                .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let strategy = v["dataset"]["data_processing_strategy"].as_str().map(str::to_string).or(strategy).unwrap_or_default();
                println!("Created dataset {name} (strategy {strategy}, database {database})");
            }
            if !files.is_empty() {
                let list = expand(&files, cwd)?;
                upload_files(c, &ns, &p, &name, &list, None, None, false).await?;
            }
        }
        DatasetsCmd::Upload { name, paths, no_process, process, chunk_size, chunk_overlap, bulk, sel } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let list = expand(&paths, cwd)?;
            if list.is_empty() {
                bail!("no files matched");
            }
            let mut o = serde_json::Map::new();
            if let Some(s) = chunk_size {
                o.insert("chunk_size".into(), json!(s));
            }
            if let Some(s) = chunk_overlap {
                o.insert("chunk_overlap".into(), json!(s));
            }
            let overrides = if o.is_empty() { None } else { Some(json!({"*": o})) };
            // Upload everything first (one progress bar), then process once (one task).
            upload_files(c, &ns, &p, &name, &list, Some(false), None, bulk).await?;
            let ds = c.get(&format!("/v1/projects/{}/{}/datasets?include_extra_details=false", seg(&ns), seg(&p))).await?;
            let auto =
                ds["datasets"].as_array().into_iter().flatten().find(|d| d["name"] == name.as_str()).and_then(|d| d["auto_process"].as_bool()).unwrap_or(true);
            if no_process || (!auto && !process) {
                return Ok(());
            }
            let mut body = json!({"action_type": "process"});
            if let Some(o) = overrides {
                body["parser_overrides"] = o;
            }
            let v = c.post(&format!("/v1/projects/{}/{}/datasets/{}/actions", seg(&ns), seg(&p), seg(&name)), &body).await?;
            let id = v["task_id"].as_str().context("server returned no task id")?.to_string();
            let t = wait_task(c, &ns, &p, &id).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print_outcomes(&t);
            }
        }
        DatasetsCmd::Process { name, sel } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let v = c.post(&format!("/v1/projects/{}/{}/datasets/{}/actions", seg(&ns), seg(&p), seg(&name)), &json!({"action_type": "process"})).await?;
            let id = v["task_id"].as_str().context("server returned no task id")?.to_string();
            if !json_out {
                println!("Processing dataset {name} (task {id})");
            }
            let t = wait_task(c, &ns, &p, &id).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print_outcomes(&t);
            }
            if t["state"] != "SUCCESS" {
                bail!("task ended in state {}", t["state"]);
            }
        }
        DatasetsCmd::Delete { name, sel } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let v = c.delete(&format!("/v1/projects/{}/{}/datasets/{}", seg(&ns), seg(&p), seg(&name))).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Deleted dataset {name}");
            }
        }
    }
    Ok(())
}

/// `GET .../rag/{endpoint}[?database=]` for the project in scope.
async fn rag_get(c: &Client, sel: &ProjectSel, cwd: &Path, endpoint: &str, database: Option<&str>) -> Result<Value> {
    let (ns, p) = resolve_project(None, sel, cwd)?;
    let q = database.map(|d| format!("?database={}", seg(d))).unwrap_or_default();
    c.get(&format!("/v1/projects/{}/{}/rag/{endpoint}{q}", seg(&ns), seg(&p))).await
}

pub async fn rag(c: &Client, cmd: RagCmd, cwd: &Path, json_out: bool) -> Result<()> {
    let print = |v: &Value| -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    };
    match cmd {
        RagCmd::List { database, limit, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            let v = c.get(&format!("{path}/documents?limit={limit}")).await?;
            if json_out {
                return print(&v);
            }
            let docs = v.as_array().cloned().unwrap_or_default();
            for d in &docs {
                println!("{}  {:>5} chunks  {}", d["id"].as_str().unwrap_or(""), d["chunk_count"], d["filename"].as_str().unwrap_or("-"));
            }
            if docs.is_empty() {
                eprintln!("No documents in {db}.");
            }
        }
        RagCmd::Compact { database, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            let v = c.post(&format!("{path}/compact"), &json!({})).await?;
            if json_out {
                return print(&v);
            }
            println!("Compacted {db} ({} segment(s) merged)", v["segments_merged"]);
        }
        RagCmd::Clear { database, force, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            if !force && !crate::confirm(&format!("Delete every chunk of database {db}?"))? {
                bail!("aborted");
            }
            let v = c.post(&format!("{path}/clear"), &json!({})).await?;
            if json_out {
                return print(&v);
            }
            println!("Cleared {db} ({} chunk(s) deleted)", v["chunks_deleted"]);
        }
        RagCmd::Reindex { database, wait, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            let v = c.post(&format!("{path}/reindex"), &json!({})).await?;
            let ids: Vec<String> = v["task_ids"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect();
            if !wait {
                if json_out {
                    return print(&v);
                }
                println!("Reindexing {db}: {} task(s) {}", ids.len(), ids.join(", "));
                return Ok(());
            }
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            for id in &ids {
                let t = wait_task(c, &ns, &p, id).await?;
                if json_out {
                    print(&t)?;
                } else {
                    print_outcomes(&t);
                }
            }
        }
        RagCmd::Delete { database, ids, filenames, filters, force, sel } => {
            let mut metadata = serde_json::Map::new();
            for f in &filters {
                let (k, v) = f.split_once(':').with_context(|| format!("--filter takes key:value, got '{f}'"))?;
                metadata.insert(k.to_string(), json!(v));
            }
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            if !force && !crate::confirm(&format!("Delete the matching documents from {db}?"))? {
                bail!("aborted");
            }
            let v = c.post(&format!("{path}/documents/delete"), &json!({ "ids": ids, "filenames": filenames, "metadata": metadata })).await?;
            if json_out {
                return print(&v);
            }
            println!("Deleted {} document(s), {} chunk(s) from {db}", v["documents_deleted"], v["chunks_deleted"]);
        }
        RagCmd::Export { database, output, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            let out = output.unwrap_or_else(|| cwd.join(format!("{db}.lfrag.jsonl")));
            let (_, lines) = c.download_to(&format!("{path}/export"), &out).await?;
            println!("Exported {db}: {} chunk(s) to {}", lines.saturating_sub(1), out.display());
        }
        RagCmd::Import { file, database, sel } => {
            let (path, db) = db_path(c, &sel, cwd, database).await?;
            let v = c.post_file(&format!("{path}/import"), &file, "application/x-ndjson").await?;
            if json_out {
                return print(&v);
            }
            println!("Imported into {db}: {} chunk(s) of {} document(s) ({} already there)", v["imported"], v["documents"], v["skipped"]);
        }
        RagCmd::Query {
            query,
            database,
            data_strategy,
            retrieval_strategy,
            top_k,
            filter,
            distance_metric,
            score_threshold,
            hybrid_alpha,
            rerank_model,
            query_expansion,
            max_tokens,
            output,
            include_metadata,
            include_score,
            sel,
        } => {
            let (ns, p) = resolve_project(None, &sel, cwd)?;
            let mut body = json!({"query": query, "top_k": top_k});
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body[k] = v;
                }
            };
            set("database", database.map(Value::from));
            set("data_processing_strategy", data_strategy.map(Value::from));
            set("retrieval_strategy", retrieval_strategy.map(Value::from));
            set("distance_metric", distance_metric.map(Value::from));
            set("score_threshold", score_threshold.map(Value::from));
            set("hybrid_alpha", hybrid_alpha.map(Value::from));
            set("rerank_model", rerank_model.map(Value::from));
            set("max_tokens", max_tokens.map(Value::from));
            if query_expansion {
                set("query_expansion", Some(Value::Bool(true)));
            }
            if !filter.is_empty() {
                let mut f = serde_json::Map::new();
                for kv in &filter {
                    let (k, v) = kv.split_once(':').with_context(|| format!("--filter takes key:value, got '{kv}'"))?;
                    let val = serde_json::from_str::<Value>(v).ok().filter(|x| x.is_number() || x.is_boolean()).unwrap_or(Value::String(v.into()));
                    f.insert(k.into(), val);
                }
                set("metadata_filters", Some(Value::Object(f)));
            }
            let v = c.post(&format!("/v1/projects/{}/{}/rag/query", seg(&ns), seg(&p)), &body).await?;
            if json_out || output == "json" {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let results = v["results"].as_array().cloned().unwrap_or_default();
            if results.is_empty() {
                println!("No results.");
            }
            for (i, r) in results.iter().enumerate() {
                let doc = r["metadata"]["document_name"].as_str().unwrap_or(r["document_id"].as_str().unwrap_or(""));
                if output == "table" {
                    let text: String = r["content"].as_str().unwrap_or("").chars().take(80).collect::<String>().replace('\n', " ");
                    println!("{:>2}  {:.3}  {:<30.30}  {text}", i + 1, r["score"].as_f64().unwrap_or(0.0), doc);
                    continue;
                }
                let mut head = format!("[{}] {doc}", i + 1);
                if let Some(pg) = r["metadata"]["page"].as_u64() {
                    head.push_str(&format!(", page {pg}"));
                }
                // Scores are always shown; `--include-score` is accepted for the original's scripts.
                let _ = include_score;
                head.push_str(&format!(" (score {:.3})", r["score"].as_f64().unwrap_or(0.0)));
                println!("{head}");
                println!("{}\n", r["content"].as_str().unwrap_or("").trim());
                if include_metadata {
                    println!("  metadata: {}\n", r["metadata"]);
                }
            }
            eprintln!(
                "{} result(s) from {} via {} in {:.1} ms",
                v["total_results"],
                v["database_used"].as_str().unwrap_or(""),
                v["retrieval_strategy_used"].as_str().unwrap_or(""),
                v["processing_time_ms"].as_f64().unwrap_or(0.0)
            );
        }
        RagCmd::Health { database, sel } => {
            let v = rag_get(c, &sel, cwd, "health", database.as_deref()).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}: {}", v["database"].as_str().unwrap_or(""), v["status"].as_str().unwrap_or(""));
                for (name, comp) in v["components"].as_object().into_iter().flatten() {
                    println!(
                        "  {name:<14} {:<10} {:>8.1} ms  {}",
                        comp["status"].as_str().unwrap_or(""),
                        comp["latency"].as_f64().unwrap_or(0.0),
                        comp["message"].as_str().unwrap_or("")
                    );
                }
            }
        }
        RagCmd::Stats { database, sel } => {
            let v = rag_get(c, &sel, cwd, "stats", database.as_deref()).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for k in [
                    "database",
                    "document_count",
                    "chunk_count",
                    "storage_human",
                    "index_bytes",
                    "memory_human",
                    "mapped_human",
                    "embedding_dimension",
                    "distance_metric",
                    "ann_index",
                    "tombstones",
                    "last_updated",
                ] {
                    if !v[k].is_null() {
                        println!("{k:<20} {}", v[k].as_str().map(String::from).unwrap_or_else(|| v[k].to_string()));
                    }
                }
            }
        }
    }
    Ok(())
}
