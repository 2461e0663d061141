use super::native::{self, NativeBert};
use super::pairs::{sample_pairs, Rng};
use super::train::{batch_loss, eval_loss, train, TrainConfig, TrainableBert};
use super::*;
use crate::{LlamaFarm, ModelCache};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A tiny randomly initialised BERT (same tensor names as a real checkpoint).
fn tiny_bert(dir: &Path) {
    let (vocab, h, inter, layers, heads, maxpos) = (50usize, 16usize, 32usize, 2usize, 2usize, 32usize);
    let cfg = serde_json::json!({
        "vocab_size": vocab, "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": inter, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": maxpos,
        "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut rng = Rng::new(9);
    let mut rand = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.below(20001) as f32 / 10000.0 - 1.0) * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = |n: usize| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert("embeddings.word_embeddings.weight".into(), rand(&[vocab, h], 0.5));
    t.insert("embeddings.position_embeddings.weight".into(), rand(&[maxpos, h], 0.1));
    t.insert("embeddings.token_type_embeddings.weight".into(), rand(&[2, h], 0.1));
    t.insert("embeddings.LayerNorm.weight".into(), ones(h));
    t.insert("embeddings.LayerNorm.bias".into(), zeros(h));
    for i in 0..layers {
        let p = format!("encoder.layer.{i}");
        for (name, o, inn) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            t.insert(format!("{p}.{name}.weight"), rand(&[o, inn], 0.3));
            t.insert(format!("{p}.{name}.bias"), zeros(o));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.insert(format!("{p}.{ln}.weight"), ones(h));
            t.insert(format!("{p}.{ln}.bias"), zeros(h));
        }
    }
    t.insert("pooler.dense.weight".into(), rand(&[h, h], 0.1));
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}

#[test]
fn contrastive_training_lowers_the_loss_and_saves_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let model = TrainableBert::load(dir.path()).unwrap();
    assert!(model.frozen.contains_key("pooler.dense.weight"));
    // Two "classes" of token sequences: low ids vs high ids, varied lengths.
    let mut rng = Rng::new(1);
    let mut tokens = Vec::new();
    let mut labels = Vec::new();
    for i in 0..12 {
        let class = i % 2;
        let len = 3 + rng.below(6);
        let seq: Vec<u32> = (0..len).map(|_| (1 + class * 24 + rng.below(24)) as u32).collect();
        tokens.push(seq);
        labels.push(class);
    }
    let pairs = sample_pairs(&labels, 4, &mut Rng::new(2));
    let before = eval_loss(&model, &tokens, &pairs, 0).unwrap();
    let cfg = TrainConfig { batch_size: 8, epochs: 3, learning_rate: 1e-3, micro_batch: 4, ..Default::default() };
    let report = train(&model, &tokens, &pairs, 0, &cfg, &mut Rng::new(3)).unwrap();
    assert_eq!(report.losses.len(), 3 * pairs.len().div_ceil(8));
    let after = eval_loss(&model, &tokens, &pairs, 0).unwrap();
    assert!(after < before * 0.7, "loss {before} -> {after}");

    // Saved weights reload to the same values (trained + frozen tensors).
    let out = dir.path().join("trained.safetensors");
    model.save(&out).unwrap();
    let back = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert!(back.contains_key("pooler.dense.weight"));
    let w = model.varmap.data().lock().unwrap()["encoder.layer.0.attention.self.query.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w2 = back["encoder.layer.0.attention.self.query.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(w, w2);
}

#[test]
fn the_training_forward_matches_the_inference_model() {
    // Our differentiable forward must compute what candle-transformers' BertModel
    // (used at predict time) computes.
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let model = TrainableBert::load(dir.path()).unwrap();
    let seqs = vec![vec![1u32, 5, 9, 2], vec![3u32, 7]];
    let ours = model.forward_pooled(&seqs, 0).unwrap().to_vec2::<f32>().unwrap();
    let cfg: candle_transformers::models::bert::Config = serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap(),
        candle_core::DType::F32,
        &Device::Cpu,
    );
    let bert = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let ids = Tensor::new(s.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let types = ids.zeros_like().unwrap();
        let hidden = bert.forward(&ids, &types, None).unwrap().squeeze(0).unwrap();
        let mean = hidden.mean(0).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours[i].iter().zip(&mean) {
            assert!((a - b).abs() < 1e-4, "row {i}: {a} vs {b}");
        }
    }
}

