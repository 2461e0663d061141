use super::util::Rng;
use super::*;
use crate::LlamaFarm;
use serde_json::json;

fn blob(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (0..d).map(|j| 10.0 * j as f64 + r.normal()).collect()).collect()
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
        Err(e @ Error::Invalid(_)) => e.to_string(),
        other => panic!("expected Error::Invalid, got {other:?}"),
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
        let m = AnomalyModel::fit(&AnomalyFitRequest::new("t", data.clone()).contamination(c).normalization(norm)).unwrap();
        let raw = m.detector.score(&m.scaler.transform(&Mat::from_rows(&data)));
        let normed: Vec<f64> = raw.iter().map(|r| m.stats.apply(*r, norm)).collect();
        assert!((m.threshold - percentile(&normed, (1.0 - c) * 100.0)).abs() < 1e-12);
        // about c of the training rows are above it
        let above = normed.iter().filter(|s| **s > m.threshold).count() as f64 / 200.0;
        assert!((above - c).abs() <= 0.011, "{above} vs {c}");
        assert_eq!(m.threshold_for(norm), m.threshold);
    }
    let fixed = AnomalyModel::fit(&AnomalyFitRequest { threshold: Some(0.77), ..AnomalyFitRequest::new("t", data) }).unwrap();
    assert_eq!(fixed.threshold, 0.77);
}

#[test]
fn every_backend_separates_obvious_outliers() {
    let d = 3;
    let train = blob(300, d, 7);
    let normal_test = blob(60, d, 99);
    for backend in Backend::ALL {
        let mut req = AnomalyFitRequest::new("b", train.clone()).backend(backend).contamination(0.05);
        req.epochs = 60;
        let m = AnomalyModel::fit(&req).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let mut rows = normal_test.clone();
        rows.extend(outliers(d));
        let res = m.score(&AnomalyScoreRequest::new("b", rows)).unwrap();
        assert_eq!(res.data.len(), 63);
        let normal: Vec<f64> = res.data[..60].iter().map(|p| p.raw_score).collect();
        let p90 = percentile(&normal, 90.0);
        let min_out = res.data[60..].iter().map(|p| p.raw_score).fold(f64::INFINITY, f64::min);
        assert!(min_out > p90, "{backend}: outliers {min_out} vs normal p90 {p90}");
        assert!(res.data[60..62].iter().all(|p| p.is_anomaly), "{backend}: {:?}", &res.data[60..]);
        let flagged = res.data[..60].iter().filter(|p| p.is_anomaly).count();
        assert!(flagged <= 12, "{backend}: {flagged} of 60 normal rows flagged");
        assert!(res.data.iter().all(|p| (0.0..=1.0).contains(&p.score)));
    }
}

