#!/usr/bin/env python3
"""Write llama-architecture GGUF models with exactly the shapes of Llama-3.2-1B and Llama-3.1-8B,
filled with seeded random weights, quantized by llama.cpp's own quantizer (docs/synthetic-models.md).

Usage (normally through scripts/make_synthetic_model.sh, which sets up the venv):
    python scripts/make_synthetic_model.py --shape 1b --quant q4_k_m [q8_0 ...]
        [--shape 8b ...] [--keep-f16] [--llama-logits] [--models-dir DIR]

Prints the path of every requested model (made now or already there) on stdout, one per line;
progress goes to stderr. A model that exists is not made again (files are written under a
temporary name and renamed, under a lock file, so an interrupted or concurrent run leaves no
half-written model). The F16 model is an intermediate: it is deleted after quantizing unless
--keep-f16, and at most one F16 model exists at a time (the 8B one is 16 GB).

Weights. Every element is a function of (tensor name, element index) only -- a counter-based
generator written here (splitmix64 of the index, then the sum of the hash's four 16-bit fields,
an Irwin-Hall(4) variate with mean 0 and variance 1, range +-3.46) -- so the same file comes
out with any numpy version. Element index = row-major index in the [rows, cols] matrix (GGUF's
ne0 = cols is the fastest-moving). The tensor's stream seed is the first 8 bytes of
sha256("kvstash-synthetic-v1:" + tensor name). Scales (std of each tensor):
    norms (attn, ffn, output)      1 + 0.02 z       (stored F32, as llama.cpp's converter does)
    token_embd, output             3 / sqrt(n_embd)  (logits have std ~3)
    attn_q, attn_k, attn_v         1 / sqrt(n_embd)  (attention scores with std ~1)
    ffn_gate, ffn_up               1 / sqrt(n_embd)
    attn_output                    2 / sqrt(2 n_layer) / sqrt(n_head * head_dim)
    ffn_down                       2 / sqrt(2 n_layer) / sqrt(n_ff)
so each sub-layer adds about the same amount to the residual stream, which grows to an RMS of
order 1 over all layers instead of exploding or vanishing. (Sharper attention, std 2 scores, makes
these random models chaotic: llama.cpp's 8-bit activation rounding then changes the logits of late
positions by 8%; with std 1 scores it stays near 3% at every position.)
rope_freqs.weight holds the llama-3.1 RoPE frequency factors of the real model (factor 32 for 1b,
8 for 8b; low 1, high 4, original context 8192).

Sidecar (--llama-logits; always for 1b Q4_K_M): <model>.llama_logits.json holds llama.cpp's
(llama-cpp-python's) logits on that exact file for SIDECAR_TOKENS (below), evaluated in one
batch from an empty cache (n_ctx 512, n_batch 512, 2 threads, F16 KV cache, no flash attention),
with the model file's size and sha256 so that a stale sidecar is detected. Logits are stored as
one base64 string of little-endian float32, row-major [n_tokens][n_vocab].
tests/synthetic_model_test.cc compares kvstash's logits with them.
"""
import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_SOURCE = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
N_VOCAB = 128256

# The real models' hyper-parameters (config.json of meta-llama/Llama-3.2-1B and Llama-3.1-8B).
SHAPES = {
    "1b": dict(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, head_dim=64, n_ff=8192,
               tied=True, rope_factor=32.0, label="1B"),
    "8b": dict(n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, head_dim=128, n_ff=14336,
               tied=False, rope_factor=8.0, label="8B"),
}
ROPE_THETA = 500000.0
RMS_EPS = 1e-5
CONTEXT_LENGTH = 131072
ROPE_LOW_FREQ_FACTOR, ROPE_HIGH_FREQ_FACTOR, ROPE_ORIGINAL_CONTEXT = 1.0, 4.0, 8192

QUANTS = {  # --quant name -> (file name part, llama_cpp ftype constant name)
    "q4_k_m": ("Q4_K_M", "LLAMA_FTYPE_MOSTLY_Q4_K_M"),
    "q5_k_m": ("Q5_K_M", "LLAMA_FTYPE_MOSTLY_Q5_K_M"),
    "q6_k": ("Q6_K", "LLAMA_FTYPE_MOSTLY_Q6_K"),
    "q8_0": ("Q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0"),
}

