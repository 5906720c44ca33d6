"""Drives `kvstash serve` with the official `openai` Python package (run by ServerLoad.OpenAiPythonClient).

    python tests/server_openai.py BASE_URL API_KEY
Exits non-zero (an assertion) on any difference from what the API promises."""
import sys

import openai

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

models = client.models.list()
model = models.data[0].id
assert model, models

# Completions, whole and streamed: the same greedy text.
whole = client.completions.create(model=model, prompt="The capital of France is", max_tokens=12, temperature=0)
assert whole.object == "text_completion", whole
text = whole.choices[0].text
assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0, whole.usage
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(model=model, prompt="The capital of France is", max_tokens=12, temperature=0,
                                       stream=True)
    if c.choices)
assert streamed == text, (streamed, text)

# Chat, whole and streamed (with the usage chunk), logprobs, seed.
messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hello."}]
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0.7, seed=3,
                                      logprobs=True, top_logprobs=2)
content = chat.choices[0].message.content
assert chat.choices[0].message.role == "assistant"
assert chat.choices[0].finish_reason in ("stop", "length")
assert len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens, chat
assert all(len(t.top_logprobs) == 2 for t in chat.choices[0].logprobs.content)
again = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0.7, seed=3)
assert again.choices[0].message.content == content, (again, content)
parts, usage = [], None
for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0.7, seed=3,
                                            stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
    for ch in chunk.choices:
        if ch.delta.content:
            parts.append(ch.delta.content)
assert "".join(parts) == content, (parts, content)
assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens, usage
# cached_tokens: the same conversation's prefix was computed before.
assert chat.usage.prompt_tokens_details is not None

# Errors map to the SDK's exception classes.
try:
    client.completions.create(model=model, prompt="x", max_tokens=-5)
    raise AssertionError("negative max_tokens accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400
bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401
print("openai client: ok")
