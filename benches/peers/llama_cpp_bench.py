"""llama.cpp (llama-cpp-python) on the same GGUF and prompts as benches/chat.rs.
Input: one JSON argument {gguf, threads, runs, chat_format (null: the GGUF's template;
"chatml" for a GGUF without one), cases: [{name, prompt, max_tokens}]}.
Output: JSON {cases: [{name, prompt_tokens, gen_tokens, ttft_ms, decode_tps, text}]} (medians).

The prompt is rendered with the GGUF's Jinja template (or ChatML), tokenised by llama.cpp
with special tokens parsed, then run token by token through llama.cpp's own decode
(`Llama.eval`) with a greedy argmax over the logits: no Python-side sampling or
detokenisation per token, so the figures are llama.cpp's engine, as ours are our engine's.
TTFT = prefill plus the first argmax; decode = the remaining tokens over their time."""
import json
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

cfg = json.loads(sys.argv[1])
llm = Llama(model_path=cfg["gguf"], n_threads=cfg["threads"], n_threads_batch=cfg["threads"], n_ctx=2048, n_batch=512, verbose=False)
md = llm.metadata
template = CHATML if cfg.get("chat_format") == "chatml" else md.get("tokenizer.chat_template", CHATML)
text_of = lambda t: llm._model.token_get_text(t) if t >= 0 else ""
fmt = Jinja2ChatFormatter(template=template, eos_token=text_of(llm.token_eos()), bos_token=text_of(llm.token_bos()))
add_bos = md.get("tokenizer.ggml.add_bos_token", "false") == "true"
eog = {llm.token_eos()}
for name in ("<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<|eot_id|>"):
    ids = llm.tokenize(name.encode(), add_bos=False, special=True)
    if len(ids) == 1:
        eog.add(ids[0])

# The last token's logits, straight from llama.cpp's context.
logits = lambda: np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
out = []
for case in cfg["cases"]:
    prompt = fmt(messages=[{"role": "user", "content": case["prompt"]}]).prompt
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    if add_bos and (not ids or ids[0] != llm.token_bos()):
        ids = [llm.token_bos()] + ids
    ttfts, decs = [], []
    for _ in range(cfg["runs"]):
        llm.reset()  # no prompt reuse between runs: every run prefills from scratch, as ours does
        t0 = time.perf_counter()
        llm.eval(ids)
        tok = int(np.argmax(logits()))
        first = time.perf_counter()
        gen = [tok]
        while len(gen) < case["max_tokens"] and tok not in eog:
            llm.eval([tok])
            tok = int(np.argmax(logits()))
            gen.append(tok)
        end = time.perf_counter()
        ttfts.append((first - t0) * 1000.0)
        decs.append((len(gen) - 1) / max(end - first, 1e-6))
    text = llm.detokenize([t for t in gen if t not in eog]).decode(errors="replace")
    out.append({"name": case["name"], "prompt_tokens": len(ids), "gen_tokens": len(gen), "ttft_ms": statistics.median(ttfts),
                "decode_tps": statistics.median(decs), "text": text})
print(json.dumps({"cases": out}))
