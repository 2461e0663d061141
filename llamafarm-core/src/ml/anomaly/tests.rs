use super::store::base_of;
use super::util::{percentile, Rng};
use super::*;
use crate::LlamaFarm;
use serde_json::json;
use std::collections::BTreeMap;

fn blob(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (0..d).map(|j| 10.0 * j as f64 + r.normal()).collect()).collect()
}

fn rows(v: Vec<Vec<f64>>) -> Vec<AnomalyRow> {
    v.into_iter().map(AnomalyRow::from).collect()
}

fn opts(backend: Backend) -> FitOptions {
    FitOptions::with_backend(backend)
}

fn none() -> ScoreOptions {
    ScoreOptions::default()
}

fn outliers(d: usize) -> Vec<Vec<f64>> {
    vec![
        (0..d).map(|j| 10.0 * j as f64 + 9.0).collect(),
        (0..d).map(|j| 10.0 * j as f64 - 8.0).collect(),
        (0..d).map(|j| if j == 0 { 12.0 } else { 10.0 * j as f64 }).collect(),
    ]
}

fn open() -> (tempfile::TempDir, LlamaFarm) {
    let dir = tempfile::tempdir().unwrap();
    let lf = LlamaFarm::open(dir.path()).unwrap();
    (dir, lf)
}

fn invalid(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ Error::InvalidField { .. }) => e.to_string(),
        other => panic!("expected Error::InvalidField, got {other:?}"),
    }
}

