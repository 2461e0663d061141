"""Peer: chromadb in-process (HNSW, cosine) query latency holding the same vectors as
llamafarm-rs. Vectors come from a file we dump (`--vectors`, JSON list of lists);
queries are the given query vectors. Prints p50/p99 in ms per size.

usage: chroma_query.py --vectors V.json --queries Q.json --sizes 5000,100000
"""
import argparse, json, tempfile, time

import chromadb
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--vectors", required=True)
ap.add_argument("--queries", required=True)
ap.add_argument("--sizes", default="5000,100000")
ap.add_argument("--k", type=int, default=10)
a = ap.parse_args()

base = np.array(json.load(open(a.vectors)), dtype=np.float32)
queries = np.array(json.load(open(a.queries)), dtype=np.float32)
rng = np.random.default_rng(0)
results = []
for size in [int(s) for s in a.sizes.split(",")]:
    # Same construction as our bench: the corpus vectors, then noisy copies up to `size`.
    reps = [base]
    while sum(len(r) for r in reps) < size:
        noisy = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        reps.append(noisy)
    vecs = np.concatenate(reps)[:size]
    client = chromadb.PersistentClient(path=tempfile.mkdtemp())
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    t = time.perf_counter()
    for i in range(0, size, 5000):
        col.add(ids=[str(j) for j in range(i, min(size, i + 5000))], embeddings=vecs[i : i + 5000].tolist())
    build = time.perf_counter() - t
    for q in queries[:20]:
        col.query(query_embeddings=[q.tolist()], n_results=a.k)
    lat = []
    for q in queries:
        t = time.perf_counter()
        col.query(query_embeddings=[q.tolist()], n_results=a.k)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    results.append({"peer": "chromadb", "version": chromadb.__version__, "size": size, "build_s": build,
                    "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99) - 1]})
print(json.dumps(results))
