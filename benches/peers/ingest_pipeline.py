"""Peer: the ingestion pipeline a Python user would write (pypdf / python-docx /
BeautifulSoup + a character splitter + sentence-transformers + chromadb), on the
same files, model files, chunk size and overlap, max sequence length 256.

usage: ingest_pipeline.py MODEL_DIR FOLDER [FOLDER...] --chunk-size 1000 --chunk-overlap 200
Prints one JSON object per folder: files, chunks, bytes, seconds per stage.
"""
import argparse, json, os, tempfile, time

import chromadb
import torch
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("model_dir")
ap.add_argument("folders", nargs="+")
ap.add_argument("--chunk-size", type=int, default=1000)
ap.add_argument("--chunk-overlap", type=int, default=200)
a = ap.parse_args()
torch.set_num_threads(2)


def parse(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pdf":
        from pypdf import PdfReader
        return "\n\n".join((p.extract_text() or "") for p in PdfReader(path).pages)
    if ext == ".docx":
        import docx
        d = docx.Document(path)
        parts = [p.text for p in d.paragraphs]
        for t in d.tables:
            for r in t.rows:
                parts.append(" | ".join(c.text for c in r.cells))
        return "\n\n".join(parts)
    if ext in (".html", ".htm"):
        from bs4 import BeautifulSoup
        s = BeautifulSoup(open(path, "rb").read(), "html.parser")
        for t in s(["script", "style", "noscript"]):
            t.decompose()
        return s.get_text("\n")
    return open(path, encoding="utf-8", errors="replace").read()


def split(text, size, overlap):
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            sp = text.rfind(" ", start + size // 2, end)
            if sp > 0:
                end = sp
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return out


model = SentenceTransformer(a.model_dir, device="cpu")
model.max_seq_length = 256
results = []
for folder in a.folders:
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs)
    t_parse = t_chunk = t_embed = t_index = 0.0
    chunks, nbytes, failed = 0, 0, 0
    client = chromadb.PersistentClient(path=tempfile.mkdtemp())
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    t_all = time.perf_counter()
    for i, f in enumerate(files):
        nbytes += os.path.getsize(f)
        t = time.perf_counter()
        try:
            text = parse(f)
        except Exception:
            failed += 1
            continue
        t_parse += time.perf_counter() - t
        t = time.perf_counter()
        parts = split(text, a.chunk_size, a.chunk_overlap)
        t_chunk += time.perf_counter() - t
        if not parts:
            continue
        t = time.perf_counter()
        emb = model.encode(parts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        t_embed += time.perf_counter() - t
        t = time.perf_counter()
        for j in range(0, len(parts), 5000):
            col.add(ids=[f"{i}_{k}" for k in range(j, min(len(parts), j + 5000))], documents=parts[j:j + 5000], embeddings=emb[j:j + 5000].tolist())
        t_index += time.perf_counter() - t
        chunks += len(parts)
    results.append({"folder": os.path.basename(folder.rstrip("/")), "files": len(files), "failed": failed, "chunks": chunks, "bytes": nbytes,
                    "total_s": time.perf_counter() - t_all, "parse_s": t_parse, "chunk_s": t_chunk, "embed_s": t_embed, "index_s": t_index})
print(json.dumps(results))
