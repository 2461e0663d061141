//! `lf`: serve the LlamaFarm API, and drive a running server from the shell.
//!
//! `lf serve` hosts the API (default 127.0.0.1:8000) and the Universal Runtime
//! (default 127.0.0.1:11540) from one process and one library instance. Every
//! other subcommand talks HTTP to `--server-url`, like the original's Go CLI.

mod chat;
mod client;
mod data;
mod examples;
mod mcp;
mod serve;
mod services;
mod vision;
mod worker;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use client::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "lf", version, about = "LlamaFarm: local-first AI projects (Rust edition)")]
struct Cli {
    /// LlamaFarm server to talk to.
    #[arg(long, global = true, env = "LF_SERVER_URL", default_value = "http://localhost:8000")]
    server_url: String,
    /// Print raw JSON responses.
    #[arg(long, global = true)]
    json: bool,
    /// Directory to read `llamafarm.yaml` from (default: current directory).
    #[arg(long, global = true)]
    cwd: Option<PathBuf>,
    /// Verbose logging.
    #[arg(long, short = 'd', global = true)]
    debug: bool,
    /// Start the server in the background when none answers at --server-url
    /// (`--auto-start=false` to fail instead).
    #[arg(long, global = true, env = "LF_AUTO_START", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    auto_start: bool,
    /// Print each request that would change something as a curl command, and send nothing.
    #[arg(long, global = true)]
    curl: bool,
    /// Print each request that would change something, and send nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the Universal Runtime in this process.
    Serve(serve::ServeArgs),
    /// Process datasets for an API server started with `--queue`: take jobs from the
    /// Redis queue, parse, chunk and embed here, send the chunks to the server.
    Worker(worker::WorkerArgs),
    /// Create a project on the server and write its llamafarm.yaml into PATH.
    Init(InitArgs),
    /// Manage projects.
    #[command(subcommand)]
    Projects(ProjectsCmd),
    /// Models configured in a project.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Datasets: create, upload, process, list, delete.
    #[command(subcommand)]
    Datasets(data::DatasetsCmd),
    /// Retrieval: query, health, stats.
    #[command(subcommand)]
    Rag(data::RagCmd),
    /// Chat with a project's model (streams the answer; interactive without a message).
    Chat(chat::ChatArgs),
    /// OCR and document extraction.
    #[command(subcommand)]
    Vision(vision::VisionCmd),
    /// In a project directory: start the server if needed, push ./llamafarm.yaml to it,
    /// and open the chat (or answer MESSAGE and exit).
    Start(StartArgs),
    /// The background server: status, start, stop.
    #[command(subcommand)]
    Services(services::ServicesCmd),
    /// Example projects: list them, import one.
    #[command(subcommand)]
    Examples(ExamplesCmd),
    /// Serve LlamaFarm's operations as MCP tools over stdin/stdout (for desktop MCP
    /// clients); each call goes to the server at --server-url.
    Mcp,
    /// Print the CLI and server versions.
    Version,
}

#[derive(Args)]
struct InitArgs {
    /// Directory of the new project (default: current directory); its name is the project name.
    path: Option<PathBuf>,
    /// Namespace to create the project in.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Template: default, server or rag.
    #[arg(long)]
    template: Option<String>,
}

#[derive(Args)]
struct StartArgs {
    /// Push the config and start the server, but open no chat.
    #[arg(long)]
    no_chat: bool,
    /// With --no-chat: keep running and push each saved edit of llamafarm.yaml until
    /// interrupted (an interactive chat always does).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    chat: chat::ChatArgs,
}

#[derive(Subcommand)]
enum ExamplesCmd {
    /// List the example projects the server offers.
    #[command(alias = "ls")]
    List,
    /// Create a project from an example (its config, datasets and files).
    Import {
        /// Example id (see `lf examples list`).
        example: String,
        /// Project name (default: the example id).
        #[arg(long)]
        name: Option<String>,
        /// Namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Process the datasets after importing (default true).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        process: bool,
        /// Import into this existing project instead of creating one (NAMESPACE/PROJECT).
        #[arg(long)]
        into: Option<String>,
    },
}