# The sidecar's tokens: BOS (id 1 in the SmolLM2 vocabulary) then 47 ids spread over the whole
# padded vocabulary (k * 104729 mod 128256; 104729 is prime and coprime with 128256, so the ids
# are distinct; about 60% land in the padding, as they would in Llama-3's larger vocabulary).
SIDECAR_TOKENS = [1] + [(k * 104729) % N_VOCAB for k in range(1, 48)]
SIDECAR_CTX, SIDECAR_THREADS = 512, 2

CHUNK = 1 << 22  # elements generated at a time (bounds memory for the 8B's 0.5G-element tensors)


def log(msg):
    print(f"make_synthetic_model: {msg}", file=sys.stderr, flush=True)


# ---- the counter-based generator -----------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_LOW16 = np.uint64(0x0000FFFF0000FFFF)


def tensor_seed(name):
    return int.from_bytes(hashlib.sha256(b"kvstash-synthetic-v1:" + name.encode()).digest()[:8], "little")


def standard_variates(seed, start, n):
    """Elements start .. start+n-1 of the stream `seed`: float32 with mean 0, variance 1."""
    z = np.arange(start + 1, start + 1 + n, dtype=np.uint64)  # splitmix64 of the counter
    z *= _GOLDEN
    z += np.uint64(seed)
    t = z >> np.uint64(30)
    z ^= t
    z *= _MIX1
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= _MIX2
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    # Sum of the four 16-bit fields: pairs added inside 32-bit lanes (no carry crosses), then the
    # two lanes. Exact integers, so no dependence on numpy's float summation order.
    pairs = z & _LOW16
    z >>= np.uint64(16)
    z &= _LOW16
    pairs += z
    lanes = pairs.view("<u4").reshape(n, 2)
    s = (lanes[:, 0] + lanes[:, 1]).astype(np.float32)
    s -= np.float32(2 * 65535)
    s *= np.float32(math.sqrt(3.0) / 65536.0)  # the variance of a 16-bit uniform is 65536^2/12
    return s


# ---- the model's tensors -------------------------------------------------------------------