/// Token sequences of two "classes" (low vs high ids), varied lengths.
fn two_class_tokens(n: usize) -> (Vec<Vec<u32>>, Vec<usize>) {
    let mut rng = Rng::new(1);
    let (mut tokens, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 2;
        let len = 3 + rng.below(6);
        tokens.push((0..len).map(|_| (1 + class * 24 + rng.below(24)) as u32).collect::<Vec<u32>>());
        labels.push(class);
    }
    (tokens, labels)
}

/// The tiny random BERT loaded by both trainers, with two-class token data and pairs.
fn both_trainers() -> (tempfile::TempDir, TrainableBert, NativeBert, Vec<Vec<u32>>, Vec<super::pairs::Pair>) {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path());
    let auto = TrainableBert::load(dir.path()).unwrap();
    let native = NativeBert::load(dir.path()).unwrap();
    let (tokens, labels) = two_class_tokens(12);
    let pairs = sample_pairs(&labels, 4, &mut Rng::new(2));
    (dir, auto, native, tokens, pairs)
}

#[test]
fn native_loss_and_every_gradient_match_candle_autograd() {
    let (_dir, auto, mut native, tokens, pairs) = both_trainers();
    let batch = &pairs[..10];
    let lt = batch_loss(&auto, &tokens, batch, 0, 4).unwrap();
    let want_loss = lt.to_scalar::<f32>().unwrap();
    let g = lt.backward().unwrap();
    let data = auto.varmap.data().lock().unwrap().clone();
    // One group, and (row_cap 10) several groups forwarded twice: same numbers.
    for cap in [2048, 10] {
        native.row_cap = cap;
        let mut grads = native.zero_grads();
        let loss = native.loss_and_grads(&tokens, batch, Some(&mut grads)).unwrap();
        assert!((loss - want_loss).abs() < 1e-5 * (1.0 + want_loss.abs()), "loss {loss} vs {want_loss}");
        assert_eq!(native.names().len(), data.len(), "every trained tensor has a gradient slot");
        for (name, got) in native.names().iter().zip(&grads) {
            let want: Vec<f32> = g.get(data[name].as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 2e-4 * scale + 1e-7, "cap {cap}, {name}[{i}]: {a} vs {b} (max |grad| {scale})");
            }
        }
    }
}

#[test]
fn native_training_follows_the_autograd_trajectory() {
    let (dir, auto, mut native, tokens, pairs) = both_trainers();
    let cfg = TrainConfig { batch_size: 8, epochs: 2, learning_rate: 1e-3, micro_batch: 4, ..Default::default() };
    let a = train(&auto, &tokens, &pairs, 0, &cfg, &mut Rng::new(3)).unwrap();
    let n = native::train(&mut native, &tokens, &pairs, &cfg, &mut Rng::new(3)).unwrap();
    assert_eq!(a.losses.len(), n.losses.len());
    for (i, (x, y)) in a.losses.iter().zip(&n.losses).enumerate() {
        assert!((x - y).abs() < 2e-3 * (1.0 + x.abs()), "step {i}: autograd {x} vs native {y}");
    }
    assert!(n.losses.last().unwrap() < &n.losses[0]);
    // The saved file has every tensor (trained and frozen) and loads for inference.
    let out = dir.path().join("native.safetensors");
    native.save(&out).unwrap();
    let back = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert!(back.contains_key("pooler.dense.weight"));
    let w_auto = auto.varmap.data().lock().unwrap()["encoder.layer.1.output.dense.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w_nat = back["encoder.layer.1.output.dense.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = w_auto.iter().zip(&w_nat).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-3, "weights after training differ by {diff}");
}

fn real_lf(dir: &Path) -> LlamaFarm {
    let cache = ModelCache::from_env();
    if !cache.is_available(DEFAULT_BASE_MODEL) {
        panic!("the test suite needs the real {DEFAULT_BASE_MODEL}: run scripts/fetch-models.sh");
    }
    LlamaFarm::open_with(dir, cache).unwrap()
}

