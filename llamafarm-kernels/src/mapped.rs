//! A growable `f32` array kept in a file and read through a memory map.
//!
//! The embedded vector store keeps its rows here instead of on the heap: the pages live in
//! the operating system's page cache, which holds what memory can spare and reads the
//! rest back from disk, so a store larger than memory still opens and answers (more slowly
//! where its pages were dropped).
//!
//! The file is either unnamed ([`MappedF32::create_in`]: unlinked as soon as it is
//! created, so two arrays never share it and its space returns to the file system when
//! the array is dropped or the process dies) or named ([`MappedF32::create_at`],
//! [`MappedF32::reopen_at`]: it outlives the array, so its owner can map it again after a
//! restart instead of writing it anew). Nothing here is versioned or checks what a named
//! file holds: its owner records elsewhere how many values are valid and calls
//! [`MappedF32::sync`] before it does. A named file must not be changed by anyone else
//! while it is mapped (its owner holds a lock on the directory).
//!
//! Appends go to a heap tail first and are written to the file with `pwrite` (which
//! reports a full disk as an error) when the tail passes [`FLUSH_BYTES`] or on
//! [`MappedF32::flush`]; the map is then renewed to cover the file. A failed write keeps
//! the values in the tail, so an append never loses data: it only stays on the heap.

use memmap2::Mmap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tail size that triggers a write to the file.
pub const FLUSH_BYTES: usize = 16 << 20;

/// See the [module docs](self).
pub struct MappedF32 {
    file: File,
    /// Read-only map of the file's first `flushed` values (`None` while empty).
    map: Option<Mmap>,
    flushed: usize,
    tail: Vec<f32>,
    /// The last write failed (logged once by the caller, retried at the next flush).
    failed: bool,
}

