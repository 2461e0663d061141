//! Weight matrices as GGUF stores them, and their matrix-product kernels.
//!
//! Quantised weights are held in 32-element blocks, `x = d * q + m`, in one of three kinds
//! of code:
//! - [`Kind::Q4_1`]: `q` a nibble in `0..16`, one `d` and `m` per block;
//! - [`Kind::Q8_0`]: `q` a byte in `0..256`, one `d` and `m` per block;
//! - [`Kind::Q8x16`]: `q` a byte, a `d` and `m` per 16 elements (the kernels keep the two
//!   halves' integer sums apart and scale each).
//!
//! Every GGUF type llama.cpp writes for these models is held exactly, with no
//! re-quantisation: `Q4_0` (`m = -8 d`), `Q4_1` and `Q4_K` (its 6-bit sub-block scales and
//! minimums folded into `d` and `m`) as nibbles; `Q5_0`, `Q5_1`, `Q5_K` and `Q8_0` (stored
//! plus 128 with `m = -128 d`) as bytes; `Q6_K`, `Q3_K` and `Q2_K` (a scale, and for
//! `Q2_K` a minimum, per 16 elements) as bytes with two scales a block. `F32`, `F16` and
//! `BF16` weights ([`Kind::F32`], [`Kind::F16`], [`Kind::Bf16`]) are kept in their own
//! format and multiplied with the unquantised activations in `f32` (fused multiply-adds,
//! F16C conversions). Other types (the `IQ` family) are dequantised at load and
//! re-quantised to `Q8_0` by the caller.
//!
//! At load the rows are interleaved in groups of eight ([`QMatrix`]): a kernel
//! multiplies a 32-bit broadcast of four activation codes with four codes of each of
//! eight rows in one instruction, so every lane accumulates its own row and no
//! horizontal sums are needed (the layout of llama.cpp's repacked `Q4_0x8` GEMMs).
//! Float weights are interleaved the same way, one element of each of the eight rows per
//! 256-bit lane set, multiplied with one broadcast activation. Prefill multiplies each
//! group with four activation rows per pass over its blocks; decoding is the same kernel
//! with one.
//!
//! Activations are quantised per 32-element block to `i8` with an `f32` scale and the
//! block's sum of codes (llama.cpp's `Q8_1`), so a dot product is
//! `sum_b d_w d_a (q_w . q_a) + m_w s_a` with `s_a = d_a sum(q_a)`: llama.cpp's
//! arithmetic. The inner `q_w . q_a` is exact integer arithmetic: `vpdpbusd` with
//! AVX-512 VNNI (`avx512.rs`), `vpmaddubsw`/`vpmaddwd` with AVX2 (`avx2.rs`), else a
//! portable loop (`portable.rs`); the [`Kernel`] is chosen at run time from the [`Cpu`],
//! and all three give the same results bit for bit (the float kernel too: `avx2.rs`
//! with F16C, or `portable.rs`, in the same order of fused operations).

#[cfg(target_arch = "x86_64")]
/// One kernel body per instruction set. `$dq4(w, x)` gives a nibble block's dot
/// products: for each 32-bit lane (a row), the sum over the block's eight vectors of
/// unsigned nibbles `w[c]` times the broadcast signed codes `x[c]`; `$w8(w)` prepares a load of `Q8_0` codes (stored plus 128) and `$dp8` does
/// the same for them, `$fix8` telling whether it left out the `128 * sum(x)` that the
/// biased codes add (then added from the activations' code sums); `$dq8n(w, x)` gives
/// the dot products of narrow byte codes (below 64, taken as they are: no bias to undo),
/// over elements `0..16` and `16..32`.
macro_rules! tile_kernel {
    ($name:ident, $features:literal, $dq4:ident, $w8:ident, $dp8:ident, $dq8n:ident, $fix8:expr) => {
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name<const T: usize, const Q8: bool, const H: bool, const N: bool>(g: &Group<'_>, acts: &[QRow<'_>], acc: &mut [[f32; RG]; TILE]) {
            let nb = g.d.len() / RG;
            let gbb = if Q8 { QK * RG } else { 16 * RG };
            assert!(acts.len() == T && g.qs.len() == nb * gbb && g.m.len() == nb * RG);
            assert!(!H || (Q8 && g.d2.len() == nb * RG && g.m2.len() == nb * RG));
            assert!(acts.iter().all(|a| a.q32.len() == nb * 8
                && a.d.len() == nb
                && a.s.len() == nb
                && a.sum.len() == nb
                && a.sum_lo.len() == nb
                && a.s_lo.len() == nb
                && a.s_hi.len() == nb));
            let low = _mm256_set1_epi8(0x0f);
            let mut sum = [_mm256_setzero_ps(); TILE];
            const { assert!(T <= TILE) };
            // Pointer bumps (`wrapping_add`: no debug-build checks in the loop); the
            // lengths were checked above.
            let mut wp = g.qs.as_ptr();
            let row = |t: usize| &acts[t.min(T - 1)];
            let xp: [*const [i32; 8]; TILE] = std::array::from_fn(|t| row(t).q32.as_ptr() as *const [i32; 8]);
            let dp: [*const f32; TILE] = std::array::from_fn(|t| row(t).d.as_ptr());
            let sp: [*const f32; TILE] = std::array::from_fn(|t| row(t).s.as_ptr());
            let up: [*const i32; TILE] = std::array::from_fn(|t| row(t).sum.as_ptr());
            let lp: [*const i32; TILE] = std::array::from_fn(|t| row(t).sum_lo.as_ptr());
            let slp: [*const f32; TILE] = std::array::from_fn(|t| row(t).s_lo.as_ptr());
            let shp: [*const f32; TILE] = std::array::from_fn(|t| row(t).s_hi.as_ptr());
            for b in 0..nb {
                let dv = _mm256_loadu_ps(g.d.as_ptr().wrapping_add(b * RG));
                let mv = _mm256_loadu_ps(g.m.as_ptr().wrapping_add(b * RG));
                let (dv2, mv2) =
                    if H { (_mm256_loadu_ps(g.d2.as_ptr().wrapping_add(b * RG)), _mm256_loadu_ps(g.m2.as_ptr().wrapping_add(b * RG))) } else { (dv, mv) };
                let mut w = [_mm256_setzero_si256(); 8];
                if Q8 {
                    for (c, wc) in w.iter_mut().enumerate() {
                        let v = _mm256_loadu_si256(wp.wrapping_add(c * 32) as *const __m256i);
                        *wc = if N { v } else { $w8(v) };
                    }
                } else {
                    for c in 0..4 {
                        let v = _mm256_loadu_si256(wp.wrapping_add(c * 32) as *const __m256i);
                        w[c] = _mm256_and_si256(v, low);
                        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                    }
                }
                wp = wp.wrapping_add(gbb);
                // One activation row (written out per row: a loop over `T` stays a
                // loop, with the sums in memory).
                macro_rules! act {
                    ($t:literal) => {
                        if $t < T {
                            // The block's codes as eight words (one aligned read, then
                            // constant indices: no per-word checks in debug builds).
                            let x = &*xp[$t].wrapping_add(b);
                            let bc = |c: usize| _mm256_set1_epi32(x[c]);
                            // Two chains, so the adds overlap: elements 0..16 and 16..32
                            // (integer sums: the split changes no result).
                            let z = _mm256_setzero_si256();
                            let (da, sa) = (*dp[$t].wrapping_add(b), *sp[$t].wrapping_add(b));
                            if Q8 {
                                // Elements 0..16 and 16..32.
                                let (s0, s1) = if N {
                                    $dq8n(&w, x)
                                } else {
                                    let (mut s0, mut s1) = ($dp8(z, w[0], bc(0)), $dp8(z, w[4], bc(4)));
                                    s0 = $dp8(s0, w[1], bc(1));
                                    s1 = $dp8(s1, w[5], bc(5));
                                    s0 = $dp8(s0, w[2], bc(2));
                                    s1 = $dp8(s1, w[6], bc(6));
                                    s0 = $dp8(s0, w[3], bc(3));
                                    s1 = $dp8(s1, w[7], bc(7));
                                    (s0, s1)
                                };
                                if H {
                                    let lo = *lp[$t].wrapping_add(b);
                                    let hi = *up[$t].wrapping_add(b) - lo;
                                    let (s0, s1) = if $fix8 && !N {
                                        (_mm256_add_epi32(s0, _mm256_set1_epi32(128 * lo)), _mm256_add_epi32(s1, _mm256_set1_epi32(128 * hi)))
                                    } else {
                                        (s0, s1)
                                    };
                                    let (sl, sh) = (*slp[$t].wrapping_add(b), *shp[$t].wrapping_add(b));
                                    sum[$t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_mul_ps(dv, _mm256_set1_ps(da)), sum[$t]);
                                    sum[$t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_mul_ps(dv2, _mm256_set1_ps(da)), sum[$t]);
                                    sum[$t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sl), sum[$t]);
                                    sum[$t] = _mm256_fmadd_ps(mv2, _mm256_set1_ps(sh), sum[$t]);
                                } else {
                                    let s = _mm256_add_epi32(s0, s1);
                                    let s = if $fix8 && !N { _mm256_add_epi32(s, _mm256_set1_epi32(128 * *up[$t].wrapping_add(b))) } else { s };
                                    sum[$t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dv, _mm256_set1_ps(da)), sum[$t]);
                                    sum[$t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sa), sum[$t]);
                                }
                            } else {
                                let s = _mm256_cvtepi32_ps($dq4(&w, x));
                                sum[$t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dv, _mm256_set1_ps(da)), sum[$t]);
                                sum[$t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(sa), sum[$t]);
                            }
                        }
                    };
                }
                act!(0);
                act!(1);
                act!(2);
                act!(3);
            }
            for t in 0..T {
                _mm256_storeu_ps(acc[t].as_mut_ptr(), sum[t]);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use crate::team::{share, Disjoint, Team};
use crate::{Cpu, Feature};

/// Elements per block.
pub const QK: usize = 32;

/// IEEE half to single precision (GGUF block scales).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// How a matrix's blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 4-bit codes with a scale and an offset per block.
    Q4_1,
    /// 8-bit unsigned codes with a scale and an offset per block.
    Q8_0,
    /// 8-bit unsigned codes with a scale and an offset per 16 elements (two per block).
    Q8x16,
    /// `f32` values (GGUF `F32`).
    F32,
    /// IEEE half values (GGUF `F16`).
    F16,
    /// bfloat16 values (GGUF `BF16`).
    Bf16,
}

