"""llama.cpp (llama-cpp-python) on the same GGUF and prompts as benches/chat.rs.
Input: one JSON argument {gguf, threads, runs, cases: [{name, prompt, max_tokens}]}.
Output: JSON {cases: [{name, gen_tokens, ttft_ms, decode_tps, text}]} (medians; prefill rate = our prompt token count / ttft)."""
import json
import statistics
import sys
import time

from llama_cpp import Llama

cfg = json.loads(sys.argv[1])
llm = Llama(model_path=cfg["gguf"], n_threads=cfg["threads"], n_threads_batch=cfg["threads"], n_ctx=2048, verbose=False)
out = []
for case in cfg["cases"]:
    ttfts, decs = [], []
    for _ in range(cfg["runs"]):
        llm.reset()  # no prompt reuse between runs: every run prefills from scratch, as ours does
        msgs = [{"role": "user", "content": case["prompt"]}]
        t0 = time.perf_counter()
        first = None
        n = 0
        text = ""
        for chunk in llm.create_chat_completion(messages=msgs, temperature=0.0, top_k=1, max_tokens=case["max_tokens"], stream=True):
            d = chunk["choices"][0]["delta"].get("content")
            if d:
                n += 1
                text += d
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        ttft = (first - t0) * 1000.0
        ttfts.append(ttft)
        decs.append((n - 1) / max(end - first, 1e-6))
    out.append({"name": case["name"], "gen_tokens": n, "ttft_ms": statistics.median(ttfts), "decode_tps": statistics.median(decs), "text": text})
print(json.dumps({"cases": out}))
