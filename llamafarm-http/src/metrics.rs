//! `GET /metrics` on both ports: the Prometheus text format (version 0.0.4), through the
//! `prometheus-client` crate.
//!
//! Requests are counted by a middleware in front of routing (`track`), labelled by
//! port (`api`, `runtime`), method, route template (`/v1/projects/{namespace}/{project}`,
//! never the raw path, so the label set stays small) and status; their latency is the
//! time to the response head (a streamed body goes on after it). Everything else is read
//! from the library at scrape time ([`llamafarm_core::LlamaFarm::stats`]): the task
//! queue, each local chat model's generations and tokens, model loads, open stores'
//! sizes, and memory. The HTTP counters belong to the process, like the library's.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llamafarm_core::system::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    port: &'static str,
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    port: &'static str,
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    namespace: String,
    project: String,
    database: String,
}

type Seconds = Counter<f64, AtomicU64>;

/// The process's HTTP counters.
struct Http {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

fn http() -> &'static Http {
    static HTTP: OnceLock<Http> = OnceLock::new();
    HTTP.get_or_init(|| Http {
        requests: Family::default(),
        // 1 ms to about 9 minutes.
        latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 20))),
    })
}

/// The matched route template, passed from inside routing to [`track`] outside it.
#[derive(Clone)]
struct Route(String);

/// Inside routing: note the route template on the response for [`track`].
pub(crate) async fn mark_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(Route(r));
    }
    resp
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// In front of routing (and of the key check and limits, so refusals count too): count
/// the request and time it to its response head.
pub(crate) async fn track(State(port): State<&'static str>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let mcp = req.uri().path() == "/mcp" || req.uri().path().starts_with("/mcp/");
    let t = Instant::now();
    let resp = next.run(req).await;
    let route = match resp.extensions().get::<Route>() {
        Some(r) => r.0.clone(),
        None if mcp => "/mcp".into(),
        None => "unmatched".into(),
    };
    let h = http();
    h.latency.get_or_create(&RouteLabels { port, method, route: route.clone() }).observe(t.elapsed().as_secs_f64());
    h.requests.get_or_create(&RequestLabels { port, method, route, status: resp.status().as_u16() }).inc();
    resp
}

