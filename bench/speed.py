"""Driver of bench/speed.sh: alternating runs of kvstash and llama.cpp, medians and ratios.

Every measurement is a fresh process (kvstash_bench or llama_bench.py) so peak RSS (ru_maxrss) is
that run's own. Both engines get the same GGUF, the same token ids (kvstash's tokenization of
scripts/corpus.sh with the default model, cut to the length; the synthetic models carry the default
model's vocabulary padded to 128,256), the same thread count and the same context size. Each round
runs every scenario once per engine, the engine order alternating between rounds. llama.cpp runs
with OMP_WAIT_POLICY=ACTIVE and with PASSIVE (its OpenMP threads spin by default: faster on an idle
machine, collapsing under load); the table keeps its better median.
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
MODELS_DIR = os.path.join(ROOT, "models")
FULL = [("prefill-128", 128, 0), ("prefill-512", 512, 0), ("prefill-2048", 2048, 0), ("decode-128@512", 512, 128)]
MID = [("prefill-128", 128, 0), ("prefill-512", 512, 0), ("decode-64@128", 128, 64)]
SHORT = [("prefill-64", 64, 0), ("decode-16@64", 64, 16)]
MODEL_SETS = {  # label: (file under models/, scenarios)
    "smollm2-135m-q4_1": ("SmolLM2-135M-Instruct.Q4_1.gguf", FULL),
    "llama-1b-q4_k_m": ("synthetic-llama-1b.Q4_K_M.gguf", MID),
    "llama-1b-q8_0": ("synthetic-llama-1b.Q8_0.gguf", MID),
    "llama-8b-q4_k_m": ("synthetic-llama-8b.Q4_K_M.gguf", SHORT),
    "llama-8b-q8_0": ("synthetic-llama-8b.Q8_0.gguf", SHORT),
}
POLICIES = ("ACTIVE", "PASSIVE")


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_flags():
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return ""
    keep = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni")
    return " ".join(f for f in keep if f in flags)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODEL_SETS), help="labels, comma-separated: " + ", ".join(MODEL_SETS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "results.json"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="markdown file whose speed-bench section gets the table ('' to only print it)")
    a = ap.parse_args()
    bench = os.path.join(ROOT, a.build, "kvstash_bench")
    membw = os.path.join(ROOT, a.build, "kvstash_membw")
    labels = [m for m in a.models.split(",") if m]
    for m in labels:
        if m not in MODEL_SETS:
            sys.exit(f"speed.py: unknown model {m!r} (known: {', '.join(MODEL_SETS)})")
        if not os.path.exists(os.path.join(MODELS_DIR, MODEL_SETS[m][0])):
            sys.exit(f"speed.py: models/{MODEL_SETS[m][0]} is missing (bench/speed.sh makes it)")

    tmp = tempfile.mkdtemp(prefix="kvstash-speed-")
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(subprocess.run(["bash", os.path.join(ROOT, "scripts", "corpus.sh")], check=True,
                               capture_output=True, text=True).stdout)
    ids = subprocess.run([bench, "--model", os.path.join(MODELS_DIR, MODEL_SETS["smollm2-135m-q4_1"][0]),
                          "--tokenize", corpus], check=True, capture_output=True, text=True).stdout.split()
    need = max(p for m in labels for _, p, _ in MODEL_SETS[m][1])
    while len(ids) < need:  # the corpus is ~2,500 tokens; repeat it (minus BOS) if ever short
        ids += ids[1:]
    tokens = os.path.join(tmp, "tokens.txt")
    with open(tokens, "w") as f:
        f.write("\n".join(ids[:need]) + "\n")

    def cmd(engine, model, p, g):
        ctx = str(max(512, p + g + 64))
        common = ["--model", model, "--tokens", tokens, "--threads", str(a.threads), "--ctx", ctx,
                  "--prefill", str(p), "--decode", str(g)]
        if engine == "kvstash":
            return [bench] + common, None
        env = dict(os.environ, OMP_WAIT_POLICY=engine.split("/")[1])
        return [sys.executable, os.path.join(ROOT, "bench", "llama_bench.py")] + common, env

    engines = ["kvstash"] + [f"llama.cpp/{p}" for p in POLICIES]
    results = {m: {s: {e: [] for e in engines} for s, _, _ in MODEL_SETS[m][1]} for m in labels}
    bw = []
    for r in range(a.rounds):
        bw.append(run_json([membw, str(a.threads), "512"])["read_gb_per_s"])
        order = engines if r % 2 == 0 else engines[::-1]
        for m in labels:
            path = os.path.join(MODELS_DIR, MODEL_SETS[m][0])
            for name, p, g in MODEL_SETS[m][1]:
                for eng in order:
                    c, env = cmd(eng, path, p, g)
                    res = run_json(c, env)
                    results[m][name][eng].append(res)
                    rate = res["decode_tokens_per_s"] if g else res["prefill_tokens_per_s"]
                    print(f"round {r + 1} {m:18s} {name:15s} {eng:17s} {rate:9.2f} tok/s  "
                          f"rss {res['maxrss_kb'] / 1024:.0f} MiB", file=sys.stderr, flush=True)

    def med(xs, key):
        return statistics.median(x[key] for x in xs)

    bandwidth = statistics.median(bw)
    rows = []
    for m in labels:
        for name, p, g in MODEL_SETS[m][1]:
            key = "decode_tokens_per_s" if g else "prefill_tokens_per_s"
            cell = results[m][name]
            k = med(cell["kvstash"], key)
            policy = max(POLICIES, key=lambda pol: med(cell[f"llama.cpp/{pol}"], key))
            best = cell[f"llama.cpp/{policy}"]
            l = med(best, key)
            row = {"model": m, "scenario": name, "kvstash": k, "llama.cpp": l, "llama_policy": policy,
                   "llama_other": med(cell[f"llama.cpp/{'PASSIVE' if policy == 'ACTIVE' else 'ACTIVE'}"], key),
                   "ratio": k / l, "rss_kvstash_mib": med(cell["kvstash"], "maxrss_kb") / 1024,
                   "rss_llama_mib": med(best, "maxrss_kb") / 1024}
            if g:
                wb = cell["kvstash"][0]["weight_bytes_per_token"]
                row["weight_bytes_per_token"] = wb
                row["bw_fraction_kvstash"] = wb * k / (bandwidth * 1e9)
                row["bw_fraction_llama"] = wb * l / (bandwidth * 1e9)
            rows.append(row)
    any_k = next(iter(results[labels[0]].values()))["kvstash"][0]
    any_l = next(iter(results[labels[0]].values()))["llama.cpp/PASSIVE"][0]
    summary = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "loadavg_at_end": os.getloadavg()},
        "kvstash_simd": any_k.get("simd"), "llama_system_info": any_l.get("system_info"),
        "llama_version": any_l.get("version"),
        "threads": a.threads, "rounds": a.rounds, "read_bandwidth_gb_per_s": bandwidth, "bandwidth_samples": bw,
        "rows": rows, "raw": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)

    text = render(summary)
    print("\n" + text)
    if a.doc:
        write_section(a.doc, text)


def render(s):
    L = [f"{s['rounds']} rounds, {s['threads']} threads, medians. CPU flags: {s['machine']['cpu_flags']}; "
         f"kvstash kernels: `{s['kvstash_simd']}`; llama.cpp {s['llama_version']}: `{s['llama_system_info']}`. "
         f"Read bandwidth (kvstash_membw, {s['threads']} threads, median of the rounds) "
         f"{s['read_bandwidth_gb_per_s']:.1f} GB/s (samples {', '.join(f'{x:.1f}' for x in s['bandwidth_samples'])}); "
         f"load average at the end {', '.join(f'{x:.1f}' for x in s['machine']['loadavg_at_end'])}.", "",
         "| model | scenario | kvstash tok/s | llama.cpp tok/s (best policy; other) | kvstash / llama.cpp | "
         "decode: share of read bandwidth kvstash / llama.cpp | peak RSS MiB kvstash / llama.cpp |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for x in s["rows"]:
        bwf = (f"{100 * x['bw_fraction_kvstash']:.0f}% / {100 * x['bw_fraction_llama']:.0f}% "
               f"({x['weight_bytes_per_token'] / 1e6:.0f} MB/token)") if "bw_fraction_kvstash" in x else ""
        L.append(f"| {x['model']} | {x['scenario']} | {x['kvstash']:.2f} | {x['llama.cpp']:.2f} "
                 f"({x['llama_policy']}; {x['llama_other']:.2f}) | {x['ratio']:.2f} | {bwf} | "
                 f"{x['rss_kvstash_mib']:.0f} / {x['rss_llama_mib']:.0f} |")
    return "\n".join(L)


def write_section(doc, text):
    begin, end = "<!-- speed-bench:begin -->", "<!-- speed-bench:end -->"
    body = open(doc).read() if os.path.exists(doc) else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in body and end in body:
        body = body[:body.index(begin)] + block + body[body.index(end) + len(end):]
    else:
        body += "\n" + block + "\n"
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, doc)


if __name__ == "__main__":
    main()
