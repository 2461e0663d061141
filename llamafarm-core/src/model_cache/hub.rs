//! Downloads from a Hugging Face hub into the model cache.
//!
//! The hub's documented HTTP protocol, over `ureq`:
//! - `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`: the commit and every
//!   file with its size, git blob id and, for LFS files, sha256;
//! - `GET {endpoint}/{repo}/resolve/{commit}/{path}` (redirects followed, `Range` for
//!   resuming): the bytes.
//!
//! Files land where `huggingface_hub` puts them, so both tools share one cache:
//! `blobs/{etag}` (the sha256 for LFS files, the git blob id otherwise), the snapshot
//! entry `snapshots/{commit}/{path}` as a relative link to the blob, `refs/{revision}`
//! holding the commit, and while downloading `blobs/{etag}.incomplete` under the lock
//! `{cache}/.locks/models--ORG--NAME/{etag}.lock`. An interrupted download resumes from
//! the `.incomplete` file, in this process or the next (or in `huggingface_hub`). LFS
//! files are checked against their sha256 before they are renamed into place, so a
//! truncated or corrupt file never appears in the cache.
//!
//! The `hf-hub` crate is not used: its 0.4 client has no file listing with sizes or
//! hashes (needed by validate-download and the quantization list), checks no
//! checksum, and keeps partial files under another name than `huggingface_hub`.

use super::{quant_of, ModelCache, ModelRef};
use crate::error::{Error, ResourceKind, Result};
use crate::paths::encode_segment as encode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How often a download retries after the connection drops mid-file (each retry resumes).
const RETRIES: u32 = 4;

/// The quantisations picked, in order, when a GGUF repo is named without one.
const DEFAULT_QUANTS: &[&str] = &["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q8_0"];

/// A client of one hub endpoint.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("endpoint", &self.endpoint).field("token", &self.token.as_ref().map(|_| "***")).finish()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(DEFAULT_ENDPOINT, None)
    }
}

/// One file of a repo, as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path in the repo.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// The LFS sha256, for files stored in LFS.
    pub sha256: Option<String>,
    /// The git blob id.
    pub blob_id: Option<String>,
}

impl RemoteFile {
    /// The name of its blob in the cache (what the hub sends as `ETag`).
    pub fn etag(&self) -> Option<&str> {
        self.sha256.as_deref().or(self.blob_id.as_deref())
    }
}

/// A repo at one commit.
#[derive(Debug, Clone)]
pub struct RepoListing {
    /// `org/name`.
    pub repo: String,
    /// The commit the revision points at.
    pub commit: String,
    /// Its files.
    pub files: Vec<RemoteFile>,
}

/// One GGUF quantisation offered by a repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantOption {
    /// The file (the first part of a split file).
    pub filename: String,
    /// `Q4_K_M`, `Q8_0`, ...
    pub quantization: String,
    /// Bytes, all parts together.
    pub size_bytes: u64,
}

/// What a download of one model id fetches.
#[derive(Debug, Clone)]
pub struct DownloadPlan {
    /// The id asked for.
    pub model: String,
    /// `org/name`.
    pub repo: String,
    /// The revision asked for (`main`).
    pub revision: String,
    /// Its commit.
    pub commit: String,
    /// The files, in download order.
    pub files: Vec<RemoteFile>,
}

impl DownloadPlan {
    /// Bytes of all its files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Progress of a download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes in the cache so far, counting files that were there already.
    pub downloaded: u64,
    /// Bytes of all files.
    pub total: u64,
    /// The file being fetched.
    pub file: String,
    /// Files finished.
    pub files_done: usize,
    /// Files in all.
    pub files_total: usize,
}

impl DownloadProgress {
    /// Whole percent, 100 when there is nothing to fetch.
    pub fn percent(&self) -> u64 {
        (self.downloaded.min(self.total) * 100).checked_div(self.total).unwrap_or(100)
    }
}

/// A finished download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The id asked for.
    pub model: String,
    /// The snapshot directory.
    pub path: PathBuf,
    /// The commit.
    pub commit: String,
    /// Files in the snapshot from this download.
    pub files: usize,
    /// Bytes fetched over the network (0 when everything was cached).
    pub bytes_fetched: u64,
    /// Bytes of the model's files.
    pub total_bytes: u64,
}

impl Hub {
    /// A client of `endpoint` (e.g. [`DEFAULT_ENDPOINT`] or a mirror), sending `token`
    /// as a bearer token to the endpoint (never to the hosts it redirects to).
    pub fn new(endpoint: impl Into<String>, token: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(format!("llamafarm-rs/{}", crate::system::VERSION))
            .build()
            .into();
        Self { endpoint: endpoint.into().trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()), agent }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut r = self.agent.get(url);
        if let Some(t) = &self.token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        r
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> Error {
        Error::unavailable(format!("model hub {}", self.endpoint), e.to_string())
    }

