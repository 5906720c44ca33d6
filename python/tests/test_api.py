"""kvstash's Python API on the real model: what users rely on (exactness of continuations, zero-copy
read-only views, files, streaming, errors, Ctrl-C, threads)."""
import gc
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import kvstash
from conftest import ROOT, STORY, subprocess_env

GREEDY = dict(temperature=0, max_tokens=16)
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_python(code, timeout=60, **kwargs):
    """Runs `code` in a fresh interpreter that imports this checkout's kvstash."""
    env = subprocess_env()
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT), **kwargs)


# ----------------------------------------------------------------------------------------------
# Model


def test_model_properties(model):
    assert model.ctx == 1024
    assert model.threads >= 1
    assert os.path.isfile(model.path)
    assert model.simd in ("scalar", "avx2", "avx512")
    assert model.n_head % model.n_head_kv == 0
    assert model.n_layer > 0 and model.head_dim > 0 and model.n_vocab > 0
    assert repr(model).startswith("Model(") and "ctx=1024" in repr(model)
    if os.path.basename(model.path) == DEFAULT_MODEL_NAME:  # the set-up's SmolLM2-135M-Instruct
        assert (model.n_layer, model.n_head, model.n_head_kv, model.head_dim, model.n_vocab) == (30, 9, 3, 64, 49152)


def test_default_model_path(model):
    expected = os.environ.get("KVSTASH_MODEL") or str(ROOT / "models" / DEFAULT_MODEL_NAME)
    assert os.path.realpath(model.path) == os.path.realpath(expected)


def test_fingerprint(model, story_state):
    assert re.fullmatch(r"[0-9a-f]{32}", model.fingerprint)
    assert story_state.model_fingerprint == model.fingerprint
    assert kvstash.Model(model.path, ctx=64, threads=1).fingerprint == model.fingerprint  # not per instance


def test_tokenize_detokenize_round_trip(model):
    text = "The knight rode out at dawn; the dragon slept. Ünïcödé and 日本語 too."
    tokens = model.tokenize(text, add_special=False)
    assert isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)
    assert all(0 <= t < model.n_vocab for t in tokens)
    assert model.detokenize(tokens) == text
    assert model.detokenize([]) == ""


def test_tokenize_special(model):
    parsed = model.tokenize("<|im_start|>user", add_special=False)
    literal = model.tokenize("<|im_start|>user", add_special=False, parse_special=False)
    assert len(parsed) < len(literal)
    assert model.detokenize(parsed, render_special=True) == "<|im_start|>user"
    assert model.detokenize(literal) == "<|im_start|>user"


# ----------------------------------------------------------------------------------------------
# process_prefix


def test_process_prefix_text_and_tokens(model, story, story_state):
    tokens = story_state.tokens.tolist()
    assert len(story_state) == story_state.n_tokens == len(tokens) > 50
    assert model.detokenize(tokens) == story
    from_tokens = model.process_prefix(tokens, progress=False)
    assert from_tokens.tokens.tolist() == tokens
    for layer in (0, model.n_layer - 1):  # the same bits: the engine is batch-invariant
        assert np.array_equal(from_tokens.k(layer), story_state.k(layer))
        assert np.array_equal(from_tokens.v(layer), story_state.v(layer))
    assert np.array_equal(from_tokens.logits, story_state.logits)