impl Kind {
    /// Bytes per value of a float kind; `None` for the quantised kinds.
    pub fn float_bytes(self) -> Option<usize> {
        match self {
            Kind::F32 => Some(4),
            Kind::F16 | Kind::Bf16 => Some(2),
            Kind::Q4_1 | Kind::Q8_0 | Kind::Q8x16 => None,
        }
    }

    /// Whether values are kept as floats (no codes, no activation quantisation).
    pub fn is_float(self) -> bool {
        self.float_bytes().is_some()
    }

    /// Value `i` of a float kind's little-endian bytes.
    fn float_at(self, bytes: &[u8], i: usize) -> f32 {
        match self {
            Kind::F32 => f32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]),
            Kind::F16 => f16_to_f32(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])),
            Kind::Bf16 => f32::from_bits((u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32) << 16),
            Kind::Q4_1 | Kind::Q8_0 | Kind::Q8x16 => unreachable!("not a float kind"),
        }
    }
}

/// Rows per interleaved group: one 32-bit lane of a 256-bit register per row.
pub const RG: usize = 8;

/// Activation rows one kernel call multiplies with a group (prefill tile).
const TILE: usize = 4;

/// The kernel this CPU runs (chosen once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI on 256-bit registers (`vpdpbusd`).
    Vnni,
    /// AVX2 (`vpmaddubsw`, `vpmaddwd`).
    Avx2,
    /// Plain Rust, the same arithmetic.
    Portable,
}

impl Kernel {
    /// The best kernel the active [`Cpu`] runs: VNNI where it has AVX-512 VNNI and VL,
    /// AVX2 where it has AVX2 and FMA, else portable.
    pub fn detect() -> Self {
        Self::best_for(Cpu::active())
    }

    /// The best kernel `cpu` runs.
    pub fn best_for(cpu: Cpu) -> Self {
        if Kernel::Vnni.runs_on(cpu) {
            Kernel::Vnni
        } else if Kernel::Avx2.runs_on(cpu) {
            Kernel::Avx2
        } else {
            Kernel::Portable
        }
    }

    /// Whether `cpu` has what this kernel needs.
    pub fn runs_on(self, cpu: Cpu) -> bool {
        match self {
            Kernel::Vnni => cpu.avx2_fma() && cpu.avx512_vnni() && cpu.has(Feature::Avx512vl),
            Kernel::Avx2 => cpu.avx2_fma(),
            Kernel::Portable => true,
        }
    }
}

/// A `rows x cols` weight matrix (one output per row; `cols` a multiple of 32).
///
/// Rows are stored in groups of [`RG`], interleaved so that one 256-bit load holds four
/// consecutive codes of each of the group's eight rows: a kernel multiplies them with
/// four broadcast activation codes and gets eight rows' partial sums in eight lanes,
/// with no horizontal sums. Per (group, block), `Q4_1` keeps 4 such loads of packed
/// nibbles (load `c`, lane `j`: bytes `4c..4c + 4` of row `j`'s GGUF block, so the low
/// nibbles are elements `4c..4c + 4` and the high ones `16 + 4c..`), `Q8_0` 8 loads of
/// bytes (elements `4c..4c + 4`, stored plus 128 so they are unsigned). Scales and
/// offsets are eight `f32` per (group, block): `x = d * q + m`, with `m = -128 d` for
/// `Q8_0`. A last partial group is padded with zero rows. Float kinds keep, per (group,
/// block), the block's 32 columns one after the other, each as the eight rows' values
/// (little-endian, as in the GGUF), and no scales.
pub struct QMatrix {
    /// Block type.
    pub kind: Kind,
    /// Outputs.
    pub rows: usize,
    /// Inputs.
    pub cols: usize,
    qs: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
    /// [`Kind::Q8x16`]: scales and offsets of each block's elements `16..32` (`d` and `m`
    /// are those of `0..16`); empty for the other kinds.
    d2: Vec<f32>,
    m2: Vec<f32>,
    /// Byte codes that are all below 64 (`Q5_*`, `Q6_K`, `Q3_K` and `Q2_K` codes, widened
    /// nibbles): the AVX2 kernel multiplies them as they are and adds two vectors' 16-bit
    /// pair sums before widening them.
    narrow: bool,
}

