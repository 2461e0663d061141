//! Facts about the machine: disk space of the data and model directories, versions.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The crate version, reported by `/info` and `lf version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Space on the filesystem holding `path`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiskUsage {
    /// Filesystem size.
    pub total_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
    /// Bytes available to unprivileged users.
    pub free_bytes: u64,
    /// The path asked about.
    pub path: String,
    /// `free / total * 100`.
    pub percent_free: f64,
}

/// Space on the filesystems of the model cache, the data directory and `/`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskReport {
    /// The model cache's filesystem.
    pub cache: DiskUsage,
    /// The data directory's filesystem.
    pub data: DiskUsage,
    /// The root filesystem.
    pub system: DiskUsage,
}

impl crate::LlamaFarm {
    /// Disk space of the model cache, the data directory and the root filesystem.
    pub fn disk_report(&self) -> crate::Result<DiskReport> {
        let usage = |p: &Path| disk_usage(p).map_err(|e| crate::Error::io(p, e));
        Ok(DiskReport { cache: usage(self.models().hub_dir())?, data: usage(self.data_dir())?, system: usage(Path::new("/"))? })
    }
}

/// Bytes as people read them: `90.0 MB`, `1.75 GB` (powers of 1024).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        let s = format!("{v:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s} {}", UNITS[u])
    }
}

/// Disk usage for the filesystem of `path`; walks up to the nearest existing ancestor.
pub fn disk_usage(path: &Path) -> std::io::Result<DiskUsage> {
    let mut probe: PathBuf = path.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => {
                probe = PathBuf::from("/");
                break;
            }
        }
    }
    let c = std::ffi::CString::new(probe.to_string_lossy().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statvfs` only writes into the zeroed struct we pass, and `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free_all = st.f_bfree as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    let used = total.saturating_sub(free_all);
    let percent_free = if total > 0 { avail as f64 / total as f64 * 100.0 } else { 0.0 };
    Ok(DiskUsage { total_bytes: total, used_bytes: used, free_bytes: avail, path: path.display().to_string(), percent_free })
}

/// Keep freed memory in the process instead of returning it to the kernel after
/// every tensor op (glibc's default maps and unmaps large blocks each time, and
/// the page faults cost ~40 % of model inference time), and bound the number of
/// malloc arenas to four per core (glibc's default is eight), so that memory kept by
/// one arena is reused by the next burst of requests instead of a new arena growing
/// beside it. Freed memory goes back to the kernel in [`trim_free_memory`], which
/// `lf serve` calls from a background thread. Call once at startup, before spawning
/// threads; `lf` does. No-op on non-glibc targets.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16) * 4;
        // SAFETY: mallopt only adjusts allocator thresholds; it is called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

/// A snapshot of what a [`crate::LlamaFarm`] holds and has done ([`crate::LlamaFarm::stats`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// The task queue.
    pub tasks: crate::task::TaskStats,
    /// The local chat models: their counts since the process started.
    pub llm: crate::llm::LlmStats,
    /// The chat models in memory now, with their running and queued generations.
    pub loaded: Vec<crate::llm::LoadedModel>,
    /// The stores open in this process.
    pub stores: Vec<StoreSize>,
    /// The process's resident memory (Linux), bytes.
    pub resident_bytes: Option<u64>,
    /// Memory the allocator holds free (glibc), bytes.
    pub allocator_free_bytes: Option<u64>,
}

/// The size of one open store.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoreSize {
    /// Its project's namespace.
    pub namespace: String,
    /// Its project.
    pub project: String,
    /// The database.
    pub database: String,
    /// Live chunks.
    pub chunks: u64,
    /// Distinct source files.
    pub files: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// This process's resident memory in bytes (`VmRSS`; Linux only).
pub fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Free bytes the allocator holds (glibc `mallinfo2().fordblks`: freed but not returned
/// to the kernel); `None` on other targets.
pub fn allocator_free_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads the allocator's statistics under its own locks.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Give the allocator's free memory back to the kernel (glibc `malloc_trim`) when it
/// holds more than `min_free` bytes; returns the bytes it held before. Cheap to call
/// every few seconds: below `min_free` it only reads the statistics.
pub fn trim_free_memory(min_free: u64) -> u64 {
    let free = allocator_free_bytes().unwrap_or(0);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if free > min_free {
        // SAFETY: malloc_trim only releases pages the allocator holds free.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    free
}

/// A background thread that calls [`trim_free_memory`] every `every` (named
/// `lf-trim`). Memory a burst of requests freed goes back to the kernel within that
/// time, while allocations inside a request keep reusing freed blocks.
pub fn spawn_memory_trimmer(every: std::time::Duration, min_free: u64) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("lf-trim".into()).spawn(move || loop {
        std::thread::sleep(every);
        trim_free_memory(min_free);
    })
}

pub use llamafarm_kernels::missing_baseline;

/// The CPU features the kernels use now (detected at run time, less what the kernel
/// options turn off), e.g. `["avx2", "fma", "avx512f", ...]`.
pub fn kernel_features() -> Vec<&'static str> {
    llamafarm_kernels::Cpu::active().features().into_iter().map(|f| f.name()).collect()
}

/// Which SIMD paths this binary was compiled with (candle picks kernels at compile time).
pub fn simd_features() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(target_feature = "sse4.2") {
        v.push("sse4.2");
    }
    if cfg!(target_feature = "avx") {
        v.push("avx");
    }
    if cfg!(target_feature = "avx2") {
        v.push("avx2");
    }
    if cfg!(target_feature = "fma") {
        v.push("fma");
    }
    if cfg!(target_feature = "f16c") {
        v.push("f16c");
    }
    if cfg!(target_feature = "avx512f") {
        v.push("avx512f");
    }
    if cfg!(target_feature = "neon") {
        v.push("neon");
    }
    v
}

/// The embedding kernels this CPU runs, chosen at run time: the default precision of a
/// plain model id, and the kernel behind each precision (`bf16`: `amx`, `avx512-bf16`
/// or `portable`; `int8`: `avx512-vnni`, `avx-vnni`, `avx2` or `portable`).
pub fn embedding_kernels() -> serde_json::Value {
    let bf16 = if crate::embed::has_amx() {
        "amx"
    } else if crate::embed::has_bf16() {
        "avx512-bf16"
    } else {
        "portable"
    };
    serde_json::json!({
        "default_precision": crate::embed::Precision::native().name(),
        "bf16": bf16,
        "int8": crate::embed::int8_kernel().name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_is_real() {
        let d = disk_usage(Path::new("/tmp/does/not/exist/yet")).unwrap();
        assert!(d.total_bytes > 0);
        assert!(d.free_bytes <= d.total_bytes);
        assert!((0.0..=100.0).contains(&d.percent_free));
    }
}