#[test]
fn normalisation_formulas() {
    // raw scores 1..=5: median 3, p25 2, p75 4 -> IQR 2; mean 3, std sqrt(2)
    let s = NormStats::from_scores(&[5.0, 1.0, 4.0, 2.0, 3.0]);
    assert_eq!((s.median, s.iqr, s.mean), (3.0, 2.0, 3.0));
    assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(s.apply(3.0, Normalization::Standardization), 0.5);
    // (7 - 3) / (2 * 2) = 1 -> sigmoid(1)
    assert!((s.apply(7.0, Normalization::Standardization) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    assert!((s.apply(5.0, Normalization::Zscore) - 2.0 / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(s.apply(-7.5, Normalization::Raw), -7.5);
    // clipped at +-700, no overflow
    assert_eq!(s.apply(1e300, Normalization::Standardization), 1.0);
    let low = s.apply(-1e300, Normalization::Standardization);
    assert!(low > 0.0 && low < 1e-300, "sigmoid(-700) = {low}");
    // zero spread: IQR falls back to std, then to 1
    let c = NormStats::from_scores(&[2.0, 2.0, 2.0, 2.0]);
    assert_eq!((c.iqr, c.std), (1.0, 1.0));
    let f = NormStats::from_scores(&[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0]);
    assert_eq!(f.iqr, f.std);
}

#[test]
fn threshold_is_the_contamination_percentile() {
    let data = blob(200, 2, 1);
    for (c, norm) in [(0.1, Normalization::Standardization), (0.05, Normalization::Zscore), (0.2, Normalization::Raw)] {
        let m = AnomalyModel::fit("t", &rows(data.clone()), &FitOptions { contamination: c, normalization: norm, ..Default::default() }).unwrap();
        let raw = m.detector.score(&m.scaler.transform(&Mat::from_rows(&data)));
        let normed: Vec<f64> = raw.iter().map(|r| m.stats.apply(*r, norm)).collect();
        assert!((m.threshold - percentile(&normed, (1.0 - c) * 100.0)).abs() < 1e-12);
        // about c of the training rows are above it
        let above = normed.iter().filter(|s| **s > m.threshold).count() as f64 / 200.0;
        assert!((above - c).abs() <= 0.011, "{above} vs {c}");
        assert_eq!(m.threshold_for(norm), m.threshold);
    }
    let fixed = AnomalyModel::fit("t", &rows(data), &FitOptions { threshold: Some(0.77), ..Default::default() }).unwrap();
    assert_eq!(fixed.threshold, 0.77);
}

#[test]
fn every_backend_separates_obvious_outliers() {
    let d = 3;
    let train = blob(300, d, 7);
    let normal_test = blob(60, d, 99);
    for backend in Backend::ALL {
        let o = FitOptions { contamination: 0.05, epochs: 60, ..opts(backend) };
        let m = AnomalyModel::fit("b", &rows(train.clone()), &o).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let mut probe = normal_test.clone();
        probe.extend(outliers(d));
        let res = m.score(&rows(probe), &none()).unwrap();
        assert_eq!(res.rows.len(), 63);
        let normal: Vec<f64> = res.rows[..60].iter().map(|p| p.raw_score).collect();
        let p90 = percentile(&normal, 90.0);
        let min_out = res.rows[60..].iter().map(|p| p.raw_score).fold(f64::INFINITY, f64::min);
        assert!(min_out > p90, "{backend}: outliers {min_out} vs normal p90 {p90}");
        assert!(res.rows[60..62].iter().all(|p| p.is_anomaly), "{backend}: {:?}", &res.rows[60..]);
        let flagged = res.rows[..60].iter().filter(|p| p.is_anomaly).count();
        assert!(flagged <= 12, "{backend}: {flagged} of 60 normal rows flagged");
        assert!(res.rows.iter().all(|p| (0.0..=1.0).contains(&p.score)));
    }
}

#[test]
fn fit_save_load_latest_and_delete() {
    let (dir, lf) = open();
    let an = lf.ml().anomaly();
    let train = rows(blob(120, 2, 3));
    let first = an.fit("sensor", &train, &FitOptions::default()).unwrap();
    assert!(registry::is_version_of(&first.model.name, "sensor") && first.model.name != "sensor", "{}", first.model.name);
    assert_eq!(first.base_name, "sensor");
    assert_eq!(first.model.input_dim, 2);
    assert!(first.path.is_file());
    let second = an.fit("sensor", &train, &FitOptions { contamination: 0.2, ..opts(Backend::Ecod) }).unwrap();
    let third = an.fit("sensor", &train, &FitOptions::default()).unwrap();
    assert_ne!(first.model.name, third.model.name);

    let probe = rows(vec![vec![0.0, 10.0], vec![50.0, -40.0]]);
    // -latest over both backends picks the newest version; with a backend, that backend's newest.
    let latest = an.score(&ModelRef::new("sensor-latest").backend(Backend::IsolationForest), &probe, &none()).unwrap();
    assert_eq!(latest.model, third.model.name);
    let ecod = an.score(&ModelRef::new("sensor-latest").backend(Backend::Ecod), &probe, &none()).unwrap();
    assert_eq!((ecod.model.as_str(), ecod.backend), (second.model.name.as_str(), Backend::Ecod));
    assert!(ecod.rows[1].is_anomaly && !ecod.rows[0].is_anomaly);

    // A fresh handle on the same directory: nothing loaded, scores identical after load.
    let first_if = ModelRef::new(first.model.name.clone()).backend(Backend::IsolationForest);
    let before = an.score(&first_if, &probe, &none()).unwrap();
    let lf2 = LlamaFarm::open(dir.path()).unwrap();
    let loaded = lf2.ml().anomaly().load(&"sensor-latest".into()).unwrap();
    assert_eq!(loaded.model.name, third.model.name);
    assert_eq!(loaded.path, third.path);
    let after = lf2.ml().anomaly().score(&first_if, &probe, &none()).unwrap();
    for (a, b) in before.rows.iter().zip(&after.rows) {
        assert_eq!((a.raw_score, a.score, a.is_anomaly), (b.raw_score, b.score, b.is_anomaly));
    }
    assert_eq!(after.threshold, first.model.threshold);
    let saved = lf2.ml().anomaly().save(&first_if).unwrap();
    assert_eq!(saved.filename, format!("{}_isolation_forest.json", first.model.name));

    let list = an.list().unwrap();
    assert_eq!(list.models.len(), 3);
    assert!(list.models.iter().all(|m| m.is_versioned && m.base_name == "sensor"));
    assert!(list.models.iter().any(|m| m.backend == Backend::Ecod && m.input_dim == 2 && m.samples_fitted == 120));

    // overwrite: true keeps the plain name and replaces it.
    let plain = an.fit("plain", &train, &FitOptions { overwrite: true, ..Default::default() }).unwrap();
    assert_eq!(plain.model.name, "plain");
    an.fit("plain", &train, &FitOptions { overwrite: true, contamination: 0.3, ..Default::default() }).unwrap();
    let stored = an.load(&"plain".into()).unwrap();
    assert_eq!(stored.model.contamination, 0.3);

    let del = an.delete(&format!("{}_ecod.json", second.model.name)).unwrap();
    assert_eq!((del.name.as_str(), del.backend), (second.model.name.as_str(), Backend::Ecod));
    assert!(matches!(an.score(&ModelRef::new(second.model.name.clone()).backend(Backend::Ecod), &probe, &none()), Err(Error::NotFound { .. })));
    assert!(matches!(an.delete(&format!("{}_ecod.json", second.model.name)), Err(Error::NotFound { .. })));
    assert!(matches!(an.delete("nothing.txt"), Err(Error::NotFound { .. })));
    assert!(an.delete("../x_ecod.json").is_err());
    // no temp files left behind
    assert!(std::fs::read_dir(an.dir()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn latest_without_backend() {
    let (_dir, lf) = open();
    let an = lf.ml().anomaly();
    let a = an.fit("solo", &rows(blob(30, 2, 1)), &FitOptions::default()).unwrap();
    let b = an.fit("solo", &rows(blob(30, 2, 2)), &FitOptions::default()).unwrap();
    assert_ne!(a.model.name, b.model.name);
    let probe = rows(vec![vec![0.0, 10.0]]);
    let r = an.score(&"solo-latest".into(), &probe, &none()).unwrap();
    assert_eq!(r.model, b.model.name);
    let l = an.load(&"solo-latest".into()).unwrap();
    assert_eq!(l.model.name, b.model.name);
    let old = an.score(&ModelRef::new(a.model.name.clone()), &probe, &none()).unwrap();
    assert_eq!(old.model, a.model.name);
}

#[test]
fn several_backends_under_one_name_need_a_backend() {
    let (_dir, lf) = open();
    let an = lf.ml().anomaly();
    let train = rows(blob(50, 2, 5));
    an.fit("m", &train, &FitOptions { overwrite: true, ..Default::default() }).unwrap();
    an.fit("m", &train, &FitOptions { overwrite: true, ..opts(Backend::Hbos) }).unwrap();
    let msg = invalid(an.score(&"m".into(), &train, &none()));
    assert!(msg.contains("several backends"), "{msg}");
    let r = an.score(&ModelRef::new("m").backend(Backend::Hbos), &train, &none()).unwrap();
    assert_eq!(r.backend, Backend::Hbos);
}

#[test]
fn schema_rows_round_trip() {
    let (_dir, lf) = open();
    let an = lf.ml().anomaly();
    let mut objs = Vec::new();
    for i in 0..80 {
        let m = if i % 4 == 0 { "POST" } else { "GET" };
        let ua = ["Mozilla/5.0", "Chrome/90.0"][i % 2];
        objs.push(json!({"response_time_ms": 100 + (i % 9), "bytes": 1000 + (i % 13) * 10, "method": m, "user_agent": ua}));
    }
    let records: Vec<AnomalyRow> = objs.iter().map(|r| serde_json::from_value(r.clone()).unwrap()).collect();
    let schema: BTreeMap<String, FieldEncoding> =
        serde_json::from_value(json!({"response_time_ms": "numeric", "bytes": "numeric", "method": "label", "user_agent": "hash"})).unwrap();
    let o = FitOptions { schema: Some(schema.clone()), normalization: Normalization::Zscore, overwrite: true, ..Default::default() };
    let fit = an.fit("api", &records, &o).unwrap();
    assert_eq!(fit.model.encoder.as_ref().unwrap().info().features, vec!["bytes", "method", "response_time_ms", "user_agent"]);
    let probe: Vec<AnomalyRow> = [
        json!({"response_time_ms": 104, "bytes": 1050, "method": "GET", "user_agent": "Mozilla/5.0"}),
        json!({"response_time_ms": 9000, "bytes": 500000, "method": "DELETE", "user_agent": "sqlmap/1.0"}),
    ]
    .iter()
    .map(|v| serde_json::from_value(v.clone()).unwrap())
    .collect();
    let det = an.detect(&"api".into(), &probe, &ScoreOptions { threshold: Some(2.0), ..none() }).unwrap();
    assert_eq!(det.rows.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1]);
    assert_eq!(det.threshold, 2.0);
    // Same schema again is fine; a different one, missing fields or arrays are not.
    let ok = ScoreOptions { schema: Some(schema.clone()), ..none() };
    assert_eq!(an.score(&"api".into(), &probe, &ok).unwrap().rows.len(), 2);
    let mut other = schema.clone();
    other.insert("method".into(), FieldEncoding::Onehot);
    invalid(an.score(&"api".into(), &probe, &ScoreOptions { schema: Some(other), ..none() }));
    let missing: AnomalyRow = serde_json::from_value(json!({"bytes": 1})).unwrap();
    invalid(an.score(&"api".into(), &[missing], &none()));
    invalid(an.score(&"api".into(), &rows(vec![vec![1.0, 2.0, 3.0, 4.0]]), &none()));
    // Schema naming a field the rows lack, or a schema with array rows, at fit.
    let mut bad = schema.clone();
    bad.insert("nope".into(), FieldEncoding::Numeric);
    invalid(an.fit("api2", &records, &FitOptions { schema: Some(bad), ..Default::default() }));
    invalid(an.fit("api2", &rows(blob(10, 2, 1)), &FitOptions { schema: Some(schema), ..Default::default() }));
    // Inferred schema.
    let inferred = an.fit("api3", &records, &FitOptions::default()).unwrap();
    assert_eq!(inferred.model.encoder.as_ref().unwrap().info().schema["method"], FieldEncoding::Label);
}

#[test]
fn bad_input_is_invalid_not_a_panic() {
    let (_dir, lf) = open();
    let an = lf.ml().anomaly();
    let train = rows(blob(40, 2, 9));
    let fit = |name: &str, data: Vec<Vec<f64>>, o: FitOptions| an.fit(name, &rows(data), &o);
    for c in [0.0, -0.1, 0.51, 1.0, f64::NAN] {
        invalid(an.fit("x", &train, &FitOptions { contamination: c, ..Default::default() }));
    }
    assert!(an.fit("x", &train, &FitOptions { contamination: 0.5, ..Default::default() }).is_ok());
    invalid(fit("x", vec![vec![1.0, f64::NAN], vec![1.0, 2.0]], FitOptions::default()));
    invalid(fit("x", vec![vec![1.0, f64::INFINITY], vec![1.0, 2.0]], FitOptions::default()));
    invalid(fit("x", vec![vec![1.0, 2.0], vec![1.0]], FitOptions::default()));
    invalid(fit("x", Vec::<Vec<f64>>::new(), FitOptions::default()));
    invalid(fit("x", vec![vec![1.0]], FitOptions::default()));
    invalid(fit("x", vec![Vec::<f64>::new(), vec![]], FitOptions::default()));
    invalid(an.fit("x-latest", &train, &FitOptions::default()));
    invalid(an.fit("x", &train, &FitOptions { nu: Some(0.0), ..Default::default() }));
    invalid(an.fit("x", &train, &FitOptions { epochs: 0, ..Default::default() }));
    assert!(matches!(an.fit("../evil", &train, &FitOptions::default()), Err(Error::InvalidField { .. })));
    invalid(Backend::parse("nope"));
    assert!(serde_json::from_value::<Backend>(json!("nope")).is_err());

    let fitted = an.fit("x", &train, &FitOptions { overwrite: true, ..Default::default() }).unwrap();
    assert_eq!(fitted.model.name, "x");
    let score = |name: &str, data: Vec<Vec<f64>>, o: ScoreOptions| an.score(&name.into(), &rows(data), &o);
    let dim = invalid(score("x", vec![vec![1.0, 2.0, 3.0]], none()));
    assert!(dim.contains("expects 2 features"), "{dim}");
    invalid(score("x", vec![vec![1.0, f64::NAN]], none()));
    invalid(score("x", vec![vec![1.0, 2.0], vec![3.0]], none()));
    invalid(score("x", Vec::<Vec<f64>>::new(), none()));
    invalid(score("x", vec![vec![1.0, 2.0]], ScoreOptions { threshold: Some(f64::NAN), ..none() }));
    assert!(matches!(score("missing", vec![vec![1.0, 2.0]], none()), Err(Error::NotFound { .. })));
    assert!(matches!(score("missing-latest", vec![vec![1.0, 2.0]], none()), Err(Error::NotFound { .. })));
    assert!(matches!(an.score(&ModelRef::new("x").backend(Backend::Hbos), &rows(vec![vec![1.0, 2.0]]), &none()), Err(Error::NotFound { .. })));
    assert!(matches!(an.load(&"missing".into()), Err(Error::NotFound { .. })));
    assert!(matches!(an.save(&"missing".into()), Err(Error::NotFound { .. })));
}

#[test]
fn other_normalisations_use_their_own_threshold() {
    let (_dir, lf) = open();
    let an = lf.ml().anomaly();
    let train = rows(blob(200, 2, 21));
    an.fit("n", &train, &FitOptions { overwrite: true, ..Default::default() }).unwrap();
    let z = an.score(&"n".into(), &train, &ScoreOptions { normalization: Some(Normalization::Zscore), ..none() }).unwrap();
    let s = an.score(&"n".into(), &train, &none()).unwrap();
    assert_eq!(z.normalization, Normalization::Zscore);
    // The same rows are flagged: the thresholds are the same percentile of monotone transforms.
    let fz: Vec<usize> = z.rows.iter().filter(|p| p.is_anomaly).map(|p| p.index).collect();
    let fs: Vec<usize> = s.rows.iter().filter(|p| p.is_anomaly).map(|p| p.index).collect();
    assert_eq!(fz, fs);
    assert!(!fs.is_empty());
    assert_eq!(s.anomaly_count(), fs.len());
    assert_eq!(s.anomaly_rate(), fs.len() as f64 / 200.0);
}

#[test]
fn filenames_parse() {
    assert_eq!(parse_filename("a_b_one_class_svm.json"), Some(("a_b".into(), Backend::OneClassSvm)));
    assert_eq!(parse_filename("x_20260101_120000_local_outlier_factor.json"), Some(("x_20260101_120000".into(), Backend::LocalOutlierFactor)));
    assert_eq!(parse_filename("x_joblib.json"), None);
    assert_eq!(parse_filename("_hbos.json"), None);
    assert_eq!(base_of("sensor_20260101_120000"), "sensor");
    assert_eq!(base_of("a_b_20260101_120000_2"), "a_b");
    assert_eq!(base_of("plain"), "plain");
    assert_eq!(base_of("x_1_2"), "x_1_2");
}

#[test]
fn backends_are_listed() {
    let (_dir, lf) = open();
    let b = lf.ml().anomaly().backends();
    assert_eq!(b.len(), 6);
    assert_eq!(b.iter().filter(|i| i.is_legacy).count(), 4);
    assert_eq!(b.iter().map(|i| i.backend).collect::<Vec<_>>(), Backend::ALL);
    assert_eq!(b[0].backend.as_str(), "isolation_forest");
}

/// LOF and one-class SVM against scikit-learn 1.9.1 on two ADBench sets with duplicate
/// rows and discrete-valued features (breastw: 34 % duplicate rows; thyroid: 3 %),
/// under every scaling. Row `i` is a test row when `i % 10 >= 7`. The figures are
/// scikit-learn's (`LocalOutlierFactor(n_neighbors=20, novelty=True)`,
/// `OneClassSVM(gamma="scale", nu=0.1)` after the named scaler, scored with
/// `-score_samples`). On breastw LOF depends on the order of ties among equidistant
/// neighbours: scikit-learn's own kd_tree, ball_tree, brute force and shuffled row
/// orders span 0.410 to 0.430 (robust) and 0.393 to 0.420 (min-max), so LOF is held
/// to 0.03 there and to 0.002 on thyroid; the SVM to 0.002 everywhere.
#[test]
fn lof_and_svm_match_scikit_learn_on_data_with_duplicates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/anomaly/adbench");
    if !root.is_dir() {
        eprintln!("SKIP lof_and_svm_match_scikit_learn_on_data_with_duplicates: {} is absent", root.display());
        return;
    }
    let sklearn: [(&str, Scaling, f64, f64); 8] = [
        ("38_thyroid", Scaling::Robust, 0.6724, 0.9791),
        ("38_thyroid", Scaling::Standard, 0.7818, 0.9188),
        ("38_thyroid", Scaling::MinMax, 0.8725, 0.9173),
        ("38_thyroid", Scaling::None, 0.9024, 0.9049),
        ("4_breastw", Scaling::Robust, 0.4108, 0.3377),
        ("4_breastw", Scaling::Standard, 0.4310, 0.3435),
        ("4_breastw", Scaling::MinMax, 0.4129, 0.3414),
        ("4_breastw", Scaling::None, 0.4121, 0.3414),
    ];
    for (set, scaling, lof_auc, svm_auc) in sklearn {
        let path = root.join(format!("{set}.npz"));
        let x = npz::read_npz(&path, "X").unwrap().rows();
        let y = npz::read_npz(&path, "y").unwrap().data;
        let (mut train, mut test, mut labels) = (vec![], vec![], vec![]);
        for (i, row) in x.into_iter().enumerate() {
            if i % 10 >= 7 {
                test.push(row);
                labels.push(y[i]);
            } else {
                train.push(row);
            }
        }
        let test = rows(test);
        let lof_tol = if set == "4_breastw" { 0.03 } else { 0.002 };
        for (backend, want, tol) in [(Backend::LocalOutlierFactor, lof_auc, lof_tol), (Backend::OneClassSvm, svm_auc, 0.002)] {
            let m = AnomalyModel::fit("m", &rows(train.clone()), &FitOptions { scaling, ..opts(backend) }).unwrap();
            let raw = m.raw_scores(&test, None).unwrap();
            assert!(raw.iter().all(|v| v.is_finite()), "{set} {backend} {scaling}: non-finite score");
            let auc = roc_auc(&raw, &labels);
            assert!((auc - want).abs() <= tol, "{set} {backend} {scaling}: ROC-AUC {auc:.4}, scikit-learn {want:.4}");
        }
    }
}

/// Groups of identical rows larger than `n_neighbors` give zero k-distances (infinite
/// density but for scikit-learn's 1e-10); scores stay finite and a far point still
/// ranks above every training row.
#[test]
fn duplicates_beyond_k_keep_lof_finite() {
    let mut data: Vec<Vec<f64>> = (0..30).map(|_| vec![1.0, 2.0]).collect();
    data.extend((0..30).map(|_| vec![1.0, 3.0]));
    data.extend(blob(40, 2, 3));
    for scaling in Scaling::ALL {
        let m = AnomalyModel::fit("m", &rows(data.clone()), &FitOptions { scaling, ..opts(Backend::LocalOutlierFactor) }).unwrap();
        let train = m.raw_scores(&rows(data.clone()), None).unwrap();
        let far = m.raw_scores(&rows(vec![vec![50.0, -40.0]]), None).unwrap()[0];
        assert!(train.iter().all(|v| v.is_finite()) && far.is_finite(), "{scaling}");
        assert!(train.iter().all(|v| *v < far), "{scaling}: far point {far} not above the training rows");
    }
}
