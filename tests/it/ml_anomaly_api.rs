//! Anomaly detection endpoints over a real socket: `/v1/ml/anomaly/*` on the API and
//! `/v1/anomaly/*` on the runtime listener.

use crate::support::{assert_detail, TestServer};
use serde_json::{json, Value};

/// 20 readings around 22-25 degrees (the reference's sensor example).
fn readings() -> Value {
    json!([
        [22.1],
        [23.5],
        [21.8],
        [24.2],
        [22.7],
        [23.1],
        [21.5],
        [24.8],
        [22.3],
        [23.9],
        [21.2],
        [24.5],
        [22.8],
        [23.2],
        [21.9],
        [24.1],
        [22.5],
        [23.7],
        [21.6],
        [24.3]
    ])
}

fn grid(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!([(i % 10) as f64 * 0.1, (i / 10) as f64 * 0.1, ((i * 7) % 11) as f64 * 0.1])).collect())
}

#[tokio::test]
async fn fit_score_detect_with_versions_and_latest() {
    let s = TestServer::start().await;
    let (st, fit) = s.post("/v1/ml/anomaly/fit", json!({"model": "sensor", "backend": "isolation_forest", "data": readings(), "contamination": 0.05})).await;
    assert_eq!(st, 200, "{fit}");
    assert_eq!(fit["object"], "fit_result");
    assert_eq!(fit["status"], "fitted");
    assert_eq!(fit["base_name"], "sensor");
    assert_eq!(fit["overwrite"], false);
    assert_eq!(fit["samples_fitted"], 20);
    assert_eq!(fit["model_params"]["input_dim"], 1);
    assert_eq!(fit["model_params"]["contamination"], 0.05);
    let versioned = fit["model"].as_str().unwrap().to_string();
    assert!(versioned.starts_with("sensor_") && versioned.len() == "sensor_20260101_120000".len(), "{versioned}");
    assert_eq!(fit["versioned_name"], versioned.as_str());
    assert!(fit["saved_path"].as_str().unwrap().ends_with(&format!("{versioned}_isolation_forest.json")));
    let th = fit["model_params"]["threshold"].as_f64().unwrap();
    assert!(th > 0.5 && th < 1.0, "{th}");

    let probe = json!([[22.0], [23.5], [0.0], [100.0], [21.5]]);
    let (st, sc) = s.post("/v1/ml/anomaly/score", json!({"model": "sensor-latest", "backend": "isolation_forest", "data": probe})).await;
    assert_eq!(st, 200, "{sc}");
    assert_eq!(sc["object"], "list");
    assert_eq!(sc["model"], versioned.as_str());
    let pts = sc["data"].as_array().unwrap();
    assert_eq!(pts.len(), 5);
    let flags: Vec<bool> = pts.iter().map(|p| p["is_anomaly"].as_bool().unwrap()).collect();
    // 100 is flagged at the contamination threshold; typical readings are not; 0 (beyond
    // the low end, where a forest scores like the lowest training reading) outranks them.
    assert!(flags[3] && !flags[0] && !flags[1], "{flags:?}");
    let score = |i: usize| pts[i]["score"].as_f64().unwrap();
    assert!(score(2) > score(0) && score(2) > score(1) && score(3) > score(0), "{sc}");
    let count = flags.iter().filter(|f| **f).count();
    for (i, p) in pts.iter().enumerate() {
        assert_eq!(p["index"], i);
        assert!(p["raw_score"].is_f64());
        let sc = p["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&sc));
    }
    assert_eq!(sc["summary"]["total_points"], 5);
    assert_eq!(sc["summary"]["anomaly_count"], count);
    assert_eq!(sc["summary"]["anomaly_rate"], count as f64 / 5.0);
    assert_eq!(sc["summary"]["threshold"], th);

    let (st, det) = s
        .post(
            "/v1/ml/anomaly/detect",
            json!({"model": "sensor-latest", "data": [[22.0], [23.5], [0.0], [21.5], [100.0], [24.0], [-10.0], [22.8], [35.0], [23.2]], "threshold": 0.5}),
        )
        .await;
    assert_eq!(st, 200, "{det}");
    let idx: Vec<u64> = det["data"].as_array().unwrap().iter().map(|p| p["index"].as_u64().unwrap()).collect();
    assert!(idx.contains(&2) && idx.contains(&4) && idx.contains(&6) && idx.contains(&8), "{det}");
    assert!(det["data"][0].get("is_anomaly").is_none(), "detect has no is_anomaly");
    assert_eq!(det["total_count"], idx.len());
    assert_eq!(det["summary"]["anomalies_detected"], idx.len());
    assert_eq!(det["summary"]["threshold"], 0.5);
    assert_eq!(det["backend"], "isolation_forest");

    // A second version: -latest follows it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, fit2) = s.post("/v1/ml/anomaly/fit", json!({"model": "sensor", "data": readings(), "normalization": "zscore"})).await;
    let v2 = fit2["model"].as_str().unwrap().to_string();
    assert_ne!(v2, versioned);
    let (_, sc2) = s.post("/v1/ml/anomaly/score", json!({"model": "sensor-latest", "data": [[22.0], [60.0]]})).await;
    assert_eq!(sc2["model"], v2.as_str());
    assert_eq!(sc2["normalization"], "zscore");
    assert_eq!(sc2["data"][1]["is_anomaly"], true);

    let (st, list) = s.get("/v1/ml/anomaly/models").await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 2);
    assert_eq!(list["data"][0]["name"], v2.as_str(), "newest first");
    assert_eq!(list["data"][0]["base_name"], "sensor");
    assert_eq!(list["data"][0]["is_versioned"], true);
    assert!(list["data"][0]["size_bytes"].as_u64().unwrap() > 100);
    assert!(list["models_dir"].as_str().unwrap().ends_with("models/anomaly"));
}

