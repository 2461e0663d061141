//! `lf services status|start|stop` and the auto-start of every command: `lf serve`
//! as a background process, with its pid file and log under the data directory.
//!
//! One `lf serve` process hosts the API, the Universal Runtime and the RAG worker, so
//! the original's three services (`server`, `universal-runtime`, `rag`) are one
//! process here: starting or stopping any of them starts or stops that process.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Subcommand)]
pub(crate) enum ServicesCmd {
    /// Show whether the server runs, its pid, health and uptime.
    Status {
        /// `server`, `universal-runtime` or `rag` (default: all).
        service: Option<String>,
    },
    /// Start the server in the background (if none answers).
    Start {
        /// `server`, `universal-runtime` or `rag` (all are one process).
        service: Option<String>,
    },
    /// Stop the server this machine started.
    Stop {
        /// `server`, `universal-runtime` or `rag` (all are one process).
        service: Option<String>,
    },
}

const SERVICES: &[&str] = &["server", "universal-runtime", "rag"];

fn check_service(s: Option<&str>) -> Result<()> {
    match s {
        None => Ok(()),
        Some(s) if SERVICES.contains(&s) || s == "runtime" => Ok(()),
        Some(s) => bail!("unknown service '{s}' (services: server, universal-runtime, rag)"),
    }
}

/// The data directory `lf serve` uses: `LF_DATA_DIR`, else `~/.llamafarm`.
pub(crate) fn data_dir() -> PathBuf {
    std::env::var_os("LF_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".llamafarm"))
}

fn pid_file() -> PathBuf {
    data_dir().join("run").join("server.pid")
}

/// The log of a server started in the background.
pub(crate) fn log_file() -> PathBuf {
    data_dir().join("logs").join("server.log")
}

struct PidInfo {
    pid: u32,
    url: String,
    started: u64,
}

fn read_pid() -> Option<PidInfo> {
    let text = std::fs::read_to_string(pid_file()).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let url = lines.next().unwrap_or("").to_string();
    let started = lines.next().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    Some(PidInfo { pid, url, started })
}

/// Whether `pid` is a live `lf serve` (not a zombie, not a recycled pid).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"serve"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The port of a loopback server URL, or why it cannot be started here.
fn local_port(server_url: &str) -> Result<u16> {
    let rest = server_url.split("://").nth(1).unwrap_or(server_url);
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse::<u16>().context("invalid port in --server-url")?),
        _ => (authority, if server_url.starts_with("https") { 443 } else { 80 }),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0") {
        bail!("the LlamaFarm server at {server_url} is not on this machine, so lf cannot start it");
    }
    Ok(port)
}

