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

#[cfg(test)]
mod tests {
    use super::*;

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
