#!/usr/bin/env python3
"""Opens a kvstash .kvs state with the Python `safetensors` library and checks it against
docs/format-kvs.md (versions 2 and 3, budgeted states included): metadata, shapes, tensor order,
alignment, zero padding, the book of a budgeted state and (if the `xxhash` package is installed)
every checksum. Optionally writes the keys in Hugging Face order (--hf-npz OUT.npz): permuted from
GGUF order, or as stored in a file saved with key_order "hf" (kvstash prefill --key-order hf).

    python3 -m venv /tmp/stv && /tmp/stv/bin/pip install safetensors numpy xxhash
    /tmp/stv/bin/python scripts/check_kvs_python.py STATE.kvs

Exit status 0 when the file is valid, 1 with a one-line reason otherwise. Not run by CI (CI has
no Python packages); the C++ tests check the same rules.
"""
import argparse
import json
import struct
import sys

import numpy as np
from safetensors import safe_open

try:
    import xxhash
except ImportError:  # checksums are then skipped, and said so
    xxhash = None


def fail(msg):
    print(f"{ARGS.path}: {msg}")
    sys.exit(1)


def metadata_checksum(meta):
    """xxh3-64 over u32le len(key) key u32le len(value) value, keys sorted bytewise."""
    buf = bytearray()
    for key in sorted(meta, key=lambda k: k.encode()):
        if key == "checksum.metadata":
            continue
        for s in (key.encode(), meta[key].encode()):
            buf += struct.pack("<I", len(s)) + s
    return xxhash.xxh3_64_hexdigest(bytes(buf))


def check_book(meta, f, t, slots):
    """The book of a budgeted state (docs/format-kvs.md, "Budgeted states"), as kvstash checks it."""
    policies = ("window", "sinks", "h2o", "tova", "snapkv", "fsdc")
    if meta["budget.policy"] not in policies:
        fail(f"invalid metadata budget.policy '{meta['budget.policy']}'")
    if meta["budget.summary"] not in ("none", "sum", "mean"):
        fail(f"invalid metadata budget.summary '{meta['budget.summary']}'")
    if meta["budget.positions"] not in ("original", "contiguous"):
        fail(f"invalid metadata budget.positions '{meta['budget.positions']}'")
    for key in ("budget.normalize", "book.has_summary", "book.selected"):
        if meta[key] not in ("true", "false"):
            fail(f"invalid metadata {key} '{meta[key]}'")
    budget, interval = int(meta["budget.entries"]), int(meta["budget.interval"])
    has_summary = meta["book.has_summary"] == "true"
    selected = meta["book.selected"] == "true"
    if budget < 1 or interval < 1:
        fail("invalid budget")
    if not (meta["budget.policy"] == "snapkv" and not selected) and slots > budget + interval:
        fail(f"{slots} slots per head, more than budget {budget} + interval {interval}")
    entry = f.get_tensor("book.entry").astype(np.int64)
    score = f.get_tensor("book.score")
    merged = f.get_tensor("book.merged")
    if not np.all(np.isfinite(score)):
        fail("a score is not finite")
    summary = budget - 1 if has_summary else -1
    if has_summary and (meta["budget.summary"] == "none" or summary >= slots):
        fail("a summary slot where the budget allows none")
    rest = np.delete(entry, summary, axis=2) if has_summary else entry
    if has_summary and not np.all(entry[:, :, summary] == -1):
        fail("the summary slot holds an entry")
    if rest.size and (rest.min() < 0 or rest.max() >= t):
        fail("an entry lies outside the stream")
    if rest.shape[2] > 1 and not np.all(np.diff(rest, axis=2) > 0):
        fail("entries are not increasing")
    if np.any(merged < 0) or np.any((merged > 0) != has_summary) or np.any(merged > t - rest.shape[2]):
        fail("merged counts do not match the summary")


def to_hf_key_order(k):
    """[..., head_dim] keys in GGUF (interleaved-pair) RoPE order -> Hugging Face (half-split)."""
    return np.concatenate([k[..., 0::2], k[..., 1::2]], axis=-1)


