//! `lf worker`: an ingestion worker for an API server started with `--queue`.

use anyhow::{Context, Result};
use llamafarm_core::worker::{Worker, WorkerOptions};
use llamafarm_core::{LlamaFarm, ModelCache};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The Redis queue the server sends jobs to (`redis://host:6379`).
    #[arg(long, env = "LF_QUEUE")]
    queue: String,
    /// Scratch directory for the files being processed (default: one under the system's
    /// temporary directory, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the embedding models are (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
    #[arg(long)]
    model_cache: Option<PathBuf>,
    /// This worker's name in the queue's consumer group (default: host name and pid).
    #[arg(long, env = "LF_WORKER_NAME")]
    name: Option<String>,
    /// Seconds after which a job another worker took but did not finish is taken over
    /// (that worker is presumed dead).
    #[arg(long, env = "LF_WORKER_CLAIM_AFTER", default_value_t = 60)]
    claim_after: u64,
}

pub fn run(args: WorkerArgs, server_url: &str, api_key: Option<String>, debug: bool) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| if debug { "debug".into() } else { "info,pdf_extract=error,lopdf=error".into() });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
    anyhow::ensure!(args.claim_after > 0, "--claim-after must be at least 1 second");
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "worker".into());
    let name = args.name.unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    let (scratch, remove) = match args.data_dir {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("lf-worker-{}", std::process::id())), true),
    };
    let models = match args.model_cache {
        Some(dir) => ModelCache::new(dir),
        None => ModelCache::from_vars(|k| std::env::var_os(k)),
    };
    let lf = LlamaFarm::builder(&scratch).model_cache(models).open().with_context(|| format!("opening scratch directory {}", scratch.display()))?;
    let opts = WorkerOptions {
        server: server_url.to_string(),
        api_key,
        name: name.clone(),
        claim_after: Duration::from_secs(args.claim_after),
        poll: Duration::from_secs(2),
    };
    let worker = Worker::new(lf, &args.queue, opts).context("connecting to the queue")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        });
        flag.store(true, Ordering::SeqCst);
    });
    eprintln!("lf worker {name}: jobs from {} for {server_url}", worker.queue().endpoint());
    worker.run(&stop);
    eprintln!("lf worker {name}: stopped ({} queue commands)", worker.queue().commands_sent());
    if remove {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}
