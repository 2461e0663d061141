//! The bf16 products on AMX (Intel Sapphire Rapids and later): `C` in blocks of 32 x 32
//! on the tile unit, four 16 x 16 fp32 accumulator tiles, two 16 x 32 tiles of `A` and
//! two 16-pair tiles of `B` per step of 32 along `k`, each `tdpbf16ps` doing 8,192
//! multiply-adds. Both packings are already the layouts the tiles load (a row of `A` is
//! its bf16 values in order; a pair row of a `B` panel is 16 columns of two bf16, 64
//! bytes), so the tiles read them in place with a stride. Rows and columns past the last
//! full block, and a `k` that is not a multiple of 32, go to the AVX-512 BF16 kernel.
//!
//! Tiles are not renamed: a tile load waits for the products still reading its tile, so
//! the rate per block is bounded by the loads as much as by `tdpbf16ps` (the
//! `amx_ceilings` bench measures both).

use super::{round_row, AttnScratch, BPackedB, BRows, AMX_PAIRS, AMX_ROWS, A_BLOCK_BYTES, NR};

/// [`super::attention`] on AMX, `d` a multiple of 32. Query rows and keys are padded to
/// whole blocks of 32 (zero rows of `q` and of the packed `v`; the zero columns of
/// the packed `kᵀ` give padding keys a score of 0, which the softmax never sees: it
/// gets the first `len` scores of a row, and the weights past `len` are zero). Per block of 32 query
/// rows: the scores against every key panel ([`Tiles::block_32x32`], `d / 32` steps),
/// the softmax and rounding row by row, then the product with `v` (`lp / 32` steps).
///
/// # Safety
/// The CPU must have AMX-TILE and AMX-BF16 with tile data permitted ([`crate::Cpu::amx`]).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attention_amx(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    d: usize,
    out: &mut [f32],
    s: &mut AttnScratch,
    softmax: &impl Fn(&mut [f32]) -> f32,
) {
    let lp = len.next_multiple_of(AMX_ROWS);
    let (qpairs, ppairs) = (d / 2, lp / 2);
    let kt = BPackedB::pack_transposed(k, len, d);
    let vb = BPackedB::pack_padded(v, len, d, lp);
    assert!(kt.pairs == qpairs && kt.data.len() >= (lp / NR) * qpairs * 2 && vb.pairs == ppairs && vb.data.len() >= (d / NR) * ppairs * 2);
    s.q.round(q, len, d);
    s.q.words.resize(lp * qpairs, 0);
    s.scores.resize(AMX_ROWS * lp, 0.0);
    s.probs.clear();
    s.probs.resize(AMX_ROWS * ppairs, 0);
    s.obuf.resize(AMX_ROWS * d, 0.0);
    s.inv.resize(AMX_ROWS, 0.0);
    let tiles = Tiles::load();
    for r0 in (0..len).step_by(AMX_ROWS) {
        let rows = AMX_ROWS.min(len - r0);
        let qa = s.q.words.as_ptr().add(r0 * qpairs) as *const u8;
        for p in 0..lp / NR {
            let bp = kt.data.as_ptr().add(p * qpairs * 2) as *const u8;
            tiles.block_32x32(qa, d * 2, bp, d / 32, s.scores.as_mut_ptr().add(p * NR), lp * 4);
        }
        for r in 0..rows {
            let row = &mut s.scores[r * lp..r * lp + len];
            s.inv[r] = softmax(row);
            let dst = &mut s.probs[r * ppairs..(r + 1) * ppairs];
            round_row(row, dst);
            dst[len.div_ceil(2)..].fill(0);
        }
        // Rows past `rows` hold an earlier block's weights (or zeros): their products
        // land in `obuf` and are never copied out.
        for p in 0..d / NR {
            let bp = vb.data.as_ptr().add(p * ppairs * 2) as *const u8;
            tiles.block_32x32(s.probs.as_ptr() as *const u8, lp * 2, bp, lp / 32, s.obuf.as_mut_ptr().add(p * NR), d * 4);
        }
        for r in 0..rows {
            let inv = s.inv[r];
            for (o, t) in out[(r0 + r) * d..(r0 + r + 1) * d].iter_mut().zip(&s.obuf[r * d..(r + 1) * d]) {
                *o = t * inv;
            }
        }
    }
}