def main():
    raw = open(ARGS.path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    if (8 + n) % 64:
        fail(f"data starts at byte {8 + n}, not a multiple of 64")
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]

    with safe_open(ARGS.path, framework="np") as f:
        meta = f.metadata()
        if meta.get("format") != "kvstash.state":
            fail("not a .kvs file")
        version = meta.get("format_version")
        if version not in ("2", "3"):
            fail(f"unsupported .kvs format version {version} (this script reads 2 and 3)")
        n_layer, kvh, hd = int(meta["n_layer"]), int(meta["n_head_kv"]), int(meta["head_dim"])
        t, n_vocab = int(meta["n_tokens"]), int(meta["n_vocab"])
        # Version 3: a budgeted state (budget.policy present) keeps `slots` entries per layer and KV
        # head, and its book; tokens/positions are then the whole stream processed.
        budgeted = version == "3" and "budget.policy" in meta
        slots = int(meta["book.slots"]) if budgeted else t
        key_order = meta.get("key_order")
        if key_order not in ("gguf", "hf"):
            fail(f"unsupported key_order '{key_order}' (this script reads 'gguf' and 'hf')")
        if key_order == "hf" and hd % 2:
            fail(f"invalid metadata key_order 'hf' with an odd head_dim {hd}")
        want = {f"{kv}.{l}": ("F16", [kvh, slots, hd]) for l in range(n_layer) for kv in "kv"}
        want.update(logits=("F32", [n_vocab if t else 0]), tokens=("I32", [t]), positions=("I32", [t]))
        if budgeted:
            want["book.entry"] = ("I32", [n_layer, kvh, slots])
            want["book.score"] = ("F32", [n_layer, kvh, slots])
            want["book.merged"] = ("I64", [n_layer, kvh])
        order = sorted(header.keys() - {"__metadata__"}, key=lambda k: header[k]["data_offsets"][0])
        if [k for k in order if not k.startswith("__pad.")] != list(want):
            fail(f"tensors are not in the documented order: {order}")
        for name, (dtype, shape) in want.items():
            e = header.get(name)
            if e is None or e["dtype"] != dtype or e["shape"] != shape:
                fail(f"tensor '{name}' is {e}, expected {dtype} {shape}")
            if e["data_offsets"][0] % 64:
                fail(f"tensor '{name}' does not start at a multiple of 64")
        for name in f.keys():
            if name.startswith("__pad."):
                if f.get_tensor(name).any():
                    fail(f"nonzero padding in '{name}'")
            elif name not in want:
                fail(f"unexpected tensor '{name}'")

        if xxhash is None:
            print("(xxhash not installed: checksums not verified; pip install xxhash)")
        else:
            if meta["checksum.metadata"] != metadata_checksum(meta):
                fail("metadata checksum mismatch (header corrupted)")
            for name in want:
                b, e = header[name]["data_offsets"]
                if xxhash.xxh3_64_hexdigest(data[b:e]) != meta[f"checksum.{name}"]:
                    fail(f"checksum mismatch in tensor '{name}' (file corrupted)")

        tokens, positions = f.get_tensor("tokens"), f.get_tensor("positions")
        contiguous = budgeted and meta["budget.positions"] == "contiguous"
        if contiguous:  # each token's slot when it came: at most its index
            if t and (positions.min() < 0 or np.any(positions > np.arange(t))):
                fail("contiguous positions beyond their entries")
        elif t > 1 and not np.all(np.diff(positions) > 0):
            fail("positions are not increasing")
        if budgeted:
            check_book(meta, f, t, slots)
        print(f"ok: {t} tokens, {n_layer} layers x {kvh} KV heads x {hd}, vocab {n_vocab}, "
              f"{len(raw)} bytes, model {meta['model_fingerprint']}, key_order {key_order}")
        if budgeted:
            print(f"budgeted: {slots} slots per head, policy {meta['budget.policy']}, budget {meta['budget.entries']}, "
                  f"interval {meta['budget.interval']}, summary {meta['budget.summary']}, "
                  f"positions {meta['budget.positions']}")
        print(f"tokens {tokens[:8].tolist()}{' ...' if t > 8 else ''}  "
              f"positions {positions[:8].tolist()}{' ...' if t > 8 else ''}")

        if ARGS.hf_npz:
            # Per layer [batch=1, kv_heads, tokens, head_dim], keys in HF's RoPE order (a file
            # saved with key_order "hf" has them so already): ready for transformers' DynamicCache
            # (cache.update(k, v, layer) per layer).
            out = {}
            for l in range(n_layer):
                k = f.get_tensor(f"k.{l}")
                out[f"key.{l}"] = (k if key_order == "hf" else to_hf_key_order(k))[None]
                out[f"value.{l}"] = f.get_tensor(f"v.{l}")[None]
            np.savez(ARGS.hf_npz, **out)
            print(f"wrote {ARGS.hf_npz} (keys in Hugging Face order)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--hf-npz", help="write per-layer key/value arrays in Hugging Face order")
    ARGS = p.parse_args()
    try:
        main()
    except Exception as e:  # a broken file: one line, not a traceback
        fail(f"{type(e).__name__}: {e}")