    /// Turn a hub status into the error a user can act on.
    fn status_error(&self, repo: &str, what: &str, status: u16) -> Error {
        match status {
            404 => Error::missing_in(ResourceKind::Model, repo, format!("on the model hub {}", self.endpoint)),
            401 | 403 => Error::unavailable(
                format!("model '{repo}'"),
                format!("the hub refused {what} ({status}): the repo is private or gated; accept its terms on the hub and set HF_TOKEN"),
            ),
            s => Error::unavailable(format!("model hub {}", self.endpoint), format!("{what} answered {s}")),
        }
    }

    /// The files of `repo` at `revision`.
    pub fn listing(&self, repo: &str, revision: &str) -> Result<RepoListing> {
        let r = ModelRef::parse(repo)?;
        if r.repo.starts_with('/') {
            return Err(Error::invalid("model id", "a local path cannot be downloaded"));
        }
        let url = format!("{}/api/models/{}/revision/{}?blobs=true", self.endpoint, r.repo, encode(revision));
        let mut resp = self.get(&url).call().map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.status_error(&r.repo, "the repo listing", status));
        }
        let v: serde_json::Value = resp.body_mut().with_config().limit(64 << 20).read_json().map_err(|e| self.unreachable(format!("bad repo listing: {e}")))?;
        let commit = v["sha"]
            .as_str()
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| self.unreachable("the repo listing has no commit"))?;
        let mut files = Vec::new();
        for s in v["siblings"].as_array().into_iter().flatten() {
            let Some(path) = s["rfilename"].as_str() else { continue };
            if !safe_repo_path(path) {
                continue;
            }
            let lfs = &s["lfs"];
            files.push(RemoteFile {
                path: path.to_string(),
                size: lfs["size"].as_u64().or_else(|| s["size"].as_u64()).unwrap_or(0),
                sha256: lfs["sha256"].as_str().filter(|h| is_hex(h, 64)).map(str::to_lowercase),
                blob_id: s["blobId"].as_str().filter(|h| is_hex(h, 40)).map(str::to_lowercase),
            });
        }
        Ok(RepoListing { repo: r.repo, commit: commit.to_string(), files })
    }

    /// The GGUF quantisations of `repo`, smallest first.
    pub fn quantizations(&self, repo: &str) -> Result<Vec<QuantOption>> {
        let listing = self.listing(repo, "main")?;
        Ok(quantizations(&listing.files))
    }

    /// What downloading `id` (`org/name` or `org/name:QUANT`) fetches.
    pub fn plan(&self, id: &str) -> Result<DownloadPlan> {
        let r = ModelRef::parse(id)?;
        let listing = self.listing(&r.repo, "main")?;
        let files = select_files(&listing.files, r.quantization.as_deref()).map_err(|have| match &r.quantization {
            Some(q) => Error::missing_in(
                ResourceKind::Model,
                format!("{}:{q}", r.repo),
                format!("(quantizations on the hub: {})", if have.is_empty() { "none".into() } else { have.join(", ") }),
            ),
            None => Error::missing_in(ResourceKind::Model, &r.repo, "(the repo has no files)"),
        })?;
        Ok(DownloadPlan { model: id.to_string(), repo: r.repo, revision: "main".into(), commit: listing.commit, files })
    }

    /// Fetch one file into `blob` (via `{blob}.incomplete`), resuming what is there,
    /// checking its sha256. `on_bytes` gets each chunk's length.
    fn fetch_blob(&self, plan: &DownloadPlan, f: &RemoteFile, blob: &Path, on_bytes: &mut dyn FnMut(u64)) -> Result<u64> {
        let part = blob.with_file_name(format!("{}.incomplete", blob.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, plan.repo, plan.commit, f.path.split('/').map(encode).collect::<Vec<_>>().join("/"));
        let mut file = fs::OpenOptions::new().create(true).append(true).read(true).open(&part).map_err(|e| Error::io(&part, e))?;
        let mut have = file.metadata().map_err(|e| Error::io(&part, e))?.len();
        if have > f.size {
            file.set_len(0).map_err(|e| Error::io(&part, e))?;
            have = 0;
        }
        let mut hasher = Sha256::new();
        if f.sha256.is_some() && have > 0 {
            let mut r = fs::File::open(&part).map_err(|e| Error::io(&part, e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = r.read(&mut buf).map_err(|e| Error::io(&part, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        on_bytes(have);
        let mut fetched = 0u64;
        let mut attempt = 0;
        let mut buf = vec![0u8; 1 << 20];
        while have < f.size {
            let mut req = self.get(&url);
            if have > 0 {
                req = req.header("Range", format!("bytes={have}-"));
            }
            let outcome: std::result::Result<(), String> = (|| {
                let resp = req.call().map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                match status {
                    206 => {}
                    200 if have > 0 => {
                        // The server ignored the range: start over.
                        file.set_len(0).map_err(|e| e.to_string())?;
                        on_bytes(0u64.wrapping_sub(have));
                        have = 0;
                        hasher = Sha256::new();
                    }
                    200 => {}
                    s => return Err(format!("status {s}")),
                }
                let mut body = resp.into_body().into_reader();
                loop {
                    let n = body.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(());
                    }
                    let n = n.min((f.size - have) as usize);
                    file.write_all(&buf[..n]).map_err(|e| format!("writing {}: {e}", part.display()))?;
                    if f.sha256.is_some() {
                        hasher.update(&buf[..n]);
                    }
                    have += n as u64;
                    fetched += n as u64;
                    on_bytes(n as u64);
                    if have == f.size {
                        return Ok(());
                    }
                }
            })();
            match outcome {
                Ok(()) if have == f.size => break,
                Ok(()) => {}
                Err(e) if e.starts_with("status 4") => {
                    let status: u16 = e[7..].parse().unwrap_or(400);
                    return Err(self.status_error(&plan.repo, &format!("the file {}", f.path), status));
                }
                Err(e) if e.starts_with("writing ") => return Err(Error::internal(e)),
                Err(e) => tracing::warn!(file = %f.path, bytes = have, error = %e, "model download interrupted; resuming"),
            }
            attempt += 1;
            if attempt > RETRIES {
                return Err(self.unreachable(format!("the download of {} stopped at {have} of {} bytes; run the download again to resume it", f.path, f.size)));
            }
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        }
        if let Some(want) = &f.sha256 {
            let got = hex(&hasher.finalize());
            if &got != want {
                drop(file);
                let _ = fs::remove_file(&part);
                return Err(self.unreachable(format!("{} has sha256 {got}, the hub lists {want}; the partial file was removed", f.path)));
            }
        }
        file.sync_all().map_err(|e| Error::io(&part, e))?;
        drop(file);
        fs::rename(&part, blob).map_err(|e| Error::io(blob, e))?;
        Ok(fetched)
    }

    /// Download `plan` into `cache`, calling `progress` as bytes arrive.
    pub fn download(&self, cache: &ModelCache, plan: &DownloadPlan, progress: &mut dyn FnMut(&DownloadProgress)) -> Result<Downloaded> {
        let repo_dir = cache.hub_dir().join(ModelRef::parse(&plan.repo)?.cache_folder());
        let blobs = repo_dir.join("blobs");
        let snapshot = repo_dir.join("snapshots").join(&plan.commit);
        let locks = cache.hub_dir().join(".locks").join(ModelRef::parse(&plan.repo)?.cache_folder());
        for d in [&blobs, &snapshot, &locks] {
            fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        let mut p = DownloadProgress { total: plan.total_bytes(), files_total: plan.files.len(), ..Default::default() };
        let mut fetched = 0;
        let mut last = Instant::now() - Duration::from_secs(1);
        progress(&p);
        for f in &plan.files {
            let etag = f.etag().ok_or_else(|| self.unreachable(format!("the listing gives {} no blob id", f.path)))?;
            let blob = blobs.join(etag);
            p.file = f.path.clone();
            let base = p.downloaded;
            if !blob.is_file() || fs::metadata(&blob).map(|m| m.len()).unwrap_or(0) != f.size {
                let lock_path = locks.join(format!("{etag}.lock"));
                let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
                lock.lock().map_err(|e| Error::io(&lock_path, e))?;
                if !blob.is_file() {
                    let mut done = 0u64;
                    fetched += self.fetch_blob(plan, f, &blob, &mut |n| {
                        done = done.wrapping_add(n);
                        p.downloaded = base + done;
                        if last.elapsed() >= Duration::from_millis(100) {
                            last = Instant::now();
                            progress(&p);
                        }
                    })?;
                }
                let _ = lock.unlock();
            }
            link(&blob, &snapshot.join(&f.path))?;
            p.downloaded = base + f.size;
            p.files_done += 1;
            progress(&p);
        }
        crate::fsutil::atomic_write(&repo_dir.join("refs").join(&plan.revision), plan.commit.as_bytes())?;
        Ok(Downloaded {
            model: plan.model.clone(),
            path: snapshot,
            commit: plan.commit.clone(),
            files: plan.files.len(),
            bytes_fetched: fetched,
            total_bytes: plan.total_bytes(),
        })
    }
}

/// The snapshot entry: a relative link to the blob, as `huggingface_hub` makes it.
fn link(blob: &Path, entry: &Path) -> Result<()> {
    let parent = entry.parent().ok_or_else(|| Error::internal("snapshot entry has no parent"))?;
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    // snapshots/{commit}/a/b.bin -> ../../../blobs/{etag}
    let depth = entry.components().count() - blob.parent().and_then(|b| b.parent()).map(|r| r.components().count()).unwrap_or(0) - 1;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().unwrap_or_default());
    let _ = fs::remove_file(entry);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(&target, entry);
    #[cfg(not(unix))]
    let made = fs::copy(blob, entry).map(|_| ());
    made.map_err(|e| Error::io(entry, e))
}

/// Which files a download of a repo fetches; `Err` lists the quantisations there are.
fn select_files(files: &[RemoteFile], quant: Option<&str>) -> std::result::Result<Vec<RemoteFile>, Vec<String>> {
    let ggufs: Vec<&RemoteFile> = files.iter().filter(|f| f.path.to_lowercase().ends_with(".gguf")).collect();
    let have: Vec<String> = quantizations(files).into_iter().map(|q| q.quantization).collect();
    if let Some(q) = quant {
        let q = q.to_uppercase();
        let picked: Vec<RemoteFile> = ggufs.iter().filter(|f| file_quant(&f.path).as_deref() == Some(q.as_str())).map(|f| (*f).clone()).collect();
        return if picked.is_empty() { Err(have) } else { Ok(picked) };
    }
    if !ggufs.is_empty() {
        let q = DEFAULT_QUANTS.iter().find(|q| have.iter().any(|h| h == *q)).map(|q| q.to_string()).or_else(|| have.first().cloned());
        return match q {
            Some(q) => select_files(files, Some(&q)),
            None => Ok(vec![ggufs[0].clone()]),
        };
    }
    // A transformers repo: its weights in one format (safetensors when there are any),
    // not the other exports beside them.
    let has_safetensors = files.iter().any(|f| f.path.ends_with(".safetensors"));
    let skip = |p: &str| {
        let l = p.to_lowercase();
        ["onnx/", "openvino/", "coreml/", "tflite/"].iter().any(|d| l.starts_with(d))
            || [".onnx", ".h5", ".msgpack", ".ot", ".tflite", ".mlmodel"].iter().any(|e| l.ends_with(e))
            || (has_safetensors && l.ends_with(".bin") && (l.contains("pytorch_model") || l.contains("model")))
    };
    let picked: Vec<RemoteFile> = files.iter().filter(|f| !skip(&f.path)).cloned().collect();
    if picked.is_empty() {
        Err(have)
    } else {
        Ok(picked)
    }
}

/// The quantisation of a GGUF file name, with split suffixes (`-00001-of-00003`) removed.
fn file_quant(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let stem = name.strip_suffix(".gguf").or_else(|| name.strip_suffix(".GGUF"))?;
    let stem = match stem.rsplit_once("-of-") {
        Some((head, tail)) if tail.chars().all(|c| c.is_ascii_digit()) => head.rsplit_once('-').map(|(h, _)| h).unwrap_or(head),
        _ => stem,
    };
    quant_of(Path::new(&format!("{stem}.gguf")))
}

fn quantizations(files: &[RemoteFile]) -> Vec<QuantOption> {
    let mut by: Vec<QuantOption> = Vec::new();
    for f in files.iter().filter(|f| f.path.to_lowercase().ends_with(".gguf")) {
        let Some(q) = file_quant(&f.path) else { continue };
        match by.iter_mut().find(|o| o.quantization == q) {
            Some(o) => {
                o.size_bytes += f.size;
                if f.path < o.filename {
                    o.filename = f.path.clone();
                }
            }
            None => by.push(QuantOption { filename: f.path.clone(), quantization: q, size_bytes: f.size }),
        }
    }
    by.sort_by(|a, b| a.size_bytes.cmp(&b.size_bytes).then(a.quantization.cmp(&b.quantization)));
    by
}

fn safe_repo_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.contains('\\') && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads in progress, one per model id: a second request for a model that is
/// downloading follows the first one's progress instead of fetching again.
#[derive(Default)]
pub struct Downloads {
    active: Mutex<HashMap<String, Arc<Shared>>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<(DownloadProgress, u64, bool)>,
    changed: Condvar,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads").field("active", &self.active()).finish()
    }
}

impl Downloads {
    /// Ids being downloaded now.
    pub fn active(&self) -> Vec<String> {
        let mut v: Vec<String> = self.active.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        v.sort();
        v
    }

    /// Download `id` with `hub` into `cache`, or follow the download of it already running.
    pub fn download(&self, hub: &Hub, cache: &ModelCache, id: &str, progress: &mut dyn FnMut(&DownloadProgress)) -> Result<Downloaded> {
        let r = ModelRef::parse(id)?;
        if r.repo.starts_with('/') {
            return Err(Error::invalid("model id", "a local path cannot be downloaded"));
        }
        let key = match &r.quantization {
            Some(q) => format!("{}:{}", r.repo, q.to_uppercase()),
            None => r.repo.clone(),
        };
        loop {
            let (shared, leader) = {
                let mut map = self.active.lock().unwrap_or_else(|p| p.into_inner());
                match map.get(&key) {
                    Some(s) => (s.clone(), false),
                    None => {
                        let s = Arc::new(Shared::default());
                        map.insert(key.clone(), s.clone());
                        (s, true)
                    }
                }
            };
            if leader {
                let out = hub.plan(id).and_then(|plan| {
                    hub.download(cache, &plan, &mut |p| {
                        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                        st.0 = p.clone();
                        st.1 += 1;
                        shared.changed.notify_all();
                        drop(st);
                        progress(p);
                    })
                });
                self.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                st.2 = true;
                shared.changed.notify_all();
                return out;
            }
            // Follow the running download; when it ends, take the result from the cache
            // (or, if it failed, try again as the leader to get the error first hand).
            let mut seen = 0;
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            while !st.2 {
                if st.1 != seen {
                    seen = st.1;
                    let p = st.0.clone();
                    drop(st);
                    progress(&p);
                    st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                st = shared.changed.wait_timeout(st, Duration::from_millis(500)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rf(path: &str, size: u64) -> RemoteFile {
        RemoteFile { path: path.into(), size, sha256: Some("a".repeat(64)), blob_id: None }
    }

    #[test]
    fn quantizations_group_split_files_and_sort_by_size() {
        let files = vec![
            rf("Qwen3-1.7B-Q8_0.gguf", 1800),
            rf("Qwen3-1.7B-Q4_K_M.gguf", 1000),
            rf("big/Qwen3-1.7B-F16-00001-of-00002.gguf", 2000),
            rf("big/Qwen3-1.7B-F16-00002-of-00002.gguf", 1500),
            rf("README.md", 10),
        ];
        let q = quantizations(&files);
        let names: Vec<&str> = q.iter().map(|o| o.quantization.as_str()).collect();
        assert_eq!(names, ["Q4_K_M", "Q8_0", "F16"]);
        assert_eq!(q[2].size_bytes, 3500);
        assert_eq!(q[2].filename, "big/Qwen3-1.7B-F16-00001-of-00002.gguf");
        // No quantisation named: Q4_K_M first; a named one picks both parts of a split file.
        assert_eq!(select_files(&files, None).unwrap()[0].path, "Qwen3-1.7B-Q4_K_M.gguf");
        assert_eq!(select_files(&files, Some("f16")).unwrap().len(), 2);
        assert_eq!(select_files(&files, Some("Q2_K")).unwrap_err(), ["Q4_K_M", "Q8_0", "F16"]);
    }

    #[test]
    fn transformers_repos_skip_other_exports() {
        let files = vec![
            rf("config.json", 1),
            rf("model.safetensors", 100),
            rf("pytorch_model.bin", 100),
            rf("onnx/model.onnx", 100),
            rf("tokenizer.json", 1),
            rf("1_Pooling/config.json", 1),
        ];
        let picked: Vec<String> = select_files(&files, None).unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(picked, ["config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"]);
        let only_bin = vec![rf("config.json", 1), rf("pytorch_model.bin", 100)];
        assert_eq!(select_files(&only_bin, None).unwrap().len(), 2);
    }

    #[test]
    fn repo_paths_and_links() {
        assert!(safe_repo_path("a/b.json"));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", ""] {
            assert!(!safe_repo_path(bad), "{bad}");
        }
        assert_eq!(encode("a b+c.gguf"), "a%20b%2Bc.gguf");
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("models--a--b/blobs/e1");
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"hi").unwrap();
        let entry = dir.path().join("models--a--b/snapshots/c0/sub/x.json");
        link(&blob, &entry).unwrap();
        assert_eq!(fs::read(&entry).unwrap(), b"hi");
        #[cfg(unix)]
        assert_eq!(fs::read_link(&entry).unwrap(), Path::new("../../../blobs/e1"));
    }
}