def rope_freq_factors(head_dim, factor):
    """llama-3.1 RoPE scaling as frequency divisors per rotated pair (1 = unchanged)."""
    out = []
    low_wavelen = ROPE_ORIGINAL_CONTEXT / ROPE_LOW_FREQ_FACTOR
    high_wavelen = ROPE_ORIGINAL_CONTEXT / ROPE_HIGH_FREQ_FACTOR
    for i in range(head_dim // 2):
        wavelen = 2 * math.pi * ROPE_THETA ** (2 * i / head_dim)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (ROPE_ORIGINAL_CONTEXT / wavelen - ROPE_LOW_FREQ_FACTOR) / (
                ROPE_HIGH_FREQ_FACTOR - ROPE_LOW_FREQ_FACTOR)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def tensor_plan(s):
    """[(name, shape as (rows, cols) or (n,), kind, std)] in file order; kind: 'norm', 'matrix', 'rope'."""
    e, L = s["n_embd"], s["n_layer"]
    q_dim, kv_dim = s["n_head"] * s["head_dim"], s["n_head_kv"] * s["head_dim"]
    residual = 2.0 / math.sqrt(2 * L)
    plan = [("token_embd.weight", (N_VOCAB, e), "matrix", 3.0 / math.sqrt(e)),
            ("rope_freqs.weight", (s["head_dim"] // 2,), "rope", 0.0)]
    for i in range(L):
        p = f"blk.{i}."
        plan += [
            (p + "attn_norm.weight", (e,), "norm", 0.02),
            (p + "attn_q.weight", (q_dim, e), "matrix", 1.0 / math.sqrt(e)),
            (p + "attn_k.weight", (kv_dim, e), "matrix", 1.0 / math.sqrt(e)),
            (p + "attn_v.weight", (kv_dim, e), "matrix", 1.0 / math.sqrt(e)),
            (p + "attn_output.weight", (e, q_dim), "matrix", residual / math.sqrt(q_dim)),
            (p + "ffn_norm.weight", (e,), "norm", 0.02),
            (p + "ffn_gate.weight", (s["n_ff"], e), "matrix", 1.0 / math.sqrt(e)),
            (p + "ffn_up.weight", (s["n_ff"], e), "matrix", 1.0 / math.sqrt(e)),
            (p + "ffn_down.weight", (e, s["n_ff"]), "matrix", residual / math.sqrt(s["n_ff"])),
        ]
    plan.append(("output_norm.weight", (e,), "norm", 0.02))
    if not s["tied"]:
        plan.append(("output.weight", (N_VOCAB, e), "matrix", 3.0 / math.sqrt(e)))
    return plan


def write_tensor(fout, name, shape, kind, std, s):
    """Streams one tensor's data to fout, CHUNK elements at a time."""
    if kind == "rope":
        fout.write(rope_freq_factors(s["head_dim"], s["rope_factor"]).astype("<f4").tobytes())
        return
    n = int(np.prod(shape))
    seed = tensor_seed(name)
    for start in range(0, n, CHUNK):
        x = standard_variates(seed, start, min(CHUNK, n - start))
        x *= np.float32(std)
        if kind == "norm":
            x += np.float32(1.0)
            fout.write(x.astype("<f4").tobytes())
        else:
            fout.write(x.astype("<f2").tobytes())


# ---- GGUF writing ----------------------------------------------------------------------------


def copy_padded_tokenizer(w):
    """The default model's tokenizer metadata, its vocabulary padded to N_VOCAB with unique
    control tokens <|reserved_N|> (as Llama-3's reserved special tokens)."""
    r = gguf.GGUFReader(TOKENIZER_SOURCE)
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = gguf.GGUFValueType(field.types[0])
        value = field.contents()
        if key == "tokenizer.ggml.tokens":
            n = len(value)
            value = value + [f"<|reserved_{i}|>" for i in range(n, N_VOCAB)]
        elif key == "tokenizer.ggml.token_type":
            value = value + [int(gguf.TokenType.CONTROL)] * (N_VOCAB - len(value))
        elif key == "tokenizer.ggml.scores":
            value = value + [0.0] * (N_VOCAB - len(value))
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, value, vtype, sub_type=gguf.GGUFValueType(field.types[1]))
        else:
            w.add_key_value(key, value, vtype)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) <= N_VOCAB and not any(t.startswith("<|reserved_") for t in tokens)


def write_f16_model(path, shape_name):
    s = SHAPES[shape_name]
    plan = tensor_plan(s)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"synthetic-llama-{shape_name}")
    w.add_description(f"kvstash synthetic model: random weights with the shapes of Llama-3.x {s['label']} "
                      "(scripts/make_synthetic_model.py); not a language model")
    w.add_context_length(CONTEXT_LENGTH)
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_dimension_count(s["head_dim"])
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(N_VOCAB)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_padded_tokenizer(w)
    for name, shape, kind, _ in plan:
        n = int(np.prod(shape))
        dtype = np.float16 if kind == "matrix" else np.float32
        w.add_tensor_info(name, shape, np.dtype(dtype), n * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    for i, (name, shape, kind, std) in enumerate(plan):
        w.write_padding(fout, fout.tell())  # each tensor's data starts aligned, as the offsets say
        write_tensor(fout, name, shape, kind, std, s)
        if name.endswith("ffn_down.weight"):
            log(f"  {name} written")
    w.close()


# ---- quantizing and the sidecar ---------------------------------------------------------------


def quantize(src, dst, quant):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = os.cpu_count() or 1
    params.ftype = getattr(llama_cpp, QUANTS[quant][1])
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, {quant}) returned {rc}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(model):
    return model + ".llama_logits.json"


def sidecar_is_current(model):
    try:
        with open(sidecar_path(model)) as f:
            j = json.load(f)
        return j["model_size"] == os.path.getsize(model) and j["model_sha256"] == sha256_file(model)
    except (OSError, ValueError, KeyError):
        return False


def logits_summary(logits):
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    return {
        "std": float(logits.std(axis=1).mean()),
        "max_abs": float(np.abs(logits).max()),
        "top1_margin_quartiles": [float(q) for q in np.quantile(margins, [0.25, 0.5, 0.75])],
        "positions_with_margin_over_0.5": int((margins > 0.5).sum()),
        "distinct_argmax": int(len(set(logits.argmax(axis=1).tolist()))),
    }


def write_sidecar(model):
    import llama_cpp
    from llama_cpp import Llama

    t0 = time.time()
    llm = Llama(model_path=model, n_ctx=SIDECAR_CTX, n_batch=SIDECAR_CTX, n_ubatch=SIDECAR_CTX,
                n_threads=SIDECAR_THREADS, n_threads_batch=SIDECAR_THREADS, n_gpu_layers=0,
                logits_all=True, flash_attn=False, verbose=False)
    assert llm.n_vocab() == N_VOCAB
    llm.reset()
    llm.eval(SIDECAR_TOKENS)
    logits = np.array(llm.scores[: len(SIDECAR_TOKENS), :], dtype="<f4")
    del llm
    assert np.isfinite(logits).all()
    summary = logits_summary(logits)
    j = {
        "about": "llama.cpp's logits on the model file named below (scripts/make_synthetic_model.py)",
        "model": os.path.basename(model),
        "model_size": os.path.getsize(model),
        "model_sha256": sha256_file(model),
        "llama_cpp_python": llama_cpp.__version__,
        "settings": {"n_ctx": SIDECAR_CTX, "n_batch": SIDECAR_CTX, "n_threads": SIDECAR_THREADS,
                     "kv_cache": "f16", "flash_attn": False},
        "tokens": SIDECAR_TOKENS,
        "n_vocab": N_VOCAB,
        "summary": summary,
        "logits_f32_base64": base64.b64encode(logits.tobytes()).decode(),
    }
    tmp = sidecar_path(model) + ".partial"
    with open(tmp, "w") as f:
        json.dump(j, f)
    os.replace(tmp, sidecar_path(model))
    log(f"  sidecar {os.path.basename(sidecar_path(model))} in {time.time() - t0:.0f} s; logits {summary}")


# ---- driver ----------------------------------------------------------------------------------


def model_path(models_dir, shape_name, quant):
    return os.path.join(models_dir, f"synthetic-llama-{shape_name}.{QUANTS[quant][0]}.gguf")


@contextlib.contextmanager
def removed_on_failure(path):
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise


def make_shape(models_dir, shape_name, quants, keep_f16, llama_logits):
    wanted = [(q, model_path(models_dir, shape_name, q)) for q in quants]
    missing = [(q, p) for q, p in wanted if not os.path.exists(p)]
    f16 = os.path.join(models_dir, f"synthetic-llama-{shape_name}.F16.gguf")
    if missing:
        if not os.path.exists(f16):
            for other in SHAPES:  # never two F16 models on the disk at once
                stale = os.path.join(models_dir, f"synthetic-llama-{other}.F16.gguf")
                if other != shape_name and os.path.exists(stale):
                    log(f"removing {stale} (one F16 intermediate at a time)")
                    os.remove(stale)
            t0 = time.time()
            log(f"writing {f16} (random weights, F16)")
            with removed_on_failure(f16 + ".partial") as tmp:
                write_f16_model(tmp, shape_name)
                os.replace(tmp, f16)
            log(f"  F16 written in {time.time() - t0:.0f} s ({os.path.getsize(f16) / 1e9:.2f} GB)")
        for q, p in missing:
            t0 = time.time()
            log(f"quantizing to {p}")
            with removed_on_failure(p + ".partial") as tmp:
                quantize(f16, tmp, q)
                os.replace(tmp, p)
            log(f"  quantized in {time.time() - t0:.0f} s ({os.path.getsize(p) / 1e9:.2f} GB)")
        if not keep_f16:
            os.remove(f16)
    for q, p in wanted:
        if (llama_logits or (shape_name, q) == ("1b", "q4_k_m")) and not sidecar_is_current(p):
            write_sidecar(p)
    return [p for _, p in wanted]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES), required=True,
                    help="model shape (repeatable)")
    ap.add_argument("--quant", nargs="+", choices=sorted(QUANTS), default=["q4_k_m"],
                    help="quantization types (default q4_k_m)")
    ap.add_argument("--keep-f16", action="store_true", help="keep the F16 intermediate")
    ap.add_argument("--llama-logits", action="store_true",
                    help="write the llama.cpp logits sidecar for every requested model "
                         "(always done for 1b q4_k_m)")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "models"))
    args = ap.parse_args()

    os.makedirs(args.models_dir, exist_ok=True)
    # One maker at a time: a second waits, then finds the files made.
    with open(os.path.join(args.models_dir, ".synthetic.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for shape_name in dict.fromkeys(args.shape):
            for p in make_shape(args.models_dir, shape_name, list(dict.fromkeys(args.quant)),
                                args.keep_f16, args.llama_logits):
                print(p, flush=True)


if __name__ == "__main__":
    main()
