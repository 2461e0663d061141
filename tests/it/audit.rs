//! `Cargo.lock` against the RustSec advisory database, as `cargo audit` checks it: the
//! database is the snapshot in `tests/advisory-db` (CI cannot reach GitHub, where it is
//! published) and the allow list is `.cargo/audit.toml`, the file `cargo audit` reads.

use rustsec::advisory::Informational;
use rustsec::report::{Report, Settings};
use rustsec::{Database, Lockfile};
use std::collections::BTreeSet;
use std::path::Path;

/// The advisory ids `.cargo/audit.toml` allows.
fn allowed(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(".cargo/audit.toml")).expect(".cargo/audit.toml");
    let table: toml::Table = toml::from_str(&text).expect(".cargo/audit.toml parses");
    let ignore = table.get("advisories").and_then(|a| a.get("ignore")).and_then(|i| i.as_array()).expect("[advisories] ignore = [...]");
    ignore.iter().map(|v| v.as_str().expect("advisory ids are strings").to_string()).collect()
}

#[test]
fn no_advisory_affects_the_lock_file_unless_allowed_with_a_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let db = Database::open(&root.join("tests/advisory-db")).expect("the advisory database snapshot opens");
    assert!(db.iter().count() > 1000, "the snapshot holds the whole database");
    let lock = Lockfile::load(root.join("Cargo.lock")).expect("Cargo.lock parses");
    // `cargo audit`'s defaults: vulnerabilities, and unmaintained, unsound and notice
    // advisories (which it prints as warnings; here they must be allowed too).
    let settings = Settings { informational_warnings: vec![Informational::Unmaintained, Informational::Unsound, Informational::Notice], ..Default::default() };
    let report = Report::generate(&db, &lock, &settings);
    let mut found: Vec<(String, String)> =
        report.vulnerabilities.list.iter().map(|v| (v.advisory.id.to_string(), format!("{} {}: {}", v.package.name, v.package.version, v.advisory.title))).collect();
    for w in report.warnings.values().flatten() {
        if let Some(a) = &w.advisory {
            found.push((a.id.to_string(), format!("{} {} ({:?}): {}", w.package.name, w.package.version, w.kind, a.title)));
        }
    }
    let allow = allowed(root);
    let refused: Vec<_> = found.iter().filter(|(id, _)| !allow.contains(id)).map(|(id, what)| format!("{id} {what}")).collect();
    assert!(refused.is_empty(), "advisories affect Cargo.lock; upgrade, or allow each in .cargo/audit.toml with the reason:\n{}", refused.join("\n"));
    let seen: BTreeSet<&String> = found.iter().map(|(id, _)| id).collect();
    let stale: Vec<_> = allow.iter().filter(|id| !seen.contains(id)).collect();
    assert!(stale.is_empty(), "allowed in .cargo/audit.toml but no longer affecting Cargo.lock; remove: {stale:?}");
    for (id, what) in &found {
        println!("allowed: {id} {what}");
    }
}
