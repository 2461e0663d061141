//! A small reader for NumPy `.npy` arrays and `.npz` archives (zip, stored or
//! deflated), enough to load benchmark and user data sets: little-endian
//! `f8/f4/i8/i4/i2/u1/b1` (and `u8/u4/u2/i1`), C or Fortran order, any rank.

use crate::error::{file_name, Error, ResourceKind, Result};
use std::io::Read;
use std::path::Path;

/// A dense array read from a `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values in C (row-major) order, converted to `f64`.
    pub data: Vec<f64>,
}

impl NpyArray {
    /// Rows of a 2-D array (a 1-D array is one column).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        let cols = if self.shape.len() >= 2 { self.shape[1..].iter().product() } else { 1 };
        self.data.chunks(cols.max(1)).map(|c| c.to_vec()).collect()
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::parse("npy array", msg)
}

fn header_value<'a>(h: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let at = h.find(&pat).ok_or_else(|| bad(format!("no '{key}' in header")))?;
    Ok(h[at + pat.len()..].trim_start())
}

/// Parse the bytes of one `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("truncated header")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?).map_err(|_| bad("header is not UTF-8"))?;
    let descr = header_value(header, "descr")?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').ok_or_else(|| bad("bad descr"))?];
    let fortran = header_value(header, "fortran_order")?.starts_with("True");
    let shape_s = header_value(header, "shape")?;
    let shape_s = &shape_s[1..shape_s.find(')').ok_or_else(|| bad("bad shape"))?];
    let shape: Vec<usize> = shape_s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().map_err(|_| bad("bad shape"))).collect::<Result<_>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    if descr.starts_with('>') {
        return Err(bad("big-endian arrays are not supported"));
    }
    let kind = descr.trim_start_matches(['<', '|', '=']);
    let size = match kind {
        "f8" | "i8" | "u8" => 8,
        "f4" | "i4" | "u4" => 4,
        "i2" | "u2" => 2,
        "i1" | "u1" | "b1" => 1,
        other => return Err(bad(format!("unsupported dtype {other}"))),
    };
    if body.len() < count * size {
        return Err(bad("truncated data"));
    }
    let mut data: Vec<f64> = body[..count * size]
        .chunks_exact(size)
        .map(|c| match kind {
            "f8" => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            "f4" => f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            "i8" => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "u8" => u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "i4" => i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            "u4" => u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            "i2" => i16::from_le_bytes(c.try_into().unwrap_or([0; 2])) as f64,
            "u2" => u16::from_le_bytes(c.try_into().unwrap_or([0; 2])) as f64,
            "i1" => c[0] as i8 as f64,
            _ => c[0] as f64,
        })
        .collect();
    if fortran && shape.len() == 2 {
        let (r, k) = (shape[0], shape[1]);
        let mut c = vec![0.0; count];
        for i in 0..r {
            for j in 0..k {
                c[i * k + j] = data[j * r + i];
            }
        }
        data = c;
    } else if fortran && shape.len() > 2 {
        return Err(bad("Fortran-order arrays above 2-D are not supported"));
    }
    Ok(NpyArray { shape, data })
}

/// Read one array (`name`, with or without `.npy`) from an `.npz` archive.
pub fn read_npz(path: &Path, name: &str) -> Result<NpyArray> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| Error::parse(file_name(path), e.to_string()))?;
    let entry = if name.ends_with(".npy") { name.to_string() } else { format!("{name}.npy") };
    let mut file = z.by_name(&entry).map_err(|_| Error::missing_in(ResourceKind::Other, format!("Array '{name}'"), format!("in {}", file_name(path))))?;
    let mut bytes = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, fortran: bool, body: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}", if fortran { "True" } else { "False" });
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn reads_npy() {
        let body: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&npy("<f8", "(2, 3)", false, &body)).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.rows(), vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        let f = parse_npy(&npy("<f8", "(2, 3)", true, &body)).unwrap();
        assert_eq!(f.rows(), vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]);
        let y = parse_npy(&npy("|b1", "(3,)", false, &[1, 0, 1])).unwrap();
        assert_eq!(y.data, vec![1.0, 0.0, 1.0]);
        assert!(parse_npy(b"nope").is_err());
        assert!(parse_npy(&npy("<f8", "(9,)", false, &body)).is_err());
    }
}
