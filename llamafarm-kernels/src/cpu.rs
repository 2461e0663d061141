//! The CPU's features, detected once, and the options that restrict what the kernels use.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// An instruction-set feature a kernel may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Feature {
    /// AVX2 (256-bit integer vectors).
    Avx2,
    /// Fused multiply-add on 256-bit vectors.
    Fma,
    /// Half-precision conversions.
    F16c,
    /// BMI2 bit manipulation.
    Bmi2,
    /// AVX-512 Foundation.
    Avx512f,
    /// AVX-512 byte and word instructions.
    Avx512bw,
    /// AVX-512 doubleword and quadword instructions.
    Avx512dq,
    /// AVX-512 on 128- and 256-bit registers.
    Avx512vl,
    /// AVX-512 VNNI (`vpdpbusd`).
    Avx512vnni,
    /// AVX-512 BF16 (`vdpbf16ps`).
    Avx512bf16,
    /// AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd`).
    AvxVnni,
    /// AMX-TILE and AMX-BF16, with the tile data state granted to this process.
    Amx,
}

impl Feature {
    /// Every feature, in declaration order.
    pub const ALL: [Feature; 12] = [
        Feature::Avx2,
        Feature::Fma,
        Feature::F16c,
        Feature::Bmi2,
        Feature::Avx512f,
        Feature::Avx512bw,
        Feature::Avx512dq,
        Feature::Avx512vl,
        Feature::Avx512vnni,
        Feature::Avx512bf16,
        Feature::AvxVnni,
        Feature::Amx,
    ];

    /// The name `is_x86_feature_detected!` uses (`"amx"` for AMX-TILE with AMX-BF16).
    pub fn name(self) -> &'static str {
        match self {
            Feature::Avx2 => "avx2",
            Feature::Fma => "fma",
            Feature::F16c => "f16c",
            Feature::Bmi2 => "bmi2",
            Feature::Avx512f => "avx512f",
            Feature::Avx512bw => "avx512bw",
            Feature::Avx512dq => "avx512dq",
            Feature::Avx512vl => "avx512vl",
            Feature::Avx512vnni => "avx512vnni",
            Feature::Avx512bf16 => "avx512bf16",
            Feature::AvxVnni => "avxvnni",
            Feature::Amx => "amx",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u8
    }
}

/// A set of CPU features the kernels may use. A value never holds a feature this CPU
/// lacks: it starts from [`Cpu::detected`] (or [`Cpu::portable`]) and can only lose
/// features, so every kernel chosen from it runs here.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cpu {
    bits: u32,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.features().iter().map(|f| f.name())).finish()
    }
}

impl Cpu {
    /// What this CPU has (and, for AMX, what Linux lets this process use), detected on
    /// the first call.
    pub fn detected() -> Cpu {
        static CPU: OnceLock<Cpu> = OnceLock::new();
        *CPU.get_or_init(detect)
    }

    /// No features: every kernel takes its portable path.
    pub fn portable() -> Cpu {
        Cpu { bits: 0 }
    }

    /// The features the kernels use now: [`Cpu::detected`] less what [`crate::configure`]
    /// turned off.
    pub fn active() -> Cpu {
        let bits = ACTIVE.load(Ordering::Relaxed);
        if bits != UNSET {
            return Cpu { bits };
        }
        let cpu = Cpu::detected().restricted(&KernelOptions::default());
        let _ = ACTIVE.compare_exchange(UNSET, cpu.bits, Ordering::Relaxed, Ordering::Relaxed);
        Cpu { bits: ACTIVE.load(Ordering::Relaxed) }
    }

    /// Whether `f` is in the set.
    #[inline]
    pub fn has(self, f: Feature) -> bool {
        self.bits & f.bit() != 0
    }

    /// The set without `f`.
    pub fn without(self, f: Feature) -> Cpu {
        Cpu { bits: self.bits & !f.bit() }
    }

    /// The features in the set.
    pub fn features(self) -> Vec<Feature> {
        Feature::ALL.into_iter().filter(|&f| self.has(f)).collect()
    }

