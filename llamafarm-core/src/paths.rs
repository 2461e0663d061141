//! Validation of names that become path segments, and the data directory layout.
//!
//! Invariant: every path the core writes is `data_dir` joined with segments that
//! passed [`validate_segment`], so nothing outside the data directory is touched.

use crate::error::{Error, ResourceKind, Result};
use std::path::{Path, PathBuf};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Check a namespace, project, dataset or model name that will become a directory.
///
/// Accepted: 1 to 128 characters from `A-Z a-z 0-9 . _ -`, starting with a letter
/// or digit. Everything else (`..`, `/`, `\`, NUL, control characters, spaces,
/// empty or over-long names) is an [`Error::InvalidName`].
///
/// ```
/// use llamafarm_core::{paths::validate_segment, ResourceKind};
/// assert!(validate_segment(ResourceKind::Project, "my-project_2").is_ok());
/// assert!(validate_segment(ResourceKind::Project, "..").is_err());
/// assert!(validate_segment(ResourceKind::Project, "a/b").is_err());
/// ```
pub fn validate_segment(kind: ResourceKind, name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidName { kind, name: name.to_string(), reason: why.to_string() });
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if name == "." || name == ".." || name.contains("..") {
        return bad("must not contain '..'");
    }
    if name.chars().any(|c| c == '/' || c == '\\') {
        return bad("must not contain path separators");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("must not contain control characters");
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return bad("use only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The on-disk layout under the data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `{data}/projects`.
    pub fn projects_dir(&self) -> PathBuf {
        self.root.join("projects")
    }
    /// `{data}/projects/{namespace}` (namespace must be validated).
    pub fn namespace_dir(&self, namespace: &str) -> PathBuf {
        self.projects_dir().join(namespace)
    }
    /// `{data}/projects/{namespace}/{project}` (names must be validated).
    pub fn project_dir(&self, namespace: &str, project: &str) -> PathBuf {
        self.namespace_dir(namespace).join(project)
    }
    /// `{data}/models`: trained classifiers and anomaly detectors.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }
    /// `{data}/.trash`: directories being deleted.
    pub fn trash_dir(&self) -> PathBuf {
        self.root.join(".trash")
    }
}

/// Percent-encode one URL path segment (unreserved characters stay).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (the inverse of [`encode_segment`]); a `%` not followed by two hex
/// digits stays as it is, and bytes that are not UTF-8 become U+FFFD.
pub fn decode_segment(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_survive_encoding_and_odd_escapes_stay() {
        for name in ["notes ünï.md", "../../etc/x", "a%2Fb", "plain.txt", "%", "%aé", "%zz", "é%4"] {
            assert_eq!(decode_segment(&encode_segment(name)), name);
        }
        assert_eq!(decode_segment("%41%aé%zz"), "A%aé%zz");
        assert_eq!(decode_segment("caf%C3%A9"), "café");
    }

    #[test]
    fn accepts_ordinary_names() {
        for n in ["default", "my-project", "acme.corp", "v2_final", "0abc", &"a".repeat(128)] {
            validate_segment(ResourceKind::Project, n).unwrap();
        }
    }

    #[test]
    fn rejects_traversal_and_junk() {
        for n in ["", ".", "..", "../etc", "a/b", "a\\b", "a\0b", "a\nb", ".hidden", "-flag", "a..b", "with space", "tab\t", "ünï", &"a".repeat(129)] {
            let e = validate_segment(ResourceKind::Project, n).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::BadRequest, "{n:?}");
        }
    }
}
