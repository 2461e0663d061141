//! The runtime's file store (`/v1/files`): uploads kept for a while so that OCR and
//! extraction calls can name them by id.
//!
//! Each file is `{dir}/{id}/data` with `{id}/meta.json` beside it, written to a
//! temporary folder and renamed into place, so a crash never leaves half a file under
//! an id. Files expire after the store's time to live (5 minutes by default, as in
//! the original); expired files are removed on the next call.

use super::input::{is_pdf, load_pages, PageContent};
use crate::error::{Error, ResourceKind, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Metadata of a stored file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredFile {
    /// `file_` and 24 hex digits.
    pub id: String,
    /// The upload's file name.
    pub filename: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The media type, from the upload or guessed from the content.
    pub content_type: String,
    /// Pages (1 for an image, the page count for a PDF or multi-page TIFF).
    pub page_count: usize,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the file is removed.
    pub expires_at: i64,
}

/// Files under one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// How long a file is kept.
    pub ttl: Duration,
    /// The largest file accepted, in bytes.
    pub max_bytes: u64,
    /// The most files kept at once.
    pub max_files: usize,
}

/// The default time to live of an uploaded file.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

impl FileStore {
    /// A store in `dir` (created on first upload) with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), ttl: DEFAULT_TTL, max_bytes: 100 * 1024 * 1024, max_files: 1000 }
    }

    fn valid_id(id: &str) -> Result<()> {
        let ok = id.len() == 29 && id.starts_with("file_") && id[5..].chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(())
        } else {
            Err(Error::missing(ResourceKind::File, id))
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// Remove expired files and leftovers of interrupted uploads.
    pub fn sweep(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        let now = Self::now();
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                if e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > Duration::from_secs(3600)) {
                    let _ = std::fs::remove_dir_all(&p);
                }
                continue;
            }
            match read_meta(&p) {
                Some(m) if m.expires_at > now => {}
                _ => {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
    }

    /// Store `bytes` as `filename`. The content must be a readable image or PDF.
    pub fn put(&self, filename: &str, bytes: &[u8], content_type: Option<&str>) -> Result<StoredFile> {
        self.sweep();
        if bytes.len() as u64 > self.max_bytes {
            return Err(Error::TooLarge { what: format!("file '{filename}'"), limit: self.max_bytes });
        }
        let pages = load_pages(bytes, filename, 0)?;
        if self.list()?.len() >= self.max_files {
            return Err(Error::InvalidField {
                field: "file".into(),
                reason: format!("the file store is full ({} files); delete some or wait for them to expire", self.max_files),
            });
        }
        let id = format!("file_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let now = Self::now();
        let content_type =
            content_type.filter(|c| !c.is_empty() && *c != "application/octet-stream").map(str::to_string).unwrap_or_else(|| guess_type(bytes).into());
        let meta = StoredFile {
            id: id.clone(),
            filename: filename.to_string(),
            bytes: bytes.len() as u64,
            content_type,
            page_count: pages.len(),
            created_at: now,
            expires_at: now + self.ttl.as_secs() as i64,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let tmp = self.dir.join(format!(".tmp-{id}"));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let write = || -> Result<()> {
            crate::fsutil::atomic_write(&tmp.join("data"), bytes)?;
            crate::fsutil::atomic_write(&tmp.join("meta.json"), &serde_json::to_vec_pretty(&meta).map_err(|e| Error::internal(e.to_string()))?)?;
            std::fs::rename(&tmp, self.dir.join(&id)).map_err(|e| Error::io(&tmp, e))
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(meta)
    }

    /// Files not yet expired, newest first.
    pub fn list(&self) -> Result<Vec<StoredFile>> {
        let now = Self::now();
        let mut out: Vec<StoredFile> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| read_meta(&e.path()))
                .filter(|m| m.expires_at > now)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// One file's metadata.
    pub fn get(&self, id: &str) -> Result<StoredFile> {
        Self::valid_id(id)?;
        match read_meta(&self.dir.join(id)) {
            Some(m) if m.expires_at > Self::now() => Ok(m),
            _ => Err(Error::missing(ResourceKind::File, id)),
        }
    }

    /// One file's metadata and bytes.
    pub fn read(&self, id: &str) -> Result<(StoredFile, Vec<u8>)> {
        let meta = self.get(id)?;
        let p = self.dir.join(id).join("data");
        let bytes =
            std::fs::read(&p).map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { Error::missing(ResourceKind::File, id) } else { Error::io(&p, e) })?;
        Ok((meta, bytes))
    }

    /// The file's pages as PNG images (text-layer PDF pages give the images they draw,
    /// or nothing).
    pub fn page_images(&self, id: &str) -> Result<(StoredFile, Vec<(usize, Vec<u8>, u32, u32)>)> {
        let (meta, bytes) = self.read(id)?;
        let mut out = Vec::new();
        for p in load_pages(&bytes, &meta.filename, 0)? {
            let img = match p.content {
                PageContent::Image(i) => Some(i),
                PageContent::Text(_) => p.image,
                PageContent::Failed(_) => None,
            };
            if let Some(img) = img {
                let mut png = std::io::Cursor::new(Vec::new());
                img.write_to(&mut png, image::ImageFormat::Png).map_err(|e| Error::internal(format!("PNG encoding failed: {e}")))?;
                out.push((p.index, png.into_inner(), img.width(), img.height()));
            }
        }
        Ok((meta, out))
    }

    /// Delete a file.
    pub fn delete(&self, id: &str) -> Result<StoredFile> {
        let meta = self.get(id)?;
        let dir = self.dir.join(id);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(meta)
    }
}

fn read_meta(dir: &Path) -> Option<StoredFile> {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()
}

fn guess_type(bytes: &[u8]) -> &'static str {
    if is_pdf(bytes) {
        return "application/pdf";
    }
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        Ok(image::ImageFormat::Gif) => "image/gif",
        Ok(image::ImageFormat::WebP) => "image/webp",
        Ok(image::ImageFormat::Bmp) => "image/bmp",
        Ok(image::ImageFormat::Tiff) => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(8, 4, image::Rgb([9, 9, 9])).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn files_are_stored_listed_read_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("files"));
        let f = store.put("a.png", &png(), None).unwrap();
        assert_eq!((f.content_type.as_str(), f.page_count, f.id.len()), ("image/png", 1, 29));
        assert_eq!(store.list().unwrap(), vec![f.clone()]);
        assert_eq!(store.read(&f.id).unwrap().1, png());
        let (_, imgs) = store.page_images(&f.id).unwrap();
        assert_eq!((imgs.len(), imgs[0].2, imgs[0].3), (1, 8, 4));
        store.delete(&f.id).unwrap();
        assert_eq!(store.get(&f.id).unwrap_err().kind(), crate::ErrorKind::NotFound);
        assert_eq!(store.get("../../etc/passwd").unwrap_err().kind(), crate::ErrorKind::NotFound);
        // Not an image: refused, nothing stored.
        assert_eq!(store.put("x.bin", b"garbage", None).unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn files_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        store.ttl = Duration::from_secs(0);
        let f = store.put("a.png", &png(), None).unwrap();
        assert!(store.get(&f.id).is_err());
        store.sweep();
        assert!(!dir.path().join(&f.id).exists());
    }
}
