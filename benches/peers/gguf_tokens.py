"""Token ids and greedy continuations from llama.cpp (llama-cpp-python), the reference
our GGUF tokenizers and forward passes are tested against.

Usage: gguf_tokens.py OUT.json NAME=PATH.gguf [NAME=PATH.gguf ...]
Writes {NAME: {"tokens": [[text, ids], ...], "greedy": [[prompt, ids], ...]}}: each
string of CORPUS tokenised with special tokens parsed and no BOS added, and for each of
PROMPTS (BOS added as the model asks) the ids of a 24-token greedy continuation.
"""
import json, sys
from llama_cpp import Llama

CORPUS = [
    "Hello world",
    " Hello world",
    "Hello  world\tand\ttabs\n\nnew lines\r\n",
    "   leading and trailing spaces   ",
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000",
    "unicode: naïve café Zürich Ελληνικά русский 日本語の文章 한국어",
    "emoji: 🦙🌾 👩‍💻 ✨🎉",
    "code: fn main() {\n    println!(\"{}\", x + 1); // comment\n}\n",
    "def f(a, b):\n\treturn a**2 + b  # tab-indented\n",
    "It's we'll they're I'M YOU'VE don't",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "\n\n\n    \n\t\t \u3000 x",
    "a" * 40 + " " + "ab" * 17,
    "URLs: https://example.com/path?q=1&r=two#frag and e-mail a.b@c.org",
    "Mixed: ÀÉÎÕÜ ßøåæ ¿¡ “quotes” ‘single’ — dash … ellipsis",
    "",
]

PROMPTS = [
    "The capital of France is",
    "Here is a short poem about the sea:\n",
    "def fibonacci(n):",
]

out = {}
for arg in sys.argv[2:]:
    name, path = arg.split("=", 1)
    llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    toks = [[s, llm.tokenize(s.encode(), add_bos=False, special=True)] for s in CORPUS]
    greedy = []
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=True, special=True)
        llm.reset()
        gen = []
        for t in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if t == llm.token_eos() or len(gen) == 24:
                break
            gen.append(t)
        greedy.append([p, ids, gen])
    out[name] = {"tokens": toks, "greedy": greedy}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