    /// The set less what `opts` turns off.
    pub fn restricted(self, opts: &KernelOptions) -> Cpu {
        if opts.portable {
            return Cpu::portable();
        }
        let mut c = self;
        if opts.no_avx512 {
            for f in [Feature::Avx512f, Feature::Avx512bw, Feature::Avx512dq, Feature::Avx512vl, Feature::Avx512vnni, Feature::Avx512bf16, Feature::Amx] {
                c = c.without(f);
            }
        }
        if opts.no_vnni {
            c = c.without(Feature::Avx512vnni).without(Feature::AvxVnni);
        }
        if opts.no_bf16 {
            c = c.without(Feature::Avx512bf16).without(Feature::Amx);
        }
        if opts.no_amx {
            c = c.without(Feature::Amx);
        }
        c
    }

    /// AVX2 and FMA (the 256-bit float and integer kernels).
    #[inline]
    pub fn avx2_fma(self) -> bool {
        self.has(Feature::Avx2) && self.has(Feature::Fma)
    }

    /// AVX-512 F (element-wise loops 16 lanes wide).
    #[inline]
    pub fn avx512(self) -> bool {
        self.has(Feature::Avx512f)
    }

    /// AVX-512 F, BW and BF16 (the bf16 micro-kernel).
    #[inline]
    pub fn avx512_bf16(self) -> bool {
        self.has(Feature::Avx512f) && self.has(Feature::Avx512bw) && self.has(Feature::Avx512bf16)
    }

    /// [`Cpu::avx512_bf16`] and AMX with tile data permitted (the tile route).
    #[inline]
    pub fn amx(self) -> bool {
        self.avx512_bf16() && self.has(Feature::Amx)
    }

    /// AVX-512 F, BW and VNNI (the 512-bit int8 micro-kernel).
    #[inline]
    pub fn avx512_vnni(self) -> bool {
        self.has(Feature::Avx512f) && self.has(Feature::Avx512bw) && self.has(Feature::Avx512vnni)
    }

    /// AVX2 and AVX-VNNI (the 256-bit `vpdpbusd`).
    #[inline]
    pub fn avx_vnni(self) -> bool {
        self.has(Feature::Avx2) && self.has(Feature::AvxVnni)
    }
}

/// Marks [`ACTIVE`] as not yet computed.
const UNSET: u32 = u32::MAX;
/// The bits of [`Cpu::active`].
static ACTIVE: AtomicU32 = AtomicU32::new(UNSET);

fn detect() -> Cpu {
    #[allow(unused_mut)]
    let mut bits = 0u32;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let found = [
            (Feature::Avx2, has!("avx2")),
            (Feature::Fma, has!("fma")),
            (Feature::F16c, has!("f16c")),
            (Feature::Bmi2, has!("bmi2")),
            (Feature::Avx512f, has!("avx512f")),
            (Feature::Avx512bw, has!("avx512bw")),
            (Feature::Avx512dq, has!("avx512dq")),
            (Feature::Avx512vl, has!("avx512vl")),
            (Feature::Avx512vnni, has!("avx512vnni")),
            (Feature::Avx512bf16, has!("avx512bf16")),
            (Feature::AvxVnni, has!("avxvnni")),
        ];
        for (f, on) in found {
            if on {
                bits |= f.bit();
            }
        }
        if bits & Feature::Avx512f.bit() != 0 && amx_permitted() {
            bits |= Feature::Amx.bit();
        }
    }
    Cpu { bits }
}

