//! Config and project-store throughput (no external peer: the original's config
//! handling lives in a Python server process; see docs/benchmarks.md).
//!
//! Run: `cargo bench -p llamafarm-benches --bench config`

use llamafarm_core::{LlamaFarm, LlamaFarmConfig, ModelCache};
use std::time::Instant;

fn per_op(label: &str, n: usize, f: impl FnMut(usize)) {
    let mut f = f;
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    let dt = t.elapsed();
    println!("{label:<40} {n:>6} ops  {:>10.1} us/op  {:>10.0} ops/s", dt.as_secs_f64() * 1e6 / n as f64, n as f64 / dt.as_secs_f64());
}

fn main() {
    let advanced = include_str!("../llamafarm-core/tests/fixtures/upstream/template_advanced.yaml");
    per_op("parse+validate template_advanced.yaml", 500, |_| {
        LlamaFarmConfig::from_yaml_str(advanced).unwrap();
    });
    let cfg = LlamaFarmConfig::from_yaml_str(advanced).unwrap();
    per_op("serialize template_advanced.yaml", 500, |_| {
        cfg.to_yaml_string().unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let lf = LlamaFarm::open_with(dir.path(), ModelCache::new(dir.path().join("hub"))).unwrap();
    per_op("create project (atomic write + fsync)", 200, |i| {
        lf.projects().create("bench", &format!("p{i}"), None).unwrap();
    });
    let p = lf.project("bench", "p0").unwrap();
    per_op("update config (backup + atomic write)", 200, |i| {
        p.update_config(|c| {
            c.runtime.models.as_mut().unwrap()[0].description = Some(format!("v{i}"));
            Ok(())
        })
        .unwrap();
    });
    per_op("list 200 projects", 20, |_| {
        assert_eq!(lf.projects().list("bench").unwrap().len(), 200);
    });
    per_op("delete project", 200, |i| {
        lf.projects().delete("bench", &format!("p{i}")).unwrap();
    });
}
