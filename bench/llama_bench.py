"""llama.cpp side of bench/speed.sh (through llama-cpp-python's low-level eval). One measurement per
process so ru_maxrss is that run's peak. Prints one JSON object.

  python llama_bench.py --model GGUF --tokens FILE --threads N --ctx C --prefill P [--decode G]

Prefill: one llm.eval() over the first P token ids, with n_batch = n_ubatch = max(P, 512), so
llama.cpp processes the whole prompt as one batch (its default n_ubatch of 512 would split a
2,048-token prompt into four). Decode: G calls of llm.eval([token]), greedy (argmax of the last
logits), like kvstash_bench.
"""
import argparse
import json
import resource
import time

import llama_cpp
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2560)
    ap.add_argument("--prefill", type=int, required=True)
    ap.add_argument("--decode", type=int, default=0)
    a = ap.parse_args()
    tokens = [int(t) for t in open(a.tokens).read().split()]
    batch = max(a.prefill, 512)
    t_load = time.perf_counter()
    llm = llama_cpp.Llama(a.model, n_ctx=a.ctx, n_batch=batch, n_ubatch=batch, n_threads=a.threads,
                          n_threads_batch=a.threads, logits_all=False, verbose=False)
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    llm.eval(tokens[: a.prefill])
    prefill_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def argmax_last():  # llm.scores stays zero without logits_all in 0.3.36: read the context's
        p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(p, shape=(n_vocab,))))

    nxt = argmax_last()
    decode_s = 0.0
    if a.decode > 0:
        t0 = time.perf_counter()
        for _ in range(a.decode):
            llm.eval([nxt])
            nxt = argmax_last()
        decode_s = time.perf_counter() - t0
    print(json.dumps({
        "engine": "llama.cpp", "version": llama_cpp.__version__, "threads": a.threads,
        "n_batch": batch, "n_ubatch": batch, "n_prompt": a.prefill, "n_decode": a.decode,
        "load_s": load_s, "prefill_s": prefill_s, "prefill_tokens_per_s": a.prefill / prefill_s,
        "decode_s": decode_s, "decode_tokens_per_s": a.decode / decode_s if a.decode else 0.0,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "last_token": nxt,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }))


if __name__ == "__main__":
    main()