impl MappedF32 {
    /// Create an empty array backed by a new, unnamed file in `dir` (on the file system
    /// that is to hold its pages).
    pub fn create_in(dir: &Path) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(".lf-vectors-{}-{}.f32", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Self { file, map: None, flushed: 0, tail: Vec::new(), failed: false })
    }

    /// Create an empty array backed by the file at `path`, which is created or emptied,
    /// and kept when the array is dropped.
    pub fn create_at(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Self { file, map: None, flushed: 0, tail: Vec::new(), failed: false })
    }

    /// Map the first `values` values of the named file at `path`, written by an earlier
    /// array ([`MappedF32::create_at`], then [`MappedF32::sync`]). Values past them are
    /// cut off, so appends continue from `values`. A file shorter than that is an
    /// [`io::ErrorKind::InvalidData`] error.
    pub fn reopen_at(path: &Path, values: usize) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let bytes = (values * 4) as u64;
        let len = file.metadata()?.len();
        if len < bytes {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} holds {len} bytes, not the {bytes} expected", path.display())));
        }
        if len > bytes {
            file.set_len(bytes)?;
        }
        let mut m = Self { file, map: None, flushed: 0, tail: Vec::new(), failed: false };
        if values > 0 {
            m.map_to(values * 4)?;
            m.flushed = values;
        }
        Ok(m)
    }

    /// Write the tail to the file and wait until the file's data is on the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// Bytes the file holds.
    pub fn file_bytes(&self) -> u64 {
        (self.flushed * 4) as u64
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.flushed + self.tail.len()
    }

    /// Whether no values are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values read through the map (the rest are on the heap).
    pub fn mapped_len(&self) -> usize {
        self.flushed
    }

    /// Append `values`; writes the tail to the file when it has grown past [`FLUSH_BYTES`].
    /// A range appended by one call is never split between the map and the tail, so
    /// [`MappedF32::slice`] can return it whole.
    pub fn extend_from_slice(&mut self, values: &[f32]) -> io::Result<()> {
        self.tail.extend_from_slice(values);
        if self.tail.len() * 4 >= FLUSH_BYTES {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Write the tail to the file and map it. On an error the tail is kept (and written
    /// at the next flush).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tail.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = self.tail.iter().flat_map(|x| x.to_ne_bytes()).collect();
        let at = (self.flushed * 4) as u64;
        let new_len = (self.flushed + self.tail.len()) * 4;
        let written = self.file.write_all_at(&bytes, at).and_then(|()| self.map_to(new_len));
        match written {
            Ok(()) => {
                self.flushed += self.tail.len();
                self.tail.clear();
                self.tail.shrink_to(FLUSH_BYTES / 4);
                self.failed = false;
                Ok(())
            }
            Err(e) => {
                // Bytes past `flushed` are rewritten by the next flush; cut them off so
                // the file never holds more than the map claims.
                let _ = self.file.set_len(at);
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Make the map cover the file's first `len` bytes, which are written. On Linux an
    /// existing map is grown in place with `mremap`, keeping its pages mapped (a new map
    /// would fault every page in again on its next scan).
    fn map_to(&mut self, len: usize) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(map) = self.map.as_mut() {
            // SAFETY: the file holds at least `len` bytes (just written) and is never cut
            // below what a map covers while the map lives (see `clear` and `flush`).
            return unsafe { map.remap(len, memmap2::RemapOptions::new().may_move(true)) };
        }
        // SAFETY: the file is written only through this value (an unnamed file has no
        // other handle; a named one is not changed by others while mapped, see the module
        // docs), and nothing truncates it below the map's length while the map lives.
        self.map = Some(unsafe { Mmap::map(&self.file) }?);
        Ok(())
    }

    /// Whether the last flush failed (the values are then still on the heap).
    pub fn write_failed(&self) -> bool {
        self.failed
    }

    /// The values `start..end`, which must lie within one earlier
    /// [`MappedF32::extend_from_slice`] call's range or within the mapped part.
    ///
    /// # Panics
    /// When the range is out of bounds or straddles the end of the mapped part.
    pub fn slice(&self, start: usize, end: usize) -> &[f32] {
        if end <= self.flushed {
            let map = self.map.as_deref().unwrap_or(&[]);
            let bytes = &map[start * 4..end * 4];
            // SAFETY: a map starts on a page boundary and `start * 4` is a multiple of 4,
            // so the pointer is aligned for f32; every bit pattern is a valid f32; the
            // length is `end - start` values; the borrow ties it to `self`, and the map is
            // replaced only through `&mut self`. The values were written in native order.
            debug_assert_eq!(bytes.as_ptr().align_offset(std::mem::align_of::<f32>()), 0);
            unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), end - start) }
        } else {
            assert!(start >= self.flushed, "range {start}..{end} straddles the mapped part ({})", self.flushed);
            &self.tail[start - self.flushed..end - self.flushed]
        }
    }

    /// Drop every value and empty the file.
    pub fn clear(&mut self) -> io::Result<()> {
        self.map = None;
        self.flushed = 0;
        self.tail = Vec::new();
        self.file.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_from_the_heap_tail_and_from_the_map() {
        let dir = std::env::temp_dir().join(format!("lf-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = MappedF32::create_in(&dir).unwrap();
        assert!(m.is_empty());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the file has no name");
        let dim = 384;
        let row = |r: usize| (0..dim).map(|i| (r * dim + i) as f32 * 0.5 - 3.0).collect::<Vec<_>>();
        for r in 0..20 {
            m.extend_from_slice(&row(r)).unwrap();
        }
        assert_eq!(m.mapped_len(), 0);
        m.flush().unwrap();
        assert_eq!(m.mapped_len(), 20 * dim);
        assert_eq!(m.file.metadata().unwrap().len(), (20 * dim * 4) as u64);
        assert_eq!(m.file_bytes(), (20 * dim * 4) as u64);
        // Enough rows to pass the flush threshold by themselves.
        let many = FLUSH_BYTES / 4 / dim + 5;
        for r in 20..20 + many {
            m.extend_from_slice(&row(r)).unwrap();
        }
        assert!(m.mapped_len() > 20 * dim && m.mapped_len() < (20 + many) * dim);
        assert_eq!(m.len(), (20 + many) * dim);
        for r in [0, 7, 19, 20, 21, 20 + many / 2, 20 + many - 1] {
            assert_eq!(m.slice(r * dim, (r + 1) * dim), &row(r)[..], "row {r}");
        }
        m.clear().unwrap();
        assert!(m.is_empty());
        assert_eq!(m.file.metadata().unwrap().len(), 0);
        m.extend_from_slice(&row(3)).unwrap();
        m.flush().unwrap();
        assert_eq!(m.slice(0, dim), &row(3)[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_named_file_is_mapped_again_after_its_array_is_dropped() {
        let dir = std::env::temp_dir().join(format!("lf-mapped-named-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vectors.f32");
        let values: Vec<f32> = (0..3000).map(|i| i as f32 * 0.25 - 7.0).collect();
        {
            let mut m = MappedF32::create_at(&path).unwrap();
            m.extend_from_slice(&values[..1000]).unwrap();
            m.flush().unwrap();
            m.extend_from_slice(&values[1000..]).unwrap();
            m.sync().unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3000 * 4);
        // Only the first 2000 are claimed: the rest is cut off and appends follow them.
        let mut m = MappedF32::reopen_at(&path, 2000).unwrap();
        assert_eq!((m.len(), m.mapped_len()), (2000, 2000));
        assert_eq!(m.slice(0, 2000), &values[..2000]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2000 * 4);
        m.extend_from_slice(&[1.5, 2.5]).unwrap();
        m.flush().unwrap();
        assert_eq!(m.slice(1999, 2002), &[values[1999], 1.5, 2.5]);
        drop(m);
        let err = MappedF32::reopen_at(&path, 5000).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let m = MappedF32::reopen_at(&path, 0).unwrap();
        assert!(m.is_empty());
        // create_at empties an existing file.
        let m = MappedF32::create_at(&path).unwrap();
        assert!(m.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_keeps_the_values_on_the_heap() {
        // /dev/full takes opens and refuses every write with ENOSPC.
        let Ok(file) = OpenOptions::new().read(true).write(true).open("/dev/full") else {
            return;
        };
        let mut m = MappedF32 { file, map: None, flushed: 0, tail: Vec::new(), failed: false };
        m.extend_from_slice(&[1.0, 2.0, 3.0]).unwrap();
        assert!(m.flush().is_err());
        assert!(m.write_failed());
        assert_eq!(m.len(), 3);
        assert_eq!(m.slice(0, 3), &[1.0, 2.0, 3.0]);
        m.extend_from_slice(&[4.0]).unwrap();
        assert_eq!(m.slice(3, 4), &[4.0]);
    }
}
