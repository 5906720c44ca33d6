#!/usr/bin/env python3
"""Record llama.cpp's (llama-cpp-python's) behaviour on a GGUF model and a text,
as the fidelity reference the kvstash tests compare against.

Usage (normally through scripts/make_reference.sh, which sets up the venv):
    python scripts/make_reference.py [--model M] [--text FILE] [--out FILE]

Without --text the text is the stdout of `bash scripts/corpus.sh`.

What is recorded (see docs/fidelity.md for the full format):
  * the model's and the text's sha256, llama-cpp-python's version, settings;
  * the token ids of the whole text (llm.tokenize(text, add_bos=True,
    special=False): llama.cpp adds BOS only if the vocab asks for it);
  * perplexity windows: the ids are cut into consecutive, non-overlapping
    windows of `ctx` tokens (the last one may be shorter); each window is
    evaluated from an empty KV cache; the logits at window position j predict
    token j+1 of the window, so every token after a window's first is scored;
    per window the NLL sum, overall perplexity = exp(total NLL / scored);
  * for every scored position: the top-k token ids of llama.cpp's
    next-token distribution, their log-probabilities (log_softmax of the full
    logits) and the log-probability of the actual next token;
  * for information, the same windows run by llama.cpp with an F32 KV cache
    (instead of its default F16) compared with the reference: perplexity,
    mean KL, top-1 agreement -- llama.cpp's own noise floor;
  * a greedy continuation of a short prompt (for information).
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "reference_smollm2.json")
EXPECTED_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PROMPT = "The capital of France is"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r6(x):
    """Round to 6 significant digits (keeps the JSON small)."""
    return float(f"{float(x):.6g}")


def log_softmax(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def make_llm(model, ctx, args, **extra):
    return Llama(
        model_path=model,
        n_ctx=ctx,
        n_batch=args.n_batch,
        n_ubatch=args.n_batch,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        logits_all=True,
        seed=args.seed,
        flash_attn=False,
        verbose=False,
        **extra,
    )


def eval_window(llm, ids):
    """Evaluate `ids` from an empty cache; returns float64 log-probs [n, vocab]."""
    llm.reset()  # n_tokens = 0; eval() then removes the whole cache (seq_rm from 0)
    llm.eval(ids)
    assert llm.n_tokens == len(ids)
    logits = np.array(llm.scores[: len(ids), :], dtype=np.float32)
    return log_softmax(logits)


def topk_kl(ref_ids, ref_lp, lp_row):
    """KL(ref || other) from the reference's top-k only: the k listed tokens plus
    one "rest" bucket holding the remaining mass of each distribution. This is
    what a test holding only the fixture can compute; it is a lower bound of
    the full KL."""
    p = np.exp(np.asarray(ref_lp, dtype=np.float64))
    lq = lp_row[ref_ids]
    kl = float(np.sum(p * (np.asarray(ref_lp) - lq)))
    p_rest = max(1.0 - p.sum(), 0.0)
    q_rest = max(1.0 - np.exp(lq).sum(), 1e-30)
    if p_rest > 0:
        kl += p_rest * (math.log(p_rest) - math.log(q_rest))
    return kl


def perplexity_windows(llm, ids, ctx, topk=0, other=None):
    """Evaluates the windows with `llm` (recording top-k if topk > 0); if `other`
    (a second Llama) is given, evaluates each window with it too and compares."""
    windows = []
    positions = {"top_ids": [], "top_logprobs": [], "target_logprob": []}
    total_nll = 0.0
    total_scored = 0
    cmp = {"nll": 0.0, "kl_full": 0.0, "kl_topk": 0.0, "top1_agree": 0}
    for start in range(0, len(ids), ctx):
        win = ids[start : start + ctx]
        if len(win) < 2:
            break  # nothing to score
        n = len(win) - 1
        lp = eval_window(llm, win)[:n]
        tgt = np.array(win[1:])
        tlp = lp[np.arange(n), tgt]
        nll = float(-tlp.sum())
        windows.append({"start": start, "n_tokens": len(win), "n_scored": n, "nll_sum": nll})
        total_nll += nll
        total_scored += n
        lq = eval_window(other, win)[:n] if other is not None else None
        if lq is not None:
            cmp["nll"] += float(-lq[np.arange(n), tgt].sum())
            cmp["kl_full"] += float(np.sum(np.exp(lp) * (lp - lq)))
            cmp["top1_agree"] += int(np.sum(lp.argmax(1) == lq.argmax(1)))
        if topk:
            for j in range(n):
                row = lp[j]
                top = np.argpartition(-row, topk)[:topk]
                # sort by log-prob descending, ties by token id
                top = sorted(top.tolist(), key=lambda t: (-row[t], t))
                top_lp = [r6(row[t]) for t in top]
                positions["top_ids"].append(top)
                positions["top_logprobs"].append(top_lp)
                positions["target_logprob"].append(r6(tlp[j]))
                if lq is not None:
                    cmp["kl_topk"] += topk_kl(top, top_lp, lq[j])
    ppl = math.exp(total_nll / total_scored)
    comparison = None
    if other is not None:
        comparison = {
            "perplexity": math.exp(cmp["nll"] / total_scored),
            "mean_kl_full": cmp["kl_full"] / total_scored,
            "mean_kl_topk": cmp["kl_topk"] / total_scored if topk else None,
            "top1_agreement": cmp["top1_agree"] / total_scored,
        }
    return windows, positions, total_nll, total_scored, ppl, comparison


def greedy(llm, prompt_ids, n):
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        if tok == llm.token_eos():
            break
        llm.eval([tok])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--text", help="text file (default: stdout of scripts/corpus.sh)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--greedy-tokens", type=int, default=32)
    ap.add_argument("--allow-other-model", action="store_true",
                    help="do not insist on the SmolLM2 Q4_1 sha256")
    args = ap.parse_args()

    t0 = time.time()
    model_sha = sha256_file(args.model)
    if model_sha != EXPECTED_MODEL_SHA256 and not args.allow_other_model:
        sys.exit(f"make_reference.py: {args.model} has sha256 {model_sha}, expected "
                 f"{EXPECTED_MODEL_SHA256} (use --allow-other-model to override)")

    if args.text:
        with open(args.text, "rb") as f:
            text_bytes = f.read()
        text_source = os.path.relpath(os.path.abspath(args.text), ROOT)
    else:
        text_bytes = subprocess.run(["bash", os.path.join(ROOT, "scripts", "corpus.sh")],
                                    check=True, stdout=subprocess.PIPE).stdout
        text_source = "bash scripts/corpus.sh"
    text_bytes.decode("utf-8")  # must be valid UTF-8

    llm = make_llm(args.model, args.ctx, args)
    # For information: llama.cpp with an F32 KV cache instead of its default F16
    # one, compared with the reference run (sizes llama.cpp's own rounding noise).
    llm32 = make_llm(args.model, args.ctx, args,
                     type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    add_bos = bool(llm._model.add_bos_token())
    n_vocab = int(llm.n_vocab())
    eos = int(llm.token_eos())

    ids = llm.tokenize(text_bytes, add_bos=True, special=False)
    windows, positions, total_nll, total_scored, ppl, f32kv = perplexity_windows(
        llm, ids, args.ctx, topk=args.topk, other=llm32)
    del llm32
    print(f"tokens={len(ids)} windows={len(windows)} scored={total_scored} "
          f"perplexity={ppl:.6f}", file=sys.stderr)
    print(f"llama.cpp with F32 KV cache vs the reference: {f32kv}", file=sys.stderr)

    prompt_ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    cont = greedy(llm, prompt_ids, args.greedy_tokens)
    cont_text = llm.detokenize(cont).decode("utf-8", errors="replace")
    print(f"greedy: {PROMPT!r} -> {cont_text!r}", file=sys.stderr)
    del llm

    ref = {
        "format": "kvstash-fidelity-reference-v1",
        "generator": {
            "script": "scripts/make_reference.py",
            "llama_cpp_python_version": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            "n_threads": args.threads,
            "n_batch": args.n_batch,
            "n_ubatch": args.n_batch,
            "seed": args.seed,
            "logits_all": True,
            "flash_attn": False,
            "kv_cache_type": "f16",
            "n_gpu_layers": 0,
        },
        "model": {
            "file": os.path.basename(args.model),
            "sha256": model_sha,
            "vocab_add_bos": add_bos,
            "n_vocab": n_vocab,
            "eos_id": eos,
        },
        "text": {
            "source": text_source,
            "sha256": hashlib.sha256(text_bytes).hexdigest(),
            "n_bytes": len(text_bytes),
        },
        "tokens": {
            "add_bos_requested": True,
            "special": False,
            "n_tokens": len(ids),
            "ids": ids,
        },
        "perplexity": {
            "ctx": args.ctx,
            "windows": windows,
            "total_nll": total_nll,
            "n_scored": total_scored,
            "mean_nll": total_nll / total_scored,
            "perplexity": ppl,
        },
        "next_token": {
            "ctx": args.ctx,
            "k": args.topk,
            "note": "one entry per scored position, in order: window 0 positions 0..n-2, "
                    "window 1 positions 0..n-2, ...; entry p of window w predicts token "
                    "ids[start_w + p + 1] from ids[start_w .. start_w + p]. log-probs are "
                    "log_softmax of the full logits, rounded to 6 significant digits; top "
                    "entries sorted by log-prob descending.",
            "n_positions": len(positions["target_logprob"]),
            **positions,
        },
        "llama_cpp_f32_kv_cache_vs_reference": dict(
            note="for information: the same windows run by llama.cpp with an F32 KV cache, "
                 "compared with this reference (KL(reference || f32-kv) mean over scored "
                 "positions; kl_topk uses only the recorded top-k plus a rest bucket)",
            **f32kv),
        "greedy": {
            "prompt": PROMPT,
            "prompt_ids": prompt_ids,
            "n_tokens": args.greedy_tokens,
            "ids": cont,
            "text": cont_text,
        },
    }

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        # one line per array element would be large; keep arrays compact
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.time() - t0:.1f}s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
