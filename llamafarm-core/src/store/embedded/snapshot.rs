//! The rows file: the in-memory rows of a store (ids, file hashes, metadata, sequence
//! numbers, norms), written when the store closes, so that the next open
//! reads this one file and maps the named vector file ([`VECTOR_FILE`]) instead of reading
//! every stored document back from the text index and writing its vector again.
//!
//! The file describes the store only as it was at one commit of the text index: it names
//! that commit's opstamp, and a store whose index is at another commit (a crash after
//! writes, an index changed by other means) reads the index instead. The store removes
//! the file before its first write after an open, so a file on disk always describes an
//! unchanged store. It holds the live rows only; when rows were deleted, the vector file
//! is first written again without theirs, so that row `r` of the file is the vector
//! file's `r`-th vector.
//!
//! Layout (little-endian): the magic `LFROWS01`; `opstamp` u64; `dim` u64 (0: none); `rows`
//! u64; `next_seq` u64; then per row `seq` u64 (`u64::MAX`: none), `norm` f32, and the id,
//! file hash and metadata JSON, each as a u32 length and its bytes; last, the CRC-32 of
//! everything before it. The file is written with [`crate::fsutil::atomic_write_with`].

use super::{State, Vectors};
use crate::error::{Error, Result};
use llamafarm_kernels::mapped::MappedF32;
use serde_json::{Map, Value};
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// The rows file, beside the index.
pub(super) const ROWS_FILE: &str = "rows.bin";

/// The vector file a rows file's rows index into.
pub(super) const VECTOR_FILE: &str = "vectors.f32";

const MAGIC: &[u8; 8] = b"LFROWS01";

/// A writer that keeps the CRC-32 of what passes through it.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Write the rows file for `st`, the store's state at the index commit `opstamp`, whose
/// vector file (synced by the caller) is `vectors` (`None`: a text-only store). With dead
/// rows, the live rows' vectors are first written to a new vector file that replaces it.
pub(super) fn write(dir: &Path, st: &State, vectors: Option<&MappedF32>, opstamp: u64) -> Result<()> {
    let live: Vec<usize> = (0..st.ids.len()).filter(|&r| st.alive[r]).collect();
    let dim = st.dim.unwrap_or(0);
    if let (Some(m), true) = (vectors, live.len() < st.ids.len()) {
        let path = dir.join(VECTOR_FILE);
        let tmp = dir.join(format!(".{VECTOR_FILE}.tmp-{}", uuid::Uuid::new_v4().simple()));
        let compacted = (|| -> std::io::Result<()> {
            let mut out = MappedF32::create_at(&tmp)?;
            for &r in &live {
                out.extend_from_slice(m.slice(r * dim, (r + 1) * dim))?;
            }
            out.sync()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = compacted {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
    }
    let mut seq_of = vec![u64::MAX; st.ids.len()];
    for (&q, &r) in &st.by_seq {
        seq_of[r] = q;
    }
    crate::fsutil::atomic_write_with(&dir.join(ROWS_FILE), |out| {
        let mut w = Crc { inner: out, crc: crc32fast::Hasher::new() };
        w.write_all(MAGIC)?;
        for v in [opstamp, dim as u64, live.len() as u64, st.next_seq] {
            w.write_all(&v.to_le_bytes())?;
        }
        let mut meta = Vec::new();
        for &r in &live {
            w.write_all(&seq_of[r].to_le_bytes())?;
            w.write_all(&st.norms[r].to_le_bytes())?;
            meta.clear();
            serde_json::to_writer(&mut meta, &st.metas[r])?;
            for field in [st.ids[r].as_bytes(), st.files[r].as_bytes(), &meta] {
                w.write_all(&(field.len() as u32).to_le_bytes())?;
                w.write_all(field)?;
            }
        }
        let crc = w.crc.finalize();
        w.inner.write_all(&crc.to_le_bytes())
    })
}

/// Remove the rows file (the store is about to change). The removal is made durable, so
/// that no crash can bring back a file that describes an older store.
pub(super) fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(ROWS_FILE)) {
        Ok(()) => crate::fsutil::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir.join(ROWS_FILE), e)),
    }
}

/// The state the rows file in `dir` describes, with its vectors mapped from the vector
/// file, when the file is whole and names the index commit `opstamp`; `None` otherwise
/// (then the caller reads the index). `text_only` stores have no vector file.
pub(super) fn read(dir: &Path, opstamp: u64, text_only: bool) -> Option<State> {
    let file = std::fs::File::open(dir.join(ROWS_FILE)).ok()?;
    let mut r = Crc { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    match read_rows(&mut r, opstamp, text_only) {
        Ok(Some(mut st)) => {
            let crc = r.crc.clone().finalize();
            let mut stored = [0u8; 4];
            let whole = r.inner.read_exact(&mut stored).is_ok() && u32::from_le_bytes(stored) == crc && r.inner.read(&mut [0u8; 1]).ok() == Some(0);
            if !whole {
                tracing::warn!("the store's rows file is damaged; reading the rows from the index");
                return None;
            }
            if !text_only {
                let values = st.ids.len() * st.dim.unwrap_or(0);
                match MappedF32::reopen_at(&dir.join(VECTOR_FILE), values) {
                    Ok(m) => st.vectors = Vectors::Mapped(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "the store's vector file does not match its rows file; reading the rows from the index");
                        return None;
                    }
                }
            }
            Some(st)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the store's rows file; reading the rows from the index");
            None
        }
    }
}

/// The rows, or `None` for a file of another commit or format.
fn read_rows(r: &mut impl Read, opstamp: u64, text_only: bool) -> std::io::Result<Option<State>> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    let mut u64_ = || -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    };
    let (stamp, dim, rows, next_seq) = (u64_()?, u64_()?, u64_()?, u64_()?);
    if &magic != MAGIC || stamp != opstamp || (text_only != (dim == 0) && rows > 0) {
        return Ok(None);
    }
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let rows = usize::try_from(rows).map_err(|_| bad("row count"))?;
    let mut st = State { dim: (dim > 0).then_some(dim as usize), next_seq, ..Default::default() };
    // No capacity from the file's own count before its checksum is known.
    let mut buf = Vec::new();
    let field = |r: &mut dyn Read, buf: &mut Vec<u8>| -> std::io::Result<()> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        buf.clear();
        r.take(u64::from(u32::from_le_bytes(len))).read_to_end(buf)?;
        if buf.len() != u32::from_le_bytes(len) as usize {
            return Err(bad("a row is cut short"));
        }
        Ok(())
    };
    for row in 0..rows {
        let mut head = [0u8; 12];
        r.read_exact(&mut head)?;
        let seq = u64::from_le_bytes(head[0..8].try_into().unwrap_or_default());
        let norm = f32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        field(r, &mut buf)?;
        let id: Arc<str> = std::str::from_utf8(&buf).map_err(|_| bad("an id is not UTF-8"))?.into();
        field(r, &mut buf)?;
        let file: Arc<str> = std::str::from_utf8(&buf).map_err(|_| bad("a file hash is not UTF-8"))?.into();
        field(r, &mut buf)?;
        let meta: Map<String, Value> = serde_json::from_slice(&buf).map_err(|e| bad(&format!("metadata: {e}")))?;
        st.meta_json_bytes += buf.len();
        st.key_bytes += id.len() + file.len();
        if seq != u64::MAX {
            st.by_seq.insert(seq, row);
        }
        st.by_id.insert(id.clone(), row);
        st.ids.push(id);
        st.files.push(file);
        st.metas.push(meta);
        st.norms.push(norm);
        st.alive.push(true);
        st.live += 1;
    }
    Ok(Some(st))
}
