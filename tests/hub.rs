//! A model hub on loopback, for tests and benchmarks: it serves real files the way
//! the Hugging Face hub does, so `lf` and `huggingface_hub` can both download from it.
//!
//! - `GET /api/models/{org}/{name}[/revision/{rev}]`: model info with `sha` and
//!   `siblings` (`rfilename`, `size`, `blobId`, `lfs.sha256` for LFS files);
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{path}`: small files directly (with `ETag`
//!   and `X-Repo-Commit`), LFS files as a 302 to `/cdn/{sha256}` with `X-Linked-Etag`
//!   and `X-Linked-Size`, as the hub redirects to its CDN;
//! - `GET /cdn/{sha256}`: the bytes, honouring `Range`.
//!
//! Faults for tests: [`HubServer::cut_next`] drops the connection after N bytes of the
//! next file response; [`HubServer::corrupt_next`] flips a byte of it.
//! [`HubServer::gate`] makes a repo answer only requests with its bearer token (401
//! without a token, 403 with another, as the hub answers for gated and private repos), and
//! [`HubServer::authorized_requests`] lists the requests that carried a token.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Where a served file's bytes come from.
pub enum Source {
    /// In memory.
    Bytes(Vec<u8>),
    /// A file on disk (read whole when the repo is added).
    File(std::path::PathBuf),
}

struct HubFile {
    path: String,
    bytes: Arc<Vec<u8>>,
    sha256: String,
    blob_id: String,
    lfs: bool,
}

struct Repo {
    commit: String,
    files: Vec<HubFile>,
}

#[derive(Default)]
struct Hub {
    repos: RwLock<HashMap<String, Repo>>,
    blobs: RwLock<HashMap<String, Arc<Vec<u8>>>>,
    cut: AtomicU64,
    corrupt: AtomicBool,
    log: Mutex<Vec<String>>,
    /// Requests that carried an `Authorization` header.
    authorized: Mutex<Vec<String>>,
    /// Repo -> the bearer token it requires.
    gates: RwLock<HashMap<String, String>>,
    base: RwLock<String>,
}

impl Hub {
    /// Note a request's `Authorization` header; for a gated repo, the refusal to send
    /// unless it carries the repo's token.
    fn check(&self, repo: Option<&str>, what: &str, headers: &HeaderMap) -> Option<Response> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if auth.is_some() {
            self.authorized.lock().unwrap().push(what.to_string());
        }
        let want = repo.and_then(|r| self.gates.read().unwrap().get(r).cloned())?;
        let msg = |s| format!("Access to model {} is restricted{s}", repo.unwrap_or(""));
        match auth.and_then(|a| a.strip_prefix("Bearer ")) {
            Some(t) if t == want => None,
            Some(_) => Some(
                (
                    StatusCode::FORBIDDEN,
                    [("x-error-code", "GatedRepo")],
                    axum::Json(serde_json::json!({ "error": msg(" and you are not in the authorized list.") })),
                )
                    .into_response(),
            ),
            None => Some(
                (
                    StatusCode::UNAUTHORIZED,
                    [("x-error-code", "GatedRepo")],
                    axum::Json(serde_json::json!({ "error": msg(". You must be authenticated to access it.") })),
                )
                    .into_response(),
            ),
        }
    }
}

/// The running hub.
pub struct HubServer {
    /// `http://127.0.0.1:PORT`: what `HF_ENDPOINT` is set to.
    pub endpoint: String,
    hub: Arc<Hub>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl HubServer {
    /// Start on an ephemeral loopback port (inside the caller's tokio runtime).
    pub async fn start() -> Self {
        let hub = Arc::new(Hub::default());
        let app = Router::new()
            .route("/api/models/{org}/{name}", get(info))
            .route("/api/models/{org}/{name}/revision/{rev}", get(info_rev))
            .route("/{org}/{name}/resolve/{rev}/{*path}", get(resolve).head(resolve))
            .route("/cdn/{sha}", get(cdn).head(cdn))
            .with_state(hub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        *hub.base.write().unwrap() = endpoint.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { endpoint, hub }
    }

    /// Publish `repo` (`org/name`) with `files`; files over 1 KiB, and every GGUF and
    /// safetensors file, are served as LFS files. Returns the commit id.
    pub fn add_repo(&self, repo: &str, files: Vec<(&str, Source)>) -> String {
        let mut commit_hash = Sha256::new();
        let mut out = Vec::new();
        for (path, src) in files {
            let bytes = match src {
                Source::Bytes(b) => b,
                Source::File(p) => std::fs::read(&p).unwrap(),
            };
            let sha256 = hex(&Sha256::digest(&bytes));
            // Stands in for the git blob id (a 40-hex id, as the hub sends).
            let blob_id = hex(&Sha256::digest([b"blob ".as_slice(), &bytes].concat()))[..40].to_string();
            let lfs = bytes.len() > 1024 || path.ends_with(".gguf") || path.ends_with(".safetensors");
            commit_hash.update(path.as_bytes());
            commit_hash.update(sha256.as_bytes());
            let bytes = Arc::new(bytes);
            self.hub.blobs.write().unwrap().insert(sha256.clone(), bytes.clone());
            out.push(HubFile { path: path.to_string(), bytes, sha256, blob_id, lfs });
        }
        let commit = hex(&commit_hash.finalize())[..40].to_string();
        self.hub.repos.write().unwrap().insert(repo.to_string(), Repo { commit: commit.clone(), files: out });
        commit
    }

    /// Drop the connection after `bytes` of the next file response.
    pub fn cut_next(&self, bytes: u64) {
        self.hub.cut.store(bytes, Ordering::SeqCst);
    }

    /// Flip one byte of the next file response.
    pub fn corrupt_next(&self) {
        self.hub.corrupt.store(true, Ordering::SeqCst);
    }

    /// Serve `repo` only to requests that carry `Authorization: Bearer {token}`.
    pub fn gate(&self, repo: &str, token: &str) {
        self.hub.gates.write().unwrap().insert(repo.to_string(), token.to_string());
    }

    /// Requests that carried an `Authorization` header (`info REPO`, `resolve REPO/PATH`,
    /// `cdn SHA`).
    pub fn authorized_requests(&self) -> Vec<String> {
        self.hub.authorized.lock().unwrap().clone()
    }

    /// Requests served so far (`METHOD path range`).
    pub fn requests(&self) -> Vec<String> {
        self.hub.log.lock().unwrap().clone()
    }
}

fn not_found(msg: &str) -> Response {
    (StatusCode::NOT_FOUND, [("x-error-code", "RepoNotFound")], axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn info(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path((org, name)): Path<(String, String)>) -> Response {
    info_rev(State(hub), headers, Path((org, name, "main".into()))).await
}

async fn info_rev(State(hub): State<Arc<Hub>>, headers: HeaderMap, Path((org, name, _rev)): Path<(String, String, String)>) -> Response {
    let id = format!("{org}/{name}");
    if let Some(refused) = hub.check(Some(&id), &format!("info {id}"), &headers) {
        return refused;
    }
    let repos = hub.repos.read().unwrap();
    let Some(r) = repos.get(&id) else { return not_found("Repository not found") };
    let siblings: Vec<serde_json::Value> = r
        .files
        .iter()
        .map(|f| {
            let mut s = serde_json::json!({ "rfilename": f.path, "size": f.bytes.len(), "blobId": f.blob_id });
            if f.lfs {
                s["lfs"] = serde_json::json!({ "sha256": f.sha256, "size": f.bytes.len(), "pointerSize": 134 });
            }
            s
        })
        .collect();
    axum::Json(serde_json::json!({
        "_id": id, "id": id, "modelId": id, "sha": r.commit, "private": false, "gated": false,
        "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "siblings": siblings,
    }))
    .into_response()
}

async fn resolve(State(hub): State<Arc<Hub>>, method: Method, headers: HeaderMap, Path((org, name, rev, path)): Path<(String, String, String, String)>) -> Response {
    let id = format!("{org}/{name}");
    if let Some(refused) = hub.check(Some(&id), &format!("resolve {id}/{path}"), &headers) {
        return refused;
    }
    let found = {
        let repos = hub.repos.read().unwrap();
        let Some(r) = repos.get(&id) else { return not_found("Repository not found") };
        if rev != "main" && rev != r.commit {
            return not_found("Revision not found");
        }
        r.files.iter().find(|f| f.path == path).map(|f| (r.commit.clone(), f.sha256.clone(), f.blob_id.clone(), f.lfs, f.bytes.clone()))
    };
    let Some((commit, sha, blob_id, lfs, bytes)) = found else {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")], axum::Json(serde_json::json!({ "error": "Entry not found" }))).into_response();
    };
    hub.log.lock().unwrap().push(format!("{method} /{id}/resolve/{rev}/{path}"));
    if lfs {
        // Another host name for the same server, as the hub's CDN is another host (clients
        // follow a redirect to the same host on HEAD, and would miss the hub's headers).
        let base = hub.base.read().unwrap().replace("127.0.0.1", "localhost");
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{base}/cdn/{sha}"))
            .header("x-repo-commit", &commit)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", bytes.len().to_string())
            .header(header::ETAG, format!("\"{blob_id}\""))
            .body(Body::empty())
            .unwrap();
    }
    serve_bytes(&hub, &method, &headers, bytes, &blob_id, Some(&commit))
}

async fn cdn(State(hub): State<Arc<Hub>>, method: Method, headers: HeaderMap, Path(sha): Path<String>) -> Response {
    hub.check(None, &format!("cdn {sha}"), &headers);
    let Some(bytes) = hub.blobs.read().unwrap().get(&sha).cloned() else { return not_found("no such blob") };
    serve_bytes(&hub, &method, &headers, bytes, &sha, None)
}

fn serve_bytes(hub: &Hub, method: &Method, headers: &HeaderMap, bytes: Arc<Vec<u8>>, etag: &str, commit: Option<&str>) -> Response {
    let len = bytes.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|r| r.strip_prefix("bytes=")).map(|r| {
        let (a, b) = r.split_once('-').unwrap_or((r, ""));
        let start: u64 = a.parse().unwrap_or(0);
        let end: u64 = b.parse().map(|e: u64| e.min(len.saturating_sub(1))).unwrap_or(len.saturating_sub(1));
        (start, end)
    });
    hub.log.lock().unwrap().push(format!("{method} cdn {}", range.map(|(a, b)| format!("{a}-{b}")).unwrap_or_default()));
    let mut b = Response::builder().header(header::ETAG, format!("\"{etag}\"")).header(header::ACCEPT_RANGES, "bytes");
    if let Some(c) = commit {
        b = b.header("x-repo-commit", c);
    }
    let (start, end) = match range {
        Some((s, _)) if s >= len && len > 0 => {
            return b.status(StatusCode::RANGE_NOT_SATISFIABLE).header(header::CONTENT_RANGE, format!("bytes */{len}")).body(Body::empty()).unwrap()
        }
        Some((s, e)) => {
            b = b.status(StatusCode::PARTIAL_CONTENT).header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{len}"));
            (s, e + 1)
        }
        None => (0, len),
    };
    b = b.header(header::CONTENT_LENGTH, (end - start).to_string());
    if *method == Method::HEAD {
        return b.body(Body::empty()).unwrap();
    }
    let cut = hub.cut.swap(0, Ordering::SeqCst);
    let corrupt = hub.corrupt.swap(false, Ordering::SeqCst);
    let stream = futures::stream::unfold((start, false), move |(pos, failed)| {
        let bytes = bytes.clone();
        async move {
            if failed || pos >= end {
                return None;
            }
            if cut > 0 && pos >= start + cut {
                return Some((Err(std::io::Error::other("connection cut by the test hub")), (pos, true)));
            }
            let mut stop = (pos + (256 << 10)).min(end);
            if cut > 0 {
                stop = stop.min(start + cut);
            }
            let mut chunk = bytes[pos as usize..stop as usize].to_vec();
            if corrupt && pos == start && !chunk.is_empty() {
                chunk[0] ^= 0xff;
            }
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)), (stop, false)))
        }
    });
    b.body(Body::from_stream(stream)).unwrap()
}