fn intents() -> Vec<TrainingExample> {
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
    data.iter().flat_map(|(l, ts)| ts.iter().map(move |t| TrainingExample::new(*t, *l))).collect()
}

#[test]
fn real_model_fit_predict_save_load_latest_delete() {
    let dir = tempfile::tempdir().unwrap();
    let lf = real_lf(dir.path());
    let cls = lf.ml().classifier();
    let fit = cls.fit("intent", &intents(), &FitOptions { num_iterations: 5, ..Default::default() }).unwrap();
    assert_eq!(fit.labels, vec!["booking", "cancellation", "weather"]);
    assert_eq!(fit.num_pairs, 2 * 5 * 12);
    assert_eq!(fit.steps, 120usize.div_ceil(16));
    assert!(registry::is_version_of(&fit.name, "intent") && fit.name != "intent", "{}", fit.name);
    assert_eq!(fit.base_name, "intent");
    let path = fit.path.clone();
    for f in ["model.safetensors", "config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "head.json", "metadata.json", "labels.txt"] {
        assert!(path.join(f).is_file(), "{f} missing");
    }
    // No temp directory left behind.
    assert!(std::fs::read_dir(cls.dir()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with(".tmp")));

    let held_out = vec![
        "Book me a seat on the train to Boston".to_string(),
        "Please cancel my subscription".to_string(),
        "Is it sunny outside today?".to_string(),
        "Reserve a room at the Hilton for Monday".to_string(),
        "Will there be a storm tonight?".to_string(),
        "Cancel my flight".to_string(),
    ];
    let want = ["booking", "cancellation", "weather", "booking", "weather", "cancellation"];
    let pred = cls.predict("intent-latest", &held_out).unwrap();
    assert_eq!(pred.model, fit.name);
    let got: Vec<&str> = pred.predictions.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(got, want, "{:?}", pred.predictions);
    for p in &pred.predictions {
        assert!((p.all_scores.values().sum::<f32>() - 1.0).abs() < 1e-4);
        assert_eq!(p.score, p.all_scores[&p.label]);
    }

    // A fresh handle on the same data directory loads it and predicts identically.
    let lf2 = real_lf(dir.path());
    let loaded = lf2.ml().classifier().load("intent-latest").unwrap();
    assert_eq!(loaded.name, fit.name);
    assert_eq!(loaded.labels, fit.labels);
    let pred2 = lf2.ml().classifier().predict(&fit.name, &held_out).unwrap();
    assert_eq!(pred.predictions, pred2.predictions);
    // Duplicates in one request give identical answers.
    let dup = lf2.ml().classifier().predict(&fit.name, &[held_out[0].clone(), held_out[0].clone()]).unwrap();
    assert_eq!(dup.predictions[0], dup.predictions[1]);
    assert_eq!(dup.predictions[0], pred.predictions[0]);

    // Save a description; list shows it.
    let saved = cls.save(&fit.name, Some("intents v1")).unwrap();
    assert_eq!((saved.name.as_str(), saved.path.as_path()), (fit.name.as_str(), fit.path.as_path()));
    let list = cls.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].description.as_deref(), Some("intents v1"));
    assert_eq!(list[0].base_name, "intent");
    assert!(list[0].is_versioned && list[0].loaded);
    assert_eq!(list[0].labels, fit.labels);

    // A second version: -latest now picks it.
    let fit2 = cls.fit("intent", &intents(), &FitOptions { num_iterations: 1, ..Default::default() }).unwrap();
    assert_ne!(fit2.name, fit.name);
    let p = cls.predict("intent-latest", &["hello".to_string()]).unwrap();
    assert_eq!(p.model, fit2.name);
    assert_eq!(cls.list().unwrap().len(), 2);
    // The runtime's /v1/classify serves it by name too.
    let c = cls.classify("intent-latest", &["Will it rain?".to_string()], None).unwrap();
    assert_eq!(c.model, fit2.name);
    assert_eq!(c.predictions.len(), 1);
    let e = cls.classify("distilbert-base-uncased-finetuned-sst-2-english", &["x".to_string()], None).unwrap_err();
    assert_eq!(e.kind(), crate::error::ErrorKind::Unavailable);
    assert!(e.to_string().contains("SetFit"), "{e}");

    // Delete both; then they are gone (404).
    assert_eq!(cls.delete(&fit2.name).unwrap(), fit2.name);
    cls.delete(&fit.name).unwrap();
    assert_eq!(cls.list().unwrap().len(), 0);
    let e = cls.predict(&fit.name, &["x".to_string()]).unwrap_err();
    assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
    assert_eq!(cls.delete(&fit.name).unwrap_err().kind(), crate::error::ErrorKind::NotFound);
}

