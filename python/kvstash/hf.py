"""Hugging Face transformers interop: kvstash states to and from `transformers.DynamicCache`.

Needs torch and transformers (`pip install 'kvstash[hf]'`). Key order: kvstash stores keys in GGUF
(llama.cpp) order, where RoPE rotates adjacent pairs (x[2i], x[2i+1]); Hugging Face's Llama rotates
halves (x[i], x[i + d/2]). Converting permutes each key vector (docs/kv-layout.md); values are
not permuted. A model loaded with `AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)` from
the same GGUF then continues a kvstash state exactly as it would have continued its own cache.

The seed's functions (save_cache_to_disk, load_cache_from_disk, process_prefix,
generate_with_prefix) are here with the same names, writing kvstash's .kvs files: no pickle, every
tensor checksummed, the model's fingerprint checked, mapped on load.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np

try:
    import torch
    from transformers import DynamicCache
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("kvstash.hf needs torch and transformers: pip install 'kvstash[hf]'") from e

from . import _core
from ._core import Model, State, load_state

__all__ = [
    "HfCache",
    "to_dynamic_cache",
    "from_dynamic_cache",
    "kvstash_model_for",
    "to_hf_key_order",
    "from_hf_key_order",
    "save_cache_to_disk",
    "load_cache_from_disk",
    "process_prefix",
    "generate_with_prefix",
]


def to_hf_key_order(k: np.ndarray) -> np.ndarray:
    """Keys [..., head_dim] from kvstash's (GGUF) pair order to Hugging Face's half order (a copy)."""
    d = k.shape[-1]
    return np.ascontiguousarray(k.reshape(*k.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(k.shape))


def from_hf_key_order(k: np.ndarray) -> np.ndarray:
    """Keys [..., head_dim] from Hugging Face's half order to kvstash's (GGUF) pair order (a copy)."""
    d = k.shape[-1]
    return np.ascontiguousarray(k.reshape(*k.shape[:-1], 2, d // 2).swapaxes(-1, -2).reshape(k.shape))


class HfCache(NamedTuple):
    """A kvstash state as transformers takes it: the cache and the inputs that go with it."""

    cache: DynamicCache
    input_ids: torch.Tensor  # [1, T]: the state's tokens
    attention_mask: torch.Tensor  # [1, T]: ones (every cached entry is attended to)
    cache_position: torch.Tensor  # [T]: the entries' positions; the next token's is T

    def forward_inputs(self, new_ids: Sequence[int]) -> dict:
        """Keyword arguments for `model(**...)` running `new_ids` after the cached tokens."""
        n, t = len(new_ids), self.input_ids.shape[1]
        device = self.input_ids.device
        return {
            "input_ids": torch.tensor([list(new_ids)], dtype=torch.long, device=device),
            "attention_mask": torch.ones(1, t + n, dtype=torch.long, device=device),
            "cache_position": torch.arange(t, t + n, device=device),
            "past_key_values": self.cache,
            "use_cache": True,
        }

    def generate_inputs(self, new_ids: Sequence[int]) -> dict:
        """Keyword arguments for `model.generate(**...)`: the whole sequence (generate skips what
        the cache holds) and its mask. new_ids must not be empty: transformers needs at least one
        uncached token to compute the next token's logits."""
        if len(new_ids) == 0:
            raise _core.InvalidArgumentError("generate_inputs: new_ids is empty (transformers needs one uncached token)")
        ids = torch.cat([self.input_ids, torch.tensor([list(new_ids)], dtype=torch.long, device=self.input_ids.device)], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "past_key_values": self.cache}


def to_dynamic_cache(state: State, *, dtype: torch.dtype = torch.float32, device=None, upto: int | None = None) -> HfCache:
    """The state as a `transformers.DynamicCache` in Hugging Face key order ([1, n_head_kv, T, head_dim]
    per layer, in `dtype` on `device`), with its input ids, attention mask and cache positions.

    upto: keep only the first `upto` entries (to continue from a shorter common prefix). Budgeted
    states (entries evicted, positions with gaps) have no DynamicCache form: NotSupportedError.
    Each call builds a new cache (generate() extends the cache it is given).
    """
    if state.budgeted:
        raise _core.NotSupportedError("a budgeted state (KV budget, entries evicted) has no DynamicCache form")
    t = len(state) if upto is None else upto
    if not 0 <= t <= len(state):
        raise _core.InvalidArgumentError(f"upto must be in [0, {len(state)}], got {upto}")
    positions = np.asarray(state.positions[:t])
    if not np.array_equal(positions, np.arange(t)):
        raise _core.NotSupportedError("the state's positions are not 0..T-1; a DynamicCache cannot hold them")
    cache = DynamicCache()
    for layer in range(state.n_layer):
        k = torch.from_numpy(to_hf_key_order(state.k(layer)[:, :t]))[None].to(dtype=dtype, device=device)
        v = torch.from_numpy(np.array(state.v(layer)[:, :t]))[None].to(dtype=dtype, device=device)
        cache.update(k, v, layer)
    ids = torch.tensor([state.tokens[:t].tolist()], dtype=torch.long, device=device)
    return HfCache(cache, ids, torch.ones_like(ids), torch.arange(t, device=device))


def _cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a DynamicCache (transformers 4.5x and 5.x) or a legacy tuple."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v, *_ in cache]