/// Start `lf serve` in the background for `server_url` and wait until it answers.
pub(crate) async fn start(c: &Client, quiet: bool) -> Result<u32> {
    let port = local_port(c.base())?;
    if let Some(p) = read_pid().filter(|p| running(p.pid)) {
        bail!("a server started by lf (pid {}) runs for {} but {} does not answer; see {}", p.pid, p.url, c.base(), log_file().display());
    }
    let data = data_dir();
    let log = log_file();
    for d in [log.parent(), pid_file().parent()].into_iter().flatten() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("opening {}", log.display()))?;
    let exe = std::env::current_exe().context("finding the lf executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string(), "--data-dir"]).arg(&data).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    #[cfg(unix)]
    {
        // Its own process group: Ctrl+C in this terminal does not stop it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd.spawn().context("starting lf serve")?;
    let pid = child.id();
    llamafarm_core::fsutil::atomic_write(&pid_file(), format!("{pid}\n{}\n{}\n", c.base(), now()).as_bytes())?;
    if !quiet {
        eprintln!("Starting the LlamaFarm server (pid {pid}; log {})...", log.display());
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        if c.alive().await {
            if !quiet {
                eprintln!("LlamaFarm server ready at {} ({:.1} s)", c.base(), t.elapsed().as_secs_f64());
            }
            return Ok(pid);
        }
        if !running(pid) {
            let _ = std::fs::remove_file(pid_file());
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!("lf serve exited before it answered; last lines of {}:\n{}", log.display(), last.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("lf serve (pid {pid}) did not answer within 120 s; see {}", log.display())
}

/// Start the server when none answers (the `--auto-start` of every command).
pub(crate) async fn ensure(c: &Client) -> Result<()> {
    if c.alive().await {
        return Ok(());
    }
    start(c, false).await.map(|_| ())
}

fn stop_pid(pid: u32) -> Result<()> {
    let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok && running(pid) {
        bail!("could not signal pid {pid}");
    }
    let t = Instant::now();
    while running(pid) {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub(crate) async fn services(c: &Client, cmd: ServicesCmd, json: bool) -> Result<()> {
    match cmd {
        ServicesCmd::Status { service } => {
            check_service(service.as_deref())?;
            let info = read_pid().filter(|p| running(p.pid));
            let alive = c.alive().await;
            let state = if alive {
                "running"
            } else if info.is_some() {
                "starting"
            } else {
                "stopped"
            };
            let uptime = info.as_ref().map(|p| now().saturating_sub(p.started));
            let rows: Vec<serde_json::Value> = SERVICES
                .iter()
                .filter(|s| service.as_deref().is_none_or(|w| w == **s || (w == "runtime" && **s == "universal-runtime")))
                .map(|s| {
                    json!({
                        "name": s, "state": state, "pid": info.as_ref().map(|p| p.pid),
                        "health": if alive { "healthy" } else { "-" }, "uptime_s": uptime,
                        "url": c.base(), "log_file": info.as_ref().map(|_| log_file().display().to_string()),
                        "managed": info.is_some(),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({ "services": rows }))?);
            } else {
                println!("LlamaFarm Services Status");
                println!("  {:<20} {:<9} {:<8} {:<9} Uptime", "Service", "State", "PID", "Health");
                for r in &rows {
                    let up = r["uptime_s"].as_u64().map(human_duration).unwrap_or_else(|| "-".into());
                    let pid = r["pid"].as_u64().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    println!("  {:<20} {:<9} {:<8} {:<9} {up}", r["name"].as_str().unwrap_or(""), state, pid, r["health"].as_str().unwrap_or(""));
                }
                if alive && info.is_none() {
                    println!("  (the server at {} was not started by lf services)", c.base());
                } else if let Some(p) = &info {
                    println!("  log: {}  url: {}", log_file().display(), p.url);
                }
            }
        }
        ServicesCmd::Start { service } => {
            check_service(service.as_deref())?;
            if c.alive().await {
                println!("LlamaFarm server already running at {}", c.base());
            } else {
                let pid = start(c, json).await?;
                if json {
                    println!("{}", json!({ "started": true, "pid": pid, "url": c.base(), "log_file": log_file() }));
                } else {
                    println!("Started LlamaFarm server (pid {pid}) at {}", c.base());
                }
            }
        }
        ServicesCmd::Stop { service } => {
            check_service(service.as_deref())?;
            match read_pid() {
                Some(p) if running(p.pid) => {
                    stop_pid(p.pid)?;
                    let _ = std::fs::remove_file(pid_file());
                    println!("Stopped LlamaFarm server (pid {})", p.pid);
                }
                Some(_) => {
                    let _ = std::fs::remove_file(pid_file());
                    println!("LlamaFarm server is not running (removed a stale pid file)");
                }
                None if c.alive().await => {
                    bail!("the server at {} was not started by lf services (no pid file under {}); stop it where it runs", c.base(), data_dir().display())
                }
                None => println!("LlamaFarm server is not running"),
            }
        }
    }
    Ok(())
}

fn human_duration(s: u64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// Create or update the server's copy of `./llamafarm.yaml`; returns `(namespace, name, created)`.
pub(crate) async fn sync_project(c: &Client, cwd: &Path) -> Result<(String, String, bool)> {
    let path = llamafarm_core::project::find_config(cwd).with_context(|| format!("no llamafarm.yaml in {} (create one with `lf init`)", cwd.display()))?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: serde_json::Value = serde_yaml::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?;
    let ns = config["namespace"].as_str().filter(|s| !s.is_empty()).unwrap_or("default").to_string();
    let name = config["name"].as_str().filter(|s| !s.is_empty()).with_context(|| format!("{} has no `name`", path.display()))?.to_string();
    let base = format!("/v1/projects/{}", crate::client::encode_segment(&ns));
    let one = format!("{base}/{}", crate::client::encode_segment(&name));
    let created = c.get_opt(&one).await?.is_none();
    if created {
        c.post(&base, &json!({ "name": name })).await?;
    }
    if let Err(e) = c.put(&one, &json!({ "config": config })).await {
        if created {
            let _ = c.delete(&one).await;
        }
        return Err(e.context(format!("{} was not accepted", path.display())));
    }
    Ok((ns, name, created))
}

/// Print the server's health in a line, and each component that is not healthy with its
/// message (what `lf start` shows before the chat opens).
pub(crate) async fn health_banner(c: &Client) {
    let Ok(h) = c.get("/health").await else { return };
    eprintln!("Server {} is {}", c.base(), h["status"].as_str().unwrap_or("unknown"));
    for comp in h["components"].as_array().into_iter().flatten() {
        let status = comp["status"].as_str().unwrap_or("");
        if status != "healthy" {
            eprintln!("  {}: {status}: {}", comp["name"].as_str().unwrap_or("?"), comp["message"].as_str().unwrap_or(""));
        }
    }
}

/// Push `llamafarm.yaml` (found from `cwd`) to the server each time its content changes,
/// checking once a second, with the validation of `lf projects sync`; each push, or the
/// reason it was refused, is printed. The task ends when aborted or dropped with the runtime.
pub(crate) fn watch_config(c: Client, cwd: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let read = || llamafarm_core::project::find_config(&cwd).and_then(|p| std::fs::read(p).ok());
        let mut last = read();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = read();
            if now.is_none() || now == last {
                continue;
            }
            last = now;
            match sync_project(&c, &cwd).await {
                Ok((ns, name, _)) => eprintln!("\nSynced llamafarm.yaml to {ns}/{name}"),
                Err(e) => eprintln!("\nllamafarm.yaml not synced: {e:#}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_started() {
        assert_eq!(local_port("http://localhost:8000").unwrap(), 8000);
        assert_eq!(local_port("http://127.0.0.1:14345/").unwrap(), 14345);
        assert_eq!(local_port("http://localhost").unwrap(), 80);
        assert!(local_port("http://10.0.0.5:8000").unwrap_err().to_string().contains("not on this machine"));
        assert!(check_service(Some("celery")).is_err());
        assert_eq!(human_duration(3725), "1h 2m");
    }
}