#[test]
fn bad_input_is_rejected_without_training() {
    use crate::error::ErrorKind;
    let dir = tempfile::tempdir().unwrap();
    // An empty model cache: validation must happen before the base model is needed.
    let lf = LlamaFarm::open_with(dir.path().join("data"), ModelCache::new(dir.path().join("hub"))).unwrap();
    let cls = lf.ml().classifier();
    let fit = |m: &str, ex: Vec<TrainingExample>, o: FitOptions| cls.fit(m, &ex, &o).unwrap_err().kind();
    let kind = |ex: Vec<TrainingExample>| fit("m", ex, FitOptions::default());
    let one_class = vec![TrainingExample::new("a", "x"), TrainingExample::new("b", "x")];
    assert_eq!(kind(one_class), ErrorKind::Invalid);
    assert_eq!(kind(vec![]), ErrorKind::Invalid);
    let empty_text = vec![TrainingExample::new("a", "x"), TrainingExample::new("  ", "y")];
    assert_eq!(kind(empty_text), ErrorKind::Invalid);
    let empty_label = vec![TrainingExample::new("a", "x"), TrainingExample::new("b", "")];
    assert_eq!(kind(empty_label), ErrorKind::Invalid);
    let ok = || vec![TrainingExample::new("a", "x"), TrainingExample::new("b", "y")];
    assert_eq!(fit("../evil", ok(), FitOptions::default()), ErrorKind::Invalid);
    assert_eq!(fit("m-latest", ok(), FitOptions::default()), ErrorKind::Invalid);
    for (it, bs, ep, lr) in [(0, 16, 1, 2e-5), (5000, 16, 1, 2e-5), (5, 0, 1, 2e-5), (5, 16, 0, 2e-5), (5, 16, 1, 0.0), (5, 16, 1, f64::NAN)] {
        let o = FitOptions { num_iterations: it, batch_size: bs, num_epochs: ep, learning_rate: lr, ..Default::default() };
        assert_eq!(fit("m", ok(), o), ErrorKind::Invalid, "{it} {bs} {ep} {lr}");
    }
    // A valid request whose base model is not in the cache: 503 with the fetch hint.
    assert_eq!(kind(ok()), ErrorKind::Unavailable);
    assert_ne!(fit("m", ok(), FitOptions { base_model: "../../etc".into(), ..Default::default() }), ErrorKind::Internal);

    let pred = |m: &str, texts: Vec<String>| cls.predict(m, &texts).unwrap_err().kind();
    assert_eq!(pred("nope", vec!["x".into()]), ErrorKind::NotFound);
    assert_eq!(pred("nope-latest", vec!["x".into()]), ErrorKind::NotFound);
    assert_eq!(pred("nope", vec![]), ErrorKind::Invalid);
    assert_eq!(pred("nope", vec!["".into()]), ErrorKind::Invalid);
    assert_eq!(pred("bad/name", vec!["x".into()]), ErrorKind::Invalid);
    let load = cls.load("nope-latest").unwrap_err();
    assert_eq!(load.kind(), ErrorKind::NotFound);
    assert_eq!(cls.delete("nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(cls.delete("..").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(cls.list().unwrap().len(), 0);
    // A half-written directory (no head.json) is not a model.
    std::fs::create_dir_all(cls.dir().join("broken")).unwrap();
    assert_eq!(cls.list().unwrap().len(), 0);
    assert_eq!(pred("broken", vec!["x".into()]), ErrorKind::NotFound);
}
