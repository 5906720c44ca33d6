#!/usr/bin/env python3
"""KV budget quality and speed grid (issue 8): runs build-bench/kvstash_eviction_bench, writes
bench/eviction/results/*.json, and renders docs/eviction.md (from bench/eviction/doc_template.md)
with docs/eviction_ppl.png and docs/eviction_passkey.png. Builds nothing: see run.sh.

  bench/eviction/run.py                      # the full grid, then render
  bench/eviction/run.py --quick              # a tiny grid in ~5 minutes (build-bench/eviction/quick/, doc there)
  bench/eviction/run.py --parts passkey      # only some parts (stream,summary,devil,greedy,passkey,decode)
  bench/eviction/run.py --render-only        # re-render the doc from the stored results
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "bench", "eviction")
sys.path.insert(0, os.path.join(ROOT, "bench"))
from texts import install_texts, prepare_texts  # noqa: E402  (shared with bench/codec)

MAIN_POLICIES = [  # (name, spec without budget)
    ("window", "policy=window"),
    ("sinks", "policy=sinks"),
    ("h2o", "policy=h2o"),
    ("h2o-norm", "policy=h2o,normalize=1"),
    ("tova", "policy=tova"),
    ("fsdc", "policy=fsdc"),
]
SUMMARY_POLICIES = [
    ("h2o-sum", "policy=h2o,summary=sum"),
    ("h2o-mean", "policy=h2o,summary=mean"),
    ("fsdc-sum", "policy=fsdc,summary=sum"),
    ("fsdc-mean", "policy=fsdc,summary=mean"),
]
SNAPKV = ("snapkv", "policy=snapkv")

# The grid. Sizes are chosen so that it finishes in about an hour on a shared 2-core machine
# (~120 tokens/s through the 135M model with 2 threads): see docs/eviction.md, "Cost".
FULL = dict(
    stream_tokens=8192,
    budgets=[128, 256, 512, 1024],
    summary_budgets=[128],
    devil_tokens=8192,
    devil_budgets=[1024],
    greedy_prefix=1280,
    greedy_gen=256,
    greedy_budgets=[256, 1024],
    passkey_length=2048,
    passkey_budgets=[512],
    passkey_keys=4,
    passkey_policies=["window", "sinks", "h2o", "tova", "snapkv", "fsdc"],
    decode_prefill=[1000, 4000, 8000],
    decode_budget=1024,
    decode_gen=64,
    decode_reps=3,
)
QUICK = dict(
    stream_tokens=512,
    budgets=[64, 128],
    summary_budgets=[64],
    devil_tokens=512,
    devil_budgets=[64],
    greedy_prefix=256,
    greedy_gen=16,
    greedy_budgets=[64],
    passkey_length=512,
    passkey_budgets=[128],
    passkey_keys=1,
    passkey_policies=["window", "h2o", "snapkv"],
    decode_prefill=[256, 512],
    decode_budget=64,
    decode_gen=8,
    decode_reps=3,
)


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_bench(binary, args, out_path, threads):
    cmd = [binary] + args + ["--threads", str(threads)]
    log(" ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # progress: stderr
    if r.returncode != 0:
        raise SystemExit(f"kvstash_eviction_bench failed ({r.returncode})")
    j = json.loads(r.stdout)
    j["command"] = " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)
    j["wall_s"] = time.time() - t0
    j["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if out_path:
        with open(out_path, "w") as f:
            json.dump(j, f, indent=1)
    log(f"  done in {j['wall_s']:.0f} s")
    return j


def specs(policies, budgets):
    out = []
    for b in budgets:
        for name, spec in policies:
            out += ["--config", f"name={name}@{b},{spec},budget={b}"]
    return out


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    isa = [x for x in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni") if x in flags]
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // (1024 * 1024)
    fam = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.strip() in ("cpu family", "model") and k.strip() not in fam:
                fam[k.strip()] = v.strip()
    family = f" (CPU family {fam.get('cpu family', '?')}, model {fam.get('model', '?')})"
    return {"cpu": cpu, "family": family, "isa": isa, "cores": os.cpu_count(), "mem_gib": mem, "kernel": platform.release()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-bench", "kvstash_eviction_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="stream,summary,passkey,greedy,decode,devil")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--no-render", action="store_true")
    ap.add_argument("--work", default=os.path.join(ROOT, "build-bench", "eviction"))
    a = ap.parse_args()
    g = QUICK if a.quick else FULL
    res = os.path.join(a.work, "quick") if a.quick else os.path.join(HERE, "results")
    os.makedirs(res, exist_ok=True)
    parts = a.parts.split(",")
    if not a.render_only:
        if not os.path.exists(a.bin):
            raise SystemExit(f"{a.bin} is missing: build it (bench/eviction/run.sh does)")
        install_texts()
        texts = prepare_texts(a.work)
        with open(os.path.join(res, "machine.json"), "w") as f:
            json.dump(machine(), f, indent=1)
        t_all = time.time()
        if "stream" in parts:
            # Main policies x budgets; the summary variants ride along in the same process (they share
            # the full cache's pass) when "summary" is asked for too.
            cfg = specs(MAIN_POLICIES, g["budgets"])
            if "summary" in parts:
                cfg += specs(SUMMARY_POLICIES, g["summary_budgets"])
            run_bench(a.bin, ["stream", "--text", texts["genesis"], "--tokens", str(g["stream_tokens"])] + cfg,
                      os.path.join(res, "stream_genesis.json"), a.threads)
        if "passkey" in parts:
            pols = dict(MAIN_POLICIES + [SNAPKV])
            cfg = ["--config", "name=full,policy=full"]
            for b in g["passkey_budgets"]:
                for name in g["passkey_policies"]:
                    cfg += ["--config", f"name={name}@{b},{pols[name]},budget={b}"]
            run_bench(a.bin, ["passkey", "--length", str(g["passkey_length"]), "--keys", str(g["passkey_keys"]),
                              "--gen", "8"] + cfg, os.path.join(res, "passkey.json"), a.threads)
        if "greedy" in parts:
            run_bench(a.bin, ["greedy", "--text", texts["genesis"], "--prefix", str(g["greedy_prefix"]),
                              "--gen", str(g["greedy_gen"])] + specs(MAIN_POLICIES + [SNAPKV], g["greedy_budgets"]),
                      os.path.join(res, "greedy_genesis.json"), a.threads)
        if "decode" in parts:
            rows = []
            for n in g["decode_prefill"]:
                for spec in ("name=full,policy=full", f"name=h2o@{g['decode_budget']},policy=h2o,budget={g['decode_budget']}"):
                    rows.append(run_bench(a.bin, ["decode", "--text", texts["genesis"], "--prefill", str(n), "--decode",
                                                  str(g["decode_gen"]), "--reps", str(g["decode_reps"]), "--config", spec],
                                          None, a.threads))
            with open(os.path.join(res, "decode.json"), "w") as f:
                json.dump(rows, f, indent=1)
        if "devil" in parts:
            cfg = specs(MAIN_POLICIES, g["devil_budgets"])
            run_bench(a.bin, ["stream", "--text", texts["devil"], "--tokens", str(g["devil_tokens"])] + cfg,
                      os.path.join(res, "stream_devil.json"), a.threads)
        log(f"grid done in {time.time() - t_all:.0f} s")
    if a.no_render:
        return
    if not a.quick:
        import render
        render.render(res, os.path.join(ROOT, "docs"))
    else:
        import render
        render.render(res, os.path.join(res, "docs"))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
