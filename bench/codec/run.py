#!/usr/bin/env python3
"""KV codec table and speed (issue 9): runs build-codecbench/kvstash_codec_bench, writes
bench/codec/results/*.json and renders docs/codec.md (from bench/codec/doc_template.md) with
docs/codec_size_quality.png. Builds nothing: see run.sh.

  bench/codec/run.py                  # the table for both texts, then speed runs, then render
  bench/codec/run.py --quick          # a tiny setting in a minute or two (build-codecbench/codec/quick/, doc there)
  bench/codec/run.py --parts speed    # only some parts (check,table,speed)
  bench/codec/run.py --render-only    # re-render the doc from the stored results
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "bench", "codec")
BUILD = os.path.join(ROOT, "build-codecbench")
sys.path.insert(0, os.path.join(ROOT, "bench"))
from texts import install_texts, log, prepare_texts  # noqa: E402

FULL = dict(prefix=2048, cont=512, greedy=128, speed_tokens=4096, speed_cont=512, reps=5, recompute_reps=1,
            speed_runs=2, links="0.1,1,10")
QUICK = dict(prefix=256, cont=64, greedy=16, speed_tokens=512, speed_cont=64, reps=2, recompute_reps=1,
             speed_runs=1, links="0.1,1,10")


def rel(c):
    return os.path.relpath(c, ROOT) if c.startswith(ROOT) else c


def run_bench(binary, args, threads):
    cmd = [binary] + args + ["--threads", str(threads)]
    log(" ".join(rel(c) for c in cmd))
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # progress: stderr
    if r.returncode != 0:
        raise SystemExit(f"kvstash_codec_bench failed ({r.returncode})")
    j = json.loads(r.stdout)
    j["command"] = " ".join(rel(c) for c in cmd)
    j["wall_s"] = time.time() - t0
    j["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    log(f"  done in {j['wall_s']:.0f} s")
    return j


def zstd_row(table, level=19):
    """zstd -19 over the .kvs file the table run wrote (python zstandard, one thread: its bytes do
    not depend on the machine). Lossless, so its quality is the exact state's."""
    import zstandard
    with open(table["kvs_path"], "rb") as f:
        raw = f.read()
    t0 = time.time()
    z = zstandard.ZstdCompressor(level=level).compress(raw)
    enc = time.time() - t0
    t0 = time.time()
    back = zstandard.ZstdDecompressor().decompress(z)
    dec = time.time() - t0
    assert back == raw
    exact = next(r for r in table["schemes"] if r["kind"] == "kvs")
    row = dict(exact)
    row.update(name=f"zstd -{level} .kvs", kind="zstd", bytes=len(z), kv_bytes=None,
               bits_per_value=len(z) * 8 / table["values"], kv_bits_per_value=None, encode_s=enc, decode_s=dec,
               zstandard_version=zstandard.__version__)
    return row


def membw(threads):
    b = os.path.join(BUILD, "kvstash_membw")
    out = subprocess.run([b, str(threads), "512"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["read_gb_per_s"]


def machine():
    info = {"cpu": "?", "isa": [], "cores": os.cpu_count(), "kernel": platform.release()}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "model name" and info["cpu"] == "?":
                info["cpu"] = v.strip()
            elif k == "flags" and not info["isa"]:
                flags = set(v.split())
                info["isa"] = [x for x in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                                           "avx512_bf16", "avx_vnni") if x in flags]
    fam = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.strip() in ("cpu family", "model") and k.strip() not in fam:
                fam[k.strip()] = v.strip()
    info["family"] = f" (CPU family {fam.get('cpu family', '?')}, model {fam.get('model', '?')})"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                info["mem_gib"] = int(line.split()[1]) // (1024 * 1024)
    info["membw_gbps"] = {"1": [membw(1) for _ in range(3)], "2": [membw(2) for _ in range(3)]}
    with open("/proc/loadavg") as f:
        info["loadavg"] = f.read().split()[:3]
    return info


def pick_level(tables):
    """The smallest lossy level whose perplexity increase is <= 1 % on every text (else the best lossy level)."""
    ok = None
    levels = sorted({r["level"] for t in tables for r in t["schemes"] if r["kind"] == "kvz"})
    for L in levels:
        worst = max(next(r for r in t["schemes"] if r["kind"] == "kvz" and r["level"] == L)["ppl"] / t["exact"]["ppl"] - 1
                    for t in tables)
        if worst <= 0.01:
            ok = L
            break
    return ok if ok is not None else (levels[-1] if levels else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(BUILD, "kvstash_codec_bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="check,table,speed")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--no-render", action="store_true")
    ap.add_argument("--work", default=os.path.join(BUILD, "codec"))
    a = ap.parse_args()
    g = QUICK if a.quick else FULL
    res = os.path.join(a.work, "quick") if a.quick else os.path.join(HERE, "results")
    os.makedirs(res, exist_ok=True)
    parts = a.parts.split(",")
    if not a.render_only:
        if not os.path.exists(a.bin):
            raise SystemExit(f"{a.bin} is missing: build it (bench/codec/run.sh does)")
        install_texts()
        texts = prepare_texts(a.work)
        state_dir = os.path.join(a.work, "quick" if a.quick else "full")
        t_all = time.time()
        if "check" in parts:
            with open(os.path.join(res, "check.json"), "w") as f:
                json.dump(run_bench(a.bin, ["check"], a.threads), f, indent=1)
        tables = []
        if "table" in parts:
            for name in ("genesis", "devil"):
                t = run_bench(a.bin, ["table", "--text", texts[name], "--name", name, "--work", state_dir,
                                      "--prefix", str(g["prefix"]), "--cont", str(g["cont"]), "--greedy",
                                      str(g["greedy"])], a.threads)
                t["schemes"].insert(1, zstd_row(t))
                t["kvs_path"] = rel(t["kvs_path"])
                with open(os.path.join(res, f"table_{name}.json"), "w") as f:
                    json.dump(t, f, indent=1)
                tables.append(t)
        else:
            for name in ("genesis", "devil"):
                p = os.path.join(res, f"table_{name}.json")
                if os.path.exists(p):
                    with open(p) as f:
                        tables.append(json.load(f))
        if "speed" in parts:
            level = pick_level(tables) if tables else 0
            runs = []
            for i in range(g["speed_runs"]):
                m = machine()  # bandwidth and load right before each run: the machine is shared
                with open(os.path.join(res, "machine.json"), "w") as f:
                    json.dump(m, f, indent=1)
                runs.append(run_bench(a.bin, ["speed", "--text", texts["genesis"], "--work", state_dir, "--tokens",
                                              str(g["speed_tokens"]), "--cont", str(g["speed_cont"]), "--reps",
                                              str(g["reps"]), "--recompute-reps", str(g["recompute_reps"]),
                                              "--links", g["links"], "--level", str(level),
                                              "--level-ppl", "1" if i == 0 else "0"], a.threads))
                runs[-1]["machine"] = m
                with open(os.path.join(res, "speed.json"), "w") as f:
                    json.dump(runs, f, indent=1)
        log(f"all done in {time.time() - t_all:.0f} s")
    if a.no_render:
        return
    import render
    render.render(res, os.path.join(ROOT, "docs") if not a.quick else os.path.join(res, "docs"), quick=a.quick)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
