//! `lf serve`: the API and the Universal Runtime from one process and one library instance.

use anyhow::{Context, Result};
use clap::Args;
use llamafarm_core::config::Vars;
use llamafarm_core::llm::LocalEngine;
use llamafarm_core::{LlamaFarm, ModelCache};
use llamafarm_http::HttpOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variables `lf serve` maps to the library's kernel and embedding options
/// ([`embed_options_from_env`]); printed by `lf serve --help`.
pub const KERNEL_ENV_HELP: &str = "\
Embedding and kernel switches (environment; a switch is on when set to anything but 0):
  LF_NO_AVX512=1           use no AVX-512 (nor AMX): kernels run as on an AVX2-only CPU
  LF_NO_VNNI=1             use neither AVX-512 VNNI nor AVX-VNNI int8 kernels
  LF_NO_BF16=1             use no AVX-512 BF16 (nor AMX): plain model ids default to int8 or fp32
  LF_NO_AMX=1              use no AMX tiles (bf16 runs on the AVX-512 BF16 kernel)
  LF_INT8_KERNEL=NAME      int8 kernel: avx512-vnni (vnni), avx-vnni, avx2 or portable; one the
                           CPU lacks falls back in that order (default: the fastest here)
  LF_INT8_ACT8=1           8-bit activations on the AVX2 int8 kernel too (default 7: faster)
  LF_FP32_ATTENTION=1      keep an int8 embedding model's attention in fp32
  LF_EMBED_BATCH_TOKENS=N  most tokens per forward pass of a local embedding model (default 1024)";

/// The embedding options the `LF_*` variables of [`KERNEL_ENV_HELP`] ask for (the defaults
/// where none is set).
pub fn embed_options_from_env() -> llamafarm_core::embed::EmbedOptions {
    llamafarm_core::embed::EmbedOptions::from_vars(|name| std::env::var(name).ok())
}

#[derive(Args)]
#[command(after_help = KERNEL_ENV_HELP)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; use 0.0.0.0 to expose).
    #[arg(long, env = "LF_HOST", default_value = "127.0.0.1")]
    host: String,
    /// LlamaFarm API port.
    #[arg(long, env = "LF_PORT", default_value_t = 8000)]
    port: u16,
    /// Universal Runtime API port.
    #[arg(long, env = "LF_RUNTIME_PORT", default_value_t = 11540)]
    runtime_port: u16,
    /// Data directory (default: ~/.llamafarm).
    #[arg(long, env = "LF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Model cache, the folder holding `models--ORG--NAME` (default: $HF_HOME/hub, else
    /// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub).
    #[arg(long, env = "HF_HUB_CACHE")]
    model_cache: Option<PathBuf>,
    /// Engine of local GGUF chat models whose `extra_body` names none: auto, native, mistralrs or llamacpp.
    #[arg(long, env = "LF_LLM_ENGINE", default_value = "auto")]
    llm_engine: String,
    /// Seconds a local chat model may sit idle before it is unloaded.
    #[arg(long, env = "LF_MODEL_UNLOAD_TIMEOUT", default_value_t = llamafarm_core::llm::DEFAULT_UNLOAD_TIMEOUT_S)]
    model_unload_timeout: u64,
    /// API key of OpenAI chat models and embedders whose config sets no `api_key`.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    openai_api_key: Option<String>,
    /// Send llama.cpp's own log to the log (engine llamacpp).
    #[arg(long, env = "LF_LLAMACPP_LOG")]
    llamacpp_log: bool,
    /// Trainer of SetFit classifiers: native (hand-written backward pass) or autograd (candle's).
    #[arg(long, env = "LF_SETFIT_TRAINER", default_value = "native", value_parser = ["native", "autograd"])]
    setfit_trainer: String,
    /// Allowed CORS origins (repeatable); `*` allows any. Default: `*`, or none (same
    /// origin only) when API keys are set.
    #[arg(long = "cors-origin", env = "LF_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Require an API key (repeatable): `KEY`, `KEY:ns1,ns2` (only those namespaces),
    /// `KEY:ns1:ro` or `KEY::ro` (read-only). Clients send `Authorization: Bearer KEY`;
    /// `lf` sends LF_API_KEY.
    #[arg(long = "api-key", env = "LF_API_KEYS", value_delimiter = ';', hide_env_values = true)]
    api_keys: Vec<String>,
    /// Requests per minute each client may send (per API key, else per IP address);
    /// past it, 429 with Retry-After. Default: no limit.
    #[arg(long, env = "LF_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Requests a client may send at once before --rate-limit applies (default a tenth of it).
    #[arg(long, env = "LF_RATE_LIMIT_BURST", requires = "rate_limit")]
    rate_limit_burst: Option<u32>,
    /// Seconds a request may take until its response starts (a stream: until its first
    /// event); past it, 408. 0: no limit.
    #[arg(long, env = "LF_REQUEST_TIMEOUT", default_value_t = llamafarm_http::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    request_timeout: u64,
    /// Generations each local chat model runs at once (batched on the native engine).
    #[arg(long, env = "LF_MAX_CONCURRENT_GENERATIONS", default_value_t = llamafarm_core::llm::GenerationLimits::default().max_concurrent)]
    max_concurrent_generations: usize,
    /// Generations that may wait for a local chat model; past it, 429 with Retry-After.
    #[arg(long, env = "LF_MAX_QUEUED_GENERATIONS", default_value_t = llamafarm_core::llm::GenerationLimits::default().max_queued)]
    max_queued_generations: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "LF_MAX_BODY_BYTES", default_value_t = llamafarm_http::DEFAULT_BODY_LIMIT)]
    max_body_bytes: usize,
    /// Seconds an MCP server of a project may take to start, and each of its tool calls
    /// (past it, the model gets an error result).
    #[arg(long, env = "LF_MCP_TIMEOUT")]
    mcp_timeout: Option<f64>,
    /// More example projects: a folder of example folders (repeatable; searched before
    /// the built-in ones).
    #[arg(long = "examples-dir", env = "LF_EXAMPLES_DIR", value_delimiter = ':')]
    examples_dirs: Vec<PathBuf>,
    /// Seconds between returns of freed memory to the operating system (0: never; the
    /// process then keeps its peak size). Within a request, freed memory is reused.
    #[arg(long, env = "LF_MEMORY_TRIM_INTERVAL", default_value_t = 5)]
    memory_trim_interval: u64,
    /// Send dataset processing to this Redis queue (`redis://host:6379`) for `lf worker`
    /// processes instead of running it in this process.
    #[arg(long, env = "LF_QUEUE")]
    queue: Option<String>,
    /// Where to write the pid file (used by `lf services` and `lf start`).
    #[arg(long, hide = true)]
    pid_file: Option<PathBuf>,
}

