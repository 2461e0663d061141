//! Int8 matrix products for the encoder's linear layers (`:int8` embedding models) and
//! its attention scores (`Q Kᵀ`, with the keys packed per call by [`QPackedB::pack_keys`]).
//!
//! `C (m, n) ≈ A (m, k) · B (k, n)` with
//! - `B`, a model weight, quantised once at load **per output column** (symmetric,
//!   `w ≈ s_j · q`, `q` in -127..=127, or -63..=63 for the AVX2 kernel) and packed
//!   into panels of 32 columns: for every group of 4 rows of `k`, 32 columns of 4
//!   bytes (128 bytes, two 64-byte vectors);
//! - `A`, the activations, quantised **per row** at each call (asymmetric u8 with a
//!   zero point, so the one-sided GELU outputs use all 256 levels; 128 for the AVX2
//!   kernel, below):
//!   `a ≈ s_r · (u - z_r)`.
//!
//! Then `C[r][j] = s_r · s_j · (Σ u·q - z_r · Σ_k q[k][j])`: the integer dot products
//! are exact, so every kernel gives bit-identical results on the same packed weights.
//! The kernels, chosen at run time ([`int8_kernel`]):
//! - AVX-512 VNNI (`vpdpbusd`: 64 u8 x i8 products summed into 16 i32 lanes per
//!   instruction, four times the multiply-adds of an fp32 FMA): an 8 x 32 micro-kernel
//!   over panels of 4-byte groups;
//! - AVX2 (`vpmaddubsw` + `vpmaddwd`: 32 u8 x i8 products summed in pairs into i16,
//!   then in pairs again into 8 i32 lanes): the same 8 x 32 tile and panels, computed
//!   as four 4 x 16 passes. `vpmaddubsw` saturates at i16, so weights packed for this
//!   kernel use **7 bits** (-63..=63: `2 · 255 · 63 < 2^15`, so no pair ever saturates
//!   and the integer sums stay exact). Activations multiplied with such weights are
//!   quantised to **7 bits** too (0..=127, [`QRows::quantize_for`];
//!   [`KernelOptions::int8_act8`](crate::KernelOptions::int8_act8) keeps 8): then a pair is at most `2 · 127 · 63 = 16002`, so two groups'
//!   `vpmaddubsw` results add in i16 (`vpaddw`) before one `vpmaddwd` widens them, three
//!   multiply-pipe instructions per 64 products instead of four, still exact (in eight
//!   2 x 16 passes, so the two groups' weight vectors fit the registers);
//! - AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd` of Intel's Alder Lake and later
//!   client CPUs, which have no AVX-512): the AVX2 kernel's four 4 x 16 passes with
//!   one instruction doing what `vpmaddubsw` + `vpmaddwd` + `vpaddd` do, without
//!   saturation, so it takes the full 8-bit weights;
//! - a portable loop computing the same integers.
//!
//! One file per instruction set: `avx512_vnni.rs`, `avx_vnni.rs`, `avx2.rs` (its kernels,
//! the pass structure AVX-VNNI shares, and the quantisers' vector steps), `portable.rs`.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512_vnni;
#[cfg(target_arch = "x86_64")]
mod avx_vnni;
mod portable;

use crate::{Cpu, Feature};
use std::sync::atomic::{AtomicU8, Ordering};

const NR: usize = 32;
const MR: usize = 8;
/// Most rows of A per block.
const MC: usize = 128;
/// Bytes of A per block (a share of L2).
const A_BLOCK_BYTES: usize = 256 * 1024;

/// 64 bytes on a 64-byte boundary (one AVX-512 register).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct V64([i8; 64]);

impl Default for V64 {
    fn default() -> Self {
        V64([0; 64])
    }
}

