"""SetFit peer for benches/ml_classifier.rs: the Python `setfit` package on the same
base model files, the same sampled examples and the same num_iterations / batch size.

Usage: setfit_peer.py MODEL_DIR TRAIN_JSONL TEST_JSONL NUM_ITERATIONS BATCH_SIZE SEED
Prints one JSON line: {"fit_s", "predict_s", "accuracy", "n_train", "n_test", "versions"}.
"""
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main():
    model_dir, train_path, test_path = sys.argv[1], sys.argv[2], sys.argv[3]
    num_iterations, batch_size, seed = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    import setfit
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    train = read_jsonl(train_path)
    test = read_jsonl(test_path)
    labels = sorted({r["label"] for r in train})
    lid = {l: i for i, l in enumerate(labels)}

    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(model_dir, device="cpu")
    ds = Dataset.from_dict({"text": [r["text"] for r in train], "label": [lid[r["label"]] for r in train]})
    out_dir = tempfile.mkdtemp(prefix="setfit-peer-")
    args = TrainingArguments(batch_size=batch_size, num_iterations=num_iterations, num_epochs=1, seed=seed,
                             report_to="none", show_progress_bar=False, save_strategy="no", output_dir=out_dir,
                             logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    trainer.train()
    fit_s = time.perf_counter() - t0
    shutil.rmtree(out_dir, ignore_errors=True)

    t1 = time.perf_counter()
    preds = model.predict([r["text"] for r in test], batch_size=64, as_numpy=True)
    predict_s = time.perf_counter() - t1
    correct = sum(1 for p, r in zip(preds, test) if labels[int(p)] == r["label"])
    print(json.dumps({
        "fit_s": fit_s,
        "predict_s": predict_s,
        "accuracy": correct / max(1, len(test)),
        "n_train": len(train),
        "n_test": len(test),
        "versions": f"setfit {setfit.__version__}, torch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()
