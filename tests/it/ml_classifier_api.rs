//! SetFit classifiers over a real socket: `/v1/ml/classifier/*` on the API,
//! `/v1/classifier/*` and `/v1/classify` on the runtime, with the real all-MiniLM-L6-v2.

use crate::support::{assert_detail, split, TestServer};
use serde_json::{json, Value};

fn intents() -> Value {
    let data = [
        (
            "booking",
            [
                "I need to book a flight to New York",
                "Reserve a hotel room for two nights",
                "Can you book me a table for dinner tonight",
                "I'd like to make a reservation for Friday",
            ],
        ),
        (
            "cancellation",
            [
                "Cancel my reservation please",
                "I want to cancel my booking",
                "Please cancel the order I placed yesterday",
                "Call off my hotel stay, I no longer need it",
            ],
        ),
        ("weather", ["What's the weather like tomorrow?", "Will it rain this afternoon?", "How hot will it be this weekend?", "Is it going to snow in Denver?"]),
    ];
    Value::Array(data.iter().flat_map(|(l, ts)| ts.iter().map(move |t| json!({"text": t, "label": l}))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifier_fit_predict_lifecycle_while_health_keeps_answering() {
    let s = TestServer::start_with_models().await;
    // Fit in the background; /health must keep answering while it trains.
    let http = s.http.clone();
    let url = s.url("/v1/ml/classifier/fit");
    let fit = tokio::spawn(async move {
        let r = http.post(url).json(&json!({"model": "intent", "training_data": intents(), "num_iterations": 5, "batch_size": 16})).send().await.unwrap();
        split(r).await
    });
    let mut answered_during_fit = 0;
    while !fit.is_finished() {
        let (st, _) = s.get("/health").await;
        assert_eq!(st, 200);
        if !fit.is_finished() {
            answered_during_fit += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (st, f) = fit.await.unwrap();
    assert_eq!(st, 200, "{f}");
    assert!(answered_during_fit >= 1, "the server did not answer /health while a fit ran");
    assert_eq!(f["object"], "fit_result");
    assert_eq!(f["status"], "fitted");
    assert_eq!(f["auto_saved"], true);
    assert_eq!(f["base_name"], "intent");
    assert_eq!(f["samples_fitted"], 12);
    assert_eq!(f["num_classes"], 3);
    assert_eq!(f["labels"], json!(["booking", "cancellation", "weather"]));
    assert_eq!(f["overwrite"], false);
    let name = f["model"].as_str().unwrap().to_string();
    assert!(name.starts_with("intent_") && name == f["versioned_name"], "{f}");
    assert!(f["training_time_ms"].as_f64().unwrap() > 0.0);

    let texts = json!(["Book me a seat on the train to Boston", "Please cancel my subscription", "Is it sunny outside today?"]);
    let (st, p) = s.post("/v1/ml/classifier/predict", json!({"model": "intent-latest", "texts": texts})).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["object"], "list");
    assert_eq!(p["model"], name.as_str());
    assert_eq!(p["total_count"], 3);
    let labels: Vec<&str> = p["data"].as_array().unwrap().iter().map(|d| d["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["booking", "cancellation", "weather"], "{p}");
    let d0 = &p["data"][0];
    assert_eq!(d0["text"], "Book me a seat on the train to Boston");
    assert_eq!(d0["score"], d0["all_scores"]["booking"]);
    assert_eq!(d0["all_scores"].as_object().unwrap().len(), 3);

    // The runtime listener serves the same model, and /v1/classify by name.
    let (st, rp) = s.runtime_post("/v1/classifier/predict", json!({"model": name, "texts": texts})).await;
    assert_eq!(st, 200, "{rp}");
    assert_eq!(rp["data"], p["data"]);
    let (st, c) = s.runtime_post("/v1/classify", json!({"model": "intent-latest", "texts": ["Will it snow tomorrow?"]})).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["data"][0]["index"], 0);
    assert_eq!(c["data"][0]["label"], "weather");
    let d = assert_detail(&s.runtime_post("/v1/classify", json!({"model": "distilbert-base-uncased-finetuned-sst-2-english", "texts": ["great"]})).await, 503);
    assert!(d.contains("SetFit"), "{d}");

    // Save with a description, list, load (-latest), delete.
    let (st, sv) = s.post("/v1/ml/classifier/save", json!({"model": name, "description": "intent router"})).await;
    assert_eq!(st, 200, "{sv}");
    assert_eq!(sv["object"], "save_result");
    assert_eq!(sv["status"], "saved");
    let (st, l) = s.get("/v1/ml/classifier/models").await;
    assert_eq!(st, 200);
    assert_eq!(l["data"][0]["name"], name.as_str());
    assert_eq!(l["data"][0]["description"], "intent router");
    assert_eq!(l["data"][0]["labels"], json!(["booking", "cancellation", "weather"]));
    let (st, rl) = split(s.http.get(format!("{}/v1/classifier/models", s.runtime_base)).send().await.unwrap()).await;
    assert_eq!(st, 200);
    assert_eq!(rl["data"], l["data"]);
    let (st, ld) = s.post("/v1/ml/classifier/load", json!({"model": "intent-latest"})).await;
    assert_eq!(st, 200, "{ld}");
    assert_eq!(ld["object"], "load_result");
    assert_eq!(ld["model"], name.as_str());
    assert_eq!(ld["status"], "loaded");
    let (st, p2) = s.post("/v1/ml/classifier/predict", json!({"model": name, "texts": texts})).await;
    assert_eq!(st, 200);
    assert_eq!(p2["data"], p["data"], "a reloaded model predicts identically");

    let (st, del) = s.delete(&format!("/v1/ml/classifier/models/{name}")).await;
    assert_eq!(st, 200, "{del}");
    assert_eq!(del["status"], "deleted");
    assert_detail(&s.delete(&format!("/v1/ml/classifier/models/{name}")).await, 404);
    assert_detail(&s.post("/v1/ml/classifier/predict", json!({"model": "intent-latest", "texts": ["x"]})).await, 404);
    let (_, l) = s.get("/v1/ml/classifier/models").await;
    assert_eq!(l["data"], json!([]));
}

#[tokio::test]
async fn classifier_bad_input_is_a_detail() {
    let s = TestServer::start().await;
    let two = json!([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]);
    for (body, status) in [
        (json!({"model": "m", "training_data": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]}), 422),
        (json!({"model": "m", "training_data": []}), 422),
        (json!({"model": "m", "training_data": [{"text": "", "label": "x"}, {"text": "b", "label": "y"}]}), 422),
        (json!({"model": "m"}), 422),
        (json!({"model": "m", "training_data": "text"}), 422),
        (json!({"model": "m", "training_data": two, "num_iterations": 0}), 422),
        (json!({"model": "m", "training_data": two, "batch_size": -1}), 422),
        (json!({"model": "m", "training_data": two, "num_iterations": "many"}), 422),
        (json!({"model": "m", "training_data": two, "nonsense": 1}), 422),
        (json!({"model": "../x", "training_data": two}), 422),
        (json!({"model": "m", "training_data": two, "base_model": "nobody/nothing"}), 503),
    ] {
        assert_detail(&s.post("/v1/ml/classifier/fit", body.clone()).await, status);
    }
    // Missing base model: the detail says how to fetch it.
    let d = assert_detail(&s.post("/v1/ml/classifier/fit", json!({"model": "m", "training_data": two})).await, 503);
    assert!(d.contains("fetch-models"), "{d}");
    assert_detail(&s.post("/v1/ml/classifier/predict", json!({"model": "nope", "texts": ["x"]})).await, 404);
    assert_detail(&s.post("/v1/ml/classifier/predict", json!({"model": "nope-latest", "texts": ["x"]})).await, 404);
    assert_detail(&s.post("/v1/ml/classifier/predict", json!({"model": "nope", "texts": []})).await, 422);
    assert_detail(&s.post("/v1/ml/classifier/predict", json!({"model": "nope", "texts": "x"})).await, 422);
    assert_detail(&s.post("/v1/ml/classifier/load", json!({"model": "nope"})).await, 404);
    assert_detail(&s.post("/v1/ml/classifier/save", json!({"model": "nope"})).await, 404);
    assert_detail(&s.delete("/v1/ml/classifier/models/nope").await, 404);
    assert_detail(&s.runtime_post("/v1/classifier/predict", json!({"model": "nope", "texts": ["x"]})).await, 404);
    let d = assert_detail(&s.runtime_post("/v1/classify", json!({"model": "org/sentiment", "texts": ["x"]})).await, 503);
    assert!(d.contains("/v1/classifier/fit"), "{d}");
    assert_detail(&s.runtime_post("/v1/classify", json!({"model": "x", "texts": []})).await, 422);
    let (st, l) = s.get("/v1/ml/classifier/models").await;
    assert_eq!(st, 200);
    assert_eq!(l["total"], 0);
}