/// AMX-TILE and AMX-BF16 (CPUID leaf 7, which every CPU with AVX-512 has), and Linux
/// granted this process the tile data state (`arch_prctl ARCH_REQ_XCOMP_PERM`, asked once).
#[cfg(target_arch = "x86_64")]
fn amx_permitted() -> bool {
    #[cfg(target_os = "linux")]
    {
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
        if !(amx_bf16 && amx_tile) {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments; it changes only whether this
        // process may use the tile registers.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Which kernels the process uses, short of what the CPU has. The default uses
/// everything the CPU has, the fastest kernel of each kind.
///
/// Install with [`configure`]; every later kernel call follows it (weights already
/// packed keep the layout they were packed for, and the products pick a kernel that
/// reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// Use no AVX-512 (nor AMX): the kernels run as on an AVX2-only CPU (no AVX-512
    /// BF16 or VNNI kernel; element-wise loops 8 lanes wide), for a like-for-like
    /// comparison with such a CPU or to avoid AVX-512 clock drops.
    pub no_avx512: bool,
    /// Use neither AVX-512 VNNI nor AVX-VNNI.
    pub no_vnni: bool,
    /// Use no AVX-512 BF16 (nor AMX): the default embedding precision falls back to
    /// int8 or fp32.
    pub no_bf16: bool,
    /// Use no AMX tiles (bf16 runs on the AVX-512 BF16 kernel).
    pub no_amx: bool,
    /// Use no instruction-set extension at all: every kernel takes its portable path.
    pub portable: bool,
    /// The int8 kernel to pack weights for and run ([`crate::qgemm::Int8Kernel`]); one
    /// this CPU lacks falls back to the next in the order AVX-512 VNNI, AVX-VNNI, AVX2,
    /// portable. `None`: the fastest this CPU has.
    pub int8_kernel: Option<crate::qgemm::Int8Kernel>,
    /// Quantise activations to 8 bits for the AVX2 int8 kernel too (slower, closer to
    /// fp32); by default they get 7 bits there ([`crate::qgemm`]).
    pub int8_act8: bool,
}

fn installed() -> &'static Mutex<KernelOptions> {
    static OPTS: OnceLock<Mutex<KernelOptions>> = OnceLock::new();
    OPTS.get_or_init(|| Mutex::new(KernelOptions::default()))
}

/// Install `opts` for the whole process (see [`KernelOptions`]). Call it at start-up,
/// before models load: weights are packed for the int8 kernel chosen at that time.
pub fn configure(opts: &KernelOptions) {
    let mut cur = installed().lock().unwrap_or_else(|p| p.into_inner());
    *cur = opts.clone();
    ACTIVE.store(Cpu::detected().restricted(opts).bits, Ordering::Relaxed);
    crate::qgemm::reselect(opts);
}

/// The options installed by [`configure`] (the default if it was never called).
pub fn options() -> KernelOptions {
    installed().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The features this build was compiled to assume (`-C target-cpu`) that the CPU lacks,
/// as a message for the user; `None` where the CPU has them all. A binary whose
/// baseline is missing would die of an illegal instruction, so `lf` calls this first.
pub fn missing_baseline() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let mut missing: Vec<&str> = Vec::new();
        macro_rules! check {
            ($($f:tt),+) => {
                $(if cfg!(target_feature = $f) && !has!($f) {
                    missing.push($f);
                })+
            };
        }
        check!("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe", "avx512f", "avx512bw", "avx512vl");
        if !missing.is_empty() {
            return Some(format!(
                "this build of LlamaFarm needs an x86-64 CPU with {} (the x86-64-v3 level: Intel Haswell, AMD Excavator or later); this CPU lacks them. Rebuild for it, e.g. with RUSTFLAGS=\"-C target-cpu=native\".",
                missing.join(", ")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_only_remove_features() {
        let d = Cpu::detected();
        assert_eq!(d.restricted(&KernelOptions::default()), d);
        assert_eq!(d.restricted(&KernelOptions { portable: true, ..Default::default() }), Cpu::portable());
        let no512 = d.restricted(&KernelOptions { no_avx512: true, ..Default::default() });
        assert!(!no512.avx512() && !no512.avx512_bf16() && !no512.amx() && !no512.avx512_vnni());
        assert_eq!(no512.avx2_fma(), d.avx2_fma());
        let novnni = d.restricted(&KernelOptions { no_vnni: true, ..Default::default() });
        assert!(!novnni.avx512_vnni() && !novnni.avx_vnni());
        assert!(!d.restricted(&KernelOptions { no_amx: true, ..Default::default() }).amx());
        assert!(d.features().iter().all(|&f| d.has(f)) && Cpu::portable().features().is_empty());
        assert!(missing_baseline().is_none(), "the test binary runs, so its baseline is here");
    }
}
