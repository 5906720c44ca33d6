"""Driver of bench/speed.sh: alternating runs of kvstash and llama.cpp, medians and ratios.

Every measurement is a fresh process (kvstash_bench or llama_bench.py) so peak RSS (ru_maxrss) is
that run's own. Both engines get the same GGUF, the same token ids (kvstash's tokenization of
scripts/corpus.sh, cut to the length), the same thread count and the same context size. Each round
runs every scenario once per engine, the engine order alternating between rounds.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SCENARIOS = [  # (name, prompt tokens, decoded tokens)
    ("prefill-128", 128, 0),
    ("prefill-512", 512, 0),
    ("prefill-2048", 2048, 0),
    ("decode-128@512", 512, 128),
]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2560)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "results.json"))
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY for llama.cpp (its OpenMP threads spin by default, which "
                         "collapses on a loaded 2-core machine; '' leaves it unset)")
    a = ap.parse_args()
    bench = os.path.join(ROOT, a.build, "kvstash_bench")
    membw = os.path.join(ROOT, a.build, "kvstash_membw")

    tmp = tempfile.mkdtemp(prefix="kvstash-speed-")
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(subprocess.run(["bash", os.path.join(ROOT, "scripts", "corpus.sh")], check=True,
                               capture_output=True, text=True).stdout)
    ids = subprocess.run([bench, "--model", a.model, "--tokenize", corpus], check=True,
                         capture_output=True, text=True).stdout.split()
    need = max(p for _, p, _ in SCENARIOS)
    while len(ids) < need:  # the corpus is ~2,500 tokens; repeat it (minus BOS) if ever short
        ids += ids[1:]
    tokens = os.path.join(tmp, "tokens.txt")
    with open(tokens, "w") as f:
        f.write("\n".join(ids[:need]) + "\n")

    llama_env = dict(os.environ)
    if a.omp_wait_policy:
        llama_env["OMP_WAIT_POLICY"] = a.omp_wait_policy
    common = ["--model", a.model, "--tokens", tokens, "--threads", str(a.threads), "--ctx", str(a.ctx)]
    cmds = {
        "kvstash": lambda p, g: ([bench] + common + ["--prefill", str(p), "--decode", str(g)], None),
        "llama.cpp": lambda p, g: ([sys.executable, os.path.join(ROOT, "bench", "llama_bench.py")]
                                   + common + ["--prefill", str(p), "--decode", str(g)], llama_env),
    }
    results = {name: {"kvstash": [], "llama.cpp": []} for name, _, _ in SCENARIOS}
    bw = []
    for r in range(a.rounds):
        bw.append(run_json([membw, str(a.threads), "512"])["read_gb_per_s"])
        order = ["kvstash", "llama.cpp"] if r % 2 == 0 else ["llama.cpp", "kvstash"]
        for name, p, g in SCENARIOS:
            for eng in order:
                cmd, env = cmds[eng](p, g)
                res = run_json(cmd, env)
                results[name][eng].append(res)
                rate = res["decode_tokens_per_s"] if g else res["prefill_tokens_per_s"]
                print(f"round {r + 1} {name:15s} {eng:9s} {rate:9.1f} tok/s  rss {res['maxrss_kb'] / 1024:.0f} MiB",
                      file=sys.stderr, flush=True)

    def med(name, eng, key):
        return statistics.median(x[key] for x in results[name][eng])

    bandwidth = statistics.median(bw)
    weight_bytes = results["decode-128@512"]["kvstash"][0]["weight_bytes_per_token"]
    rows = []
    for name, p, g in SCENARIOS:
        key = "decode_tokens_per_s" if g else "prefill_tokens_per_s"
        k, l = med(name, "kvstash", key), med(name, "llama.cpp", key)
        rk, rl = med(name, "kvstash", "maxrss_kb") / 1024, med(name, "llama.cpp", "maxrss_kb") / 1024
        rows.append({"scenario": name, "kvstash": k, "llama.cpp": l, "ratio": k / l,
                     "rss_kvstash_mib": rk, "rss_llama_mib": rl, "rss_ratio": rk / rl})
    dec = rows[-1]
    summary = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "threads": a.threads, "rounds": a.rounds, "ctx": a.ctx, "model": os.path.basename(a.model),
        "llama_omp_wait_policy": a.omp_wait_policy,
        "read_bandwidth_gb_per_s": bandwidth, "bandwidth_samples": bw,
        "weight_bytes_per_token": weight_bytes,
        "decode_bandwidth_fraction_kvstash": weight_bytes * dec["kvstash"] / (bandwidth * 1e9),
        "decode_bandwidth_fraction_llama": weight_bytes * dec["llama.cpp"] / (bandwidth * 1e9),
        "rows": rows, "raw": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)

    print(f"\n{a.rounds} rounds, {a.threads} threads, medians; read bandwidth {bandwidth:.1f} GB/s "
          f"(samples {', '.join(f'{x:.1f}' for x in bw)}); weights per decoded token "
          f"{weight_bytes / 1e6:.1f} MB\n")
    print("| scenario | kvstash tok/s | llama.cpp tok/s | kvstash / llama.cpp | peak RSS kvstash MiB | peak RSS llama.cpp MiB | RSS ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['scenario']} | {x['kvstash']:.1f} | {x['llama.cpp']:.1f} | {x['ratio']:.2f} | "
              f"{x['rss_kvstash_mib']:.0f} | {x['rss_llama_mib']:.0f} | {x['rss_ratio']:.2f} |")
    print(f"\ndecode at {100 * summary['decode_bandwidth_fraction_kvstash']:.0f}% of the read-bandwidth "
          f"limit (llama.cpp {100 * summary['decode_bandwidth_fraction_llama']:.0f}%); raw numbers in {a.out}")


if __name__ == "__main__":
    main()