def _f16(t: torch.Tensor) -> np.ndarray:
    # float32 -> float16 rounds to nearest even, as kvstash's own cache does.
    return t.detach().to("cpu", torch.float32).numpy().astype(np.float16)


def from_dynamic_cache(cache, tokens: Sequence[int], model: Model, *, logits=None) -> State:
    """A kvstash State from transformers' cache of `tokens` (batch 1), for the kvstash `model` made from
    the same GGUF (its fingerprint goes into the state). K/V are rounded to float16 and keys permuted
    to kvstash's order. logits: the last position's logits from transformers' forward pass (recorded
    as the state's); without them kvstash computes them from the cache (the first T-1 entries
    restored, the last token run). `state.save(path)` then writes a .kvs any kvstash reads."""
    tokens = [int(t) for t in (tokens.reshape(-1).tolist() if hasattr(tokens, "reshape") else tokens)]
    layers = _cache_layers(cache)
    if len(layers) != model.n_layer:
        raise _core.ModelMismatchError(f"the cache has {len(layers)} layers, the model {model.n_layer}")
    keys, values = [], []
    for k, v in layers:
        if k.dim() != 4 or k.shape[0] != 1:
            raise _core.InvalidArgumentError(f"expected cache tensors [1, heads, tokens, head_dim], got {tuple(k.shape)}")
        if k.shape[2] != len(tokens):
            raise _core.InvalidArgumentError(f"the cache holds {k.shape[2]} tokens, {len(tokens)} token ids were given")
        keys.append(from_hf_key_order(_f16(k[0])))
        values.append(np.ascontiguousarray(_f16(v[0])))
    if logits is not None:
        logits = [float(x) for x in torch.as_tensor(logits).reshape(-1).tolist()]
    return _core._state_from_arrays(model, tokens, keys, values, logits)


# ---- The seed's names (Freeze-Attn), on .kvs files ----------------------------------------------


_models: dict[str, Model] = {}


def kvstash_model_for(hf_model) -> Model:
    """The kvstash Model of the GGUF file a transformers model was loaded from
    (`from_pretrained(dir, gguf_file=...)`), loaded once per file."""
    q = getattr(hf_model.config, "quantization_config", None)
    gguf_file = q.get("gguf_file") if isinstance(q, dict) else getattr(q, "gguf_file", None)
    if not gguf_file:
        raise _core.InvalidArgumentError(
            "the transformers model was not loaded from a GGUF file (from_pretrained(dir, gguf_file=...)); "
            "pass the kvstash Model of its GGUF")
    path = gguf_file if os.path.isabs(gguf_file) else os.path.join(hf_model.name_or_path, gguf_file)
    if path not in _models:
        _models[path] = Model(path)
    return _models[path]


def save_cache_to_disk(cache, path: str, tokens: Sequence[int], model, *, logits=None, key_order: str = "gguf") -> State:
    """Writes transformers' cache of `tokens` as a .kvs file (atomically) and returns the state.
    model: the kvstash Model of the same GGUF, or the transformers model loaded from it.
    key_order='hf' keeps Hugging Face's key order in the file for plain safetensors readers
    (kvstash reads either)."""
    if not isinstance(model, Model):
        model = kvstash_model_for(model)
    state = from_dynamic_cache(cache, tokens, model, logits=logits)
    state.save(path, key_order=key_order)
    return state


def load_cache_from_disk(path: str, *, dtype: torch.dtype = torch.float32, device=None) -> DynamicCache:
    """A DynamicCache from a .kvs or .kvz file (checked: format, checksums). Its tokens are
    `kvstash.load_state(path).tokens`; generate_with_prefix does the whole continuation."""
    return to_dynamic_cache(load_state(path), dtype=dtype, device=device).cache


def process_prefix(model, tokenizer, prefix: str, path: str, *, kvstash_model: Model | None = None,
                   key_order: str = "gguf") -> State:
    """Runs `prefix` through the transformers `model` once and saves its cache to `path` (.kvs).
    Tokens come from the kvstash Model's tokenizer (llama.cpp's, what kvstash continues with; default:
    the model of the GGUF `model` was loaded from), so a kvstash continuation of the file reuses every
    entry. `tokenizer` is accepted for the seed's signature and not needed."""
    del tokenizer
    kvstash_model = kvstash_model or kvstash_model_for(model)
    ids = kvstash_model.tokenize(prefix)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
    return save_cache_to_disk(out.past_key_values, path, ids, kvstash_model, logits=out.logits[0, -1], key_order=key_order)


def generate_with_prefix(model, tokenizer, path: str, continuation: str, *, max_new_tokens: int = 50, **generate_kwargs) -> str:
    """Loads the state at `path`, appends `continuation` (tokenized on its own, without special
    tokens) and lets the transformers `model` generate; returns the new text."""
    state = load_state(path)
    new_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if len(new_ids) == 0:  # transformers needs an uncached token: run the state's last one again
        hc = to_dynamic_cache(state, dtype=model.dtype, device=model.device, upto=len(state) - 1)
        new_ids = [int(state.tokens[-1])]
    else:
        hc = to_dynamic_cache(state, dtype=model.dtype, device=model.device)
    inputs = hc.generate_inputs(new_ids)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
