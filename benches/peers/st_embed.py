"""Peer: sentence-transformers (PyTorch CPU) embedding throughput on SciFact abstracts,
with the same model files and max sequence length as llamafarm-rs, and agreement with
our vectors (cosine per document) when `--ours` points at vectors we dumped.

usage: st_embed.py MODEL_DIR CORPUS_JSONL [--n 512] [--ours ours.json]
"""
import argparse, json, time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("model_dir")
ap.add_argument("corpus")
ap.add_argument("--n", type=int, default=512)
ap.add_argument("--ours")
a = ap.parse_args()

torch.set_num_threads(2)
docs = [json.loads(l) for l in open(a.corpus)][: a.n]
texts = [(d.get("title", "") + " " + d.get("text", "")).strip() for d in docs]
m = SentenceTransformer(a.model_dir, device="cpu")
m.max_seq_length = 256
m.encode(texts[:32], batch_size=32)  # warm up
t = time.perf_counter()
emb = m.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
dt = time.perf_counter() - t
out = {"peer": "sentence-transformers", "torch": torch.__version__, "docs": len(texts), "docs_per_s": len(texts) / dt}
if a.ours:
    ours = np.array(json.load(open(a.ours)), dtype=np.float32)
    k = min(len(ours), len(emb))
    cos = np.sum(ours[:k] * emb[:k], axis=1) / (np.linalg.norm(ours[:k], axis=1) * np.linalg.norm(emb[:k], axis=1))
    out["cosine_min"] = float(cos.min())
    out["cosine_mean"] = float(cos.mean())
print(json.dumps(out))
