"""Peer: a corpus of many small files through the Python pipeline a user would write:
read each file, sentence-transformers encode (max sequence length 256, fp32, 2 threads),
chromadb add (persistent client, cosine), on the same files and model files.

usage: corpus_pipeline.py MODEL_DIR FOLDER
Prints one JSON object: files, seconds for model load, read, encode, add, and in all.
"""
import json, os, sys, tempfile, time

t_all = time.perf_counter()
import chromadb
import torch
from sentence_transformers import SentenceTransformer

torch.set_num_threads(2)
model_dir, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
t_load = time.perf_counter() - t

t = time.perf_counter()
names = sorted(os.listdir(folder))
texts = [open(os.path.join(folder, n), encoding="utf-8").read() for n in names]
t_read = time.perf_counter() - t

t = time.perf_counter()
vectors = model.encode(texts, batch_size=32, convert_to_numpy=True)
t_encode = time.perf_counter() - t

t = time.perf_counter()
client = chromadb.PersistentClient(path=tempfile.mkdtemp())
col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
step = 5000
for i in range(0, len(names), step):
    col.add(ids=names[i:i + step], embeddings=vectors[i:i + step].tolist(), documents=texts[i:i + step],
            metadatas=[{"source": n} for n in names[i:i + step]])
t_add = time.perf_counter() - t
print(json.dumps({"files": len(names), "load_s": t_load, "read_s": t_read, "encode_s": t_encode, "add_s": t_add,
                  "total_s": time.perf_counter() - t_all}))