#[test]
fn fit_save_load_latest_and_delete() {
    let (dir, lf) = open();
    let ml = lf.ml();
    let train = blob(120, 2, 3);
    let first = ml.anomaly_fit(&AnomalyFitRequest::new("sensor", train.clone())).unwrap();
    assert!(registry::is_version_of(&first.model, "sensor") && first.model != "sensor", "{}", first.model);
    assert_eq!(first.base_name, "sensor");
    assert_eq!(first.model_params.input_dim, 2);
    assert!(Path::new(&first.saved_path).is_file());
    let second = ml.anomaly_fit(&AnomalyFitRequest::new("sensor", train.clone()).backend(Backend::Ecod).contamination(0.2)).unwrap();
    let third = ml.anomaly_fit(&AnomalyFitRequest::new("sensor", train.clone())).unwrap();
    assert_ne!(first.model, third.model);

    let probe = vec![vec![0.0, 10.0], vec![50.0, -40.0]];
    // -latest over both backends picks the newest version; with a backend, that backend's newest.
    let latest = ml.anomaly_score(&AnomalyScoreRequest::new("sensor-latest", probe.clone()).backend(Backend::IsolationForest)).unwrap();
    assert_eq!(latest.model, third.model);
    let ecod = ml.anomaly_score(&AnomalyScoreRequest::new("sensor-latest", probe.clone()).backend(Backend::Ecod)).unwrap();
    assert_eq!((ecod.model.as_str(), ecod.backend), (second.model.as_str(), Backend::Ecod));
    assert!(ecod.data[1].is_anomaly && !ecod.data[0].is_anomaly);

    // A fresh handle on the same directory: nothing loaded, scores identical after load.
    let before = ml.anomaly_score(&AnomalyScoreRequest::new(first.model.clone(), probe.clone()).backend(Backend::IsolationForest)).unwrap();
    let lf2 = LlamaFarm::open(dir.path()).unwrap();
    let loaded = lf2.ml().anomaly_load(&AnomalyModelRef::new("sensor-latest")).unwrap();
    assert_eq!((loaded.model.as_str(), loaded.status.as_str()), (third.model.as_str(), "loaded"));
    let after = lf2.ml().anomaly_score(&AnomalyScoreRequest::new(first.model.clone(), probe.clone()).backend(Backend::IsolationForest)).unwrap();
    for (a, b) in before.data.iter().zip(&after.data) {
        assert_eq!((a.raw_score, a.score, a.is_anomaly), (b.raw_score, b.score, b.is_anomaly));
    }
    assert_eq!(after.summary.threshold, first.model_params.threshold);
    let saved = lf2.ml().anomaly_save(&AnomalyModelRef { backend: Some(Backend::IsolationForest), ..AnomalyModelRef::new(first.model.clone()) }).unwrap();
    assert_eq!(saved.filename, format!("{}_isolation_forest.json", first.model));

    let list = ml.anomaly_models().unwrap();
    assert_eq!(list.total, 3);
    assert!(list.data.iter().all(|m| m.is_versioned && m.base_name == "sensor"));
    assert!(list.data.iter().any(|m| m.backend == Backend::Ecod && m.input_dim == 2 && m.samples_fitted == 120));

    // overwrite: true keeps the plain name and replaces it.
    let plain = ml.anomaly_fit(&AnomalyFitRequest::new("plain", train.clone()).overwrite(true)).unwrap();
    assert_eq!(plain.model, "plain");
    ml.anomaly_fit(&AnomalyFitRequest::new("plain", train).overwrite(true).contamination(0.3)).unwrap();
    let stored = ml.anomaly_load(&AnomalyModelRef::new("plain")).unwrap();
    assert_eq!(stored.model_params.contamination, 0.3);

    let del = ml.anomaly_delete(&format!("{}_ecod.json", second.model)).unwrap();
    assert!(del.deleted);
    assert!(matches!(
        ml.anomaly_score(&AnomalyScoreRequest::new(second.model.clone(), probe.clone()).backend(Backend::Ecod)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(ml.anomaly_delete(&format!("{}_ecod.json", second.model)), Err(Error::NotFound { .. })));
    assert!(matches!(ml.anomaly_delete("nothing.txt"), Err(Error::NotFound { .. })));
    assert!(ml.anomaly_delete("../x_ecod.json").is_err());
    // no temp files left behind
    assert!(std::fs::read_dir(ml.anomaly_dir()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn latest_without_backend() {
    let (_dir, lf) = open();
    let ml = lf.ml();
    let a = ml.anomaly_fit(&AnomalyFitRequest::new("solo", blob(30, 2, 1))).unwrap();
    let b = ml.anomaly_fit(&AnomalyFitRequest::new("solo", blob(30, 2, 2))).unwrap();
    assert_ne!(a.model, b.model);
    let r = ml.anomaly_score(&AnomalyScoreRequest::new("solo-latest", vec![vec![0.0, 10.0]])).unwrap();
    assert_eq!(r.model, b.model);
    let l = ml.anomaly_load(&AnomalyModelRef::new("solo-latest")).unwrap();
    assert_eq!(l.model, b.model);
    let old = ml.anomaly_score(&AnomalyScoreRequest::new(a.model.clone(), vec![vec![0.0, 10.0]])).unwrap();
    assert_eq!(old.model, a.model);
}

#[test]
fn several_backends_under_one_name_need_a_backend() {
    let (_dir, lf) = open();
    let ml = lf.ml();
    let train = blob(50, 2, 5);
    ml.anomaly_fit(&AnomalyFitRequest::new("m", train.clone()).overwrite(true)).unwrap();
    ml.anomaly_fit(&AnomalyFitRequest::new("m", train.clone()).overwrite(true).backend(Backend::Hbos)).unwrap();
    let msg = invalid(ml.anomaly_score(&AnomalyScoreRequest::new("m", train.clone())));
    assert!(msg.contains("several backends"), "{msg}");
    let r = ml.anomaly_score(&AnomalyScoreRequest::new("m", train).backend(Backend::Hbos)).unwrap();
    assert_eq!(r.backend, Backend::Hbos);
}

#[test]
fn schema_rows_round_trip() {
    let (_dir, lf) = open();
    let ml = lf.ml();
    let mut rows = Vec::new();
    for i in 0..80 {
        let m = if i % 4 == 0 { "POST" } else { "GET" };
        let ua = ["Mozilla/5.0", "Chrome/90.0"][i % 2];
        rows.push(json!({"response_time_ms": 100 + (i % 9), "bytes": 1000 + (i % 13) * 10, "method": m, "user_agent": ua}));
    }
    let records: Vec<AnomalyRow> = rows.iter().map(|r| serde_json::from_value(r.clone()).unwrap()).collect();
    let schema: BTreeMap<String, FieldEncoding> =
        serde_json::from_value(json!({"response_time_ms": "numeric", "bytes": "numeric", "method": "label", "user_agent": "hash"})).unwrap();
    let mut req = AnomalyFitRequest::new("api", records.clone()).schema(schema.clone()).normalization(Normalization::Zscore);
    req.overwrite = true;
    let fit = ml.anomaly_fit(&req).unwrap();
    assert_eq!(fit.encoder.as_ref().unwrap().features, vec!["bytes", "method", "response_time_ms", "user_agent"]);
    let probe: Vec<AnomalyRow> = [
        json!({"response_time_ms": 104, "bytes": 1050, "method": "GET", "user_agent": "Mozilla/5.0"}),
        json!({"response_time_ms": 9000, "bytes": 500000, "method": "DELETE", "user_agent": "sqlmap/1.0"}),
    ]
    .iter()
    .map(|v| serde_json::from_value(v.clone()).unwrap())
    .collect();
    let det = ml.anomaly_detect(&AnomalyScoreRequest::new("api", probe.clone()).threshold(2.0)).unwrap();
    assert_eq!(det.data.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1]);
    assert_eq!(det.summary.threshold, 2.0);
    // Same schema again is fine; a different one, missing fields or arrays are not.
    let ok = AnomalyScoreRequest { schema: Some(schema.clone()), ..AnomalyScoreRequest::new("api", probe.clone()) };
    assert_eq!(ml.anomaly_score(&ok).unwrap().data.len(), 2);
    let mut other = schema.clone();
    other.insert("method".into(), FieldEncoding::Onehot);
    invalid(ml.anomaly_score(&AnomalyScoreRequest { schema: Some(other), ..AnomalyScoreRequest::new("api", probe) }));
    let missing: AnomalyRow = serde_json::from_value(json!({"bytes": 1})).unwrap();
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("api", vec![missing])));
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("api", vec![vec![1.0, 2.0, 3.0, 4.0]])));
    // Schema naming a field the rows lack, or a schema with array rows, at fit.
    let mut bad = schema.clone();
    bad.insert("nope".into(), FieldEncoding::Numeric);
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("api2", records.clone()).schema(bad)));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("api2", blob(10, 2, 1)).schema(schema)));
    // Inferred schema.
    let inferred = ml.anomaly_fit(&AnomalyFitRequest::new("api3", records)).unwrap();
    assert_eq!(inferred.encoder.unwrap().schema["method"], FieldEncoding::Label);
}

