"""huggingface_hub's hf_hub_download of one file from HF_ENDPOINT into a fresh cache.

Usage: python hf_download.py REPO FILENAME CACHE_DIR  -> prints seconds
"""
import os
import sys
import time

repo, filename, cache = sys.argv[1:4]
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
from huggingface_hub import hf_hub_download  # noqa: E402

t = time.perf_counter()
path = hf_hub_download(repo, filename, cache_dir=cache)
print(f"{time.perf_counter() - t:.4f}")
assert os.path.getsize(path) > 0