#[tokio::test]
async fn save_load_delete_and_runtime_routes() {
    let s = TestServer::start().await;
    for backend in ["isolation_forest", "one_class_svm", "local_outlier_factor", "ecod", "hbos", "autoencoder"] {
        let mut body = json!({"model": "m", "backend": backend, "data": grid(60), "overwrite": true});
        if backend == "autoencoder" {
            body["epochs"] = json!(20);
        }
        let (st, r) = s.runtime_post("/v1/anomaly/fit", body).await;
        assert_eq!(st, 200, "{backend}: {r}");
        assert_eq!(r["model"], "m");
        let (st, r) = s.runtime_post("/v1/anomaly/detect", json!({"model": "m", "backend": backend, "data": [[0.5, 0.2, 0.5], [30.0, -30.0, 30.0]]})).await;
        assert_eq!(st, 200, "{backend}: {r}");
        let idx: Vec<u64> = r["data"].as_array().unwrap().iter().map(|p| p["index"].as_u64().unwrap()).collect();
        assert_eq!(idx, vec![1], "{backend}: {r}");
    }
    // A chosen scaling is kept with the model and reported; it changes the scores.
    let mut scores = vec![];
    for scaling in ["robust", "standard", "minmax", "none"] {
        let body = json!({"model": format!("sc_{scaling}"), "backend": "local_outlier_factor", "scaling": scaling, "data": grid(60), "overwrite": true});
        let (st, r) = s.post("/v1/ml/anomaly/fit", body).await;
        assert_eq!(st, 200, "{scaling}: {r}");
        assert_eq!(r["model_params"]["scaling"], scaling);
        let (st, r) = s.post("/v1/ml/anomaly/load", json!({"model": format!("sc_{scaling}")})).await;
        assert_eq!((st, r["model_params"]["scaling"].as_str()), (200, Some(scaling)), "{r}");
        let (st, r) = s.post("/v1/ml/anomaly/score", json!({"model": format!("sc_{scaling}"), "data": [[5.0, 0.5, 0.0]], "normalization": "raw"})).await;
        assert_eq!(st, 200, "{r}");
        scores.push(r["data"][0]["raw_score"].as_f64().unwrap());
    }
    assert!(scores[0] != scores[1] && scores[1] != scores[3], "{scores:?}");
    // Six backends under one name: score needs a backend.
    let d = assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "m", "data": [[1, 2, 3]]})).await, 422);
    assert!(d.contains("several backends"), "{d}");

    let (st, r) = s.post("/v1/ml/anomaly/save", json!({"model": "m", "backend": "hbos"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["object"], "save_result");
    assert_eq!(r["filename"], "m_hbos.json");
    assert_eq!(r["status"], "saved");
    let (st, r) = s.post("/v1/ml/anomaly/load", json!({"model": "m-latest", "backend": "one_class_svm"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "loaded");
    assert_eq!(r["model_params"]["input_dim"], 3);

    let (st, list) = s.get("/v1/ml/anomaly/models").await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 10); // six backends of `m`, four scalings
    let (st, rl) = crate::support::split(s.http.get(format!("{}/v1/anomaly/models", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(rl["total"], 10);

    let (st, r) = s.delete("/v1/ml/anomaly/models/m_hbos.json").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["deleted"], true);
    assert_detail(&s.delete("/v1/ml/anomaly/models/m_hbos.json").await, 404);
    assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "m", "backend": "hbos", "data": [[1, 2, 3]]})).await, 404);
    assert_detail(&s.delete("/v1/ml/anomaly/models/nothing.pkl").await, 404);

    let (st, b) = s.get("/v1/ml/anomaly/backends").await;
    assert_eq!(st, 200);
    assert_eq!(b["total"], 6);
    let names: Vec<&str> = b["data"].as_array().unwrap().iter().map(|x| x["backend"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["isolation_forest", "one_class_svm", "local_outlier_factor", "autoencoder", "ecod", "hbos"]);
    for k in ["name", "description", "category", "speed", "memory", "parameters", "best_for", "is_legacy"] {
        assert!(b["data"][0].get(k).is_some(), "{k}");
    }
}

#[tokio::test]
async fn mixed_rows_with_schema() {
    let s = TestServer::start().await;
    let mut data = Vec::new();
    for i in 0..60 {
        let method = if i % 3 == 0 { "POST" } else { "GET" };
        let ua = ["Mozilla/5.0", "Chrome/90.0", "Safari/14.0"][i % 3];
        data.push(json!({"response_time_ms": 100 + i % 7, "bytes": 1000 + (i % 5) * 20, "method": method, "user_agent": ua}));
    }
    let schema = json!({"response_time_ms": "numeric", "bytes": "numeric", "method": "label", "user_agent": "hash"});
    let (st, fit) = s.post("/v1/ml/anomaly/fit", json!({"model": "api-log", "data": data, "schema": schema, "normalization": "zscore", "overwrite": true})).await;
    assert_eq!(st, 200, "{fit}");
    assert_eq!(fit["encoder"]["schema"], schema);
    assert_eq!(fit["encoder"]["features"], json!(["bytes", "method", "response_time_ms", "user_agent"]));
    let (st, det) = s
        .post(
            "/v1/ml/anomaly/detect",
            json!({"model": "api-log", "normalization": "zscore", "threshold": 2.0, "data": [
            {"response_time_ms": 100, "bytes": 1020, "method": "GET", "user_agent": "Mozilla/5.0"},
            {"response_time_ms": 9000, "bytes": 500000, "method": "DELETE", "user_agent": "sqlmap/1.0"}]}),
        )
        .await;
    assert_eq!(st, 200, "{det}");
    assert_eq!(det["total_count"], 1);
    assert_eq!(det["data"][0]["index"], 1);
    assert!(det["data"][0]["score"].as_f64().unwrap() > 2.0);

    // Schema problems are 422.
    let d = assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "api-log", "data": [{"bytes": 1}]})).await, 422);
    assert!(d.contains("response_time_ms") || d.contains("field"), "{d}");
    assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "api-log", "data": [[1, 2, 3, 4]]})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "api-log", "schema": {"bytes": "numeric"}, "data": [{"bytes": 1}]})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/fit", json!({"model": "x", "data": [[1], [2]], "schema": {"a": "numeric"}})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/fit", json!({"model": "x", "data": [{"a": 1}, {"a": 2}], "schema": {"a": "numeric", "b": "label"}})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/fit", json!({"model": "x", "data": [{"a": 1}, {"a": 2}], "schema": {"a": "weird"}})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/fit", json!({"model": "x", "data": [{"a": "high"}, {"a": 2}], "schema": {"a": "numeric"}})).await, 422);
}