def test_process_prefix_progress_callable(model, long_text):
    text = long_text[:3000]  # more than one chunk of 512 tokens
    calls = []
    state = model.process_prefix(text, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 2
    totals = {t for _, t in calls}
    assert totals == {len(state)}
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and dones[-1] == len(state)


def test_process_prefix_progress_false_and_true(model, story, story_state):
    assert model.process_prefix(story, progress=False).tokens.tolist() == story_state.tokens.tolist()
    # True draws a bar only on a terminal; under pytest stderr is not one, and nothing breaks.
    assert len(model.process_prefix(story, progress=True)) == len(story_state)
    assert len(model.process_prefix(story)) == len(story_state)


def test_progress_callback_exception_propagates(model, story):
    def boom(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        model.process_prefix(story, progress=boom)
    assert len(model.generate(None, "Hello", max_tokens=2, temperature=0).tokens) == 2


def test_empty_prefix_is_invalid(model):
    with pytest.raises(kvstash.InvalidArgumentError):
        model.process_prefix("", progress=False)


def test_process_prefix_numpy_tokens(model, story_state):
    again = model.process_prefix(story_state.tokens, progress=False)  # an int32 array, as a state gives it
    assert np.array_equal(again.tokens, story_state.tokens)
    assert np.array_equal(again.logits, story_state.logits)
    assert model.detokenize(story_state.tokens) == model.detokenize(story_state.tokens.tolist())


@pytest.mark.parametrize("bad", [-5, "n_vocab", 10 ** 6])
def test_process_prefix_out_of_vocabulary(model, bad):
    bad = model.n_vocab if bad == "n_vocab" else bad
    with pytest.raises(kvstash.InvalidArgumentError, match=str(bad)):
        model.process_prefix([1, 2, bad], progress=False)


@pytest.mark.parametrize("call", ["process_prefix floats", "generate mixed list", "generate bytes"])
def test_wrong_types_raise_type_error(model, story_state, call):
    with pytest.raises(TypeError):
        if call == "process_prefix floats":
            model.process_prefix([1.5, 2.0], progress=False)
        elif call == "generate mixed list":
            model.generate(story_state, [" a", 3], max_tokens=1)
        else:
            model.generate(story_state, b" a", max_tokens=1)


def test_wrong_types_in_signature(model, story_state):
    with pytest.raises(TypeError):
        model.generate("not a state", " a", max_tokens=1)
    with pytest.raises(TypeError):
        model.stream(story_state, [" a", " b"])  # stream takes one prompt
    with pytest.raises(TypeError):
        kvstash.State()  # states come from process_prefix and load_state
    with pytest.raises(TypeError):
        model.generate(story_state, " a", seed=-1)  # seeds are unsigned 64-bit


@pytest.mark.parametrize("options", [dict(threads=1), dict(simd="scalar"), dict(simd="avx2")],
                         ids=["threads=1", "scalar", "avx2"])
def test_same_bits_on_any_threads_and_simd(model, story, options):
    # kvstash's engine is batch-invariant: any thread count and SIMD level give the same bits.
    if options.get("simd") == "avx2" and model.simd == "scalar":
        pytest.skip("the CPU has no AVX2")
    text = story[:120] if options.get("simd") == "scalar" else story  # scalar kernels are slow
    other = kvstash.Model(model.path, ctx=256, **options)
    assert other.simd == options.get("simd", model.simd)
    a, b = model.process_prefix(text, progress=False), other.process_prefix(text, progress=False)
    for layer in range(model.n_layer):
        assert np.array_equal(a.k(layer), b.k(layer)) and np.array_equal(a.v(layer), b.v(layer))
    assert np.array_equal(a.logits, b.logits)
    assert (model.generate(a, " The knight", max_tokens=6, temperature=0).tokens ==
            other.generate(a, " The knight", max_tokens=6, temperature=0).tokens)


def test_bad_simd_level():
    with pytest.raises(kvstash.InvalidArgumentError, match="bogus"):
        kvstash.Model(ctx=64, simd="bogus")


# ----------------------------------------------------------------------------------------------
# State: zero-copy read-only views


def check_views(state, model):
    n = len(state)
    expected = {
        "tokens": (np.int32, (n,)),
        "positions": (np.int32, (n,)),
        "logits": (np.float32, (model.n_vocab,)),
    }
    for name, (dtype, shape) in expected.items():
        a = getattr(state, name)
        assert a.dtype == dtype and a.shape == shape, name
    assert state.positions.tolist() == list(range(n))
    assert (state.n_layer, state.n_head_kv, state.head_dim, state.n_vocab) == (
        model.n_layer, model.n_head_kv, model.head_dim, model.n_vocab)
    assert state.kv_entries == n and not state.budgeted
    assert state.n_ctx >= n
    for layer in (0, 1, state.n_layer - 1):
        for a in (state.k(layer), state.v(layer)):
            assert a.dtype == np.float16
            assert a.shape == (state.n_head_kv, state.kv_entries, state.head_dim)
            assert a.flags.c_contiguous
            assert np.isfinite(a).all()
    for a in (state.tokens, state.positions, state.logits, state.k(0), state.v(0)):
        assert a.flags.writeable is False
        assert not a.flags.owndata and a.base is not None  # a view, not a copy
        with pytest.raises(ValueError):
            a[0] = 1
        with pytest.raises(ValueError):
            a.setflags(write=True)
    # Every call gives a view of the same memory.
    assert np.shares_memory(state.k(0), state.k(0))
    assert np.shares_memory(state.v(3), state.v(3))
    assert np.shares_memory(state.logits, state.logits)
    assert not np.shares_memory(state.k(0), state.v(0))
    assert not np.shares_memory(state.k(0), state.k(1))


def test_views_of_processed_state(model, story_state):
    check_views(story_state, model)


def test_views_of_loaded_state(model, story_state, tmp_path):
    path = tmp_path / "story.kvs"
    story_state.save(str(path))
    loaded = kvstash.load_state(str(path))
    check_views(loaded, model)
    for layer in range(model.n_layer):
        assert np.array_equal(loaded.k(layer), story_state.k(layer))
        assert np.array_equal(loaded.v(layer), story_state.v(layer))
    assert np.array_equal(loaded.tokens, story_state.tokens)
    assert np.array_equal(loaded.positions, story_state.positions)
    assert np.array_equal(loaded.logits, story_state.logits)
    assert loaded.model_fingerprint == model.fingerprint
    assert loaded.n_ctx == story_state.n_ctx


def test_view_outlives_state(model, story, tmp_path):
    state = model.process_prefix(story, progress=False)
    k, logits, tokens = state.k(-1), state.logits, state.tokens
    k_copy, logits_copy, tokens_copy = k.copy(), logits.copy(), tokens.copy()
    del state
    gc.collect()
    model.process_prefix(story + " Again.", progress=False)  # reuse freed memory, if it was freed
    assert np.array_equal(k, k_copy)
    assert np.array_equal(logits, logits_copy)
    assert np.array_equal(tokens, tokens_copy)

    # A loaded state: the view keeps the mapping alive, also after the file is deleted.
    path = tmp_path / "outlive.kvs"
    model.process_prefix(story, progress=False).save(str(path))
    loaded = kvstash.load_state(str(path))
    v = loaded.v(2)
    expected = v.copy()
    del loaded
    gc.collect()
    path.unlink()
    assert np.array_equal(v, expected)
    assert float(np.abs(v.astype(np.float32)).sum()) > 0


def test_view_survives_file_replacement(model, story_state, tmp_path):
    # save() replaces a file atomically (new file, then rename): a state mapped from the old file and
    # its views keep the old contents.
    path = tmp_path / "s.kvs"
    story_state.save(str(path))
    old = kvstash.load_state(str(path))
    k, tokens = old.k(0), old.tokens
    other = model.process_prefix("Something else entirely, about a wizard.", progress=False)
    other.save(str(path))
    assert np.array_equal(k, story_state.k(0)) and np.array_equal(tokens, story_state.tokens)
    assert np.array_equal(kvstash.load_state(str(path)).tokens, other.tokens)
    assert model.generate(old, " The knight", **GREEDY).tokens == model.generate(story_state, " The knight", **GREEDY).tokens


def test_layer_index(model, story_state):
    n = story_state.n_layer
    assert np.array_equal(story_state.k(-1), story_state.k(n - 1))
    assert np.array_equal(story_state.v(-n), story_state.v(0))
    for bad in (n, n + 5, -n - 1):
        with pytest.raises(IndexError):
            story_state.k(bad)
        with pytest.raises(IndexError):
            story_state.v(bad)


def test_logits_predict_the_next_token(model, story_state):
    c = model.generate(story_state, "", max_tokens=1, temperature=0, ignore_eos=True)
    assert c.tokens == [int(np.argmax(story_state.logits))]
    assert c.reused_tokens == len(story_state)


def test_state_repr(story_state):
    assert repr(story_state).startswith("State(tokens=%d" % len(story_state))


# ----------------------------------------------------------------------------------------------
# generate


@pytest.mark.parametrize("prompt", [" The knight was known for", "\n\nOne day, while riding his horse"])
def test_generate_from_state_equals_from_scratch(model, story, story_state, prompt):
    from_state = model.generate(story_state, prompt, **GREEDY)
    from_scratch = model.generate(None, story + prompt, **GREEDY)
    assert from_state.tokens == from_scratch.tokens
    assert from_state.text == from_scratch.text
    assert len(from_state.tokens) > 0
    assert from_state.reused_tokens == len(story_state)
    assert from_scratch.reused_tokens == 0
    assert from_state.prompt_tokens < from_scratch.prompt_tokens


def test_generate_prompt_merging_with_prefix_end(model, story):
    # The prefix ends inside a word: prefix + prompt tokenizes differently at the seam, and kvstash
    # reuses only the common token prefix, so the result is still that of the whole text.
    cut = story.index("Roland") + 3  # "...Sir Rol"
    state = model.process_prefix(story[:cut], progress=False)
    from_state = model.generate(state, story[cut:cut + 40], **GREEDY)
    from_scratch = model.generate(None, story[:cut + 40], **GREEDY)
    assert from_state.tokens == from_scratch.tokens
    assert 0 < from_state.reused_tokens < len(state)


def test_generate_completion_fields(model, story_state):
    c = model.generate(story_state, " The knight", max_tokens=8, temperature=0, ignore_eos=True)
    assert isinstance(c, kvstash.Completion)
    assert isinstance(c.text, str) and str(c) == c.text
    assert c.text == model.detokenize(c.tokens)
    assert c.stop_reason == "length" and len(c.tokens) == 8
    assert c.prompt_tokens >= 1
    assert c.time_to_first_token_ms >= 0 and c.decode_tokens_per_s >= 0 and c.prefill_tokens_per_s >= 0
    assert "reused_tokens=%d" % len(story_state) in repr(c)


def test_generate_many_prompts(model, story_state):
    prompts = [" The knight was known for", " One day, while riding his horse", " In the castle, there was"]
    many = model.generate(story_state, prompts, **GREEDY)
    assert isinstance(many, list) and len(many) == 3
    assert all(isinstance(c, kvstash.Completion) for c in many)
    one_by_one = [model.generate(story_state, p, **GREEDY) for p in prompts]
    assert [c.tokens for c in many] == [c.tokens for c in one_by_one]
    assert len({tuple(c.tokens) for c in many}) == 3
    assert model.generate(story_state, [], **GREEDY) == []
    assert [c.tokens for c in model.generate(story_state, tuple(prompts[:2]), max_tokens=4, temperature=0)] == [
        c.tokens[:4] for c in many[:2]]


def test_generate_seed(model, story_state):
    kw = dict(max_tokens=16, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, ignore_eos=True)
    a = model.generate(story_state, " The knight", seed=1234, **kw)
    b = model.generate(story_state, " The knight", seed=1234, **kw)
    assert a.tokens == b.tokens
    others = {tuple(model.generate(story_state, " The knight", seed=s, **kw).tokens) for s in range(1, 6)}
    assert len(others | {tuple(a.tokens)}) >= 2


def test_generate_seed_same_from_scratch(model, story, story_state):
    kw = dict(max_tokens=12, temperature=0.9, seed=7, ignore_eos=True)
    assert (model.generate(story_state, " The knight", **kw).tokens ==
            model.generate(None, story + " The knight", **kw).tokens)


def test_generate_stop_strings(model, story_state):
    full = model.generate(story_state, " The knight", max_tokens=40, temperature=0, ignore_eos=True)
    words = full.text.split()
    assert len(words) >= 4
    stop = words[2]
    cut = model.generate(story_state, " The knight", max_tokens=40, temperature=0, ignore_eos=True,
                         stop=[stop, "a string that never comes"])
    assert cut.stop_reason == "stop"
    assert cut.text == full.text[:full.text.index(stop)]
    assert stop not in cut.text
    assert len(cut.tokens) < len(full.tokens)


def test_generate_max_tokens(model, story_state):
    for n in (0, 1, 7):
        c = model.generate(story_state, " The knight", max_tokens=n, temperature=0, ignore_eos=True)
        assert len(c.tokens) == n and c.stop_reason == "length"
    c = model.generate(None, "Hello", max_tokens=3)  # the default sampling
    assert len(c.tokens) <= 3


def test_generate_until_eos_or_context(model):
    small = kvstash.Model(model.path, ctx=48, threads=1)
    c = small.generate(None, "Count: 1, 2, 3,", max_tokens=-1, temperature=0, ignore_eos=True)
    assert c.stop_reason == "context"
    # The cache holds the prompt and every generated token but the last, which needs no entry.
    assert c.prompt_tokens + len(c.tokens) == 48 + 1


def test_save_load_generate(model, story_state, tmp_path):
    path = tmp_path / "story.kvs"
    story_state.save(str(path))
    assert path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["story.kvs"]  # no temp file left
    loaded = kvstash.load_state(str(path))
    prompts = [" The knight was known for", " In the castle, there was"]
    assert ([c.tokens for c in model.generate(loaded, prompts, **GREEDY)] ==
            [c.tokens for c in model.generate(story_state, prompts, **GREEDY)])
    # Saving again replaces the file; a state loaded from it is the same.
    story_state.save(str(path))
    assert np.array_equal(kvstash.load_state(str(path)).k(0), story_state.k(0))


def test_save_hf_key_order(model, story_state, tmp_path):
    path = tmp_path / "hf.kvs"
    story_state.save(str(path), key_order="hf")
    loaded = kvstash.load_state(str(path))  # kvstash reads both orders
    assert np.array_equal(loaded.k(0), story_state.k(0))
    assert model.generate(loaded, " The knight", **GREEDY).tokens == model.generate(story_state, " The knight", **GREEDY).tokens
    with pytest.raises(kvstash.InvalidArgumentError):
        story_state.save(str(tmp_path / "x.kvs"), key_order="torch")
    with pytest.raises(kvstash.InvalidArgumentError):
        story_state.save(str(tmp_path / "x.kvz"), key_order="hf")  # key_order applies to .kvs files


def kvz_levels(state, tmp_path):
    """(highest level, lossless) as the library reports it: kvz_lossless_level() is not exposed."""
    with pytest.raises(kvstash.InvalidArgumentError) as e:
        state.save(str(tmp_path / "probe.kvz"), levels=[10 ** 6])
    m = re.search(r"levels are 1 to (\d+), (\d+) lossless", str(e.value))
    assert m, str(e.value)
    return int(m.group(2))


def test_kvz(model, story_state, tmp_path):
    lossless = kvz_levels(story_state, tmp_path)
    assert lossless >= 2
    kvs, kvz = tmp_path / "s.kvs", tmp_path / "s.kvz"
    story_state.save(str(kvs))
    story_state.save(str(kvz))  # default: every other lossy level
    assert 0 < kvz.stat().st_size < kvs.stat().st_size
    loaded = kvstash.load_state(str(kvz))
    assert loaded.tokens.tolist() == story_state.tokens.tolist()
    assert loaded.k(0).shape == story_state.k(0).shape
    assert len(model.generate(loaded, " The knight", **GREEDY).tokens) > 0
    assert len(model.generate(kvstash.load_state(str(kvz), level=1), " The knight", **GREEDY).tokens) > 0
    with pytest.raises(kvstash.InvalidArgumentError):
        kvstash.load_state(str(kvz), level=lossless)  # not stored
    with pytest.raises(kvstash.InvalidArgumentError):
        kvstash.load_state(str(kvs), level=1)  # levels apply to .kvz only
    with pytest.raises(kvstash.InvalidArgumentError):
        story_state.save(str(kvs), levels=[1])

    # The lossless level: the same bits, the same continuations.
    exact = tmp_path / "exact.kvz"
    story_state.save(str(exact), levels=[1, lossless])
    for loaded in (kvstash.load_state(str(exact)), kvstash.load_state(str(exact), level=lossless)):
        for layer in range(model.n_layer):
            assert np.array_equal(loaded.k(layer), story_state.k(layer))
            assert np.array_equal(loaded.v(layer), story_state.v(layer))
        assert np.array_equal(loaded.logits, story_state.logits)
        assert (model.generate(loaded, " The knight", **GREEDY).tokens ==
                model.generate(story_state, " The knight", **GREEDY).tokens)


CLI = ROOT / "build" / "kvstash"
needs_cli = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="build/kvstash (the CLI) is not built")


def cli(*args):
    r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_cli
def test_same_as_the_cli(model, story, story_state, tmp_path):
    # The CLI and Python share files and give the same tokens for the same seed ("in any process").
    path = tmp_path / "py.kvs"
    story_state.save(str(path))
    out = json.loads(cli("generate", "--model", model.path, "--state", path, "--prompt", " The knight", "-n", 12,
                         "--seed", 42, "--ignore-eos", "--json"))
    c = model.generate(kvstash.load_state(str(path)), " The knight", max_tokens=12, seed=42, ignore_eos=True)
    assert out["tokens"] == c.tokens and out["text"] == c.text
    assert out["reused_tokens"] == c.reused_tokens
    # A state the CLI made: the same bits as Python's.
    text_file = tmp_path / "story.txt"
    text_file.write_text(story)
    cli("prefill", "--model", model.path, "--file", text_file, "--out", tmp_path / "cli.kvs")
    made = kvstash.load_state(str(tmp_path / "cli.kvs"))
    assert np.array_equal(made.tokens, story_state.tokens)
    for layer in (0, model.n_layer - 1):
        assert np.array_equal(made.k(layer), story_state.k(layer)) and np.array_equal(made.v(layer), story_state.v(layer))


@needs_cli
def test_budgeted_state_from_the_cli(model, story, tmp_path):
    text_file, path = tmp_path / "long.txt", tmp_path / "budget.kvs"
    text_file.write_text((story + "\n\n") * 4)
    cli("prefill", "--model", model.path, "--file", text_file, "--out", path, "--kv-budget", 64, "--kv-policy", "h2o")
    state = kvstash.load_state(str(path))
    assert state.budgeted and "budgeted" in repr(state)
    assert state.kv_entries < state.n_tokens
    assert state.tokens.shape == state.positions.shape == (state.n_tokens,)  # everything processed
    assert state.k(0).shape == state.v(-1).shape == (state.n_head_kv, state.kv_entries, state.head_dim)
    assert state.k(0).flags.writeable is False and state.k(0).base is not None
    out = json.loads(cli("generate", "--model", model.path, "--state", path, "--prompt", " The knight", "-n", 10,
                         "--temp", 0, "--ignore-eos", "--json"))
    c = model.generate(state, " The knight", max_tokens=10, temperature=0, ignore_eos=True)
    assert c.tokens == out["tokens"]
    again = tmp_path / "again.kvs"
    state.save(str(again))
    assert again.read_bytes() == path.read_bytes()  # saved as loaded, bit for bit
    assert kvstash.load_state(str(again)).budgeted


# ----------------------------------------------------------------------------------------------
# stream


@pytest.mark.parametrize("use_state", [True, False])
def test_stream_equals_generate(model, story, story_state, use_state):
    state, prompt = (story_state, " The knight was known for") if use_state else (None, story + " The knight")
    kw = dict(max_tokens=30, temperature=0.7, seed=99)
    expected = model.generate(state, prompt, **kw)
    stream = model.stream(state, prompt, **kw)
    assert isinstance(stream, kvstash.Stream)
    assert iter(stream) is stream
    pieces = list(stream)
    assert all(isinstance(p, str) for p in pieces) and len(pieces) > 1
    assert "".join(pieces) == expected.text
    assert stream.completion is not None
    assert stream.completion.tokens == expected.tokens
    assert stream.completion.stop_reason == expected.stop_reason
    with pytest.raises(StopIteration):
        next(stream)


def test_stream_stop_string(model, story_state):
    full = model.generate(story_state, " The knight", max_tokens=40, temperature=0, ignore_eos=True)
    stop = full.text.split()[2]
    kw = dict(max_tokens=40, temperature=0, ignore_eos=True, stop=[stop])
    with model.stream(story_state, " The knight", **kw) as s:
        text = "".join(s)
    assert text == model.generate(story_state, " The knight", **kw).text == full.text[:full.text.index(stop)]
    assert s.completion.stop_reason == "stop"


def test_stream_close_early(model, story_state):
    with model.stream(story_state, " The knight", max_tokens=500, temperature=0, ignore_eos=True) as s:
        first = next(s)
    assert isinstance(first, str)
    assert s.completion is None
    s.close()  # twice is fine
    for piece in model.stream(None, "Once upon a time", max_tokens=500, ignore_eos=True):
        break
    del piece
    s2 = model.stream(story_state, " The knight", max_tokens=500, ignore_eos=True)
    next(s2)
    del s2  # dropping an unfinished stream stops it
    gc.collect()
    # The model is free and works as before.
    c = model.generate(story_state, " The knight", **GREEDY)
    assert c.tokens == model.generate(None, STORY + " The knight", **GREEDY).tokens


def test_stream_keeps_model_alive(story):
    m = kvstash.Model(ctx=256, threads=1)
    s = m.stream(None, story[:200], max_tokens=5, temperature=0, ignore_eos=True)
    del m
    gc.collect()
    assert len(list(s)) >= 1 and len(s.completion.tokens) == 5


def test_stream_errors(model, other_model, story_state):
    with pytest.raises(kvstash.InvalidArgumentError):
        model.stream(story_state, "x", temperature=-1)
    with pytest.raises(kvstash.ModelMismatchError):
        list(other_model.stream(story_state, " x", max_tokens=4))


# ----------------------------------------------------------------------------------------------
# errors

ERROR_KINDS = [
    ("InvalidArgumentError", "InvalidArgument", ValueError),
    ("NotFoundError", "NotFound", FileNotFoundError),
    ("CorruptionError", "Corruption", ValueError),
    ("IOFailureError", "IOError", OSError),
    ("NotSupportedError", "NotSupported", NotImplementedError),
    ("ResourceExhaustedError", "ResourceExhausted", MemoryError),
    ("ModelMismatchError", "ModelMismatch", ValueError),
    ("InternalError", "Internal", RuntimeError),
]


@pytest.mark.parametrize("name,kind,builtin", ERROR_KINDS)
def test_error_classes(name, kind, builtin):
    cls = getattr(kvstash, name)
    assert name in kvstash.__all__
    assert issubclass(cls, kvstash.Error) and issubclass(cls, builtin) and issubclass(cls, Exception)
    assert cls.kind == kind
    assert cls.__module__ == "kvstash" and cls.__name__ == name
    assert cls("message").kind == kind
    assert issubclass(kvstash.Error, Exception) and kvstash.Error.kind == "Error"


def test_missing_state_file(tmp_path):
    missing = str(tmp_path / "nope.kvs")
    with pytest.raises(kvstash.NotFoundError, match=re.escape(missing)) as e:
        kvstash.load_state(missing)
    assert isinstance(e.value, FileNotFoundError) and e.value.kind == "NotFound"


def damaged_copies(path):
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    yield "truncated", data[: len(data) // 2]
    yield "one byte short", data[:-1]
    yield "header only", data[: 8 + header_len]
    flipped = bytearray(data)
    flipped[8 + header_len + 100] ^= 0x01  # a bit of k.0
    yield "flipped K bit", bytes(flipped)
    flipped = bytearray(data)
    flipped[-3] ^= 0x40  # a bit of positions
    yield "flipped position bit", bytes(flipped)
    flipped = bytearray(data)
    flipped[8 + header_len // 2] ^= 0x01  # the JSON header
    yield "flipped header bit", bytes(flipped)
    yield "empty", b""
    yield "not a state", b"hello world, this is not a kvstash state file at all" * 10


def test_damaged_state_file(story_state, tmp_path):
    good = tmp_path / "good.kvs"
    story_state.save(str(good))
    for what, data in damaged_copies(good):
        bad = tmp_path / "bad.kvs"
        bad.write_bytes(data)
        with pytest.raises(kvstash.CorruptionError) as e:
            kvstash.load_state(str(bad))
        assert str(bad) in str(e.value), what
        assert e.value.kind == "Corruption"
        assert "\n" not in str(e.value).strip()


def test_damaged_kvz_file(story_state, tmp_path):
    good = tmp_path / "good.kvz"
    story_state.save(str(good))
    data = good.read_bytes()
    for what, bad_data in [("truncated", data[: len(data) // 2]),
                           ("flipped", data[:-64] + bytes([data[-64] ^ 0x10]) + data[-63:])]:
        bad = tmp_path / "bad.kvz"
        bad.write_bytes(bad_data)
        with pytest.raises(kvstash.CorruptionError, match=re.escape(str(bad))):
            kvstash.load_state(str(bad))


def test_model_mismatch(model, other_model, story_state, tmp_path):
    other = other_model
    assert other.fingerprint != model.fingerprint
    with pytest.raises(kvstash.ModelMismatchError) as e:
        other.generate(story_state, " The knight", max_tokens=4)
    assert model.fingerprint in str(e.value) and other.fingerprint in str(e.value)
    path = tmp_path / "story.kvs"
    story_state.save(str(path))
    with pytest.raises(kvstash.ModelMismatchError):
        other.generate(kvstash.load_state(str(path)), [" a", " b"], max_tokens=4)
    # Both models still work.
    assert len(other.generate(None, "Hello", max_tokens=2, temperature=0, ignore_eos=True).tokens) == 2
    assert len(model.generate(story_state, " The", max_tokens=2, temperature=0, ignore_eos=True).tokens) == 2


@pytest.mark.parametrize("arg,value", [("temperature", -1.0), ("top_p", 1.5), ("top_k", -2), ("min_p", -0.5),
                                       ("repeat_penalty", -1.0), ("temperature", float("nan"))])
def test_bad_sampling_arguments(model, story_state, arg, value):
    with pytest.raises(kvstash.InvalidArgumentError, match=arg) as e:
        model.generate(story_state, " x", **{arg: value})
    assert "--" not in str(e.value)  # the Python argument's name, not the CLI flag


def test_bad_arguments(model, story_state):
    with pytest.raises(kvstash.InvalidArgumentError, match="max_tokens"):
        model.generate(story_state, " x", max_tokens=-2)
    with pytest.raises(kvstash.InvalidArgumentError, match="ctx"):
        kvstash.Model(ctx=0)
    with pytest.raises(kvstash.InvalidArgumentError, match="threads"):
        kvstash.Model(threads=-1)
    with pytest.raises(TypeError):
        model.generate(story_state, " x", 5)  # options are keyword-only
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        model.detokenize([model.n_vocab])


@pytest.mark.parametrize("bad", [-1, "n_vocab", 2 ** 31 - 1])
def test_detokenize_out_of_range(model, bad):
    bad = model.n_vocab if bad == "n_vocab" else bad
    with pytest.raises(kvstash.InvalidArgumentError, match=str(bad)):
        model.detokenize([1, bad])


def test_prompt_longer_than_context(model, story):
    small = kvstash.Model(model.path, ctx=64, threads=1)
    with pytest.raises(kvstash.ResourceExhaustedError, match="64") as e:
        small.generate(None, story, max_tokens=4)
    assert isinstance(e.value, MemoryError)
    with pytest.raises(kvstash.ResourceExhaustedError):
        small.process_prefix(story, progress=False)
    with pytest.raises(kvstash.ResourceExhaustedError):
        small.stream(None, story, max_tokens=4).__next__()
    state = small.process_prefix("Once upon a time", progress=False)
    with pytest.raises(kvstash.ResourceExhaustedError):
        small.generate(state, story, max_tokens=4)
    # Still works after the errors.
    assert len(small.generate(state, " there", max_tokens=3, temperature=0, ignore_eos=True).tokens) == 3


def test_model_file_errors(tmp_path):
    with pytest.raises(kvstash.NotFoundError, match="/nonexistent.gguf"):
        kvstash.Model("/nonexistent.gguf")
    not_gguf = tmp_path / "story.gguf"
    not_gguf.write_text(STORY)
    with pytest.raises(kvstash.CorruptionError, match=re.escape(str(not_gguf))):  # bad magic
        kvstash.Model(str(not_gguf))
    truncated = tmp_path / "truncated.gguf"
    with open(ROOT / "models" / DEFAULT_MODEL_NAME, "rb") as f:
        truncated.write_bytes(f.read(100000))
    with pytest.raises((kvstash.CorruptionError, kvstash.NotSupportedError)):
        kvstash.Model(str(truncated))
    with pytest.raises(kvstash.Error):
        kvstash.Model(str(tmp_path))  # a directory


def test_directories_are_not_state_files(story_state, tmp_path):
    with pytest.raises(kvstash.InvalidArgumentError, match="regular file"):
        kvstash.load_state(str(tmp_path))
    with pytest.raises(kvstash.InvalidArgumentError, match="directory"):
        story_state.save(str(tmp_path))


def test_save_into_missing_directory(story_state, tmp_path):
    target = tmp_path / "missing" / "x.kvs"
    with pytest.raises(kvstash.NotFoundError, match=re.escape(str(tmp_path / "missing"))):
        story_state.save(str(target))
    with pytest.raises(kvstash.NotFoundError):
        story_state.save(str(tmp_path / "missing" / "x.kvz"))
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_existing_file_readonly_dir(story_state, model, tmp_path, is_root):
    if is_root:
        pytest.skip("root writes into read-only directories; see the RLIMIT_FSIZE test")
    path = tmp_path / "good.kvs"
    model.process_prefix("A short and different prefix.", progress=False).save(str(path))
    before = path.read_bytes()
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises((kvstash.IOFailureError, PermissionError, kvstash.Error)):
            story_state.save(str(path))
    finally:
        os.chmod(tmp_path, 0o755)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["good.kvs"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE write failures are Linux-specific")
@pytest.mark.parametrize("suffix", [".kvs", ".kvz"])
def test_failed_save_keeps_existing_file(tmp_path, suffix):
    # A write that fails half-way (file size limit: EFBIG, also as root): the existing good file is
    # left as it was, no temp file remains, and the error is an IOFailureError (an OSError).
    path = tmp_path / ("good" + suffix)
    r = run_python(f"""
        import resource, signal, kvstash
        m = kvstash.Model(ctx=1024, threads=1)
        m.process_prefix("A short prefix.", progress=False).save({str(path)!r})
        big = m.process_prefix({STORY!r}, progress=False)
        print("size", __import__("os").path.getsize({str(path)!r}), flush=True)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000000, 1000000))
        try:
            big.save({str(path)!r})
        except kvstash.Error as e:
            print("ERROR", type(e).__name__, isinstance(e, OSError), e, flush=True)
        else:
            print("SAVED")
        s = kvstash.load_state({str(path)!r})
        print("LOADED", len(s))
    """)
    assert r.returncode == 0, r.stderr
    size = int(re.search(r"size (\d+)", r.stdout).group(1))
    assert size < 1000000, "the small state must fit the limit for this test to mean anything"
    assert "ERROR IOFailureError True" in r.stdout, r.stdout
    small_tokens = int(re.search(r"LOADED (\d+)", r.stdout).group(1))
    assert small_tokens < 10
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_errors_leave_model_usable(model, story_state):
    for call in (lambda: model.generate(story_state, " x", temperature=-1),
                 lambda: model.detokenize([-5]),
                 lambda: model.process_prefix("", progress=False)):
        with pytest.raises(kvstash.Error):
            call()
    assert (model.generate(story_state, " The knight", **GREEDY).tokens ==
            model.generate(None, STORY + " The knight", **GREEDY).tokens)


# ----------------------------------------------------------------------------------------------
# Ctrl-C


def start_and_interrupt(code):
    """Runs `code` in a child interpreter, waits for its START line, then presses Ctrl-C (SIGINT)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=str(ROOT))
    line = proc.stdout.readline()
    if not line.startswith("START"):
        proc.kill()
        pytest.fail(line + proc.stderr.read())
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    return proc


def test_ctrl_c_stops_process_prefix():
    code = f"""
        import time, kvstash
        m = kvstash.Model(ctx=4096, threads=1)
        text = ({STORY!r} + "\\n\\n") * 30
        tokens = m.tokenize(text)
        assert len(tokens) > 3000, len(tokens)
        print("START", len(tokens), flush=True)
        t = time.monotonic()
        chunks = []
        try:
            m.process_prefix(tokens, progress=lambda d, n: chunks.append(d))
            print("FINISHED", flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED %.3f %d" % (time.monotonic() - t, len(chunks)), flush=True)
        c = m.generate(None, "Hello", max_tokens=1, temperature=0, ignore_eos=True)
        s = m.process_prefix("Once upon a time", progress=False)
        print("ALIVE", len(c.tokens), len(s), flush=True)
        print("START2", flush=True)  # now Ctrl-C in generate()
        t = time.monotonic()
        try:
            m.generate(s, " there was", max_tokens=3000, ignore_eos=True)
            print("FINISHED2", flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED2 %.3f" % (time.monotonic() - t), flush=True)
        c = m.generate(s, " there was", max_tokens=2, temperature=0, ignore_eos=True)
        print("ALIVE2", len(c.tokens), flush=True)
    """
    proc = start_and_interrupt(code)
    sent = time.monotonic()
    try:
        lines = []
        while not lines or not lines[-1].startswith(("START2", "Traceback")):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        elapsed = time.monotonic() - sent
        if lines and lines[-1].startswith("START2"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        out = "".join(lines) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "FINISHED" not in out
    m = re.search(r"INTERRUPTED ([\d.]+) (\d+)", out)
    assert m, out + err
    # 3000+ tokens on one thread take ~18 s (7 chunks of 512); Ctrl-C is seen after the chunk that
    # runs when it comes (about 1 s each; more on a busy machine).
    assert int(m.group(2)) <= 2, out
    assert float(m.group(1)) < 10.0, out
    assert elapsed < 15
    assert "ALIVE 1 " in out
    m = re.search(r"INTERRUPTED2 ([\d.]+)", out)  # 3000 tokens would take minutes
    assert m and float(m.group(1)) < 10.0, out + err
    assert "FINISHED2" not in out and "ALIVE2 2" in out, out + err


def test_ctrl_c_stops_stream():
    code = """
        import time, kvstash
        m = kvstash.Model(ctx=4096, threads=1)
        s = m.stream(None, "Once upon a time", max_tokens=3000, ignore_eos=True)
        next(s)
        print("START", flush=True)
        n = 0
        try:
            for piece in s:
                n += 1
            print("FINISHED", flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", n, flush=True)
        c = m.generate(None, "Hello", max_tokens=1, temperature=0, ignore_eos=True)
        print("ALIVE", len(c.tokens), flush=True)
    """
    proc = start_and_interrupt(code)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "INTERRUPTED" in out and "FINISHED" not in out, out + err
    assert "ALIVE 1" in out


# ----------------------------------------------------------------------------------------------
# threads


def test_threads_share_a_model(model, story, story_state):
    prompts = [" The knight was known for", " In the castle, there was", " The dragon"]
    jobs = [(story_state, p) for p in prompts] + [(None, story + prompts[0])]
    serial = [model.generate(s, p, max_tokens=8, temperature=0).tokens for s, p in jobs]
    results = {}
    errors = []
    other_state = model.process_prefix("A different prefix about a wizard.", progress=False)

    def work(i, state, prompt):
        try:
            for _ in range(2):
                results.setdefault(i, []).append(model.generate(state, prompt, max_tokens=8, temperature=0).tokens)
                model.generate(other_state, " The wizard", max_tokens=1)  # switch the loaded state
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, s, p)) for i, (s, p) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i, expected in enumerate(serial):
        assert results[i] == [expected, expected]


def test_long_calls_release_the_gil(model, long_text):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.monotonic()
        model.process_prefix(long_text[:2500], progress=False)
        model.generate(None, "Once upon a time", max_tokens=30, ignore_eos=True)
        end = time.monotonic()
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if start < x < end]
    assert len(during) >= 0.3 * (end - start) / 0.01, (len(during), end - start)


def test_threads_stream_and_generate(model, story_state):
    expected = model.generate(story_state, " The knight", **GREEDY)
    out = {}

    def streamer():
        out["stream"] = "".join(model.stream(story_state, " The knight", **GREEDY))

    t = threading.Thread(target=streamer)
    t.start()
    out["generate"] = model.generate(story_state, " The knight", **GREEDY).text
    t.join(timeout=60)
    assert out["stream"] == out["generate"] == expected.text


# ----------------------------------------------------------------------------------------------
# the progress bar


class FakeTerminal:
    def __init__(self, tty):
        self.tty, self.text = tty, []

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass


def test_progress_bar_draws_on_a_terminal_only():
    from kvstash._progress import ProgressBar

    term = FakeTerminal(True)
    bar = ProgressBar(term)
    bar(512, 2048)
    bar(1024, 2048)
    assert "512/2048 tokens" in "".join(term.text) and "1024/2048 tokens" in term.text[-1]
    bar(2048, 2048)
    assert term.text[-1] == "\r\033[K"  # the bar is erased at the end

    pipe = FakeTerminal(False)
    bar = ProgressBar(pipe)
    for done in (512, 1024, 2048):
        bar(done, 2048)
    assert pipe.text == []


def test_context_beyond_training_is_refused_unless_asked(model):
    train = model.n_ctx_train
    with pytest.raises(kvstash.InvalidArgumentError, match=f"training context of {train} tokens"):
        kvstash.Model(ctx=train + 1)
    assert kvstash.Model(ctx=train + 1, ctx_beyond_training=True, threads=1).ctx == train + 1


def test_more_threads_than_cores_are_cut_with_a_warning():
    cores = len(os.sched_getaffinity(0))
    with pytest.warns(RuntimeWarning, match=f"using {cores} threads, not {cores + 7}"):
        m = kvstash.Model(ctx=64, threads=cores + 7)
    assert m.threads == cores