/// The tile configuration: palette 1, tiles 0-7 all 16 rows of 64 bytes (tiles 0-3
/// hold `C`, 4-5 `A`, 6-7 `B`).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
            c[48 + t] = 16; // rows
        }
        TileConfig(c)
    }
}

/// Loads the tile configuration ([`TileConfig`]) on this thread for as long as it lives;
/// dropping it releases the tiles.
pub struct Tiles;

impl Tiles {
    /// # Safety
    /// The CPU must have AMX-TILE with tile data permitted ([`crate::Cpu::amx`]).
    pub unsafe fn load() -> Self {
        let cfg = TileConfig::new();
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        Tiles
    }

    /// `dst (32, 32) = A (32, 32·steps) · B (32·steps, 32)` in bf16 with fp32 sums: `a`
    /// is the first of 32 rows of bf16 values `sa` bytes apart; `b` is a 32-column panel
    /// of pair rows (128 bytes each: columns 0-15, then 16-31); `dst` gets 32 rows of 32
    /// floats `sc` bytes apart. Per step of 32 along `k`: two `A` tiles (rows 0-15,
    /// 16-31), two `B` tiles (columns 0-15, 16-31), four `tdpbf16ps` into tiles 0-3.
    ///
    /// # Safety
    /// `a` must have 32 readable rows of `64 · steps` bytes, `b` `16 · steps` pair rows
    /// of 128 bytes, `dst` 32 writable rows of 128 bytes.
    #[inline(always)]
    pub unsafe fn block_32x32(&self, a: *const u8, sa: usize, b: *const u8, steps: usize, dst: *mut f32, sc: usize) {
        use std::arch::asm;
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        let a1 = a.add(16 * sa);
        for st in 0..steps {
            let (ao, bo) = (st * 64, st * AMX_PAIRS * 128);
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(ao),
                a1 = in(reg) a1.add(ao),
                b0 = in(reg) b.add(bo),
                b1 = in(reg) b.add(bo + 64),
                sa = in(reg) sa,
                sb = in(reg) 128usize,
                options(nostack, readonly),
            );
        }
        let half = (dst as *mut u8).add(16 * sc) as *mut f32;
        asm!(
            "tilestored [{d0} + {sc}*1], tmm0",
            "tilestored [{d1} + {sc}*1], tmm1",
            "tilestored [{d2} + {sc}*1], tmm2",
            "tilestored [{d3} + {sc}*1], tmm3",
            d0 = in(reg) dst,
            d1 = in(reg) dst.add(16),
            d2 = in(reg) half,
            d3 = in(reg) half.add(16),
            sc = in(reg) sc,
            options(nostack),
        );
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `load` on this thread.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// The first `m` rows of `c (m, n) = a · b` on AMX, `m` a multiple of 32 and `b.pairs`
/// a multiple of 16: 32 x 32 blocks ([`Tiles::block_32x32`]) reading `A`'s rows and
/// `B`'s panels in place. Full panels store straight into `c`; a last, partial panel
/// (its padding columns are zero) goes through a 32 x 32 buffer.
///
/// # Safety
/// The CPU must have AMX-TILE and AMX-BF16 with tile data permitted ([`crate::Cpu::amx`]).
pub(super) unsafe fn bgemm_amx(m: usize, a: &BRows, b: &BPackedB, c: &mut [f32]) {
    let (n, pairs) = (b.n, b.pairs);
    assert!(m.is_multiple_of(AMX_ROWS) && pairs % AMX_PAIRS == 0 && a.words.len() >= m * pairs && c.len() >= m * n);
    let tiles = Tiles::load();
    let panels = n.div_ceil(NR);
    let steps = pairs / AMX_PAIRS;
    let mut buf = [0f32; AMX_ROWS * NR];
    // Row blocks sized like the AVX-512 path's, so a block of `A` stays in L2 while
    // every panel of `B` passes over it.
    let mc = ((A_BLOCK_BYTES / (4 * pairs)) / AMX_ROWS * AMX_ROWS).clamp(AMX_ROWS, 4 * AMX_ROWS);
    for i0 in (0..m).step_by(mc) {
        for p in 0..panels {
            let bp = b.data.as_ptr().add(p * pairs * 2) as *const u8;
            let (c0, w) = (p * NR, NR.min(n - p * NR));
            for r0 in (i0..(i0 + mc).min(m)).step_by(AMX_ROWS) {
                let a0 = a.words.as_ptr().add(r0 * pairs) as *const u8;
                if w == NR {
                    tiles.block_32x32(a0, pairs * 4, bp, steps, c.as_mut_ptr().add(r0 * n + c0), n * 4);
                } else {
                    tiles.block_32x32(a0, pairs * 4, bp, steps, buf.as_mut_ptr(), NR * 4);
                    for r in 0..AMX_ROWS {
                        let at = (r0 + r) * n + c0;
                        c[at..at + w].copy_from_slice(&buf[r * NR..r * NR + w]);
                    }
                }
            }
        }
    }
}

/// What bounds the AMX route, in GMAC/s on one thread, the median over 12 rounds of four
/// loops: `[tdp, load+tdp, block, whole]`. `tdp`: four `tdpbf16ps` a step on tiles loaded
/// once (the tile unit's own rate); `load+tdp`: the same with the step's four tile loads
/// from L1 (tiles are not renamed, so a load waits for the products still reading its
/// tile); `block`: `Tiles::block_32x32` on one block, repeated (adds the zeroing and
/// the four stores, which drain the tiles); `whole`: the AMX route of [`super::bgemm`] on
/// the encoder's largest product (256 x 384 x 1536). `None` without AMX.
pub fn amx_ceilings() -> Option<[f64; 4]> {
    if !crate::Cpu::detected().amx() {
        return None;
    }
    let (m, k, n) = (256, 384, 1536);
    let pairs = k / 2;
    let mut s = 1u64;
    let mut rnd = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
    let pb = BPackedB::pack(&b, k, n);
    let mut rows = BRows::default();
    rows.round(&a, m, k);
    let (a0, b0) = (rows.words.as_ptr() as *const u8, pb.data.as_ptr() as *const u8);
    let (sa, sb) = (pairs * 4, 128usize);
    let step_macs = 4 * 16 * 16 * 32;
    let time = |iters: usize, f: &dyn Fn(usize)| {
        let t = std::time::Instant::now();
        f(iters);
        (step_macs * iters) as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    // SAFETY (all three loops): AMX is usable (checked); the loads read 16 rows of 64
    // bytes inside `rows.words` (32 rows of `sa` bytes) and the first panel of `pb`.
    // The two register loops differ only in where the loads sit (`2:` is the loop head).
    macro_rules! tile_loop {
        ($($line:literal),+) => {
            |iters: usize| unsafe {
                let _tiles = Tiles::load();
                std::arch::asm!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    $($line,)+
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6", "tdpbf16ps tmm3, tmm5, tmm7",
                    "dec {n}", "jnz 2b",
                    a0 = in(reg) a0, a1 = in(reg) a0.add(16 * sa), b0 = in(reg) b0, b1 = in(reg) b0.add(64),
                    sa = in(reg) sa, sb = in(reg) sb, n = inout(reg) iters => _, options(nostack),
                );
            }
        };
    }
    let tdp =
        tile_loop!("tileloadd tmm4, [{a0} + {sa}*1]", "tileloadd tmm5, [{a1} + {sa}*1]", "tileloadd tmm6, [{b0} + {sb}*1]", "tileloadd tmm7, [{b1} + {sb}*1]", "2:");
    let load_tdp =
        tile_loop!("2:", "tileloadd tmm4, [{a0} + {sa}*1]", "tileloadd tmm5, [{a1} + {sa}*1]", "tileloadd tmm6, [{b0} + {sb}*1]", "tileloadd tmm7, [{b1} + {sb}*1]");
    let block = |iters: usize| unsafe {
        let tiles = Tiles::load();
        let mut out = [0f32; 32 * 32];
        let steps = pairs / AMX_PAIRS;
        for _ in 0..iters / steps {
            tiles.block_32x32(a0, sa, b0, steps, out.as_mut_ptr(), 128);
        }
    };
    let mut c = vec![0f32; m * n];
    let mut results: [Vec<f64>; 4] = Default::default();
    for _ in 0..12 {
        results[0].push(time(100_000, &tdp));
        results[1].push(time(100_000, &load_tdp));
        results[2].push(time(96_000, &block));
        let t = std::time::Instant::now();
        for _ in 0..20 {
            // SAFETY: AMX is usable; m and pairs are multiples of 32 and 16.
            unsafe { bgemm_amx(m, &rows, &pb, &mut c) };
        }
        results[3].push((m * k * n * 20) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(results.each_mut().map(med))
}
