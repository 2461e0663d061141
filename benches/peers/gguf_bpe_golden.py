"""Tiny byte-level BPE GGUFs, one per llama.cpp pre-tokenizer our tokenizer implements, and
llama.cpp's token ids for the corpus of gguf_tokens.py: the reference of
llamafarm-core's `llm::native::tokenizer` tests (tests/fixtures/gguf_bpe_llamacpp_golden.json).

A 600-token vocabulary is trained (Hugging Face `tokenizers`, byte-level) on the text of
this script and gguf_tokens.py (so the fixture is reproducible); each GGUF carries it with `tokenizer.ggml.pre` set, and llama.cpp (vocab only)
tokenises the corpus with special tokens parsed. Needs the peers venv plus `gguf`.

Usage: gguf_bpe_golden.py OUT.json
"""
import json, os, sys, tempfile

import numpy as np
from gguf import GGUFWriter
from llama_cpp import Llama
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(__file__))
src = open(os.path.join(os.path.dirname(__file__), "gguf_tokens.py")).read()
CORPUS = eval(src[src.index("CORPUS = [") + len("CORPUS = "):src.index("]\n\nPROMPTS") + 1])
PRES = ["llama-bpe", "qwen2", "gpt-2", "smollm", "tekken"]

tk = Tokenizer(models.BPE())
tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              special_tokens=["<|begin|>", "<|end|>"], show_progress=False)
tk.train_from_iterator([open(__file__).read(), src], trainer)
model = json.loads(tk.to_str())["model"]
tokens = [None] * len(model["vocab"])
for t, i in model["vocab"].items():
    tokens[i] = t
merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

out = {"tokens": tokens, "merges": merges, "cases": {}}
with tempfile.TemporaryDirectory() as d:
    for pre in PRES:
        path = os.path.join(d, f"{pre}.gguf")
        w = GGUFWriter(path, "llama")
        w.add_context_length(64); w.add_embedding_length(32); w.add_block_count(1); w.add_feed_forward_length(64)
        w.add_head_count(2); w.add_layer_norm_rms_eps(1e-5)
        w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre(pre)
        w.add_token_list(tokens); w.add_token_merges(merges)
        w.add_token_types([3, 3] + [1] * (len(tokens) - 2))
        w.add_bos_token_id(0); w.add_eos_token_id(1); w.add_add_bos_token(False)
        w.add_tensor("token_embd.weight", np.zeros((len(tokens), 32), dtype=np.float32))
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        llm = Llama(model_path=path, vocab_only=True, verbose=False)
        out["cases"][pre] = [[s, llm.tokenize(s.encode(), add_bos=False, special=True)] for s in CORPUS]
with open(sys.argv[1], "w") as f:
    json.dump(out, f, ensure_ascii=False)