#[test]
fn bad_input_is_invalid_not_a_panic() {
    let (_dir, lf) = open();
    let ml = lf.ml();
    let train = blob(40, 2, 9);
    for c in [0.0, -0.1, 0.51, 1.0, f64::NAN] {
        invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", train.clone()).contamination(c)));
    }
    assert!(ml.anomaly_fit(&AnomalyFitRequest::new("x", train.clone()).contamination(0.5)).is_ok());
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", vec![vec![1.0, f64::NAN], vec![1.0, 2.0]])));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", vec![vec![1.0, f64::INFINITY], vec![1.0, 2.0]])));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", vec![vec![1.0, 2.0], vec![1.0]])));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", Vec::<Vec<f64>>::new())));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", vec![vec![1.0]])));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x", vec![Vec::<f64>::new(), vec![]])));
    invalid(ml.anomaly_fit(&AnomalyFitRequest::new("x-latest", train.clone())));
    invalid(ml.anomaly_fit(&AnomalyFitRequest { nu: Some(0.0), ..AnomalyFitRequest::new("x", train.clone()) }));
    invalid(ml.anomaly_fit(&AnomalyFitRequest { epochs: 0, ..AnomalyFitRequest::new("x", train.clone()) }));
    assert!(matches!(ml.anomaly_fit(&AnomalyFitRequest::new("../evil", train.clone())), Err(Error::Invalid(_) | Error::BadRequest(_))));
    invalid(Backend::parse("nope"));
    assert!(serde_json::from_value::<AnomalyFitRequest>(json!({"backend": "nope", "data": [[1]]})).is_err());

    let fit = ml.anomaly_fit(&AnomalyFitRequest::new("x", train).overwrite(true)).unwrap();
    assert_eq!(fit.model, "x");
    let dim = invalid(ml.anomaly_score(&AnomalyScoreRequest::new("x", vec![vec![1.0, 2.0, 3.0]])));
    assert!(dim.contains("expects 2 features"), "{dim}");
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("x", vec![vec![1.0, f64::NAN]])));
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("x", vec![vec![1.0, 2.0], vec![3.0]])));
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("x", Vec::<Vec<f64>>::new())));
    invalid(ml.anomaly_score(&AnomalyScoreRequest::new("x", vec![vec![1.0, 2.0]]).threshold(f64::NAN)));
    assert!(matches!(ml.anomaly_score(&AnomalyScoreRequest::new("missing", vec![vec![1.0, 2.0]])), Err(Error::NotFound { .. })));
    assert!(matches!(ml.anomaly_score(&AnomalyScoreRequest::new("missing-latest", vec![vec![1.0, 2.0]])), Err(Error::NotFound { .. })));
    assert!(matches!(
        ml.anomaly_score(&AnomalyScoreRequest::new("x", vec![vec![1.0, 2.0]]).backend(Backend::Hbos)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(ml.anomaly_load(&AnomalyModelRef::new("missing")), Err(Error::NotFound { .. })));
    assert!(matches!(ml.anomaly_save(&AnomalyModelRef::new("missing")), Err(Error::NotFound { .. })));
}

#[test]
fn other_normalisations_use_their_own_threshold() {
    let (_dir, lf) = open();
    let ml = lf.ml();
    let train = blob(200, 2, 21);
    ml.anomaly_fit(&AnomalyFitRequest::new("n", train.clone()).overwrite(true)).unwrap();
    let z = ml.anomaly_score(&AnomalyScoreRequest::new("n", train.clone()).normalization(Normalization::Zscore)).unwrap();
    let s = ml.anomaly_score(&AnomalyScoreRequest::new("n", train)).unwrap();
    assert_eq!(z.normalization, Normalization::Zscore);
    // The same rows are flagged: the thresholds are the same percentile of monotone transforms.
    let fz: Vec<usize> = z.data.iter().filter(|p| p.is_anomaly).map(|p| p.index).collect();
    let fs: Vec<usize> = s.data.iter().filter(|p| p.is_anomaly).map(|p| p.index).collect();
    assert_eq!(fz, fs);
    assert!(!fs.is_empty());
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
    let b = lf.ml().anomaly_backends();
    assert_eq!(b.total, 6);
    assert_eq!(b.data.iter().filter(|i| i.is_legacy).count(), 4);
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["data"][0]["backend"], "isolation_forest");
}