pub async fn serve(args: ServeArgs, debug: bool) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| if debug { "debug".into() } else { "info,tower_http=info,pdf_extract=error,lopdf=error".into() });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();

    let data_dir = args.data_dir.unwrap_or_else(|| home_dir().join(".llamafarm"));
    let model_cache = match args.model_cache {
        Some(dir) => ModelCache::new(dir),
        None => ModelCache::from_vars(|k| std::env::var_os(k)),
    };
    let engine = LocalEngine::parse(&args.llm_engine).map_err(|e| anyhow::anyhow!("--llm-engine / LF_LLM_ENGINE: {e}"))?;
    let mcp_timeout = match args.mcp_timeout {
        Some(t) if !(t > 0.0 && t <= 86_400.0) => anyhow::bail!("--mcp-timeout / LF_MCP_TIMEOUT must be between 0 and 86400 seconds, got {t}"),
        t => t.map(Duration::from_secs_f64),
    };
    let mut examples = args.examples_dirs.clone();
    examples.push(crate::examples::install(&data_dir.join("examples"))?);
    let lf = LlamaFarm::builder(&data_dir)
        .model_cache(model_cache)
        .examples_dirs(examples)
        .hub(llamafarm_core::model_cache::Hub::new(
            std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| llamafarm_core::model_cache::hub::DEFAULT_ENDPOINT.into()),
            std::env::var("HF_TOKEN").ok().or_else(|| std::env::var("HUGGING_FACE_HUB_TOKEN").ok()),
        ))
        .llm_engine(engine)
        .model_unload_timeout(Duration::from_secs(args.model_unload_timeout))
        .openai_api_key(args.openai_api_key.filter(|k| !k.is_empty()))
        .generation_limits(llamafarm_core::llm::GenerationLimits { max_concurrent: args.max_concurrent_generations.max(1), max_queued: args.max_queued_generations })
        .llamacpp_log(args.llamacpp_log)
        .setfit_autograd(args.setfit_trainer == "autograd")
        .mcp_timeouts(
            mcp_timeout.map_or(llamafarm_core::mcp::CONNECT_TIMEOUT, |t| t.min(llamafarm_core::mcp::CONNECT_TIMEOUT)),
            mcp_timeout.unwrap_or(llamafarm_core::mcp::CALL_TIMEOUT),
        )
        // `${VAR}` in project configs resolves against this process's environment.
        .vars(std::env::vars().collect::<Vars>())
        .task_queue(args.queue.clone().filter(|q| !q.is_empty()))
        .open()
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
    let api_addr: SocketAddr = format!("{}:{}", args.host, args.port).parse().context("invalid --host/--port")?;
    let rt_addr: SocketAddr = format!("{}:{}", args.host, args.runtime_port).parse().context("invalid --runtime-port")?;
    let api_listener = tokio::net::TcpListener::bind(api_addr).await.with_context(|| format!("binding {api_addr}"))?;
    let rt_listener = tokio::net::TcpListener::bind(rt_addr).await.with_context(|| format!("binding {rt_addr}"))?;
    let api_addr = api_listener.local_addr()?;
    let rt_addr = rt_listener.local_addr()?;

    let api_keys = args
        .api_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| llamafarm_http::ApiKey::parse(k).map_err(|e| anyhow::anyhow!("--api-key / LF_API_KEYS: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let cors_origins = match args.cors_origins {
        o if !o.is_empty() => o,
        _ if api_keys.is_empty() => vec!["*".to_string()],
        _ => Vec::new(),
    };
    if api_keys.is_empty() && !api_addr.ip().is_loopback() {
        tracing::warn!(address = %api_addr, "listening on a non-loopback address without an API key: anyone who can reach it can read and change every project (set --api-key)");
    }
    if args.rate_limit == Some(0) {
        anyhow::bail!("--rate-limit / LF_RATE_LIMIT must be at least 1 request per minute");
    }
    let rate_limit = args.rate_limit.map(|n| match args.rate_limit_burst {
        Some(b) => llamafarm_http::RateLimit { per_minute: n, burst: b.max(1) },
        None => llamafarm_http::RateLimit::per_minute(n),
    });
    let request_timeout = (args.request_timeout > 0).then(|| Duration::from_secs(args.request_timeout));
    let opts = HttpOptions { cors_origins, body_limit: args.max_body_bytes, public_url: Some(format!("http://{api_addr}")), api_keys, rate_limit, request_timeout };
    let api = llamafarm_http::api_router(lf.clone(), &opts);
    let runtime = llamafarm_http::runtime_router(lf.clone(), &opts);

    tracing::info!(version = llamafarm_core::system::VERSION, data_dir = %lf.data_dir().display(),
        model_cache = %lf.models().hub_dir().display(), simd = ?llamafarm_core::system::simd_features(),
        embedding_kernels = %llamafarm_core::system::embedding_kernels(), "starting");
    for c in lf.health().components {
        if c.status != llamafarm_core::HealthStatus::Healthy {
            tracing::warn!(component = %c.name, "{}", c.message);
        }
    }
    // Install the signal handlers before announcing readiness, so a SIGTERM sent right
    // after the "listening" line is never lost.
    let shutdown = shutdown_signal()?;
    if args.memory_trim_interval > 0 {
        llamafarm_core::system::spawn_memory_trimmer(Duration::from_secs(args.memory_trim_interval), 64 << 20).context("starting the memory trimmer")?;
    }
    // Machine-readable lines for scripts and tests that start us on port 0.
    println!("LlamaFarm API listening on http://{api_addr}");
    println!("Universal Runtime listening on http://{rt_addr}");

    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx_api = tx.subscribe();
    let mut rx_rt = tx.subscribe();
    // Connection info gives the rate limit each client's address.
    let api_srv = axum::serve(api_listener, api.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
        let _ = rx_api.recv().await;
    });
    let rt_srv = axum::serve(rt_listener, runtime.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
        let _ = rx_rt.recv().await;
    });
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = tx.send(());
    });
    let (a, b) = tokio::join!(api_srv, rt_srv);
    a?;
    b?;
    // The stores' rows and graph files, so the next start opens them without reading
    // every row back from the index.
    let persisted = lf.clone();
    tokio::task::spawn_blocking(move || persisted.persist_stores()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; the handlers are registered when this is called.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// `$HOME`, or the current directory when it is unset.
fn home_dir() -> PathBuf {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}
