//! Crash-safe file writes.
//!
//! Invariant: a file written with [`atomic_write`] is either the old content or the
//! new content after a crash (`kill -9`, power loss), never a mix or empty.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync,
/// rename over the target, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// [`atomic_write`] for content produced piece by piece: `fill` writes it to the
/// (buffered) temporary file, so a large file need not be held in memory first.
pub fn atomic_write_with(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::internal(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        // Errors name the target: the temporary name means nothing to a reader.
        let f = File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(64 << 10, f);
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        let f = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Files from which [`sync_files`] flushes the whole file system at once.
pub const SYNCFS_FROM: usize = 16;

/// Write `path` through a temporary file and a rename, without syncing: readers see
/// the old or the new content, never a part. Durability is the caller's, in one pass
/// for many files ([`sync_files`]).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::internal(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = fs::write(&tmp, bytes).map_err(|e| Error::io(path, e)).and_then(|_| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make many files just written (and their directory entries) durable in one pass.
/// On Linux, from [`SYNCFS_FROM`] files on, this is one `syncfs` of the file system
/// holding `files[0]`, which flushes them all with one journal commit instead of one per
/// file; fewer files (a single upload), and other systems, sync each file and each
/// distinct parent directory, so a small write does not wait for the whole file
/// system's dirty pages.
pub fn sync_files(files: &[std::path::PathBuf]) -> Result<()> {
    let Some(first) = files.first() else { return Ok(()) };
    #[cfg(target_os = "linux")]
    if files.len() >= SYNCFS_FROM {
        use std::os::fd::AsRawFd;
        let f = File::open(first).map_err(|e| Error::io(first, e))?;
        // SAFETY: `syncfs` takes an open descriptor, which `f` holds for the call.
        let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
        if rc == 0 {
            return Ok(());
        }
        tracing::debug!(error = %std::io::Error::last_os_error(), "syncfs failed; syncing file by file");
    }
    let mut dirs = std::collections::BTreeSet::new();
    for p in files {
        File::open(p).and_then(|f| f.sync_all()).map_err(|e| Error::io(p, e))?;
        if let Some(d) = p.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs.iter().try_for_each(|d| sync_dir(d))
}

/// fsync a directory so that a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io(dir, e))?;
    d.sync_all().map_err(|e| Error::io(dir, e))
}

/// Remove a directory tree so that it disappears at once: rename it into `trash`
/// (same filesystem), then delete the renamed tree. A crash in between leaves
/// only the trash entry, which [`empty_trash`] removes on the next start.
pub fn remove_dir_atomic(dir: &Path, trash: &Path) -> Result<()> {
    fs::create_dir_all(trash).map_err(|e| Error::io(trash, e))?;
    let target = trash.join(uuid::Uuid::new_v4().simple().to_string());
    fs::rename(dir, &target).map_err(|e| Error::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))
}

/// Delete whatever an interrupted [`remove_dir_atomic`] left behind.
pub fn empty_trash(trash: &Path) {
    if let Ok(entries) = fs::read_dir(trash) {
        for e in entries.flatten() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Remove temp files left by interrupted [`atomic_write`]s in `dir`.
pub fn clean_temp_files(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replace_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.yaml");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Written piece by piece; a failing writer leaves the old content and no temp file.
        atomic_write_with(&p, |w| (0..3).try_for_each(|i| write!(w, "part{i} "))).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"part0 part1 part2 ");
        let e = atomic_write_with(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("the writer failed"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("the writer failed"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"part0 part1 part2 ");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn remove_dir_atomic_removes_tree() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("p");
        fs::create_dir_all(victim.join("a/b")).unwrap();
        fs::write(victim.join("a/b/f"), b"x").unwrap();
        remove_dir_atomic(&victim, &dir.path().join(".trash")).unwrap();
        assert!(!victim.exists());
        assert_eq!(fs::read_dir(dir.path().join(".trash")).unwrap().count(), 0);
    }
}
