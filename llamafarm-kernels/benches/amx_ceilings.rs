//! What bounds the AMX route (`cargo bench -p llamafarm-kernels --bench amx_ceilings`): see
//! [`llamafarm_kernels::bgemm::amx_ceilings`].

fn main() {
    #[cfg(target_arch = "x86_64")]
    match llamafarm_kernels::bgemm::amx_ceilings() {
        Some([t, l, bl, w]) => println!("AMX, one thread, GMAC/s (median of 12): tdp {t:.0}, load+tdp {l:.0}, block {bl:.0}, whole product {w:.0}"),
        None => println!("no AMX here"),
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("no AMX here");
}