/// The metrics in the Prometheus text format.
pub fn render(stats: &Stats) -> String {
    let h = http();
    let mut reg = Registry::default();
    reg.register("lf_http_requests", "HTTP requests answered, by port, method, route template and status", h.requests.clone());
    reg.register("lf_http_request_duration_seconds", "Time to the response head, by port, method and route template", h.latency.clone());

    let tasks = Family::<StateLabel, Gauge>::default();
    tasks.get_or_create(&StateLabel { state: "queued" }).set(stats.tasks.queued as i64);
    tasks.get_or_create(&StateLabel { state: "running" }).set(stats.tasks.running as i64);
    reg.register("lf_tasks", "Ingestion tasks now: queued (waiting for a worker) and running", tasks);
    let finished = Family::<StateLabel, Counter>::default();
    let task_seconds = Family::<StateLabel, Seconds>::default();
    for (state, n, secs) in &stats.tasks.finished {
        finished.get_or_create(&StateLabel { state: state.as_str() }).inc_by(*n);
        task_seconds.get_or_create(&StateLabel { state: state.as_str() }).inc_by(*secs);
    }
    reg.register("lf_tasks_finished", "Ingestion tasks run to their end, by final state", finished);
    reg.register("lf_task_duration_seconds", "Seconds ingestion tasks ran, summed, by final state", task_seconds);
    let beats = Family::<WorkerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (worker, age) in &stats.tasks.workers {
        beats.get_or_create(&WorkerLabel { worker: worker.clone() }).set(*age);
    }
    reg.register("lf_worker_heartbeat_age_seconds", "With a Redis queue: seconds since each live `lf worker` last beat", beats);

    let gauge = |name: &str, help: &str, reg: &mut Registry, rows: &mut dyn Iterator<Item = (String, i64)>| {
        let f = Family::<ModelLabel, Gauge>::default();
        for (model, v) in rows {
            f.get_or_create(&ModelLabel { model }).set(v);
        }
        reg.register(name, help, f);
    };
    gauge("lf_model_generations_running", "Generations running now, by local model", &mut reg, &mut stats.loaded.iter().map(|m| (m.id.clone(), m.running as i64)));
    gauge(
        "lf_model_generations_queued",
        "Generations waiting for a slot, by local model",
        &mut reg,
        &mut stats.loaded.iter().map(|m| (m.id.clone(), m.queued as i64)),
    );
    let counter = |name: &str, help: &str, reg: &mut Registry, get: &dyn Fn(&llamafarm_core::llm::ModelTotals) -> u64| {
        let f = Family::<ModelLabel, Counter>::default();
        for (model, t) in &stats.llm.models {
            f.get_or_create(&ModelLabel { model: model.clone() }).inc_by(get(t));
        }
        reg.register(name, help, f);
    };
    counter("lf_model_generations", "Generations finished, by local model", &mut reg, &|t| t.generations);
    counter("lf_model_generations_failed", "Generations that ended in an error or were cancelled, by local model", &mut reg, &|t| t.failed);
    counter("lf_model_requests_rejected", "Requests refused with 429 busy (queue full), by local model", &mut reg, &|t| t.rejected);
    counter("lf_model_prompt_tokens", "Prompt tokens of finished generations, by local model", &mut reg, &|t| t.prompt_tokens);
    counter(
        "lf_model_completion_tokens",
        "Tokens generated, by local model (tokens/s: rate of this over rate of lf_model_generation_seconds_total)",
        &mut reg,
        &|t| t.completion_tokens,
    );
    let gen_seconds = Family::<ModelLabel, Seconds>::default();
    for (model, t) in &stats.llm.models {
        gen_seconds.get_or_create(&ModelLabel { model: model.clone() }).inc_by(t.generation_seconds);
    }
    reg.register("lf_model_generation_seconds", "Seconds generations held a slot, summed, by local model", gen_seconds);
    let loads: Counter = Counter::default();
    loads.inc_by(stats.llm.loads);
    reg.register("lf_model_loads", "Local chat model loads", loads);
    let unloads: Counter = Counter::default();
    unloads.inc_by(stats.llm.unloads);
    reg.register("lf_model_unloads", "Local chat model unloads (idle, or deleted)", unloads);

    let (chunks, files, bytes) = (Family::<StoreLabels, Gauge>::default(), Family::<StoreLabels, Gauge>::default(), Family::<StoreLabels, Gauge>::default());
    for s in &stats.stores {
        let l = StoreLabels { namespace: s.namespace.clone(), project: s.project.clone(), database: s.database.clone() };
        chunks.get_or_create(&l).set(s.chunks as i64);
        files.get_or_create(&l).set(s.files as i64);
        bytes.get_or_create(&l).set(s.bytes as i64);
    }
    reg.register("lf_store_chunks", "Live chunks, by open store", chunks);
    reg.register("lf_store_files", "Distinct source files, by open store", files);
    reg.register("lf_store_bytes", "Bytes on disk, by open store", bytes);

    if let Some(b) = stats.resident_bytes {
        let g: Gauge = Gauge::default();
        g.set(b as i64);
        reg.register("lf_process_resident_memory_bytes", "Resident memory of the process", g);
    }
    if let Some(b) = stats.allocator_free_bytes {
        let g: Gauge = Gauge::default();
        g.set(b as i64);
        reg.register("lf_allocator_free_bytes", "Memory the allocator holds free (returned to the system every few seconds by lf serve)", g);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &reg);
    out
}

/// The metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format (version 0.0.4)", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let lf = st.lf.clone();
    match tokio::task::spawn_blocking(move || lf.stats()).await {
        Ok(stats) => ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&stats)).into_response(),
        Err(_) => crate::ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be collected").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llamafarm_core::llm::{LlmStats, ModelTotals};
    use llamafarm_core::system::StoreSize;
    use llamafarm_core::task::{TaskState, TaskStats};

    #[test]
    fn renders_the_prometheus_text_format() {
        let stats = Stats {
            tasks: TaskStats { queued: 2, running: 1, finished: vec![(TaskState::Success, 3, 1.5)], workers: vec![("w1".into(), 1.5)] },
            llm: LlmStats {
                loads: 2,
                unloads: 1,
                models: vec![("org/m:Q4_K_M".into(), ModelTotals { generations: 4, completion_tokens: 64, generation_seconds: 0.5, ..Default::default() })],
            },
            loaded: Vec::new(),
            stores: vec![StoreSize { namespace: "a\"b".into(), project: "p".into(), database: "db".into(), chunks: 10, files: 2, bytes: 4096 }],
            resident_bytes: Some(1 << 20),
            allocator_free_bytes: None,
        };
        let text = render(&stats);
        for line in [
            "# TYPE lf_tasks gauge",
            r#"lf_tasks{state="queued"} 2"#,
            r#"lf_tasks_finished_total{state="SUCCESS"} 3"#,
            r#"lf_task_duration_seconds_total{state="SUCCESS"} 1.5"#,
            r#"lf_model_completion_tokens_total{model="org/m:Q4_K_M"} 64"#,
            r#"lf_model_generation_seconds_total{model="org/m:Q4_K_M"} 0.5"#,
            "lf_model_loads_total 2",
            "lf_model_unloads_total 1",
            r#"lf_store_chunks{namespace="a\"b",project="p",database="db"} 10"#,
            "lf_process_resident_memory_bytes 1048576",
            r#"lf_worker_heartbeat_age_seconds{worker="w1"} 1.5"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("lf_allocator_free_bytes"), "absent readings are left out");
        assert!(!text.contains("# EOF"), "the Prometheus format, not OpenMetrics");
    }
}