/// Which micro-kernel runs the integer products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 VNNI, 8 x 32.
    Vnni,
    /// AVX-VNNI (VEX `vpdpbusd` on 256-bit registers), 8 x 32 in four 4 x 16 passes.
    AvxVnni,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`, 8 x 32 in 4 x 16 passes (7-bit weights), or in 2 x 16
    /// passes two groups at a time for 7-bit activations.
    Avx2,
    /// Plain loops (any CPU), the same integers.
    Portable,
}

impl Int8Kernel {
    /// `"avx512-vnni"`, `"avx-vnni"`, `"avx2"` or `"portable"`.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Vnni => "avx512-vnni",
            Int8Kernel::AvxVnni => "avx-vnni",
            Int8Kernel::Avx2 => "avx2",
            Int8Kernel::Portable => "portable",
        }
    }

    /// The kernel a name stands for: [`Int8Kernel::name`]'s, or `vnni` and `avxvnni`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512-vnni" | "vnni" => Some(Int8Kernel::Vnni),
            "avx-vnni" | "avxvnni" => Some(Int8Kernel::AvxVnni),
            "avx2" => Some(Int8Kernel::Avx2),
            "portable" => Some(Int8Kernel::Portable),
            _ => None,
        }
    }
}

/// A `(k, n)` weight quantised per column and packed for [`qgemm`].
#[derive(Clone)]
pub struct QPackedB {
    k: usize,
    n: usize,
    /// `k` rounded up to a multiple of 4.
    kp: usize,
    /// `ceil(n / 32)` panels of `ceil(k / 4)` groups of two [`V64`]s: for each group of
    /// 4 rows, 32 columns of 4 bytes.
    data: Vec<V64>,
    /// The kernel the weights were quantised for (its weight range).
    kernel: Int8Kernel,
    /// Per-column scale `s_j`.
    scale: Vec<f32>,
    /// Per-column sum of the quantised values (for the zero-point correction).
    colsum: Vec<i32>,
}

impl QPackedB {
    /// Quantise and pack a row-major `(k, n)` matrix for this CPU's kernel.
    pub fn quantize(b: &[f32], k: usize, n: usize) -> Self {
        Self::quantize_for(b, k, n, int8_kernel())
    }

    /// Quantise and pack for a given kernel: -127..=127 for both VNNIs and portable, -63..=63
    /// for AVX2 (which needs AVX2 at [`qgemm`] time; any kernel computes the same
    /// integers from the same packed weights).
    pub fn quantize_for(b: &[f32], k: usize, n: usize, kernel: Int8Kernel) -> Self {
        assert!(b.len() >= k * n);
        let kp = k.div_ceil(4) * 4;
        let levels = weight_levels(kernel);
        let mut scale = vec![1.0f32; n];
        for (j, s) in scale.iter_mut().enumerate() {
            let amax = (0..k).map(|kk| b[kk * n + j].abs()).fold(0.0f32, f32::max);
            if amax > 0.0 && amax.is_finite() {
                *s = amax / levels;
            }
        }
        let q = |kk: usize, j: usize| -> i8 { (b[kk * n + j] / scale[j]).round().clamp(-levels, levels) as i8 };
        let mut colsum = vec![0i32; n];
        for kk in 0..k {
            for (j, cs) in colsum.iter_mut().enumerate() {
                *cs += q(kk, j) as i32;
            }
        }
        // Panels of 32 columns; for each group of 4 rows, column `j`'s 4 values sit
        // together in vector `j / 16` of the group.
        let (panels, groups) = (n.div_ceil(NR), kp / 4);
        let mut data = vec![V64::default(); panels * groups * 2];
        for p in 0..panels {
            let c0 = p * NR;
            for g in 0..groups {
                for j in 0..NR.min(n - c0) {
                    for t in 0..4 {
                        let kk = g * 4 + t;
                        if kk < k {
                            data[(p * groups + g) * 2 + j / 16].0[(j % 16) * 4 + t] = q(kk, c0 + j);
                        }
                    }
                }
            }
        }
        Self { k, n, kp, data, kernel, scale, colsum }
    }

    /// Rows (`k`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (`n`).
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Attention's per-call operand (the encoder's): the keys as `Kᵀ`, quantised per key
/// and packed for [`qgemm`] on each head of each sequence. This runs per call, so unlike
/// [`QPackedB::quantize_for`] (weights, once at load) it is vectorised and reuses `self`'s
/// buffers: a packing costs `O(len · d)` against the product's `O(len² · d)`. Rounding is
/// to nearest, ties to even (the load-time packer rounds ties away from zero; the two
/// differ only on exact ties).
impl QPackedB {
    /// An empty packing for `kernel`'s weight range, to fill with [`QPackedB::pack_keys`].
    pub fn empty(kernel: Int8Kernel) -> Self {
        QPackedB { k: 0, n: 0, kp: 0, data: Vec::new(), kernel, scale: Vec::new(), colsum: Vec::new() }
    }

    /// Clears `self` for a `(k, n)` packing: zeroed panels, unit scales, zero sums.
    fn reset(&mut self, k: usize, n: usize) {
        let kp = k.div_ceil(4) * 4;
        (self.k, self.n, self.kp) = (k, n, kp);
        self.data.clear();
        self.data.resize(n.div_ceil(NR) * (kp / 4) * 2, V64::default());
        self.scale.clear();
        self.scale.resize(n, 1.0);
        self.colsum.clear();
        self.colsum.resize(n, 0);
    }

    /// The packing as 32-bit words: group `g` of panel `p` is the 32 words from
    /// `(p · groups + g) · 32`, one per column (its 4 bytes, one per row of the group).
    fn words_mut(&mut self) -> &mut [u32] {
        // SAFETY: `V64` is 64 plain bytes, 64-byte aligned (so 4-byte aligned too), with no
        // invalid bit patterns as `u32`s; the slice covers exactly `data`'s bytes.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr() as *mut u32, self.data.len() * 16) }
    }

    /// `B = Kᵀ` from `keys`, `n` rows of `d` (one row per key): key `j` becomes column `j`
    /// with its own scale, so `qgemm(Q, B)` gives the attention scores `Q Kᵀ`.
    pub fn pack_keys(&mut self, keys: &[f32], n: usize, d: usize) {
        assert!(keys.len() >= n * d);
        self.reset(d, n);
        let levels = weight_levels(self.kernel);
        let groups = self.kp / 4;
        let mut q = vec![0i8; self.kp];
        for j in 0..n {
            let row = &keys[j * d..(j + 1) * d];
            let (lo, hi) = min_max(row);
            let amax = hi.max(-lo);
            let s = if amax > 0.0 && amax.is_finite() { amax / levels } else { 1.0 };
            self.scale[j] = s;
            self.colsum[j] = quantize_symmetric(row, 1.0 / s, levels, &mut q[..d]);
            let base = (j / NR) * groups * NR + j % NR;
            let words = self.words_mut();
            for (g, w) in q.chunks_exact(4).enumerate() {
                words[base + g * NR] = u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]);
            }
        }
    }
}

/// `out[i] = round(row[i] · inv)` clamped to `±levels` (ties to even); returns `Σ out`.
fn quantize_symmetric(row: &[f32], inv: f32, levels: f32, out: &mut [i8]) -> i32 {
    quantize_symmetric_with(Cpu::active(), row, inv, levels, out)
}

fn quantize_symmetric_with(cpu: Cpu, row: &[f32], inv: f32, levels: f32, out: &mut [i8]) -> i32 {
    let n = row.len().min(out.len());
    #[allow(unused_mut)]
    let (mut done, mut sum) = (0, 0i32);
    #[cfg(target_arch = "x86_64")]
    if cpu.has(Feature::Avx2) {
        // SAFETY: the CPU has AVX2; the steps stay within `n`.
        (done, sum) = unsafe { avx2::quantize_symmetric(&row[..n], inv, levels, &mut out[..n]) };
    }
    let _ = cpu;
    for i in done..n {
        let q = (row[i] * inv).clamp(-levels, levels).round_ties_even() as i8;
        out[i] = q;
        sum += q as i32;
    }
    sum
}

/// Largest weight magnitude a kernel's packing uses.
fn weight_levels(kernel: Int8Kernel) -> f32 {
    match kernel {
        Int8Kernel::Avx2 => 63.0,
        Int8Kernel::Vnni | Int8Kernel::AvxVnni | Int8Kernel::Portable => 127.0,
    }
}

/// Largest activation value rows quantised for a kernel's weights use: 127 (7 bits) for
/// AVX2, whose kernel can then add two `vpmaddubsw` results in i16 (`avx2::kernel_avx2_7bit`),
/// unless [`KernelOptions::int8_act8`](crate::KernelOptions::int8_act8) asks for 8 bits there (slower, closer to fp32); 255 for the others.
fn activation_top(kernel: Int8Kernel) -> u8 {
    int8_kernel();
    let act8 = CHOICE.load(Ordering::Relaxed) & ACT8 != 0;
    match kernel {
        Int8Kernel::Avx2 if !act8 => 127,
        Int8Kernel::Avx2 | Int8Kernel::Vnni | Int8Kernel::AvxVnni | Int8Kernel::Portable => 255,
    }
}

/// Rows of activations quantised to u8 (see the module docs), each padded to a
/// multiple of 4 bytes and stored as 32-bit words so every group of 4 is aligned.
pub struct QRows {
    words: Vec<u32>,
    scale: Vec<f32>,
    zero: Vec<i32>,
    /// The largest quantised value: 255, or 127 for rows quantised for AVX2 weights.
    top: u8,
}

impl Default for QRows {
    fn default() -> Self {
        QRows { words: Vec::new(), scale: Vec::new(), zero: Vec::new(), top: 255 }
    }
}

impl QRows {
    /// Quantise `m` rows of `a (m, k)` into `self` with all 256 levels (buffers are reused).
    #[cfg(test)]
    fn quantize(&mut self, a: &[f32], m: usize, k: usize) {
        self.quantize_to(a, m, k, 255)
    }

    /// Quantise `m` rows of `a (m, k)` for a product with `b` (buffers are reused): 128
    /// levels where `b` is packed for the AVX2 kernel (its 7-bit fast path), else 256.
    pub fn quantize_for(&mut self, a: &[f32], m: usize, k: usize, b: &QPackedB) {
        self.quantize_to(a, m, k, activation_top(b.kernel))
    }

    /// Quantise `m` rows of `a (m, k)` to `0..=top` (at most 127 where the product runs
    /// on AVX2-packed weights with the 7-bit fast path).
    pub fn quantize_to(&mut self, a: &[f32], m: usize, k: usize, top: u8) {
        assert!(a.len() >= m * k);
        self.top = top;
        let topf = top as f32;
        let wpr = k.div_ceil(4);
        self.words.clear();
        self.words.resize(m * wpr, 0);
        self.scale.clear();
        self.zero.clear();
        for (r, row) in a[..m * k].chunks_exact(k.max(1)).enumerate().take(m) {
            // The range always holds 0, so 0 is exactly representable. Padding bytes
            // are 0 and meet zero weights, so they add nothing to either sum.
            let (lo, hi) = min_max(row);
            let s = if hi > lo && (hi - lo).is_finite() { (hi - lo) / topf } else { 1.0 };
            let z = (-lo / s).round().clamp(0.0, topf);
            let inv = 1.0 / s;
            let words = &mut self.words[r * wpr..(r + 1) * wpr];
            // SAFETY: a `u32` slice viewed as its bytes (u8 has no alignment or validity
            // requirements); little-endian, so byte 4g+t is value t of group g.
            let bytes: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 4) };
            quantize_row(row, inv, z + 0.5, topf, bytes);
            self.scale.push(s);
            self.zero.push(z as i32);
        }
    }
}

/// `(min(row ∪ {0}), max(row ∪ {0}))`.
fn min_max(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (0f32, 0f32);
    let mut chunks = row.chunks_exact(8);
    #[cfg(target_arch = "x86_64")]
    if Cpu::active().has(Feature::Avx2) {
        // SAFETY: the CPU has AVX2; each load reads one 8-float chunk.
        (lo, hi) = unsafe { avx2::min_max(&mut chunks, lo, hi) };
    }
    for &v in chunks.remainder().iter().chain(chunks.by_ref().flatten()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo, hi)
}

/// `out[i] = clamp(row[i] · inv + zr, 0, top)` truncated (`zr` carries the +0.5 of
/// rounding half up; `top` at most 255).
fn quantize_row(row: &[f32], inv: f32, zr: f32, top: f32, out: &mut [u8]) {
    quantize_row_with(Cpu::active(), row, inv, zr, top, out)
}

fn quantize_row_with(cpu: Cpu, row: &[f32], inv: f32, zr: f32, top: f32, out: &mut [u8]) {
    let n = row.len().min(out.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if cpu.avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; the steps stay within `n`.
        done = unsafe { avx2::quantize_row(&row[..n], inv, zr, top, &mut out[..n]) };
    }
    let _ = cpu;
    for i in done..n {
        // Fused where the build targets FMA, as the vector steps are, so every element
        // rounds the same way on either path.
        let y = if cfg!(target_feature = "fma") { row[i].mul_add(inv, zr) } else { row[i] * inv + zr };
        out[i] = y.clamp(0.0, top) as u8;
    }
}

/// The kernel that int8 weights are packed for at load: AVX-512 VNNI where the active
/// [`Cpu`] has it, else AVX-VNNI, else AVX2, else portable.
/// [`KernelOptions::int8_kernel`](crate::KernelOptions::int8_kernel) asks for one (a
/// kernel the CPU lacks falls back to the next in that order);
/// [`KernelOptions::no_vnni`](crate::KernelOptions::no_vnni) skips both VNNIs.
pub fn int8_kernel() -> Int8Kernel {
    match CHOICE.load(Ordering::Relaxed) {
        UNSET => {
            reselect(&crate::options());
            int8_kernel()
        }
        i => PREFERENCE[(i & 3) as usize],
    }
}

/// Bits of the current choice: the index in [`PREFERENCE`], plus [`ACT8`] when
/// activations keep 8 bits on the AVX2 kernel; [`UNSET`] before the first choice.
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;
const ACT8: u8 = 4;

/// Chooses [`int8_kernel`] anew for `opts` (from [`crate::configure`]).
pub(crate) fn reselect(opts: &crate::KernelOptions) {
    let cpu = Cpu::detected().restricted(opts);
    let k = pick_kernel(cpu, opts.int8_kernel);
    let i = PREFERENCE.iter().position(|&p| p == k).unwrap_or(3) as u8;
    CHOICE.store(i | if opts.int8_act8 { ACT8 } else { 0 }, Ordering::Relaxed);
}

/// The kernels in the order [`int8_kernel`] prefers them.
pub const PREFERENCE: [Int8Kernel; 4] = [Int8Kernel::Vnni, Int8Kernel::AvxVnni, Int8Kernel::Avx2, Int8Kernel::Portable];

/// Whether `kernel` can run with `cpu`'s features.
pub fn runs_on(kernel: Int8Kernel, cpu: Cpu) -> bool {
    match kernel {
        Int8Kernel::Vnni => cpu.avx512_vnni(),
        Int8Kernel::AvxVnni => cpu.avx_vnni(),
        Int8Kernel::Avx2 => cpu.has(Feature::Avx2),
        Int8Kernel::Portable => true,
    }
}

/// The first kernel from `want` on (in [`PREFERENCE`] order) that runs on `cpu`.
fn pick_kernel(cpu: Cpu, want: Option<Int8Kernel>) -> Int8Kernel {
    let from = want.and_then(|w| PREFERENCE.iter().position(|&p| p == w)).unwrap_or(0);
    PREFERENCE[from..].iter().copied().find(|&k| runs_on(k, cpu)).unwrap_or(Int8Kernel::Portable)
}

/// `c (m, n) = dequantised a · b`; `c` is overwritten.
pub fn qgemm(m: usize, a: &QRows, b: &QPackedB, c: &mut [f32]) {
    // Both VNNIs are exact for either weight range; AVX2 only for the 7-bit one (full
    // 8-bit weights could saturate `vpmaddubsw`), so those run on the portable loop there.
    let kernel = match (b.kernel, int8_kernel()) {
        (_, Int8Kernel::Vnni) => Int8Kernel::Vnni,
        (_, Int8Kernel::AvxVnni) => Int8Kernel::AvxVnni,
        (Int8Kernel::Avx2, _) if Cpu::active().has(Feature::Avx2) => Int8Kernel::Avx2,
        _ => Int8Kernel::Portable,
    };
    qgemm_with(m, a, b, c, kernel)
}

/// Writes `rows` dequantised rows of an integer tile (`tile[r * stride + j]`) into `c`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn epilogue(c: &mut [f32], n: usize, r0: usize, rows: usize, c0: usize, w: usize, a: &QRows, b: &QPackedB, tile: &[i32], stride: usize) {
    for r in 0..rows {
        let (s, z) = (a.scale[r0 + r], a.zero[r0 + r]);
        let dst = &mut c[(r0 + r) * n + c0..(r0 + r) * n + c0 + w];
        let t = &tile[r * stride..r * stride + w];
        let (bs, cs) = (&b.scale[c0..c0 + w], &b.colsum[c0..c0 + w]);
        // Wrapping ops: no overflow checks in debug builds, so the loop vectorises
        // (the true values fit: |Σ u·q| < k · 255 · 127).
        for j in 0..w {
            dst[j] = t[j].wrapping_sub(z.wrapping_mul(cs[j])) as f32 * (s * bs[j]);
        }
    }
}

/// [`qgemm`] on a given kernel (any kernel computes the same integers from the same
/// packed weights). A kernel this CPU lacks runs as the portable loop, and so does AVX2 on
/// weights not packed for it (their 8-bit values could saturate it).
pub fn qgemm_with(m: usize, a: &QRows, b: &QPackedB, c: &mut [f32], kernel_kind: Int8Kernel) {
    let kernel_kind = if kernel_kind == Int8Kernel::Avx2 && b.kernel != Int8Kernel::Avx2 { Int8Kernel::Portable } else { kernel_kind };
    let (n, kp, bd) = (b.n, b.kp, &b.data);
    let wpr = kp / 4;
    assert!(a.words.len() >= m * wpr && a.scale.len() >= m && c.len() >= m * n, "qgemm: buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let groups = wpr;
    let mc = ((A_BLOCK_BYTES / kp.max(4)) / MR * MR).clamp(MR, MC);
    let mut tile = [0i32; MR * NR];
    let pad = vec![0u32; MR * wpr.max(1)];
    for i0 in (0..m).step_by(mc) {
        let rows_in_block = mc.min(m - i0);
        for p in 0..panels {
            let bp = &bd[p * groups * 2..(p + 1) * groups * 2];
            let c0 = p * NR;
            let w = NR.min(n - c0);
            for r0 in (i0..i0 + rows_in_block).step_by(MR) {
                let rows = MR.min(i0 + rows_in_block - r0);
                let mut ap = [pad.as_ptr(); MR];
                for (r, a_r) in ap.iter_mut().enumerate().take(rows) {
                    *a_r = a.words[(r0 + r) * wpr..(r0 + r + 1) * wpr].as_ptr();
                }
                kernel(groups, &ap, rows, bp, &mut tile, kernel_kind, a.top <= 127);
                epilogue(c, n, r0, rows, c0, w, a, b, &tile, NR);
            }
        }
    }
}

/// `tile (8, 32) = Σ_g a[r][g] · bp[g]` over `groups` groups of 4 bytes (`seven_bit`: the
/// rows are 7-bit, so the AVX2 kernel may take its fast path). A kernel the CPU lacks
/// runs as the portable loop.
#[inline]
fn kernel(groups: usize, ap: &[*const u32; MR], rows: usize, bp: &[V64], tile: &mut [i32; MR * NR], kind: Int8Kernel, seven_bit: bool) {
    assert!(bp.len() >= groups * 2);
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = Cpu::detected();
        match kind {
            Int8Kernel::Vnni if cpu.avx512_vnni() => {
                // SAFETY: the CPU has AVX-512F/BW/VNNI (checked). Each `ap[r]` points at
                // `groups` readable words, `bp` holds `2 * groups` aligned vectors (asserted).
                unsafe { avx512_vnni::kernel_vnni(groups, ap, bp, tile) };
                return;
            }
            Int8Kernel::AvxVnni if cpu.avx_vnni() => {
                // SAFETY: the CPU has AVX2 and AVX-VNNI (checked); pointers as above.
                unsafe { avx_vnni::kernel_avx_vnni(groups, ap, rows, bp, tile) };
                return;
            }
            Int8Kernel::Avx2 if cpu.has(Feature::Avx2) => {
                // SAFETY: the CPU has AVX2 (checked); pointers as above. The weights are
                // 7-bit (`qgemm_with` sends only AVX2-packed weights here), so no pair
                // saturates, and with 7-bit rows no sum of two pairs does either.
                unsafe {
                    if seven_bit {
                        avx2::kernel_avx2_7bit(groups, ap, rows, bp, tile)
                    } else {
                        avx2::kernel_avx2(groups, ap, rows, bp, tile)
                    }
                };
                return;
            }
            _ => {}
        }
    }
    let _ = (rows, kind, seven_bit);
    portable::kernel(groups, ap, bp, tile)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{rel_error, rnd};

    fn runs_here(k: Int8Kernel) -> bool {
        let ok = runs_on(k, Cpu::detected());
        if !ok {
            eprintln!("no {} here: that kernel is not compared", k.name());
        }
        ok
    }
    use super::*;

    #[test]
    fn int8_product_is_close_to_fp32_and_kernels_agree_exactly() {
        let mut s = 99u64;
        for &(m, k, n) in &[(1, 1, 1), (5, 7, 16), (9, 300, 40), (13, 257, 33), (97, 384, 1152), (20, 1536, 384)] {
            // Activations one-sided like GELU outputs, weights symmetric.
            let a: Vec<f32> = (0..m * k).map(|_| rnd(&mut s) * 3.0 + 0.9).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd(&mut s) * 0.2).collect();
            let qb = QPackedB::quantize_for(&b, k, n, Int8Kernel::Portable);
            let mut qa = QRows::default();
            qa.quantize(&a, m, k);
            let mut portable = vec![f32::NAN; m * n];
            qgemm_with(m, &qa, &qb, &mut portable, Int8Kernel::Portable);
            for kind in [Int8Kernel::Vnni, Int8Kernel::AvxVnni] {
                if runs_here(kind) {
                    let mut fast = vec![f32::NAN; m * n];
                    qgemm_with(m, &qa, &qb, &mut fast, kind);
                    assert_eq!(fast, portable, "({m},{k},{n}): {} and portable kernels differ", kind.name());
                }
            }
            // 7-bit weights: AVX2 and the portable loop agree on them, and so do the VNNIs,
            // with 8-bit activations and with the 7-bit ones of the AVX2 fast path (odd and
            // even group counts).
            let q7 = QPackedB::quantize_for(&b, k, n, Int8Kernel::Avx2);
            let mut qa7 = QRows::default();
            // (What `quantize_for` gives AVX2 weights unless `int8_act8` is set.)
            qa7.quantize_to(&a, m, k, 127);
            let mut portable7 = vec![f32::NAN; m * n];
            qgemm_with(m, &qa, &q7, &mut portable7, Int8Kernel::Portable);
            let mut portable77 = vec![f32::NAN; m * n];
            qgemm_with(m, &qa7, &q7, &mut portable77, Int8Kernel::Portable);
            for kind in [Int8Kernel::Avx2, Int8Kernel::Vnni, Int8Kernel::AvxVnni] {
                if runs_here(kind) {
                    let mut fast = vec![f32::NAN; m * n];
                    qgemm_with(m, &qa, &q7, &mut fast, kind);
                    assert_eq!(fast, portable7, "({m},{k},{n}): {} and portable kernels differ on 7-bit weights", kind.name());
                    qgemm_with(m, &qa7, &q7, &mut fast, kind);
                    assert_eq!(fast, portable77, "({m},{k},{n}): {} and portable kernels differ on 7-bit weights and activations", kind.name());
                }
            }
            // Whatever this CPU picks agrees with the portable loop on the same packing.
            let qauto = QPackedB::quantize(&b, k, n);
            let mut auto = vec![f32::NAN; m * n];
            qgemm(m, &qa, &qauto, &mut auto);
            let mut want_auto = vec![f32::NAN; m * n];
            qgemm_with(m, &qa, &qauto, &mut want_auto, Int8Kernel::Portable);
            assert_eq!(auto, want_auto, "({m},{k},{n}): {} and portable kernels differ", int8_kernel().name());
            for (levels, top, got) in [(127.0, 255.0, &portable), (63.0, 255.0, &portable7), (63.0, 127.0, &portable77)] {
                // Error bound: each term's error is at most half a step of each factor.
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
                        let got = got[i * n + j] as f64;
                        let amax = a[i * k..(i + 1) * k].iter().fold(0f32, |x, v| x.max(v.abs())) as f64;
                        let bmax = (0..k).map(|t| b[t * n + j].abs()).fold(0f32, f32::max) as f64;
                        let tol = k as f64 * (amax * bmax) * (1.0 / levels + 1.0 / top) + 1e-6;
                        assert!((got - want).abs() <= tol, "({m},{k},{n}) at ({i},{j}): {got} vs {want} (tol {tol})");
                    }
                }
                // And on average far better than the bound: relative Frobenius error < 2%.
                if k >= 32 {
                    let e = rel_error(got, &a, &b, m, k, n);
                    assert!(e < 0.02, "({m},{k},{n}), {levels} / {top} levels: relative error {e}");
                }
            }
        }
    }

    #[test]
    fn row_quantisation_steps_agree_with_the_scalar_form() {
        let mut s = 23u64;
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 64, 100, 384] {
            let row: Vec<f32> = (0..n).map(|_| rnd(&mut s) * 300.0).collect();
            for (inv, zr, top) in [(0.7f32, 100.5f32, 255f32), (0.4, 60.5, 127.0), (127.0, 0.5, 127.0)] {
                let mut out = vec![0u8; n];
                quantize_row(&row, inv, zr, top, &mut out);
                for (i, (&x, &q)) in row.iter().zip(&out).enumerate() {
                    let y = if cfg!(target_feature = "fma") { x.mul_add(inv, zr) } else { x * inv + zr };
                    assert_eq!(q, y.clamp(0.0, top) as u8, "n {n}, element {i} ({x})");
                }
            }
        }
    }

    #[test]
    fn zero_and_constant_rows_quantise_exactly() {
        let (m, k, n) = (3, 8, 4);
        for kind in [Int8Kernel::Portable, int8_kernel()] {
            let (l, top) = (weight_levels(kind), activation_top(kind) as f32);
            // Values on the quantisation grids: row 3 spans `top` steps of 0.01 (zero point
            // 100); the weights' largest magnitude is `l` steps of 0.01.
            let a = [vec![0.0; 8], vec![2.0; 8], vec![-1.0, -0.5, 0.0, 0.25, 0.1, 0.2, top * 0.01 - 1.0, 0.01]].concat();
            let b: Vec<f32> = (0..k * n).map(|v| [-l, -1.0, 0.0, 1.0, l][v % 5] * 0.01).collect();
            let qb = QPackedB::quantize_for(&b, k, n, kind);
            let mut qa = QRows::default();
            qa.quantize_for(&a, m, k, &qb);
            let mut c = vec![f32::NAN; m * n];
            qgemm(m, &qa, &qb, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                    assert!((c[i * n + j] - want).abs() < 1e-3 * (1.0 + want.abs()), "{} ({i},{j}): {} vs {want}", kind.name(), c[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn key_packing_matches_the_load_time_packer() {
        let mut s = 17u64;
        for &(len, d) in &[(1, 32), (7, 32), (33, 32), (130, 64), (5, 12)] {
            for kind in [Int8Kernel::Avx2, Int8Kernel::Portable] {
                let keys: Vec<f32> = (0..len * d).map(|_| rnd(&mut s) * 6.0).collect();
                let kt: Vec<f32> = (0..d * len).map(|i| keys[(i % len) * d + i / len]).collect();
                // The same matrix through the load-time packer (`Kᵀ` spelled out).
                let mut fast = QPackedB::empty(kind);
                fast.pack_keys(&keys, len, d);
                let slow = QPackedB::quantize_for(&kt, d, len, kind);
                assert_eq!((fast.k, fast.n, fast.kp, fast.data.len()), (slow.k, slow.n, slow.kp, slow.data.len()));
                for (a, b) in fast.scale.iter().zip(&slow.scale) {
                    assert!((a - b).abs() <= 1e-6 * b.abs(), "({len},{d}) scale {a} vs {b}");
                }
                // Equal but for rounding ties (to even against away from zero) and the last
                // bit of `x · (1/s)` against `x / s`: at most one level, rarely.
                let (mut off, total) = (0, fast.data.len() * 64);
                for (a, b) in fast.data.iter().zip(&slow.data) {
                    for (x, y) in a.0.iter().zip(&b.0) {
                        assert!((*x as i32 - *y as i32).abs() <= 1, "({len},{d}) {x} vs {y}");
                        off += (x != y) as usize;
                    }
                }
                assert!(off * 1000 <= total, "({len},{d}): {off} of {total} bytes differ");
                // Each column sum is the sum of that packing's own values.
                let groups = fast.kp / 4;
                for j in 0..fast.n {
                    let own: i32 = (0..fast.kp).map(|t| fast.data[((j / NR) * groups + t / 4) * 2 + (j % NR) / 16].0[(j % 16) * 4 + t % 4] as i32).sum();
                    assert_eq!(fast.colsum[j], own, "({len},{d}) column {j}");
                }
            }
        }
    }

    #[test]
    fn kernel_choice_falls_back_in_order() {
        let cpu = Cpu::detected();
        assert_eq!(pick_kernel(cpu, Some(Int8Kernel::Portable)), Int8Kernel::Portable);
        assert_eq!(pick_kernel(Cpu::portable(), None), Int8Kernel::Portable);
        // The first of `list` this CPU has, else portable.
        let best_from = |list: &[(Int8Kernel, bool)]| list.iter().find(|(_, ok)| *ok).map(|(k, _)| *k).unwrap_or(Int8Kernel::Portable);
        let (vnni, avx_vnni, avx2) = (cpu.avx512_vnni(), cpu.avx_vnni(), cpu.has(Feature::Avx2));
        assert_eq!(pick_kernel(cpu, Some(Int8Kernel::Avx2)), best_from(&[(Int8Kernel::Avx2, avx2)]));
        assert_eq!(pick_kernel(cpu, Some(Int8Kernel::AvxVnni)), best_from(&[(Int8Kernel::AvxVnni, avx_vnni), (Int8Kernel::Avx2, avx2)]));
        let all = [(Int8Kernel::Vnni, vnni), (Int8Kernel::AvxVnni, avx_vnni), (Int8Kernel::Avx2, avx2)];
        assert_eq!(pick_kernel(cpu, None), best_from(&all));
        assert_eq!(pick_kernel(cpu, Some(Int8Kernel::Vnni)), best_from(&all));
        // Turning VNNI off leaves AVX2.
        let no_vnni = cpu.restricted(&crate::KernelOptions { no_vnni: true, ..Default::default() });
        assert_eq!(pick_kernel(no_vnni, None), best_from(&[(Int8Kernel::Avx2, avx2)]));
        for k in PREFERENCE {
            assert_eq!(Int8Kernel::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn quantiser_paths_agree_with_the_portable_ones() {
        let mut s = 29u64;
        let cpu = Cpu::detected();
        if !cpu.avx2_fma() {
            eprintln!("no AVX2/FMA here: nothing to compare");
            return;
        }
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 100, 384] {
            let row: Vec<f32> = (0..n).map(|_| rnd(&mut s) * 300.0).collect();
            let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
            let sa = quantize_symmetric_with(cpu, &row, 0.3, 63.0, &mut a);
            let sb = quantize_symmetric_with(Cpu::portable(), &row, 0.3, 63.0, &mut b);
            assert_eq!((sa, &a), (sb, &b), "symmetric, n {n}");
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            quantize_row_with(cpu, &row, 0.7, 100.5, 255.0, &mut a);
            quantize_row_with(Cpu::portable(), &row, 0.7, 100.5, 255.0, &mut b);
            assert_eq!(a, b, "rows, n {n}");
        }
    }
}
