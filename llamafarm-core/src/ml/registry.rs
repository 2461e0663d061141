//! Model versioning shared by classifiers and anomaly detectors (the original's
//! `MLModelService` rules):
//!
//! - saving with `overwrite: false` stores the model as `{name}_{YYYYmmdd_HHMMSS}`
//!   (a second save within the same second gets `_2`, `_3`, ...);
//! - a requested name ending in `-latest` resolves to the newest stored version of
//!   the base name (or the base name itself when only that exists).

use crate::error::{Error, Result};

/// Suffix that asks for the newest version.
pub const LATEST_SUFFIX: &str = "-latest";

/// A model name as accepted from callers: 1..=128 of `[A-Za-z0-9_.-]`, not starting
/// with `.` (it becomes a file or directory name).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("model", format!("name '{name}' is invalid: use 1-128 letters, digits, '_', '-' or '.', not starting with '.'")))
    }
}

/// The name to save under: `name` itself when overwriting, else `{name}_{timestamp}`
/// made unique against `existing`.
pub fn version_name(name: &str, overwrite: bool, existing: &[String]) -> String {
    if overwrite {
        return name.to_string();
    }
    let base = format!("{name}_{}", chrono::Local::now().format("%Y%m%d_%H%M%S"));
    if !existing.iter().any(|e| e == &base) {
        return base;
    }
    (2..).map(|i| format!("{base}_{i}")).find(|c| !existing.iter().any(|e| e == c)).unwrap_or(base)
}

/// True when `candidate` is `base` or a version of it (`{base}_{8 digits}_{6 digits}[_{n}]`).
pub fn is_version_of(candidate: &str, base: &str) -> bool {
    if candidate == base {
        return true;
    }
    let Some(rest) = candidate.strip_prefix(base).and_then(|r| r.strip_prefix('_')) else { return false };
    let parts: Vec<&str> = rest.split('_').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [d, t] => digits(d, 8) && digits(t, 6),
        [d, t, n] => digits(d, 8) && digits(t, 6) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Resolve a requested name against the stored names: `-latest` picks the newest
/// version of the base name; any other name must exist as given.
pub fn resolve(requested: &str, stored: &[String]) -> Option<String> {
    match requested.strip_suffix(LATEST_SUFFIX) {
        Some(base) => {
            let key = |n: &String| {
                // (timestamp, counter): the bare base name sorts first.
                let rest = n.strip_prefix(base).unwrap_or("");
                let mut it = rest.trim_start_matches('_').split('_');
                let ts = format!("{}{}", it.next().unwrap_or(""), it.next().unwrap_or(""));
                let n: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(1);
                (ts, n)
            };
            stored.iter().filter(|n| is_version_of(n, base)).max_by_key(|n| key(n)).cloned()
        }
        None => stored.iter().find(|n| *n == requested).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_latest() {
        let stored: Vec<String> = ["intent", "intent_20260101_120000", "intent_20261130_090000", "intent_20261130_090000_2", "intentx_20990101_000000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(resolve("intent-latest", &stored).as_deref(), Some("intent_20261130_090000_2"));
        assert_eq!(resolve("intent", &stored).as_deref(), Some("intent"));
        assert_eq!(resolve("nope-latest", &stored), None);
        assert_eq!(resolve("nope", &stored), None);
        assert!(!is_version_of("intentx_20990101_000000", "intent"));
        let v = version_name("m", false, &[]);
        assert!(is_version_of(&v, "m"), "{v}");
        assert_eq!(version_name("m", true, &[]), "m");
        let again = version_name("m", false, std::slice::from_ref(&v));
        assert_ne!(again, v);
        assert!(validate_name("../x").is_err());
        assert!(validate_name("ok-name_1.v2").is_ok());
    }
}