#[tokio::test]
async fn bad_input_gives_422_or_404_detail() {
    let s = TestServer::start().await;
    let (st, _) = s.post("/v1/ml/anomaly/fit", json!({"model": "ok", "data": grid(30), "overwrite": true})).await;
    assert_eq!(st, 200);
    let raw = |body: &'static str| {
        let http = s.http.clone();
        let url = s.url("/v1/ml/anomaly/fit");
        async move { crate::support::split(http.post(url).header("content-type", "application/json").body(body).send().await.unwrap()).await }
    };
    // NaN / Infinity are not JSON; a number too large for f64 neither.
    assert_detail(&raw(r#"{"data": [[1.0, NaN], [1, 2]]}"#).await, 422);
    assert_detail(&raw(r#"{"data": [[1.0, Infinity], [1, 2]]}"#).await, 422);
    assert_detail(&raw(r#"{"data": [[1.0, 1e999], [1, 2]]}"#).await, 422);
    for body in [
        json!({"data": [[1, 2], [3]]}),
        json!({"data": [[1, 2], [3, 4]], "contamination": 0}),
        json!({"data": [[1, 2], [3, 4]], "contamination": 0.6}),
        json!({"data": [[1, 2], [3, 4]], "contamination": -0.1}),
        json!({"data": [[1, 2], [3, 4]], "backend": "deep_magic"}),
        json!({"data": [[1, 2], [3, 4]], "scaling": "log"}),
        json!({"data": []}),
        json!({"data": [[1, 2]]}),
        json!({"data": [[1, "a"], [3, 4]]}),
        json!({"data": [[1, 2], {"a": 1}]}),
        json!({"data": "rows"}),
        json!({"model": "bad/name", "data": [[1], [2]]}),
        json!({"model": "x-latest", "data": [[1], [2]]}),
        json!({}),
    ] {
        assert_detail(&s.post("/v1/ml/anomaly/fit", body.clone()).await, 422);
    }
    // Scoring: dimension, ragged, unknown model.
    let d = assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "ok", "data": [[1, 2]]})).await, 422);
    assert!(d.contains("expects 3 features"), "{d}");
    assert_detail(&s.post("/v1/ml/anomaly/detect", json!({"model": "ok", "data": [[1, 2, 3], [1, 2]]})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "ok", "data": [[1, 2, 3]], "normalization": "minmax"})).await, 422);
    assert_detail(&s.post("/v1/ml/anomaly/score", json!({"model": "nope", "data": [[1, 2, 3]]})).await, 404);
    assert_detail(&s.post("/v1/ml/anomaly/detect", json!({"model": "nope-latest", "data": [[1, 2, 3]]})).await, 404);
    assert_detail(&s.post("/v1/ml/anomaly/load", json!({"model": "nope"})).await, 404);
    assert_detail(&s.post("/v1/ml/anomaly/save", json!({"model": "nope"})).await, 404);
    assert_detail(&s.runtime_post("/v1/anomaly/score", json!({"model": "nope", "data": [[1]]})).await, 404);
    // The server is still fine afterwards.
    let (st, _) = s.post("/v1/ml/anomaly/score", json!({"model": "ok", "data": [[0.1, 0.1, 0.1]]})).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn openapi_lists_the_anomaly_routes() {
    let s = TestServer::start().await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    for p in [
        "/v1/ml/anomaly/fit",
        "/v1/ml/anomaly/score",
        "/v1/ml/anomaly/detect",
        "/v1/ml/anomaly/save",
        "/v1/ml/anomaly/load",
        "/v1/ml/anomaly/models",
        "/v1/ml/anomaly/models/{filename}",
        "/v1/ml/anomaly/backends",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
}

#[tokio::test]
async fn fits_on_adbench_cardio_if_present() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/anomaly/odds-csv/cardio.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("SKIP fits_on_adbench_cardio_if_present: {} not found (needs ../shared/data)", path.display());
        return;
    };
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines().skip(1) {
        let v: Vec<f64> = line.split(',').map(|x| x.trim().parse().unwrap()).collect();
        labels.push(v[v.len() - 1]);
        rows.push(v[..v.len() - 1].to_vec());
    }
    let s = TestServer::start().await;
    let (st, fit) = s.post("/v1/ml/anomaly/fit", json!({"model": "cardio", "data": rows, "overwrite": true})).await;
    assert_eq!(st, 200, "{fit}");
    let (_, sc) = s.post("/v1/ml/anomaly/score", json!({"model": "cardio", "data": rows})).await;
    let scores: Vec<f64> = sc["data"].as_array().unwrap().iter().map(|p| p["raw_score"].as_f64().unwrap()).collect();
    // ROC-AUC by ranks (training-set AUC, unsupervised fit).
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    for (r, &i) in idx.iter().enumerate() {
        if labels[i] > 0.5 {
            rank_sum += (r + 1) as f64;
            pos += 1.0;
        }
    }
    let neg = scores.len() as f64 - pos;
    let auc = (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg);
    assert!(auc > 0.85, "isolation forest AUC on cardio {auc}");
}
