"""OCR peers for `benches/ocr.rs`: RapidOCR (PP-OCRv4 on ONNX Runtime, in-process) and
Tesseract 5 (Debian's `tesseract`, `--psm 6`), with a fixed number of threads.

Input (argv[1], JSON): {"engine": "rapidocr" | "tesseract", "images": [paths], "threads": N}
Output (stdout, JSON): [{"image": path, "text": "...", "secs": s}, ...]; the RapidOCR
model load is done before the first timed image.
"""
import json
import os
import subprocess
import sys
import time

cfg = json.loads(sys.argv[1])
threads = int(cfg.get("threads", 2))
out = []
if cfg["engine"] == "rapidocr":
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
    engine(cfg["images"][0])  # warm up
    for path in cfg["images"]:
        t = time.perf_counter()
        result, _ = engine(path)
        secs = time.perf_counter() - t
        text = "\n".join(r[1] for r in (result or []))
        out.append({"image": path, "text": text, "secs": secs})
elif cfg["engine"] == "tesseract":
    env = dict(os.environ, OMP_THREAD_LIMIT=str(threads))
    for path in cfg["images"]:
        t = time.perf_counter()
        text = subprocess.run(["tesseract", path, "stdout", "--psm", "6", "-l", "eng"], capture_output=True, text=True, env=env).stdout
        out.append({"image": path, "text": text, "secs": time.perf_counter() - t})
else:
    sys.exit("unknown engine " + cfg["engine"])
print(json.dumps(out))
