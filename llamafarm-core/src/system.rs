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
/// the page faults cost ~40 % of model inference time). Call once at startup,
/// before spawning threads; `lf` does. No-op on non-glibc targets.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
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
