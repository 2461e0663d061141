//! The example projects that ship inside `lf` (from `examples/projects/` of the
//! repository), written out under the data directory when `lf serve` starts.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../examples/projects/", $path)))),*]
    };
}

/// `(path under examples/projects, bytes)`.
const BUILTIN: &[(&str, &[u8])] = files![
    "local_notes/llamafarm.yaml",
    "local_notes/manifest.yaml",
    "local_notes/files/quantization.md",
    "local_notes/files/embeddings.md",
    "local_notes/files/privacy.txt",
    "support_faq/llamafarm.yaml",
    "support_faq/files/kettle_faq.md",
];

/// Write the built-in examples under `dir` (files already there with the same bytes
/// are left alone) and return it.
pub(crate) fn install(dir: &Path) -> Result<PathBuf> {
    for (rel, bytes) in BUILTIN {
        let p = dir.join(rel);
        if std::fs::read(&p).is_ok_and(|have| have == *bytes) {
            continue;
        }
        llamafarm_core::fsutil::atomic_write(&p, bytes).with_context(|| format!("writing example file {}", p.display()))?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_the_examples_folder_is_built_in() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/projects");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    on_disk.push(e.path().strip_prefix(&root).unwrap().to_string_lossy().to_string());
                }
            }
        }
        on_disk.sort();
        let mut built: Vec<String> = super::BUILTIN.iter().map(|(p, _)| p.to_string()).collect();
        built.sort();
        assert_eq!(on_disk, built);
    }
}