#[derive(Args, Clone)]
pub(crate) struct ProjectSel {
    /// Namespace (default: from ./llamafarm.yaml).
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// Project (default: from ./llamafarm.yaml).
    #[arg(long)]
    pub(crate) project: Option<String>,
}

#[derive(Subcommand)]
enum ProjectsCmd {
    /// Create a project on the server: from ./llamafarm.yaml, else from a template.
    Create {
        /// Project name (default: from ./llamafarm.yaml).
        name: Option<String>,
        /// Namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Template (when there is no ./llamafarm.yaml): default, server or rag.
        #[arg(long)]
        template: Option<String>,
    },
    /// Push ./llamafarm.yaml to the server (create or update the project).
    Sync,
    /// List the projects of a namespace.
    #[command(alias = "ls")]
    List {
        /// Namespace (default: from ./llamafarm.yaml, else `default`).
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Show a project's config.
    Get {
        /// NAMESPACE/PROJECT (default: from ./llamafarm.yaml).
        id: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
    },
    /// Delete a project and all its data.
    #[command(aliases = ["rm", "remove"])]
    Delete {
        /// NAMESPACE/PROJECT (default: from ./llamafarm.yaml).
        id: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
        /// Do not ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// List the models of a project (with --cache: the models in the model cache).
    #[command(alias = "ls")]
    List {
        /// NAMESPACE/PROJECT (default: from ./llamafarm.yaml).
        id: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
        /// List the model cache instead.
        #[arg(long)]
        cache: bool,
    },
    /// Download a model into the cache (ORG/NAME, or ORG/NAME:QUANT for one GGUF file).
    Pull {
        /// Model id.
        model: String,
    },
    /// The model cache; with MODEL, whether it is cached and what a download needs.
    Status {
        /// Model id.
        model: Option<String>,
    },
    /// Delete a model from the cache.
    #[command(aliases = ["remove", "delete"])]
    Rm {
        /// Model id (ORG/NAME).
        model: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

fn main() {
    // Before anything else: code built for a CPU level this one lacks would die of an
    // illegal instruction.
    if let Some(msg) = llamafarm_core::system::missing_baseline() {
        eprintln!("Error: {msg}");
        std::process::exit(1);
    }
    llamafarm_core::system::tune_allocator();
    llamafarm_core::embed::configure(serve::embed_options_from_env());
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<client::NotSent>().is_some() => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cwd = match &cli.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir()?,
    };
    let show = match (cli.curl, cli.dry_run) {
        (true, _) => client::Show::Curl,
        (_, true) => client::Show::DryRun,
        _ => client::Show::Send,
    };
    // The key for a server started with `--api-key` (an environment variable only, so
    // it stays out of shell history and process listings).
    let api_key = std::env::var("LF_API_KEY").ok().filter(|k| !k.trim().is_empty());
    let c = Client::with_key(&cli.server_url, api_key.as_deref())?.showing(show);
    // Commands that need a server start one when none answers.
    let needs_server = !matches!(cli.command, Command::Serve(_) | Command::Worker(_) | Command::Version | Command::Services(_) | Command::Mcp);
    if needs_server && cli.auto_start && show == client::Show::Send {
        rt.block_on(services::ensure(&c))?;
    }
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve::serve(args, cli.debug)),
        Command::Worker(args) => worker::run(args, &cli.server_url, api_key.clone(), cli.debug),
        Command::Init(args) => rt.block_on(init(&c, args, &cwd, json)),
        Command::Projects(cmd) => rt.block_on(projects(&c, cmd, &cwd, json)),
        Command::Models(cmd) => rt.block_on(models(&c, cmd, &cwd, json)),
        Command::Datasets(cmd) => rt.block_on(data::datasets(&c, cmd, &cwd, json)),
        Command::Rag(cmd) => rt.block_on(data::rag(&c, cmd, &cwd, json)),
        Command::Chat(args) => rt.block_on(chat::chat(&c, args, &cwd, json)),
        Command::Vision(cmd) => rt.block_on(vision::vision(&c, cmd, json)),
        Command::Start(args) => rt.block_on(start(&c, args, &cwd, json)),
        Command::Services(cmd) => rt.block_on(services::services(&c, cmd, json)),
        Command::Examples(cmd) => rt.block_on(examples(&c, cmd, json)),
        Command::Mcp => rt.block_on(mcp::mcp(&cli.server_url, api_key.as_deref())),
        Command::Version => {
            let server = rt.block_on(c.get("/info")).ok();
            if json {
                let v = serde_json::json!({
                    "version": llamafarm_core::system::VERSION, "commit": option_env!("LF_GIT_COMMIT").unwrap_or("unknown"),
                    "build_date": option_env!("LF_BUILD_DATE").unwrap_or("unknown"),
                    "server": server.as_ref().map(|s| serde_json::json!({ "url": cli.server_url, "version": s["version"] })),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("LlamaFarm CLI {}", llamafarm_core::system::VERSION);
            println!("  Commit:     {}", option_env!("LF_GIT_COMMIT").unwrap_or("unknown"));
            println!("  Build date: {}", option_env!("LF_BUILD_DATE").unwrap_or("unknown"));
            println!("  Platform:   {}/{}", std::env::consts::OS, std::env::consts::ARCH);
            match server {
                Some(v) => println!("LlamaFarm server {} at {}", v["version"].as_str().unwrap_or("?"), cli.server_url),
                None => println!("LlamaFarm server not reachable at {}", cli.server_url),
            }
            Ok(())
        }
    }
}

async fn start(c: &Client, args: StartArgs, cwd: &Path, json: bool) -> Result<()> {
    let (ns, name, created) = services::sync_project(c, cwd).await?;
    if !json {
        eprintln!("{} project {ns}/{name} from {}", if created { "Created" } else { "Updated" }, cwd.join("llamafarm.yaml").display());
        services::health_banner(c).await;
    }
    if args.no_chat {
        if args.watch {
            let watcher = services::watch_config(c.clone(), cwd.to_path_buf());
            eprintln!("Watching llamafarm.yaml; press Ctrl-C to stop.");
            tokio::signal::ctrl_c().await?;
            watcher.abort();
        }
        return Ok(());
    }
    // An interactive chat pushes the config's edits while it runs.
    let _watcher = std::io::IsTerminal::is_terminal(&std::io::stdin()).then(|| services::watch_config(c.clone(), cwd.to_path_buf()));
    let mut chat = args.chat;
    if chat.sel.namespace.is_none() && chat.sel.project.is_none() {
        chat.sel.namespace = Some(ns);
        chat.sel.project = Some(name);
    }
    chat::chat(c, chat, cwd, json).await
}

async fn examples(c: &Client, cmd: ExamplesCmd, json: bool) -> Result<()> {
    match cmd {
        ExamplesCmd::List => {
            let v = c.get("/v1/examples").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for e in v["examples"].as_array().into_iter().flatten() {
                println!(
                    "{:<22} {:<28} {:>2} dataset(s) {:>9}  {}",
                    e["id"].as_str().unwrap_or(""),
                    e["title"].as_str().unwrap_or(""),
                    e["dataset_count"],
                    e["data_size_human"].as_str().unwrap_or(""),
                    e["tags"].as_array().map(|t| t.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default()
                );
            }
        }
        ExamplesCmd::Import { example, name, namespace, process, into } => {
            let id = seg(&example);
            let v = match into {
                Some(target) => {
                    let (ns, p) = target.split_once('/').context("--into takes NAMESPACE/PROJECT")?;
                    c.post(&format!("/v1/examples/{id}/import-data"), &serde_json::json!({ "namespace": ns, "project": p, "process": process })).await?
                }
                None => {
                    let name = name.unwrap_or_else(|| example.clone());
                    c.post(&format!("/v1/examples/{id}/import-project"), &serde_json::json!({ "namespace": namespace, "name": name, "process": process })).await?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "Imported example {example} into {}/{}: datasets {}; {} processing task(s)",
                    v["namespace"].as_str().unwrap_or(""),
                    v["project"].as_str().unwrap_or(""),
                    v["datasets"].as_array().map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
                    v["task_ids"].as_array().map(|t| t.len()).unwrap_or(0)
                );
            }
        }
    }
    Ok(())
}

/// Namespace and project from `./llamafarm.yaml`, as the original CLI does.
fn local_project(cwd: &Path) -> Option<(String, String)> {
    let path = llamafarm_core::project::find_config(cwd)?;
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_yaml::from_str(&text).ok()?;
    Some((v["namespace"].as_str()?.to_string(), v["name"].as_str()?.to_string()))
}

/// Resolve `NS/PROJECT` from an argument, flags, or `./llamafarm.yaml`.
pub(crate) fn resolve_project(id: Option<&str>, sel: &ProjectSel, cwd: &Path) -> Result<(String, String)> {
    if let Some(id) = id {
        let Some((ns, p)) = id.split_once('/') else {
            bail!("expected NAMESPACE/PROJECT, got '{id}'");
        };
        return Ok((ns.to_string(), p.to_string()));
    }
    let local = local_project(cwd);
    let ns = sel.namespace.clone().or_else(|| local.as_ref().map(|l| l.0.clone()));
    let p = sel.project.clone().or_else(|| local.as_ref().map(|l| l.1.clone()));
    match (ns, p) {
        (Some(ns), Some(p)) => Ok((ns, p)),
        _ => bail!("no project given: pass NAMESPACE/PROJECT, --namespace and --project, or run inside a directory with llamafarm.yaml"),
    }
}

fn seg(s: &str) -> String {
    client::encode_segment(s)
}

async fn init(c: &Client, args: InitArgs, cwd: &Path, json: bool) -> Result<()> {
    let dir = match &args.path {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => cwd.join(p),
        None => cwd.to_path_buf(),
    };
    if llamafarm_core::project::find_config(&dir).is_some() {
        bail!("a LlamaFarm config already exists in {}", dir.display());
    }
    let name = std::fs::canonicalize(&dir)
        .unwrap_or_else(|_| dir.clone())
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .context("cannot take a project name from the path")?;
    if !json {
        println!("Initializing a new LlamaFarm project in {}", dir.display());
    }
    let mut body = serde_json::json!({ "name": name });
    if let Some(t) = &args.template {
        body["config_template"] = t.clone().into();
    }
    let resp = c.post(&format!("/v1/projects/{}", seg(&args.namespace)), &body).await?;
    let config = &resp["project"]["config"];
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let yaml = serde_yaml::to_string(config)?;
    let target = dir.join("llamafarm.yaml");
    llamafarm_core::fsutil::atomic_write(&target, yaml.as_bytes())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        println!("Created project {}/{} in {}", args.namespace, name, dir.display());
    }
    Ok(())
}

async fn projects(c: &Client, cmd: ProjectsCmd, cwd: &Path, json: bool) -> Result<()> {
    match cmd {
        ProjectsCmd::Sync => {
            let (ns, name, created) = services::sync_project(c, cwd).await?;
            println!("{} project {ns}/{name} from {}", if created { "Created" } else { "Updated" }, cwd.join("llamafarm.yaml").display());
        }
        ProjectsCmd::Create { name, namespace, template } => {
            let local = local_project(cwd);
            if local.is_some() && name.as_ref().is_none_or(|n| Some(n) == local.as_ref().map(|l| &l.1)) && template.is_none() {
                let (ns, name, created) = services::sync_project(c, cwd).await?;
                if !created {
                    bail!("project {ns}/{name} already exists on the server (use `lf projects sync` to update it)");
                }
                println!("Created project {ns}/{name} from {}", cwd.join("llamafarm.yaml").display());
            } else {
                let name = name.context("give a project name (or run inside a directory with llamafarm.yaml)")?;
                let ns = namespace.unwrap_or_else(|| "default".into());
                let mut body = serde_json::json!({ "name": name });
                if let Some(t) = template {
                    body["config_template"] = t.into();
                }
                let v = c.post(&format!("/v1/projects/{}", seg(&ns)), &body).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("Created project {ns}/{name}");
                }
            }
        }
        ProjectsCmd::List { namespace } => {
            let ns = namespace.or_else(|| local_project(cwd).map(|l| l.0)).unwrap_or_else(|| "default".into());
            let v = c.get(&format!("/v1/projects/{}", seg(&ns))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for p in v["projects"].as_array().into_iter().flatten() {
                    let mut line = format!("{}/{}", p["namespace"].as_str().unwrap_or(""), p["name"].as_str().unwrap_or(""));
                    if let Some(e) = p["validation_error"].as_str() {
                        line.push_str(&format!("  (invalid config: {e})"));
                    }
                    println!("{line}");
                }
                if v["total"].as_u64() == Some(0) {
                    eprintln!("No projects in namespace '{ns}'.");
                }
            }
        }
        ProjectsCmd::Get { id, sel } => {
            let (ns, p) = resolve_project(id.as_deref(), &sel, cwd)?;
            let v = c.get(&format!("/v1/projects/{}/{}", seg(&ns), seg(&p))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", serde_yaml::to_string(&v["project"]["config"])?);
            }
        }
        ProjectsCmd::Delete { id, sel, force } => {
            let (ns, p) = resolve_project(id.as_deref(), &sel, cwd)?;
            if !force && !confirm(&format!("Delete project {ns}/{p} and all its data?"))? {
                bail!("aborted");
            }
            let v = c.delete(&format!("/v1/projects/{}/{}", seg(&ns), seg(&p))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Deleted project {ns}/{p}");
            }
        }
    }
    Ok(())
}

async fn models(c: &Client, cmd: ModelsCmd, cwd: &Path, json: bool) -> Result<()> {
    match cmd {
        ModelsCmd::List { cache: true, .. } | ModelsCmd::Status { model: None } => {
            let v = c.get("/v1/models").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let list = v["data"].as_array().cloned().unwrap_or_default();
                for m in &list {
                    println!(
                        "{:<56} {:>10}  {}  {}",
                        m["model_id"].as_str().unwrap_or(""),
                        m["size_human"].as_str().unwrap_or(""),
                        m["last_modified"].as_str().unwrap_or(""),
                        m["revisions"].as_array().map(|r| r.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default()
                    );
                }
                if list.is_empty() {
                    eprintln!("The model cache is empty (lf models pull ORG/NAME downloads one).");
                }
            }
        }
        ModelsCmd::Status { model: Some(m) } => {
            let cached = c.get("/v1/models").await?;
            let repo = m.split(':').next().unwrap_or(&m).to_string();
            let have = cached["data"].as_array().into_iter().flatten().find(|x| x["model_id"] == repo.as_str()).cloned();
            let check = c.post("/v1/models/validate-download", &serde_json::json!({ "model_name": m })).await;
            if json {
                let v = serde_json::json!({ "model": m, "cached": have, "download": check.as_ref().ok() });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return check.map(|_| ());
            }
            match &have {
                Some(h) => println!("{repo}: in the cache ({}, revisions {})", h["size_human"].as_str().unwrap_or(""), h["revisions"]),
                None => println!("{repo}: not in the cache"),
            }
            let v = check?;
            println!(
                "  download: {} to fetch, {} free ({})",
                llamafarm_core::model_cache::human_size(v["required_bytes"].as_u64().unwrap_or(0)),
                llamafarm_core::model_cache::human_size(v["available_bytes"].as_u64().unwrap_or(0)),
                v["message"].as_str().unwrap_or("")
            );
        }
        ModelsCmd::Pull { model } => pull(c, &model, json).await?,
        ModelsCmd::Rm { model, force } => {
            if !force && !confirm(&format!("Delete {model} from the model cache?"))? {
                bail!("aborted");
            }
            let path = model.split(':').next().unwrap_or(&model).split('/').map(seg).collect::<Vec<_>>().join("/");
            let v = c.delete(&format!("/v1/models/{path}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "Deleted {} ({} freed)",
                    v["model_name"].as_str().unwrap_or(""),
                    llamafarm_core::model_cache::human_size(v["size_freed"].as_u64().unwrap_or(0))
                );
            }
        }
        ModelsCmd::List { id, sel, cache: false } => {
            let (ns, p) = resolve_project(id.as_deref(), &sel, cwd)?;
            let v = c.get(&format!("/v1/projects/{}/{}/models", seg(&ns), seg(&p))).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for m in v["models"].as_array().into_iter().flatten() {
                    let star = if m["default"].as_bool() == Some(true) { "*" } else { " " };
                    println!("{star} {:<16} {:<10} {}", m["name"].as_str().unwrap_or(""), m["provider"].as_str().unwrap_or(""), m["model"].as_str().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}

/// `lf models pull`: the SSE download with a progress bar on stderr.
async fn pull(c: &Client, model: &str, json: bool) -> Result<()> {
    use futures::StreamExt;
    use std::io::{IsTerminal, Write};
    let resp = c.post_raw("/v1/models/download", &serde_json::json!({ "model_name": model }), &[]).await?;
    let tty = std::io::stderr().is_terminal();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut last_pct = u64::MAX;
    while let Some(bytes) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&bytes?));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
            let Ok(ev) = serde_json::from_str::<Value>(data.trim()) else { continue };
            match ev["event"].as_str() {
                Some("progress") => {
                    let pct = ev["percent"].as_u64().unwrap_or(0);
                    if json || (!tty && pct == last_pct) || (!tty && pct % 10 != 0 && pct != 100) {
                        continue;
                    }
                    last_pct = pct;
                    let width = 30;
                    let filled = (pct as usize * width) / 100;
                    let bar = format!("[{}{}]", "#".repeat(filled), " ".repeat(width - filled));
                    let hs = llamafarm_core::model_cache::human_size;
                    let msg = format!(
                        "{bar} {pct:>3}% {}/{} {}",
                        hs(ev["downloaded"].as_u64().unwrap_or(0)),
                        hs(ev["total"].as_u64().unwrap_or(0)),
                        ev["file"].as_str().unwrap_or("")
                    );
                    if tty {
                        eprint!("\r{msg:<100}");
                        let _ = std::io::stderr().flush();
                    } else {
                        eprintln!("{msg}");
                    }
                }
                Some("complete") => {
                    if tty {
                        eprintln!();
                    }
                    if json {
                        println!("{}", serde_json::to_string_pretty(&ev)?);
                    } else {
                        let fetched = ev["bytes_downloaded"].as_u64().unwrap_or(0);
                        println!(
                            "Pulled {} ({}{})",
                            ev["model_name"].as_str().unwrap_or(model),
                            llamafarm_core::model_cache::human_size(ev["size_bytes"].as_u64().unwrap_or(0)),
                            if fetched == 0 { ", already in the cache" } else { "" }
                        );
                    }
                    return Ok(());
                }
                Some("error") => {
                    if tty {
                        eprintln!();
                    }
                    bail!("{} (HTTP {})", ev["message"].as_str().unwrap_or("download failed"), ev["status"]);
                }
                _ => {}
            }
        }
    }
    bail!("the server closed the download stream before it finished")
}

/// Ask on the terminal; with no terminal (scripts, CI) the answer is no.
pub(crate) fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} (not a terminal: pass --force to confirm)");
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
