//! Re-quantising a GGUF on load to a type with fast CPU kernels.
//!
//! candle (and so mistral.rs) has AVX2 dot products for Q8_0, Q4_0 and the K-quants
//! but not for Q4_1, Q5_0 or Q5_1, and mistral.rs 0.8.1 refuses in-situ quantisation
//! for GGUF models. So, when a model's `extra_body` says `requantize: q8_0`, we write a
//! copy of the file once (beside it, `<name>.lf-q8_0.gguf`, atomically) whose tensors
//! of those slow types are dequantised and re-quantised to Q8_0 (a finer grid than the
//! 4- and 5-bit sources, so the model is practically unchanged), and load that.

use crate::error::{Error, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use std::path::{Path, PathBuf};

fn ce(e: candle_core::Error) -> Error {
    Error::internal(format!("re-quantising: {e}"))
}

/// The types without a SIMD kernel in candle 0.10.
fn slow(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Parse a `requantize` setting (only `q8_0` is offered: lossless enough to be a default).
pub fn parse_target(s: &str) -> Result<GgmlDType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "q8_0" => Ok(GgmlDType::Q8_0),
        other => Err(Error::invalid("extra_body.requantize", format!("names an unsupported type '{other}' (use q8_0)"))),
    }
}

/// Path of the re-quantised copy of `src` (written on first use, reused after).
pub fn requantized(src: &Path, target: GgmlDType, out_dir: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let name = src.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    let tag = format!("{target:?}").to_ascii_lowercase();
    let key = sha2::Sha256::digest(src.as_os_str().as_encoded_bytes());
    let key: String = key.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dst = out_dir.join(format!("{key}-{name}.lf-{tag}.gguf"));
    let fresh = |p: &Path| -> Option<bool> {
        let (a, b) = (std::fs::metadata(p).ok()?.modified().ok()?, std::fs::metadata(src).ok()?.modified().ok()?);
        Some(a >= b)
    };
    if fresh(&dst) == Some(true) {
        return Ok(dst);
    }
    let t0 = std::time::Instant::now();
    let mut f = std::fs::File::open(src).map_err(|e| Error::io(src, e))?;
    let ct = gguf_file::Content::read(&mut f)
        .map_err(|e| Error::invalid("model", format!("file '{}' is not a readable GGUF file: {e}", src.file_name().unwrap_or_default().to_string_lossy())))?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort_by_key(|n| ct.tensor_infos[*n].offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0;
    for n in names {
        let q = ct.tensor(&mut f, n, &Device::Cpu).map_err(ce)?;
        let q = if slow(q.dtype()) {
            converted += 1;
            QTensor::quantize(&q.dequantize(&Device::Cpu).map_err(ce)?, target).map_err(ce)?
        } else {
            q
        };
        tensors.push((n.clone(), q));
    }
    let meta: Vec<(&str, &gguf_file::Value)> = ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let tmp = dst.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
        gguf_file::write(&mut out, &meta, &refs).map_err(ce)?;
        let file = out.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    tracing::info!(src = %src.display(), converted, secs = t0.elapsed().as_secs_f32(), "re-quantised GGUF to {tag}");
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_slow_types_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.gguf");
        let a = candle_core::Tensor::randn(0f32, 1.0, (4, 64), &Device::Cpu).unwrap();
        let q41 = QTensor::quantize(&a, GgmlDType::Q4_1).unwrap();
        let f32t = QTensor::quantize(&a, GgmlDType::F32).unwrap();
        let v = gguf_file::Value::String("x".into());
        let mut out = std::fs::File::create(&src).unwrap();
        gguf_file::write(&mut out, &[("general.name", &v)], &[("w", &q41), ("norm", &f32t)]).unwrap();
        drop(out);
        let out = dir.path().join("data/requantized");
        let dst = requantized(&src, GgmlDType::Q8_0, &out).unwrap();
        assert!(dst.starts_with(&out) && dst.to_string_lossy().ends_with("-m.lf-q8_0.gguf"), "{}", dst.display());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "nothing written beside the source");
        let mut f = std::fs::File::open(&dst).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        assert_eq!(ct.metadata["general.name"].to_string().unwrap(), "x");
        let w = ct.tensor(&mut f, "w", &Device::Cpu).unwrap();
        assert_eq!(w.dtype(), GgmlDType::Q8_0);
        assert_eq!(ct.tensor(&mut f, "norm", &Device::Cpu).unwrap().dtype(), GgmlDType::F32);
        // Q8_0 of the Q4_1 values is within Q8_0's step of them.
        let (x, y) = (q41.dequantize(&Device::Cpu).unwrap(), w.dequantize(&Device::Cpu).unwrap());
        let diff: f32 = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(diff < 0.05, "{diff}");
        // Reused, not rewritten.
        let t = std::fs::metadata(&dst).unwrap().modified().unwrap();
        assert_eq!(requantized(&src, GgmlDType::Q8_0, &out).unwrap(), dst);
        assert_eq!(std::fs::metadata(&dst).unwrap().modified().unwrap(), t);
        assert!(parse_target("q4_1").is_err());
    }
}
