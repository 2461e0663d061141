//! `lf`: serve the LlamaFarm API, and drive a running server from the shell.
//!
//! `lf serve` hosts the API (default 127.0.0.1:8000) and the Universal Runtime
//! (default 127.0.0.1:11540) from one process and one library instance. Every
//! other subcommand talks HTTP to `--server-url`, like the original's Go CLI.

mod chat;
mod client;
mod data;
mod mcp;
mod serve;
mod vision;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the Universal Runtime in this process.
    Serve(serve::ServeArgs),
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

#[derive(Args, Clone)]
pub(crate) struct ProjectSel {
    /// Namespace (default: from ./llamafarm.yaml).
    #[arg(long)]
    namespace: Option<String>,
    /// Project (default: from ./llamafarm.yaml).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Subcommand)]
enum ProjectsCmd {
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
    /// List the models of a project.
    #[command(alias = "ls")]
    List {
        /// NAMESPACE/PROJECT (default: from ./llamafarm.yaml).
        id: Option<String>,
        #[command(flatten)]
        sel: ProjectSel,
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
    match cli.command {
        Command::Serve(args) => rt.block_on(serve::serve(args, cli.debug)),
        Command::Init(args) => rt.block_on(init(&Client::new(&cli.server_url)?, args, &cwd, cli.json)),
        Command::Projects(cmd) => rt.block_on(projects(&Client::new(&cli.server_url)?, cmd, &cwd, cli.json)),
        Command::Models(cmd) => rt.block_on(models(&Client::new(&cli.server_url)?, cmd, &cwd, cli.json)),
        Command::Datasets(cmd) => rt.block_on(data::datasets(&Client::new(&cli.server_url)?, cmd, &cwd, cli.json)),
        Command::Rag(cmd) => rt.block_on(data::rag(&Client::new(&cli.server_url)?, cmd, &cwd, cli.json)),
        Command::Chat(args) => rt.block_on(chat::chat(&Client::new(&cli.server_url)?, args, &cwd, cli.json)),
        Command::Vision(cmd) => rt.block_on(vision::vision(&Client::new(&cli.server_url)?, cmd, cli.json)),
        Command::Mcp => rt.block_on(mcp::mcp(&cli.server_url)),
        Command::Version => {
            println!("lf {}", llamafarm_core::system::VERSION);
            let c = Client::new(&cli.server_url)?;
            match rt.block_on(c.get("/info")) {
                Ok(v) => println!("server {} at {}", v["version"].as_str().unwrap_or("?"), cli.server_url),
                Err(_) => println!("server not reachable at {}", cli.server_url),
            }
            Ok(())
        }
    }
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
        ModelsCmd::List { id, sel } => {
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

/// Ask on the terminal; with no terminal (scripts, CI) the answer is no.
fn confirm(question: &str) -> Result<bool> {
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
