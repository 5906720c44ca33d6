"""Hugging Face interop on the real model (run in the venv with torch + transformers that
scripts/ensure_hf_venv.sh makes; scripts/test.sh runs this file there)."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import kvstash
import kvstash.hf as khf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "build", "kvstash")
PREFIX = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
    "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God "
    "said, Let there be light: and there was light. And God saw the light, that it was good: and God divided "
    "the light from the darkness. And God called the light Day, and the darkness he called Night."
)
PROMPT = " And the evening and the morning were"


@pytest.fixture(scope="module")
def fmodel():
    """The default model with float32 weights and activations: transformers' arithmetic."""
    return kvstash.Model(ctx=1024, float_weights=True)


@pytest.fixture(scope="module")
def hf_model(model):
    path = model.path
    m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
    return m.eval()


def greedy(hf_model, **inputs):
    with torch.no_grad():
        out = hf_model.generate(**inputs, max_new_tokens=32, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_key_order_permutations_are_inverse():
    k = np.arange(2 * 3 * 64, dtype=np.float16).reshape(2, 3, 64)
    hf = khf.to_hf_key_order(k)
    assert hf[0, 0, 0] == k[0, 0, 0] and hf[0, 0, 32] == k[0, 0, 1] and hf[0, 0, 1] == k[0, 0, 2]
    assert np.array_equal(khf.from_hf_key_order(hf), k)


def test_kvstash_state_continues_in_transformers_as_from_scratch(fmodel, hf_model):
    state = fmodel.process_prefix(PREFIX, progress=False)
    new_ids = fmodel.tokenize(PROMPT, add_special=False)
    full = torch.tensor([state.tokens.tolist() + new_ids])
    scratch = greedy(hf_model, input_ids=full, attention_mask=torch.ones_like(full))
    hc = khf.to_dynamic_cache(state)
    assert hc.cache.get_seq_length() == len(state)
    assert hc.cache_position.tolist() == list(range(len(state)))
    cached = greedy(hf_model, **hc.generate_inputs(new_ids))
    assert cached == scratch
    # The control: keys left in kvstash's pair order make transformers produce something else.
    raw = khf.DynamicCache()
    for layer in range(state.n_layer):
        raw.update(torch.from_numpy(np.array(state.k(layer), np.float32))[None],
                   torch.from_numpy(np.array(state.v(layer), np.float32))[None], layer)
    assert greedy(hf_model, input_ids=full, attention_mask=torch.ones_like(full), past_key_values=raw) != scratch


def test_forward_inputs_continue_the_cache(fmodel, hf_model):
    state = fmodel.process_prefix(PREFIX, progress=False)
    new_ids = fmodel.tokenize(PROMPT, add_special=False)
    with torch.no_grad():
        cached = hf_model(**khf.to_dynamic_cache(state).forward_inputs(new_ids)).logits[0, -1]
        scratch = hf_model(input_ids=torch.tensor([state.tokens.tolist() + new_ids])).logits[0, -1]
    assert int(cached.argmax()) == int(scratch.argmax())
    assert float((cached - scratch).abs().max()) < 0.05  # kvstash's K/V are transformers' rounded to f16


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def test_transformers_cache_to_kvs_matches_and_continues_in_kvstash(fmodel, hf_model, tmp_path):
    ids = fmodel.tokenize(PREFIX)
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor([ids]), use_cache=True)
    path = str(tmp_path / "hf.kvs")
    khf.save_cache_to_disk(out.past_key_values, path, ids, fmodel)
    state = kvstash.load_state(path)
    assert state.tokens.tolist() == ids and state.model_fingerprint == fmodel.fingerprint
    layers = khf._cache_layers(out.past_key_values)
    for layer, (k, v) in enumerate(layers):  # K/V are transformers' own, rounded to f16
        assert np.array_equal(khf.to_hf_key_order(state.k(layer)), k[0].numpy().astype(np.float16))
        assert np.array_equal(state.v(layer), v[0].numpy().astype(np.float16))
    # The logits kvstash computed from transformers' cache predict what transformers predicts.
    p_hf, p_kv = softmax(out.logits[0, -1].numpy()), softmax(state.logits)
    kl = float(np.sum(p_hf * (np.log(p_hf + 1e-30) - np.log(p_kv + 1e-30))))
    assert kl < 0.005, kl
    assert int(np.argmax(p_kv)) == int(np.argmax(p_hf))
    # The command-line tool continues the file.
    r = subprocess.run([CLI, "generate", "--state", path, "--prompt", PROMPT, "-n", "16", "--temp", "0", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["text"].strip()
    # kvstash continues transformers' cache as transformers continues it (float32 weights, greedy).
    new_ids = fmodel.tokenize(PROMPT, add_special=False)
    mine = fmodel.generate(state, PROMPT, max_tokens=16, temperature=0, ignore_eos=True)
    full = torch.tensor([ids + new_ids])
    assert mine.reused_tokens == len(ids)
    assert mine.tokens == greedy(hf_model, input_ids=full, attention_mask=torch.ones_like(full))[:16]


def test_key_order_hf_file_reads_in_plain_safetensors_and_in_kvstash(model, tmp_path):
    from safetensors.numpy import load_file

    state = model.process_prefix(PREFIX, progress=False)
    path = str(tmp_path / "hf_order.kvs")
    state.save(path, key_order="hf")
    plain = load_file(path)
    assert np.array_equal(plain["k.0"], khf.to_hf_key_order(state.k(0)))
    again = kvstash.load_state(path)
    for layer in (0, state.n_layer - 1):
        assert np.array_equal(again.k(layer), state.k(layer)) and np.array_equal(again.v(layer), state.v(layer))
    a = model.generate(state, PROMPT, max_tokens=8, temperature=0).tokens
    assert model.generate(again, PROMPT, max_tokens=8, temperature=0).tokens == a


def test_seed_helpers_round_trip(fmodel, hf_model, tmp_path):
    path = str(tmp_path / "prefix.kvs")
    khf.process_prefix(hf_model, None, PREFIX, path)  # the kvstash Model comes from the GGUF
    cache = khf.load_cache_from_disk(path)
    assert isinstance(cache, khf.DynamicCache) and cache.get_seq_length() == len(fmodel.tokenize(PREFIX))

    class Tok:  # the tokenizer part transformers' generate_with_prefix uses, backed by kvstash's
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": fmodel.tokenize(text, add_special=add_special_tokens)}

        def decode(self, ids, skip_special_tokens=True):
            return fmodel.detokenize([int(i) for i in ids])

    text = khf.generate_with_prefix(hf_model, Tok(), path, PROMPT, max_new_tokens=8)
    ids = fmodel.tokenize(PREFIX) + fmodel.tokenize(PROMPT, add_special=False)
    assert text == fmodel.detokenize(greedy(hf_model, input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))[:8])


def test_refusals(model):
    state = model.process_prefix(PREFIX, progress=False)
    cache = khf.to_dynamic_cache(state).cache
    with pytest.raises(kvstash.InvalidArgumentError):
        khf.from_dynamic_cache(cache, state.tokens.tolist()[:-1], model)
    with pytest.raises(kvstash.InvalidArgumentError):
        khf.to_dynamic_cache(state, upto=len(state) + 1)


def test_hf_roundtrip_example(tmp_path):
    import sys

    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "hf_roundtrip.py"), str(tmp_path / "x.kvs")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if ":" in line]
    assert len(lines) == 2
    texts = [line.split(":", 1)[1].strip() for line in lines]
    assert all(t not in ("''", '""') for t in texts)
    assert texts[0] == texts[1]  # each continued the other's cache as its own: the same greedy text
    assert os.path.getsize(tmp_path / "x.kvs") > 0