/// Row-major blocks, as read from a GGUF (before interleaving).
struct RowBlocks<'a> {
    kind: Kind,
    rows: usize,
    cols: usize,
    /// `cols / 2` (`Q4_1`: low nibbles elements `0..16`, high ones `16..32`) or `cols`
    /// (`Q8_0`, unsigned) code bytes per row.
    qs: &'a [u8],
    d: &'a [f32],
    m: &'a [f32],
    /// Second-half scales and offsets ([`Kind::Q8x16`]).
    d2: &'a [f32],
    m2: &'a [f32],
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The 6-bit scale and minimum of sub-block `j` of a `Q4_K`/`Q5_K` super-block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The sixteen signed 6-bit scales of a `Q3_K` super-block (12 bytes: the low four bits
/// of each in the first eight, the high two packed in the last four), less their bias 32.
fn q3_k_scales(b: &[u8]) -> [i8; 16] {
    std::array::from_fn(|i| {
        let low = if i < 8 { b[i] & 15 } else { b[i - 8] >> 4 };
        let high = (b[8 + i % 4] >> (2 * (i / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// Code bytes, scales and offsets of row-major blocks being read.
#[derive(Default)]
struct Blocks {
    qs: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
    d2: Vec<f32>,
    m2: Vec<f32>,
}

impl Blocks {
    /// Append a 32-element block of nibbles given one code per element.
    fn push_nibbles(&mut self, codes: &[u8; QK], d: f32, m: f32) {
        self.qs.extend((0..16).map(|i| codes[i] | (codes[i + 16] << 4)));
        self.d.push(d);
        self.m.push(m);
    }

    fn push_bytes(&mut self, codes: &[u8; QK], d: f32, m: f32) {
        self.qs.extend_from_slice(codes);
        self.d.push(d);
        self.m.push(m);
    }

    /// A block of byte codes with a scale and offset per half.
    fn push_halves(&mut self, codes: &[u8; QK], (d, m): (f32, f32), (d2, m2): (f32, f32)) {
        self.push_bytes(codes, d, m);
        self.d2.push(d2);
        self.m2.push(m2);
    }

    fn matrix(&self, kind: Kind, rows: usize, cols: usize) -> QMatrix {
        QMatrix::pack(RowBlocks { kind, rows, cols, qs: &self.qs, d: &self.d, m: &self.m, d2: &self.d2, m2: &self.m2 })
    }
}

impl QMatrix {
    /// Code bytes per (group, block).
    fn group_block_bytes(kind: Kind) -> usize {
        match kind {
            Kind::Q4_1 => 16 * RG,
            Kind::Q8_0 | Kind::Q8x16 => QK * RG,
            Kind::F32 | Kind::F16 | Kind::Bf16 => QK * RG * kind.float_bytes().unwrap_or(4),
        }
    }

    /// Interleave row-major float values (`bytes`: `rows x cols` values of a float
    /// `kind`, little-endian); `None` when the size does not match.
    fn pack_float(kind: Kind, bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        let eb = kind.float_bytes()?;
        if !cols.is_multiple_of(QK) || bytes.len() != rows * cols * eb {
            return None;
        }
        let groups = rows.div_ceil(RG);
        let mut qs = vec![0u8; groups * cols * RG * eb];
        for r in 0..rows {
            let (g, j) = (r / RG, r % RG);
            let row = &bytes[r * cols * eb..(r + 1) * cols * eb];
            for (c, v) in row.chunks_exact(eb).enumerate() {
                let at = ((g * cols + c) * RG + j) * eb;
                qs[at..at + eb].copy_from_slice(v);
            }
        }
        Some(Self { kind, rows, cols, qs, d: Vec::new(), m: Vec::new(), d2: Vec::new(), m2: Vec::new(), narrow: false })
    }

    /// Row `r` of a float kind, as its little-endian bytes, appended to `out`.
    fn float_row_bytes(&self, r: usize, out: &mut Vec<u8>) {
        let eb = self.kind.float_bytes().unwrap_or(4);
        let (g, j) = (r / RG, r % RG);
        for c in 0..self.cols {
            let at = ((g * self.cols + c) * RG + j) * eb;
            out.extend_from_slice(&self.qs[at..at + eb]);
        }
    }

    /// The same values as a [`Kind::F32`] matrix (exactly the values [`QMatrix::row_f32`]
    /// gives), so matrices of float and quantised kinds can be stacked.
    pub fn to_f32(&self) -> QMatrix {
        let mut bytes = Vec::with_capacity(self.rows * self.cols * 4);
        let mut row = vec![0f32; self.cols];
        for r in 0..self.rows {
            self.row_f32(r, &mut row);
            bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        }
        Self::pack_float(Kind::F32, &bytes, self.rows, self.cols).unwrap_or_else(|| unreachable!("sizes match by construction"))
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(RG)
    }

    /// Interleave row-major blocks.
    fn pack(src: RowBlocks<'_>) -> Self {
        let nb = src.cols / QK;
        let groups = src.rows.div_ceil(RG);
        let gbb = Self::group_block_bytes(src.kind);
        let rb = src.qs.len() / src.rows.max(1);
        let mut qs = vec![0u8; groups * nb * gbb];
        let (mut d, mut m) = (vec![0f32; groups * nb * RG], vec![0f32; groups * nb * RG]);
        let halves = src.kind == Kind::Q8x16;
        let (mut d2, mut m2) = if halves { (vec![0f32; groups * nb * RG], vec![0f32; groups * nb * RG]) } else { (Vec::new(), Vec::new()) };
        for r in 0..src.rows {
            let (g, j) = (r / RG, r % RG);
            for b in 0..nb {
                let at = (g * nb + b) * RG + j;
                let db = src.d[r * nb + b];
                d[at] = db;
                if halves {
                    d2[at] = src.d2[r * nb + b];
                    m2[at] = src.m2[r * nb + b];
                }
                let dst = &mut qs[(g * nb + b) * gbb..(g * nb + b + 1) * gbb];
                match src.kind {
                    Kind::Q4_1 => {
                        m[at] = src.m[r * nb + b];
                        let blk = &src.qs[r * rb + b * 16..r * rb + b * 16 + 16];
                        for c in 0..4 {
                            dst[c * 32 + j * 4..c * 32 + j * 4 + 4].copy_from_slice(&blk[c * 4..c * 4 + 4]);
                        }
                    }
                    Kind::Q8_0 | Kind::Q8x16 => {
                        m[at] = src.m[r * nb + b];
                        let blk = &src.qs[r * rb + b * QK..r * rb + (b + 1) * QK];
                        for c in 0..8 {
                            dst[c * 32 + j * 4..c * 32 + j * 4 + 4].copy_from_slice(&blk[c * 4..c * 4 + 4]);
                        }
                    }
                    Kind::F32 | Kind::F16 | Kind::Bf16 => unreachable!("float kinds are packed by pack_float"),
                }
            }
        }
        let narrow = matches!(src.kind, Kind::Q8_0 | Kind::Q8x16) && qs.iter().all(|&q| q < 64);
        Self { kind: src.kind, rows: src.rows, cols: src.cols, qs, d, m, d2, m2, narrow }
    }

    /// Read `rows x cols` values stored as GGUF blocks of `block_bytes` bytes holding
    /// `per_block` elements, each block decoded by `read` into [`Blocks`] of `kind`.
    fn read(kind: Kind, bytes: &[u8], rows: usize, cols: usize, per_block: usize, block_bytes: usize, read: impl Fn(&[u8], &mut Blocks)) -> Option<Self> {
        if !cols.is_multiple_of(QK) || !cols.is_multiple_of(per_block) || bytes.len() != rows * cols / per_block * block_bytes {
            return None;
        }
        let nb = rows * cols / QK;
        let mut b = Blocks { qs: Vec::with_capacity(if kind == Kind::Q4_1 { nb * 16 } else { nb * QK }), ..Default::default() };
        for blk in bytes.chunks_exact(block_bytes) {
            read(blk, &mut b);
        }
        Some(b.matrix(kind, rows, cols))
    }

    /// From GGUF blocks of type `dtype` (its name as in ggml: `Q2_K`, `Q3_K`, `Q4_0`,
    /// `Q4_1`, `Q4_K`, `Q5_0`, `Q5_1`, `Q5_K`, `Q6_K`, `Q8_0`, `F16`, `BF16`, `F32`);
    /// `None` for another type or a size that does not match. The values are kept exactly.
    pub fn from_gguf(dtype: &str, bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        match dtype {
            "F32" => Self::pack_float(Kind::F32, bytes, rows, cols),
            "F16" => Self::pack_float(Kind::F16, bytes, rows, cols),
            "BF16" => Self::pack_float(Kind::Bf16, bytes, rows, cols),
            "Q2_K" => Self::read(Kind::Q8x16, bytes, rows, cols, 256, 84, |b, out| {
                let (scales, qs, d, dmin) = (&b[0..16], &b[16..80], half(b, 80), half(b, 82));
                // Two halves of 128: four 2-bit planes of 32 bytes each, every 16 elements
                // with a 4-bit scale (low nibble) and minimum (high nibble).
                for n in 0..2 {
                    let q = &qs[32 * n..32 * n + 32];
                    for j in 0..4 {
                        let codes: [u8; QK] = std::array::from_fn(|l| (q[l] >> (2 * j)) & 3);
                        let half_of = |sc: u8| (d * (sc & 15) as f32, -(dmin * (sc >> 4) as f32));
                        out.push_halves(&codes, half_of(scales[8 * n + 2 * j]), half_of(scales[8 * n + 2 * j + 1]));
                    }
                }
            }),
            "Q3_K" => Self::read(Kind::Q8x16, bytes, rows, cols, 256, 110, |b, out| {
                let (hmask, qs, d) = (&b[0..32], &b[32..96], half(b, 108));
                let scales = q3_k_scales(&b[96..108]);
                // As `Q2_K`, with a third bit per element in `hmask` (bit `4n + j`) and
                // signed 6-bit scales: `x = d * s * (code - 4)`, `code` in `0..8`.
                for n in 0..2 {
                    let q = &qs[32 * n..32 * n + 32];
                    for j in 0..4 {
                        let codes: [u8; QK] = std::array::from_fn(|l| ((q[l] >> (2 * j)) & 3) | (((hmask[l] >> (4 * n + j)) & 1) << 2));
                        let half_of = |s: i8| {
                            let dl = d * s as f32;
                            (dl, -4.0 * dl)
                        };
                        out.push_halves(&codes, half_of(scales[8 * n + 2 * j]), half_of(scales[8 * n + 2 * j + 1]));
                    }
                }
            }),
            "Q4_0" => Self::read(Kind::Q4_1, bytes, rows, cols, QK, 18, |b, out| {
                let d = half(b, 0);
                out.qs.extend_from_slice(&b[2..18]);
                out.d.push(d);
                out.m.push(-8.0 * d);
            }),
            "Q4_1" => Self::from_q4_1(bytes, rows, cols),
            "Q8_0" => Self::from_q8_0(bytes, rows, cols),
            "Q5_0" | "Q5_1" => {
                let q51 = dtype == "Q5_1";
                let at = if q51 { 4 } else { 2 };
                Self::read(Kind::Q8_0, bytes, rows, cols, QK, at + 20, move |b, out| {
                    let d = half(b, 0);
                    let m = if q51 { half(b, 2) } else { -16.0 * d };
                    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                    let qs = &b[at + 4..at + 20];
                    let mut codes = [0u8; QK];
                    for i in 0..16 {
                        codes[i] = (qs[i] & 15) | ((((qh >> i) & 1) as u8) << 4);
                        codes[i + 16] = (qs[i] >> 4) | ((((qh >> (i + 16)) & 1) as u8) << 4);
                    }
                    out.push_bytes(&codes, d, m);
                })
            }
            "Q4_K" => Self::read(Kind::Q4_1, bytes, rows, cols, 256, 144, |b, out| {
                let (d, dmin, scales, qs) = (half(b, 0), half(b, 2), &b[4..16], &b[16..144]);
                for j in 0..4 {
                    let q = &qs[32 * j..32 * j + 32];
                    for (k, shift) in [(2 * j, 0), (2 * j + 1, 4)] {
                        let (sc, mn) = scale_min_k4(k, scales);
                        let codes: [u8; QK] = std::array::from_fn(|l| (q[l] >> shift) & 15);
                        out.push_nibbles(&codes, d * sc as f32, -(dmin * mn as f32));
                    }
                }
            }),
            "Q5_K" => Self::read(Kind::Q8_0, bytes, rows, cols, 256, 176, |b, out| {
                let (d, dmin, scales, qh, qs) = (half(b, 0), half(b, 2), &b[4..16], &b[16..48], &b[48..176]);
                for j in 0..4 {
                    let q = &qs[32 * j..32 * j + 32];
                    for (k, shift) in [(2 * j, 0), (2 * j + 1, 4)] {
                        let (sc, mn) = scale_min_k4(k, scales);
                        let codes: [u8; QK] = std::array::from_fn(|l| ((q[l] >> shift) & 15) | (((qh[l] >> k) & 1) << 4));
                        out.push_bytes(&codes, d * sc as f32, -(dmin * mn as f32));
                    }
                }
            }),
            "Q6_K" => Self::read(Kind::Q8x16, bytes, rows, cols, 256, 210, |b, out| {
                let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], half(b, 208));
                for n in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32], &sc[8 * n..8 * n + 8]);
                    // Four blocks of 32: low or high nibbles of `ql[0..32]` or `ql[32..64]`,
                    // with two bits of `qh` each.
                    for (j, (off, shift)) in [(0, 0), (32, 0), (0, 4), (32, 4)].into_iter().enumerate() {
                        let codes: [u8; QK] = std::array::from_fn(|l| ((ql[off + l] >> shift) & 15) | (((qh[l] >> (2 * j)) & 3) << 4));
                        let (d0, d1) = (d * sc[2 * j] as i8 as f32, d * sc[2 * j + 1] as i8 as f32);
                        out.push_halves(&codes, (d0, -32.0 * d0), (d1, -32.0 * d1));
                    }
                }
            }),
            _ => None,
        }
    }

    /// From GGUF `Q4_1` blocks (20 bytes each: f16 d, f16 m, 16 code bytes).
    pub fn from_q4_1(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        Self::read(Kind::Q4_1, bytes, rows, cols, QK, 20, |b, out| {
            out.d.push(half(b, 0));
            out.m.push(half(b, 2));
            out.qs.extend_from_slice(&b[4..20]);
        })
    }

    /// From GGUF `Q8_0` blocks (34 bytes each: f16 d, 32 codes).
    pub fn from_q8_0(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        Self::read(Kind::Q8_0, bytes, rows, cols, QK, 34, |b, out| {
            let d = half(b, 0);
            out.d.push(d);
            out.m.push(-128.0 * d);
            out.qs.extend(b[2..34].iter().map(|q| q ^ 0x80));
        })
    }

    /// Quantise `f32` rows to `Q8_0` (scale `amax / 127`, codes rounded to nearest).
    pub fn q8_0_from_f32(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(QK) || w.len() != rows * cols {
            return None;
        }
        let nb = rows * cols / QK;
        let mut b = Blocks { qs: Vec::with_capacity(nb * QK), d: Vec::with_capacity(nb), m: Vec::with_capacity(nb), ..Default::default() };
        for blk in w.chunks_exact(QK) {
            let amax = blk.iter().fold(0f32, |a, x| a.max(x.abs()));
            let s = amax / 127.0;
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            let codes: [u8; QK] = std::array::from_fn(|i| ((blk[i] * inv).round().clamp(-127.0, 127.0) as i8 as u8) ^ 0x80);
            b.push_bytes(&codes, s, -128.0 * s);
        }
        Some(b.matrix(Kind::Q8_0, rows, cols))
    }

    /// Row `r`'s blocks, row-major (as [`QMatrix::read`] collects them), appended to `out`.
    fn row_blocks(&self, r: usize, out: &mut Blocks) {
        let (nb, gbb) = (self.cols / QK, Self::group_block_bytes(self.kind));
        let (g, j) = (r / RG, r % RG);
        for b in 0..nb {
            let src = &self.qs[(g * nb + b) * gbb..(g * nb + b + 1) * gbb];
            let at = (g * nb + b) * RG + j;
            out.d.push(self.d[at]);
            out.m.push(self.m[at]);
            if self.kind == Kind::Q8x16 {
                out.d2.push(self.d2[at]);
                out.m2.push(self.m2[at]);
            }
            let loads = if self.kind == Kind::Q4_1 { 4 } else { 8 };
            for c in 0..loads {
                out.qs.extend_from_slice(&src[c * 32 + j * 4..c * 32 + j * 4 + 4]);
            }
        }
    }

    /// Row `r` as `f32` (embedding lookups).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        if self.kind.is_float() {
            let mut bytes = Vec::new();
            self.float_row_bytes(r, &mut bytes);
            for (i, o) in out[..self.cols].iter_mut().enumerate() {
                *o = self.kind.float_at(&bytes, i);
            }
            return;
        }
        let mut b = Blocks::default();
        self.row_blocks(r, &mut b);
        for (i, o) in out[..self.cols].chunks_exact_mut(QK).enumerate() {
            let (d, m) = (b.d[i], b.m[i]);
            match self.kind {
                Kind::Q4_1 => {
                    let q = &b.qs[i * 16..(i + 1) * 16];
                    for j in 0..16 {
                        o[j] = d * (q[j] & 15) as f32 + m;
                        o[j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
                Kind::Q8_0 => {
                    for (x, &q) in o.iter_mut().zip(&b.qs[i * QK..(i + 1) * QK]) {
                        *x = d * q as f32 + m;
                    }
                }
                Kind::Q8x16 => {
                    for (l, (x, &q)) in o.iter_mut().zip(&b.qs[i * QK..(i + 1) * QK]).enumerate() {
                        *x = if l < 16 { d * q as f32 + m } else { b.d2[i] * q as f32 + b.m2[i] };
                    }
                }
                Kind::F32 | Kind::F16 | Kind::Bf16 => unreachable!("handled above"),
            }
        }
    }

    /// The same values with codes of `kind` (`Q4_1` nibbles widen to bytes; one scale per
    /// block becomes the same scale for both halves), exactly; `None` when `kind` is
    /// narrower than this matrix's, or either is a float kind (see [`QMatrix::to_f32`]).
    pub fn widen_to(&self, kind: Kind) -> Option<QMatrix> {
        let rank = |k: Kind| match k {
            Kind::Q4_1 => Some(0),
            Kind::Q8_0 => Some(1),
            Kind::Q8x16 => Some(2),
            Kind::F32 | Kind::F16 | Kind::Bf16 => None,
        };
        if rank(kind)? < rank(self.kind)? {
            return None;
        }
        let mut out = Blocks::default();
        for r in 0..self.rows {
            let mut row = Blocks::default();
            self.row_blocks(r, &mut row);
            for i in 0..row.d.len() {
                let codes: [u8; QK] = if self.kind == Kind::Q4_1 {
                    let nib = &row.qs[i * 16..(i + 1) * 16];
                    std::array::from_fn(|j| if j < 16 { nib[j] & 15 } else { nib[j - 16] >> 4 })
                } else {
                    std::array::from_fn(|j| row.qs[i * QK + j])
                };
                let lo = (row.d[i], row.m[i]);
                match kind {
                    Kind::Q4_1 => out.push_nibbles(&codes, lo.0, lo.1),
                    Kind::Q8_0 => out.push_bytes(&codes, lo.0, lo.1),
                    Kind::Q8x16 => out.push_halves(&codes, lo, if self.kind == Kind::Q8x16 { (row.d2[i], row.m2[i]) } else { lo }),
                    Kind::F32 | Kind::F16 | Kind::Bf16 => unreachable!("ranked above"),
                }
            }
        }
        Some(out.matrix(kind, self.rows, self.cols))
    }

    /// The same values as byte codes, exactly (so matrices of different kinds can be
    /// stacked): [`Kind::Q8_0`], or [`Kind::Q8x16`] for a matrix of that kind; a float
    /// kind as [`Kind::F32`].
    pub fn widen(&self) -> QMatrix {
        if self.kind.is_float() {
            return self.to_f32();
        }
        let to = if self.kind == Kind::Q8x16 { Kind::Q8x16 } else { Kind::Q8_0 };
        self.widen_to(to).unwrap_or_else(|| unreachable!("widening never narrows"))
    }

    /// Stack matrices of one kind and width (their rows one after the other).
    pub fn stack(parts: Vec<QMatrix>) -> Option<QMatrix> {
        let first = parts.first()?;
        let (kind, cols) = (first.kind, first.cols);
        if parts.iter().any(|p| p.kind != kind || p.cols != cols) {
            return None;
        }
        if parts[..parts.len() - 1].iter().all(|p| p.rows % RG == 0) {
            // Whole groups: the interleaved arrays concatenate.
            let mut it = parts.into_iter();
            let mut a = it.next()?;
            for p in it {
                a.rows += p.rows;
                a.narrow &= p.narrow;
                a.qs.extend(p.qs);
                a.d.extend(p.d);
                a.m.extend(p.m);
                a.d2.extend(p.d2);
                a.m2.extend(p.m2);
            }
            return Some(a);
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        if kind.is_float() {
            let mut bytes = Vec::new();
            for p in &parts {
                for r in 0..p.rows {
                    p.float_row_bytes(r, &mut bytes);
                }
            }
            return Self::pack_float(kind, &bytes, rows, cols);
        }
        let mut b = Blocks::default();
        for p in &parts {
            for r in 0..p.rows {
                p.row_blocks(r, &mut b);
            }
        }
        Some(b.matrix(kind, rows, cols))
    }

    /// Bytes held (codes and scales).
    pub fn bytes(&self) -> usize {
        self.qs.len() + 4 * (self.d.len() + self.m.len() + self.d2.len() + self.m2.len())
    }

    /// `out[t * rows + r] = row r . activation t` for every activation row of `a`,
    /// with the kernel [`Kernel::detect`] picks.
    pub fn matmul(&self, a: &QActs, out: &mut [f32], team: &Team) {
        self.matmul_with(Kernel::detect(), a, out, team)
    }

    /// [`QMatrix::matmul`] with a given kernel (one this CPU lacks falls back to the
    /// best it has). Every kernel gives the same results bit for bit.
    pub fn matmul_with(&self, kernel: Kernel, a: &QActs, out: &mut [f32], team: &Team) {
        let kernel = if kernel.runs_on(Cpu::detected()) { kernel } else { Kernel::best_for(Cpu::detected()) };
        let n = a.n;
        assert_eq!(a.cols, self.cols, "activation width");
        assert_eq!(out.len(), n * self.rows, "output size");
        if self.kind.is_float() {
            return self.matmul_float(kernel, a, out, team);
        }
        let (parts, rows, nb) = (team.threads(), self.rows, self.cols / QK);
        let gbb = Self::group_block_bytes(self.kind);
        let acts: Vec<QRow<'_>> = (0..n).map(|t| a.row(t)).collect();
        let d = Disjoint::new(out);
        // Each part takes whole groups, and each group every activation row while its
        // weights are in cache.
        // Activation rows in chunks that stay in L1 while every group of the part
        // passes over them (whole tiles).
        let chunk = (24 * 1024 / self.cols).max(TILE) / TILE * TILE;
        team.run(&|p| {
            let groups = share(self.groups(), parts, p);
            for (ci, rows_c) in acts.chunks(chunk).enumerate() {
                for g in groups.clone() {
                    let halves = self.kind == Kind::Q8x16;
                    let w = Group {
                        qs: &self.qs[g * nb * gbb..(g + 1) * nb * gbb],
                        d: &self.d[g * nb * RG..(g + 1) * nb * RG],
                        m: &self.m[g * nb * RG..(g + 1) * nb * RG],
                        d2: if halves { &self.d2[g * nb * RG..(g + 1) * nb * RG] } else { &[] },
                        m2: if halves { &self.m2[g * nb * RG..(g + 1) * nb * RG] } else { &[] },
                        q8: self.kind != Kind::Q4_1,
                        halves,
                        narrow: self.narrow,
                    };
                    let lanes = RG.min(rows - g * RG);
                    for (ti, tile) in rows_c.chunks(TILE).enumerate() {
                        let mut acc = [[0f32; RG]; TILE];
                        w.tile(kernel, tile, &mut acc);
                        for (i, lane) in acc.iter().take(tile.len()).enumerate() {
                            let t = ci * chunk + ti * TILE + i;
                            // SAFETY: `share` gives each part its own groups, so its own
                            // rows of every output row.
                            let o = unsafe { d.range(t * rows + g * RG..t * rows + g * RG + lanes) };
                            o.copy_from_slice(&lane[..lanes]);
                        }
                    }
                }
            }
        });
    }
}

impl QMatrix {
    /// [`QMatrix::matmul_with`] for a float kind: the unquantised activations, with the
    /// same split over the team (whole groups per part, activation rows in tiles).
    fn matmul_float(&self, kernel: Kernel, a: &QActs, out: &mut [f32], team: &Team) {
        let (parts, rows, cols) = (team.threads(), self.rows, self.cols);
        let gb = cols * RG * self.kind.float_bytes().unwrap_or(4);
        let xs: Vec<&[f32]> = a.x.chunks_exact(cols).collect();
        let d = Disjoint::new(out);
        let chunk = (24 * 1024 / cols).max(TILE) / TILE * TILE;
        team.run(&|p| {
            let groups = share(self.groups(), parts, p);
            for (ci, rows_c) in xs.chunks(chunk).enumerate() {
                for g in groups.clone() {
                    let w = &self.qs[g * gb..(g + 1) * gb];
                    let lanes = RG.min(rows - g * RG);
                    for (ti, tile) in rows_c.chunks(TILE).enumerate() {
                        let mut acc = [[0f32; RG]; TILE];
                        float_tile(kernel, self.kind, w, tile, &mut acc);
                        for (i, lane) in acc.iter().take(tile.len()).enumerate() {
                            let t = ci * chunk + ti * TILE + i;
                            // SAFETY: `share` gives each part its own groups, so its own
                            // rows of every output row.
                            let o = unsafe { d.range(t * rows + g * RG..t * rows + g * RG + lanes) };
                            o.copy_from_slice(&lane[..lanes]);
                        }
                    }
                }
            }
        });
    }
}

/// One float group's products with up to [`TILE`] activation rows: per row, two chains of
/// fused multiply-adds over the columns (even and odd ones), added at the end.
fn float_tile(kernel: Kernel, kind: Kind, w: &[u8], xs: &[&[f32]], acc: &mut [[f32; RG]; TILE]) {
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Portable && kernel.runs_on(Cpu::detected()) && Cpu::detected().has(Feature::F16c) {
        macro_rules! go {
            ($k:literal) => {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); the kernel
                // checks the slices' lengths.
                unsafe {
                    match xs.len() {
                        4 => avx2::float_tile::<4, $k>(w, xs, acc),
                        3 => avx2::float_tile::<3, $k>(w, xs, acc),
                        2 => avx2::float_tile::<2, $k>(w, xs, acc),
                        _ => avx2::float_tile::<1, $k>(w, xs, acc),
                    }
                }
            };
        }
        return match kind {
            Kind::F16 => go!(1),
            Kind::Bf16 => go!(2),
            _ => go!(0),
        };
    }
    let _ = kernel;
    portable::float_tile(kind, w, xs, acc)
}

/// One group's codes, scales and offsets.
struct Group<'a> {
    qs: &'a [u8],
    d: &'a [f32],
    m: &'a [f32],
    /// Second-half scales and offsets (with `halves`).
    d2: &'a [f32],
    m2: &'a [f32],
    /// Byte codes (else nibbles).
    q8: bool,
    /// A scale and offset per 16 elements ([`Kind::Q8x16`]).
    halves: bool,
    /// Byte codes below 64 ([`QMatrix`]'s `narrow`).
    narrow: bool,
}

impl Group<'_> {
    /// Dot products of the group's 8 rows with up to [`TILE`] activation rows.
    fn tile(&self, kernel: Kernel, acts: &[QRow<'_>], acc: &mut [[f32; RG]; TILE]) {
        #[cfg(target_arch = "x86_64")]
        if kernel.runs_on(Cpu::detected()) {
            // The kernel for the number of activation rows (at most `TILE`).
            macro_rules! by_rows {
                ($m:ident :: $f:ident, $q8:literal, $h:literal, $n:literal) => {
                    match acts.len() {
                        4 => $m::$f::<4, $q8, $h, $n>(self, acts, acc),
                        3 => $m::$f::<3, $q8, $h, $n>(self, acts, acc),
                        2 => $m::$f::<2, $q8, $h, $n>(self, acts, acc),
                        _ => $m::$f::<1, $q8, $h, $n>(self, acts, acc),
                    }
                };
            }
            macro_rules! go {
                ($m:ident :: $f:ident) => {
                    // SAFETY: the CPU has the kernel's features (checked just above); the
                    // kernels check the slices' lengths.
                    unsafe {
                        match (self.q8, self.halves, self.narrow) {
                            (false, _, _) => by_rows!($m::$f, false, false, false),
                            (true, false, false) => by_rows!($m::$f, true, false, false),
                            (true, false, true) => by_rows!($m::$f, true, false, true),
                            (true, true, false) => by_rows!($m::$f, true, true, false),
                            (true, true, true) => by_rows!($m::$f, true, true, true),
                        }
                    }
                };
            }
            match kernel {
                Kernel::Vnni => return go!(avx512::tile_vnni),
                Kernel::Avx2 => return go!(avx2::tile_avx2),
                Kernel::Portable => {}
            }
        }
        let _ = kernel;
        portable::tile(self, acts, acc)
    }
}

/// Quantised activations: `n` rows of `cols` (a multiple of 32).
pub struct QActs {
    /// Rows.
    pub n: usize,
    /// Width.
    pub cols: usize,
    /// The codes, four to a word (so a kernel reads four as one aligned `i32`).
    qs: Vec<i32>,
    d: Vec<f32>,
    s: Vec<f32>,
    sum: Vec<i32>,
    /// Per block: the code sum of elements `0..16`, and the scale times the code sums of
    /// each half (for [`Kind::Q8x16`]).
    sum_lo: Vec<i32>,
    s_lo: Vec<f32>,
    s_hi: Vec<f32>,
    /// The activations themselves (for float weights).
    x: Vec<f32>,
}

/// One row of [`QActs`].
pub struct QRow<'a> {
    qs: &'a [i8],
    /// The same codes as words.
    q32: &'a [i32],
    /// Block scales.
    d: &'a [f32],
    /// Block scale times the block's code sum.
    s: &'a [f32],
    /// The block's code sum.
    sum: &'a [i32],
    /// The code sum of the block's first half.
    sum_lo: &'a [i32],
    /// Block scale times each half's code sum.
    s_lo: &'a [f32],
    s_hi: &'a [f32],
}

impl QActs {
    /// Quantise `x` (`n x cols`, row-major) per 32-element block.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        assert!(cols.is_multiple_of(QK) && x.len().is_multiple_of(cols), "activation shape");
        let nb = x.len() / QK;
        let (mut words, mut d, mut s, mut sums) = (vec![0i32; x.len() / 4], Vec::with_capacity(nb), Vec::with_capacity(nb), Vec::with_capacity(nb));
        let (mut sum_lo, mut s_lo, mut s_hi) = (Vec::with_capacity(nb), Vec::with_capacity(nb), Vec::with_capacity(nb));
        // SAFETY: the words' bytes, `i8` needing no more alignment than `i32`.
        let qs = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut i8, x.len()) };
        for (blk, q) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
            // Eight lanes, so the maximum vectorises.
            let mut lanes = [0f32; 8];
            for c in blk.chunks_exact(8) {
                for (l, v) in lanes.iter_mut().zip(c) {
                    *l = l.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0f32, |a, &v| a.max(v));
            let sc = amax / 127.0;
            let inv = if sc > 0.0 { 1.0 / sc } else { 0.0 };
            // Codes first, then the two halves' sums: separate loops over whole blocks, so
            // each vectorises. The codes are `(v * inv).round() as i8` (saturating, NaN to
            // 0), written so that the conversion vectorises too.
            let (blk, q): (&[f32; QK], &mut [i8; QK]) = (blk.try_into().expect("a block"), q.try_into().expect("a block"));
            for (o, v) in q.iter_mut().zip(blk) {
                let r = (v * inv).round();
                let r = if r.is_nan() { 0.0 } else { r.clamp(-128.0, 127.0) };
                // SAFETY: `r` is finite and within `i32`.
                *o = unsafe { r.to_int_unchecked::<i32>() } as i8;
            }
            // Sixteen codes of at most 128 in magnitude cannot overflow.
            let half = |h: &[i8]| h.iter().fold(0i32, |a, &c| a.wrapping_add(c as i32));
            let (lo, hi) = (half(&q[..QK / 2]), half(&q[QK / 2..]));
            let sum = lo + hi;
            d.push(sc);
            s.push(sc * sum as f32);
            sums.push(sum);
            sum_lo.push(lo);
            s_lo.push(sc * lo as f32);
            s_hi.push(sc * (sum - lo) as f32);
        }
        Self { n: x.len() / cols, cols, qs: words, d, s, sum: sums, sum_lo, s_lo, s_hi, x: x.to_vec() }
    }

    /// Row `t`.
    pub fn row(&self, t: usize) -> QRow<'_> {
        let nb = self.cols / QK;
        let b = t * nb..(t + 1) * nb;
        let q32 = &self.qs[t * self.cols / 4..(t + 1) * self.cols / 4];
        // SAFETY: the words' bytes, as in `quantize`.
        let qs = unsafe { std::slice::from_raw_parts(q32.as_ptr() as *const i8, self.cols) };
        QRow {
            qs,
            q32,
            d: &self.d[b.clone()],
            s: &self.s[b.clone()],
            sum: &self.sum[b.clone()],
            sum_lo: &self.sum_lo[b.clone()],
            s_lo: &self.s_lo[b.clone()],
            s_hi: &self.s_hi[b],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    /// Every kernel this CPU has gives `want` (the detected kernel's products), bit for bit.
    fn every_kernel_agrees(m: &QMatrix, a: &QActs, want: &[f32], team: &crate::team::Team, what: &str) {
        for k in [Kernel::Portable, Kernel::Avx2, Kernel::Vnni] {
            if !k.runs_on(Cpu::detected()) {
                eprintln!("no {k:?} kernel here: not compared");
                continue;
            }
            let mut o = vec![f32::NAN; want.len()];
            m.matmul_with(k, a, &mut o, team);
            assert_eq!(o, want, "{what}: {k:?} and {:?} differ", Kernel::detect());
        }
    }

    /// The 16-bit sums of the AVX2 kernel at their bounds: every nibble 15 and every byte
    /// code 63 (the largest narrow one), against activation codes of +-127 of one sign per
    /// block, where a wrapped sum would show.
    #[test]
    fn the_largest_codes_do_not_wrap_the_sixteen_bit_sums() {
        let (rows, cols) = (16, 256);
        let team = crate::team::Team::new(1);
        let x: Vec<f32> = (0..2 * cols).map(|i| if (i / QK).is_multiple_of(2) { 1.0 } else { -1.0 }).collect();
        let a = QActs::quantize(&x, cols);
        let (one, zero) = ([0x00u8, 0x3c], [0u8; 2]); // 1.0 and 0.0 as halves
                                                      // Q4_1: d = 1, m = 0, every nibble 15.
        let q4: Vec<u8> = (0..rows * cols / QK).flat_map(|_| one.into_iter().chain(zero).chain([0xff; 16])).collect();
        // Q6_K: every code 63 (`ql` and `qh` all ones), scales 1, d = 1.
        let q6: Vec<u8> = (0..rows * cols / 256).flat_map(|_| [0xffu8; 192].into_iter().chain([1u8; 16]).chain(one)).collect();
        for (dtype, bytes, code, offset) in [("Q4_1", q4, 15.0, 0.0), ("Q6_K", q6, 63.0, -32.0)] {
            let m = QMatrix::from_gguf(dtype, &bytes, rows, cols).unwrap();
            assert_eq!(m.narrow, dtype == "Q6_K");
            let mut want = vec![0f32; 2 * rows];
            m.matmul_with(Kernel::Portable, &a, &mut want, &team);
            // Every weight `code + offset`, activations +-1 by block: the blocks cancel.
            for v in &want {
                assert!(v.abs() < 1e-3, "{dtype}: {v}");
            }
            every_kernel_agrees(&m, &a, &want, &team, dtype);
            // One sign throughout: the full sum.
            let ones = QActs::quantize(&vec![1.0; cols], cols);
            let mut all = vec![0f32; rows];
            m.matmul_with(Kernel::Portable, &ones, &mut all, &team);
            assert!((all[0] - (code + offset) * cols as f32).abs() < 1e-2 * cols as f32, "{dtype}: {}", all[0]);
            every_kernel_agrees(&m, &ones, &all, &team, dtype);
        }
    }

    #[test]
    fn half_floats_convert_exactly() {
        for (h, f) in [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x0000, 0.0), (0x3555, 0.333_251_95), (0x0001, 5.960_464_5e-8), (0x7bff, 65504.0)] {
            assert_eq!(f16_to_f32(h), f, "{h:#x}");
        }
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }

    /// Our blocks decode to candle's dequantised values, and our dot products match an
    /// exact evaluation of the same quantised operands.
    #[test]
    fn kernels_match_candle_dequantisation_and_exact_sums() {
        let (rows, cols) = (70, 256);
        let w = rand(rows * cols, 3);
        // Six activation rows: a tile of four and one of two; 70 rows end in a partial group.
        let x = rand(6 * cols, 9);
        let wt = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
        let name = |dt: GgmlDType| match dt {
            GgmlDType::Q2K => "Q2_K".to_string(),
            GgmlDType::Q3K => "Q3_K".to_string(),
            GgmlDType::Q4K => "Q4_K".to_string(),
            GgmlDType::Q5K => "Q5_K".to_string(),
            GgmlDType::Q6K => "Q6_K".to_string(),
            _ => format!("{dt:?}"),
        };
        let read = |dt: GgmlDType, q: &QTensor, rows: usize| QMatrix::from_gguf(&name(dt), &q.data().unwrap(), rows, cols).unwrap();
        for dt in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&wt, dt).unwrap();
            let m = read(dt, &q, rows);
            let narrow = matches!(dt, GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q5K | GgmlDType::Q6K);
            assert_eq!(m.narrow, narrow, "{dt:?}: codes below 64 take the narrow kernel");
            let deq = rows_match_candle(&m, &q, &format!("{dt:?}"));
            let a = QActs::quantize(&x, cols);
            let mut out = vec![0f32; 6 * rows];
            let team = crate::team::Team::new(2);
            m.matmul(&a, &mut out, &team);
            let mut one = vec![0f32; rows];
            m.matmul(&QActs::quantize(&x[cols..2 * cols], cols), &mut one, &team);
            for t in 0..6 {
                // The activation codes, decoded.
                let ar = a.row(t);
                let xa: Vec<f32> = (0..cols).map(|i| ar.d[i / QK] * ar.qs[i] as f32).collect();
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|i| deq[r * cols + i] as f64 * xa[i] as f64).sum();
                    let got = out[t * rows + r] as f64;
                    assert!((got - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{dt:?} t{t} r{r}: {got} vs {exact}");
                    // And off the product with unquantised activations by their rounding only.
                    let full: f64 = (0..cols).map(|i| deq[r * cols + i] as f64 * x[t * cols + i] as f64).sum();
                    assert!((got - full).abs() < 0.1, "{dt:?}: {got} vs {full}");
                }
            }
            assert_eq!(one, out[rows..2 * rows], "one row alone equals the batched row");
            every_kernel_agrees(&m, &a, &out, &team, &format!("{dt:?}"));
            // Stacking, across a partial group or whole ones, is the rows one after the other.
            for split in [30, 64] {
                let q = |r: std::ops::Range<usize>| {
                    let t = Tensor::from_vec(w[r.start * cols..r.end * cols].to_vec(), (r.len(), cols), &Device::Cpu).unwrap();
                    read(dt, &QTensor::quantize(&t, dt).unwrap(), r.len())
                };
                let s = QMatrix::stack(vec![q(0..split), q(split..rows)]).unwrap();
                let mut o = vec![0f32; 6 * rows];
                s.matmul(&a, &mut o, &team);
                assert_eq!(o, out, "{dt:?}: stacked at {split}");
            }
            // Widened to byte codes, the values and products stay the same.
            for wide in [m.widen(), m.widen_to(Kind::Q8x16).unwrap()] {
                assert_ne!(wide.kind, Kind::Q4_1);
                for r in [0, 33, rows - 1] {
                    let (mut a1, mut a2) = (vec![0f32; cols], vec![0f32; cols]);
                    m.row_f32(r, &mut a1);
                    wide.row_f32(r, &mut a2);
                    assert_eq!(a1, a2, "{dt:?} widened to {:?}: row {r}", wide.kind);
                }
                let mut o = vec![0f32; 6 * rows];
                wide.matmul(&a, &mut o, &team);
                for (x, y) in o.iter().zip(&out) {
                    assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{dt:?} widened to {:?}: {x} vs {y}", wide.kind);
                }
            }
        }
        let f = QMatrix::q8_0_from_f32(&w, rows, cols).unwrap();
        let mut row = vec![0f32; cols];
        f.row_f32(5, &mut row);
        assert!(row.iter().zip(&w[5 * cols..6 * cols]).all(|(a, b)| (a - b).abs() <= 1.0 / 127.0 / 2.0 + 1e-6));
        assert!(QMatrix::from_q4_1(&[0u8; 19], 1, 32).is_none());
        assert!(QMatrix::from_gguf("Q4_K", &[0u8; 144], 1, 128).is_none(), "K-quants need whole 256-element super-blocks");
        assert!(QMatrix::from_gguf("IQ4_NL", &[0u8; 18], 1, 32).is_none(), "a type not held exactly");
        assert!(QMatrix::from_gguf("Q3_K", &[0u8; 109], 1, 256).is_none(), "a short Q3_K super-block");
        assert!(f.widen_to(Kind::Q4_1).is_none(), "widening never narrows");
    }

    /// Candle's dequantisation of `q`, after checking that every row of `m` reads back as
    /// exactly that.
    fn rows_match_candle(m: &QMatrix, q: &QTensor, what: &str) -> Vec<f32> {
        let deq: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let cols = m.cols;
        let mut row = vec![0f32; cols];
        for r in 0..m.rows {
            m.row_f32(r, &mut row);
            assert_eq!(row, deq[r * cols..(r + 1) * cols], "{what} row {r}");
        }
        deq
    }

    /// `F32`, `F16` and `BF16` weights keep their values, their products are the
    /// unquantised activations' (to `f32` rounding), and every kernel, batch size and
    /// stacking gives the same results bit for bit.
    #[test]
    fn float_weights_are_kept_as_stored() {
        let (rows, cols) = (70, 256);
        let w = rand(rows * cols, 5);
        let x = rand(6 * cols, 11);
        let wt = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
        let team = crate::team::Team::new(2);
        for (dt, name, kind) in [(GgmlDType::F32, "F32", Kind::F32), (GgmlDType::F16, "F16", Kind::F16), (GgmlDType::BF16, "BF16", Kind::Bf16)] {
            let q = QTensor::quantize(&wt, dt).unwrap();
            let bytes = q.data().unwrap();
            let m = QMatrix::from_gguf(name, &bytes, rows, cols).unwrap();
            assert_eq!(m.kind, kind);
            assert_eq!(m.bytes(), rows.div_ceil(RG) * RG * cols * kind.float_bytes().unwrap(), "{name}: stored at its own width");
            let deq = rows_match_candle(&m, &q, name);
            let a = QActs::quantize(&x, cols);
            let mut out = vec![0f32; 6 * rows];
            m.matmul(&a, &mut out, &team);
            for t in 0..6 {
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|i| deq[r * cols + i] as f64 * x[t * cols + i] as f64).sum();
                    let got = out[t * rows + r] as f64;
                    assert!((got - exact).abs() < 1e-5 * (1.0 + exact.abs()), "{name} t{t} r{r}: {got} vs {exact}");
                }
            }
            let mut one = vec![0f32; rows];
            m.matmul(&QActs::quantize(&x[cols..2 * cols], cols), &mut one, &team);
            assert_eq!(one, out[rows..2 * rows], "{name}: one row alone equals the batched row");
            every_kernel_agrees(&m, &a, &out, &team, name);
            for split in [30, 64] {
                let part = |r: std::ops::Range<usize>| {
                    QMatrix::from_gguf(name, &bytes[r.start * cols * bytes.len() / (rows * cols)..r.end * cols * bytes.len() / (rows * cols)], r.len(), cols)
                        .unwrap()
                };
                let s = QMatrix::stack(vec![part(0..split), part(split..rows)]).unwrap();
                let mut o = vec![0f32; 6 * rows];
                s.matmul(&a, &mut o, &team);
                assert_eq!(o, out, "{name}: stacked at {split}");
            }
            // As `f32` the values, so the products, are the same.
            let wide = m.widen();
            assert_eq!(wide.kind, Kind::F32);
            let mut o = vec![0f32; 6 * rows];
            wide.matmul(&a, &mut o, &team);
            assert_eq!(o, out, "{name} widened to F32");
            assert!(m.widen_to(Kind::Q8_0).is_none(), "floats are not widened to codes");
        }
        // A quantised matrix as `f32` stacks with a float one; its values are kept.
        let q8 = QMatrix::q8_0_from_f32(&w[..64 * cols], 64, cols).unwrap();
        let f = QMatrix::from_gguf("F32", &w[64 * cols..].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), rows - 64, cols).unwrap();
        let s = QMatrix::stack(vec![q8.to_f32(), f]).unwrap();
        let (mut a1, mut a2) = (vec![0f32; cols], vec![0f32; cols]);
        q8.row_f32(7, &mut a1);
        s.row_f32(7, &mut a2);
        assert_eq!(a1, a2);
        s.row_f32(65, &mut a2);
        assert_eq!(a2, w[65 * cols..66 * cols]);
        assert!(QMatrix::from_gguf("F16", &[0u8; 62], 1, 32).is_none(), "a size that does not match");
    }

    /// Activation codes are `(v / scale).round() as i8` (ties away from zero, saturating),
    /// with the block sums of those codes, halves included, for ties, block maxima and
    /// values that are not finite.
    #[test]
    fn activation_codes_round_ties_away_and_match_their_sums() {
        let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.25).collect();
        // A block whose scale makes exact halves: amax 127 gives a scale of 1.
        x.extend((0..32).map(|i| if i == 0 { 127.0 } else { i as f32 * 0.5 - 8.0 }));
        x.extend([f32::NAN, 1.0, -2.5].iter().cycle().take(32));
        x.extend([f32::INFINITY, 3.0].iter().cycle().take(32));
        let a = QActs::quantize(&x, 32);
        for (b, blk) in x.chunks_exact(QK).enumerate() {
            let r = a.row(b);
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let sc = amax / 127.0;
            let inv = if sc > 0.0 { 1.0 / sc } else { 0.0 };
            let want: Vec<i8> = blk.iter().map(|v| (v * inv).round() as i8).collect();
            assert_eq!(r.qs, &want[..], "block {b}");
            let lo: i32 = want[..16].iter().map(|&c| c as i32).sum();
            assert_eq!((r.sum_lo[0], r.sum[0]), (lo, want.iter().map(|&c| c as i32).sum::<i32>()), "block {b}");
        }
        assert_eq!(a.row(2).qs[1..4], [-8, -7, -7], "ties away from zero: -7.5 is -8, -6.5 is -7");
    }
}
