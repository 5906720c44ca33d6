#!/usr/bin/env python3
"""llama.cpp's side of the state benchmark (issue 3, point 8), through llama-cpp-python.

One invocation is one round. For every prefix length, on the token ids kvstash_state_bench wrote
to OUT_DIR/tokens-N.json (the same text tokens on both sides):
  1. recompute: evaluate the prefix from an empty cache, save the state to a file
     (llama_state_save_file, not timed as part of the recompute), evaluate the continuation,
     take the first token greedily (argmax of the logits);
  2. load: in a second Llama context that never saw the prefix (its memory cleared before every
     load), llama_state_load_file, evaluate the continuation, argmax -- with a warm page cache,
     then cold (fsync + posix_fadvise DONTNEED), then after drop_caches when permitted.
Prints one JSON object per prefix length on stdout.
"""
import argparse
import ctypes
import json
import os
import sys
import time

try:
    import numpy as np
    import llama_cpp
except ImportError as e:  # bench/state_bench.sh installs it into .venv-ref
    sys.exit(f"state_llamacpp.py: {e} (run bench/state_bench.sh, which installs llama-cpp-python into .venv-ref)")


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000.0


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return ""
    except OSError as e:
        return f"cannot write /proc/sys/vm/drop_caches: {e.strerror}"


def clear(llm):
    llm.reset()
    mem = llama_cpp.llama_get_memory(llm.ctx)
    llama_cpp.llama_memory_clear(mem, True)


def first_token(llm):
    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    return int(np.argmax(logits))  # lowest id on ties, like kvstash's greedy sampler


def load_and_continue(llm, path, prefix, cont):
    clear(llm)
    cap = len(prefix) + 16
    out = (llama_cpp.llama_token * cap)()
    n_out = ctypes.c_size_t(0)
    t0 = time.perf_counter()
    ok = llama_cpp.llama_state_load_file(llm.ctx, path.encode(), out, cap, ctypes.byref(n_out))
    load_ms = ms_since(t0)
    if not ok:
        raise RuntimeError(f"llama_state_load_file failed on {path}")
    n = n_out.value
    # Tell the Python wrapper what the context now holds, then continue after it.
    llm.input_ids[:n] = out[:n]
    llm.n_tokens = n
    t1 = time.perf_counter()
    if not cont:
        return {"tokens_match": list(out[:n]) == prefix}
    llm.eval(cont)
    tok = first_token(llm)
    cont_ms = ms_since(t1)
    total = ms_since(t0)
    return {"load_ms": load_ms, "continuation_ms": cont_ms, "ttft_ms": total, "first_token": tok,
            "loaded_tokens": n, "tokens_match": list(out[:n]) == prefix}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out-dir", default="bench/out")
    ap.add_argument("--prefix-tokens", type=int, nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warm-loads", type=int, default=5)
    ap.add_argument("--cold-loads", type=int, default=1)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--no-recompute", action="store_true",
                    help="skip the recompute: take the state from the file an earlier round saved (not timed)")
    a = ap.parse_args()

    n_ctx = max(a.prefix_tokens) + 64
    kw = dict(n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=a.threads, n_threads_batch=a.threads,
              seed=1234, verbose=False)
    t0 = time.perf_counter()
    gen = llama_cpp.Llama(a.model, **kw)
    context_ms = ms_since(t0)
    loader = llama_cpp.Llama(a.model, **kw)  # a fresh context: never saw the prefix

    outs = []
    for n in a.prefix_tokens:
        with open(os.path.join(a.out_dir, f"tokens-{n}.json")) as f:
            t = json.load(f)
        prefix, cont = t["prefix"], t["continuation"]
        assert len(prefix) == n
        path = os.path.join(a.out_dir, f"llamacpp-{n}.state")
        rec = None
        if a.no_recompute:
            r = load_and_continue(gen, path, prefix, [])
            if not r["tokens_match"]:
                raise RuntimeError(f"{path}: not the state of this prefix")
        else:
            print(f"[llama.cpp] round {a.round}, {n} tokens: recompute + save...", file=sys.stderr)
            clear(gen)
            t0 = time.perf_counter()
            gen.eval(prefix)
            prefix_ms = ms_since(t0)
        state_size = llama_cpp.llama_state_get_size(gen.ctx)  # in-memory state (Llama.save_state)
        arr = (llama_cpp.llama_token * n)(*prefix)
        if os.path.exists(path):
            os.unlink(path)
        t1 = time.perf_counter()
        if not llama_cpp.llama_state_save_file(gen.ctx, path.encode(), arr, n):
            raise RuntimeError("llama_state_save_file failed")
        save_ms = ms_since(t1)
        t2 = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fsync_ms = ms_since(t2)
        if not a.no_recompute:
            t3 = time.perf_counter()
            gen.eval(cont)
            tok = first_token(gen)
            cont_ms = ms_since(t3)
            rec = {"prefix_ms": prefix_ms, "continuation_ms": cont_ms, "ttft_ms": prefix_ms + cont_ms,
                   "prefill_tokens_per_s": n / (prefix_ms / 1000.0), "first_token": tok}
        size = os.path.getsize(path)

        print(f"[llama.cpp] round {a.round}, {n} tokens: loads...", file=sys.stderr)
        warm = [load_and_continue(loader, path, prefix, cont) for _ in range(a.warm_loads)]
        cold = []
        for _ in range(a.cold_loads):
            evict(path)
            cold.append(load_and_continue(loader, path, prefix, cont))
        out = {"kind": "llamacpp", "round": a.round, "prefix_tokens": n, "continuation_tokens": len(cont),
               "threads": a.threads, "llama_cpp_python": llama_cpp.__version__, "context_ms": context_ms,
               "recompute": rec, "save_ms": save_ms, "save_fsync_ms": fsync_ms, "file_bytes": size,
               "state_get_size": state_size, "bytes_per_token": size / n, "warm": warm, "cold": cold}
        outs.append((out, path, prefix, cont))
    # After every size: drop_caches also evicts pages of the model, which would slow what runs next.
    for out, path, prefix, cont in outs:
        if a.drop_caches:
            err = drop_caches()
            out["drop_caches"] = load_and_continue(loader, path, prefix, cont) if not err else {"error": err}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
