#!/usr/bin/env bash
# State benchmark (issue 3, point 8): time to first token after a 1,024- and a 4,096-token prefix,
# recomputed vs loaded from a .kvs file (warm and cold page cache), against llama.cpp's own state
# save/load through llama-cpp-python; bytes per token, save/load throughput against memcpy.
#
#   bench/state_bench.sh
#
# Builds kvstash_state_bench, makes sure .venv-ref has llama-cpp-python, runs rounds of both sides
# alternately and writes the table between <!-- state-bench:begin --> and <!-- state-bench:end -->
# in docs/benchmarks.md (the rest of the file is left as it is). Settings (environment):
#   ROUNDS=5            rounds of save + loads (warm, cold, drop_caches) on each side
#   RECOMPUTE_ROUNDS=3  of which the first ones also recompute the prefix (slow: ~1 min per
#                       4,096 tokens and side on a 2-core machine); later rounds reuse the file
#   WARM_LOADS=3        warm loads per round and size
#   SIZES="1024 4096"   THREADS=2   BUILD_DIR=build   MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
#   LLAMA_OMP_WAIT_POLICY=passive   OMP_WAIT_POLICY for llama.cpp (see the notes it writes)
#   DOC=docs/benchmarks.md          where the table goes ("" to only print it)
# The prefix text is the King James Bible (Debian package bible-kjv, `bible -f gen1:1-20:18`,
# verse labels removed), cut to the exact token counts; it stays under bench/out/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-5}
RECOMPUTE_ROUNDS=${RECOMPUTE_ROUNDS:-3}
WARM_LOADS=${WARM_LOADS:-3}
SIZES=${SIZES:-"1024 4096"}
THREADS=${THREADS:-2}
BUILD_DIR=${BUILD_DIR:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_OMP_WAIT_POLICY=${LLAMA_OMP_WAIT_POLICY:-passive}
DOC=${DOC-docs/benchmarks.md}
CONTINUATION=" And God said"
OUT=bench/out/state
START=$(date +%s)

[ -f "$MODEL" ] || { echo "state_bench.sh: model $MODEL not found (run the set-up)" >&2; exit 1; }
command -v bible >/dev/null || { echo "state_bench.sh: 'bible' not found: apt-get install bible-kjv" >&2; exit 1; }

echo "== build ($BUILD_DIR)" >&2
cmake -S . -B "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR" -j2 --target kvstash_state_bench kvstash >&2
BENCH="$BUILD_DIR/kvstash_state_bench"

echo "== llama-cpp-python (.venv-ref)" >&2
PY=$(bash scripts/ensure_ref_venv.sh)

mkdir -p "$OUT"
bible -f gen1:1-20:18 | sed -E 's/^[A-Za-z0-9]+:[0-9]+ //' >"$OUT/kjv.txt"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(loadavg)

"$BENCH" --memcpy >>"$RESULTS"
read -r -a SIZE_ARGS <<<"$SIZES"
run_kvstash() {  # round, extra flags...
  local r=$1; shift
  "$BENCH" --model "$MODEL" --text "$OUT/kjv.txt" --prefix-tokens "${SIZE_ARGS[@]}" \
    --continuation "$CONTINUATION" --threads "$THREADS" --warm-loads "$WARM_LOADS" --cold-loads 1 \
    --drop-caches --out-dir "$OUT" --round "$r" "$@" >>"$RESULTS"
}
run_llamacpp() {
  local r=$1; shift
  OMP_WAIT_POLICY=$LLAMA_OMP_WAIT_POLICY "$PY" bench/state_llamacpp.py --model "$MODEL" --out-dir "$OUT" \
    --prefix-tokens "${SIZE_ARGS[@]}" --threads "$THREADS" --warm-loads "$WARM_LOADS" --cold-loads 1 \
    --drop-caches --round "$r" "$@" >>"$RESULTS"
}
for ((r = 1; r <= ROUNDS; r++)); do
  flags=()
  ((r > RECOMPUTE_ROUNDS)) && flags=(--no-recompute)
  echo "== round $r/$ROUNDS ${flags[*]:-} (load average $(loadavg))" >&2
  # kvstash goes first in round 1 (it writes the token ids both sides use), then the order alternates.
  if ((r % 2 == 1)); then
    run_kvstash "$r" "${flags[@]}"; run_llamacpp "$r" "${flags[@]}"
  else
    run_llamacpp "$r" "${flags[@]}"; run_kvstash "$r" "${flags[@]}"
  fi
done
"$BENCH" --memcpy >>"$RESULTS"
LOAD_END=$(loadavg)
ELAPSED=$(($(date +%s) - START))

# Machine notes for the report.
export SB_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export SB_CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
export SB_NPROC=$(nproc)
export SB_MEM=$(free -g | awk '/^Mem:/{print $2 " GiB"}')
export SB_KERNEL=$(uname -r)
export SB_VIRT=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)
export SB_FS=$(df -T "$OUT" | awk 'NR==2{print $2 " on " $1}')
export SB_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export SB_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
export SB_LLAMA_INFO=$("$PY" -c "import llama_cpp; print(llama_cpp.__version__, '|', llama_cpp.llama_print_system_info().decode().strip())")
export SB_LOAD_START=$LOAD_START SB_LOAD_END=$LOAD_END SB_ELAPSED=$ELAPSED SB_ROUNDS=$ROUNDS
export SB_RECOMPUTE_ROUNDS=$RECOMPUTE_ROUNDS SB_WARM=$WARM_LOADS SB_THREADS=$THREADS SB_MODEL=$MODEL
CMD="ROUNDS=$ROUNDS RECOMPUTE_ROUNDS=$RECOMPUTE_ROUNDS WARM_LOADS=$WARM_LOADS"
[ "$SIZES" = "1024 4096" ] || CMD="$CMD SIZES=\"$SIZES\""
[ "$THREADS" = 2 ] || CMD="$CMD THREADS=$THREADS"
[ "$BUILD_DIR" = build ] || CMD="$CMD BUILD_DIR=$BUILD_DIR"
[ "$LLAMA_OMP_WAIT_POLICY" = passive ] || CMD="$CMD LLAMA_OMP_WAIT_POLICY=$LLAMA_OMP_WAIT_POLICY"
[ "$MODEL" = models/SmolLM2-135M-Instruct.Q4_1.gguf ] || CMD="$CMD MODEL=$MODEL"
export SB_COMMAND="$CMD bench/state_bench.sh"
export SB_OMP=$LLAMA_OMP_WAIT_POLICY SB_CONT=$CONTINUATION SB_RESULTS=$RESULTS SB_DOC=$DOC

python3 - <<'EOF'
import json, os, re, statistics as st

E = os.environ
rows = [json.loads(l) for l in open(E["SB_RESULTS"]) if l.strip()]
memcpy = [x for r in rows if r["kind"] == "memcpy" for x in r["gb_per_s_all"]]
mc = st.median(memcpy)
K = {}  # (kind, n) -> list of round results
for r in rows:
    if r["kind"] in ("kvstash", "llamacpp"):
        K.setdefault((r["kind"], r["prefix_tokens"]), []).append(r)
sizes = sorted({n for (_, n) in K})
kinds = ["kvstash", "llamacpp"]
label = {"kvstash": "kvstash", "llamacpp": "llama.cpp"}

def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None

def recompute(k, n):
    return [r["recompute"]["ttft_ms"] for r in K[(k, n)] if r.get("recompute")]

def loads(k, n, which):
    out = []
    for r in K[(k, n)]:
        v = r.get(which)
        if v is None:
            continue
        for x in (v if isinstance(v, list) else [v]):
            if "error" not in x:
                out.append(x)
    return out

def drop_error(k):
    for (kk, n), rs in K.items():
        for r in rs:
            if kk == k and isinstance(r.get("drop_caches"), dict) and "error" in r["drop_caches"]:
                return r["drop_caches"]["error"]
    return None

def fms(x):
    if x is None:
        return "–"
    if x >= 10000:
        return f"{x/1000:,.1f} s"
    if x >= 100:
        return f"{x:,.0f} ms"
    return f"{x:.1f} ms"

def fx(x):
    return "–" if x is None else (f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×")

def gbs(nbytes, ms):
    return None if not ms else nbytes / (ms / 1000) / 1e9

def fg(x):
    return "–" if x is None else f"{x:.2f} GB/s"

# Exactness: every first token must be the recompute's.
firsts, exact = {}, True
for (k, n), rs in K.items():
    toks = {r["recompute"]["first_token"] for r in rs if r.get("recompute")}
    for w in ("warm", "cold", "drop_caches"):
        toks |= {x["first_token"] for x in loads(k, n, w)}
    firsts[(k, n)] = toks
    exact &= len(toks) == 1
    if k == "kvstash":
        exact &= all(x["reused_tokens"] == n for w in ("warm", "cold", "drop_caches") for x in loads(k, n, w))
    else:
        exact &= all(x["tokens_match"] for w in ("warm", "cold", "drop_caches") for x in loads(k, n, w))
text = {n: rs[0].get("first_token_text", "") for (k, n), rs in K.items() if k == "kvstash"}

cols = [(k, n) for n in sizes for k in kinds]
head = "| | " + " | ".join(f"{label[k]}, {n:,} tokens" for k, n in cols) + " |"
sep = "|---|" + "---:|" * len(cols)

def row(name, f):
    return f"| {name} | " + " | ".join(f(k, n) for k, n in cols) + " |"

L = []
L.append(f"Measured {E['SB_DATE']} by `{E['SB_COMMAND']}` (total {int(E['SB_ELAPSED'])//60} min "
         f"{int(E['SB_ELAPSED'])%60} s). Model `{E['SB_MODEL']}`, {E['SB_THREADS']} threads on both sides, prefix = the "
         f"first {' / '.join(f'{n:,}' for n in sizes)} tokens (BOS included) of the King James Bible from Genesis 1:1 (Debian "
         f"`bible-kjv`), continuation `\"{E['SB_CONT']}\"` ({K[('kvstash', sizes[0])][0]['continuation_tokens']} tokens), "
         f"first token greedy. The same token ids go to both engines.")
L.append("")
nrec = {n: len(recompute("kvstash", n)) for n in sizes}
nwarm = {n: len(loads("kvstash", n, "warm")) for n in sizes}
L.append(f"**Time to first token** (median; recompute over {min(nrec.values())} runs, warm loads over "
         f"{min(nwarm.values())}, cold loads over {len(loads('kvstash', sizes[0], 'cold'))}, after drop_caches over "
         f"{len(loads('kvstash', sizes[0], 'drop_caches'))}):")
L.append("")
L.append(head)
L.append(sep)
L.append(row("(i) recompute: prefill prefix + continuation from an empty cache", lambda k, n: fms(med(recompute(k, n)))))
L.append(row("(ii/iii) load the state file + continuation, page cache warm", lambda k, n: fms(med([x["ttft_ms"] for x in loads(k, n, "warm")]))))
L.append(row("… cold (fsync + `posix_fadvise(DONTNEED)` on the file)", lambda k, n: fms(med([x["ttft_ms"] for x in loads(k, n, "cold")]))))
L.append(row("… after `echo 3 > /proc/sys/vm/drop_caches`", lambda k, n: fms(med([x["ttft_ms"] for x in loads(k, n, "drop_caches")]))))
def ratio(which):
    def f(k, n):
        a = med(recompute(k, n)); b = med([x["ttft_ms"] for x in loads(k, n, which)])
        return fx(a / b) if a and b else "–"
    return f
L.append(row("recompute / load, warm", ratio("warm")))
L.append(row("recompute / load, cold", ratio("cold")))
L.append(row("first token (id), recompute = every load", lambda k, n: f"{'/'.join(map(str, sorted(firsts[(k, n)])))}" + ("" if len(firsts[(k, n)]) == 1 else " MISMATCH")))
L.append("")
L.append("**Where a warm load's time goes** (median ms): kvstash = `load_state` (map, validate, checksum every "
         "tensor) + `LoadedPrefix` (check against the model, copy K/V into the block pool) + `generate` "
         "(tokenize prefix text + continuation, reuse the common prefix, forward the continuation, sample); "
         "llama.cpp = `llama_state_load_file` + `eval(continuation)` + argmax.")
L.append("")
L.append(head)
L.append(sep)
def part(kv_key, ll_key, which="warm"):
    def f(k, n):
        key = kv_key if k == "kvstash" else ll_key
        return fms(med([x[key] for x in loads(k, n, which)])) if key else "–"
    return f
L.append(row("read the file into a state (`load_state` / `llama_state_load_file`)", part("load_state_ms", "load_ms")))
L.append(row("restore into the cache (`LoadedPrefix`)", part("loaded_prefix_ms", None)))
L.append(row("continuation + first token", part("generate_ms", "continuation_ms")))
L.append(row("cold: read the file into a state", part("load_state_ms", "load_ms", "cold")))
L.append("")

L.append(f"**State files and throughput** (median; memcpy bandwidth of this machine in the same run: "
         f"**{mc:.2f} GB/s** (one thread, 256 MiB, bytes copied per second; {len(memcpy)} samples, "
         f"{min(memcpy):.2f}–{max(memcpy):.2f}); 50% of it = {mc/2:.2f} GB/s):")
L.append("")
L.append(head)
L.append(sep)
def fb(k, n):
    return f"{K[(k, n)][0]['file_bytes']:,} B"
def bpt(k, n):
    return f"{K[(k, n)][0]['file_bytes'] / n:,.0f}"
L.append(row("file size", fb))
L.append(row("bytes per token", bpt))
def save_ms(k, n):
    if k == "kvstash":
        return fms(med([r["save_ms"] for r in K[(k, n)]])) + " (write + fsync + rename + fsync dir)"
    return (fms(med([r["save_ms"] for r in K[(k, n)]])) + " + fsync " +
            fms(med([r["save_fsync_ms"] for r in K[(k, n)]])))
L.append(row("save", save_ms))
def save_gbs(k, n):
    b = K[(k, n)][0]["file_bytes"]
    if k == "kvstash":
        return fg(gbs(b, med([r["save_ms"] for r in K[(k, n)]]))) + " durable"
    s = med([r["save_ms"] for r in K[(k, n)]]); f = med([r["save_fsync_ms"] for r in K[(k, n)]])
    return f"{fg(gbs(b, s))} to page cache, {fg(gbs(b, s + f))} durable"
L.append(row("save throughput", save_gbs))
def raw(k, n):
    if k != "kvstash":
        return "–"
    b = K[(k, n)][0]["file_bytes"]
    w = med([r["raw_write"]["write_ms"] for r in K[(k, n)]]); f = med([r["raw_write"]["fsync_ms"] for r in K[(k, n)]])
    return f"write {fms(w)} ({fg(gbs(b, w))}) + fsync {fms(f)}"
L.append(row("same bytes with plain `write(2)` + `fsync` (this disk)", raw))
def load_gbs(which):
    def f(k, n):
        b = K[(k, n)][0]["file_bytes"]
        key = "load_state_ms" if k == "kvstash" else "load_ms"
        return fg(gbs(b, med([x[key] for x in loads(k, n, which)])))
    return f
L.append(row("load throughput, warm (file → state)", load_gbs("warm")))
def load_restore(k, n):
    if k != "kvstash":
        return "(same as above: the load fills the cache)"
    b = K[(k, n)][0]["file_bytes"]
    return fg(gbs(b, med([x["load_state_ms"] + x["loaded_prefix_ms"] for x in loads(k, n, "warm")])))
L.append(row("load throughput, warm (file → state → block pool)", load_restore))
def load_fused(k, n):
    if k != "kvstash":
        return "–"
    b = K[(k, n)][0]["file_bytes"]
    return fg(gbs(b, med([x["loaded_prefix_ms"] for x in loads(k, n, "warm_fused")])))
L.append(row("load throughput, warm, one pass (`LoadedPrefix(engine, path)`: file → block pool)", load_fused))
L.append(row("load throughput, cold (file → state)", load_gbs("cold")))
L.append("")

# Targets.
n4 = max(sizes)
rk = med(recompute("kvstash", n4)); wk = med([x["ttft_ms"] for x in loads("kvstash", n4, "warm")])
ck = med([x["ttft_ms"] for x in loads("kvstash", n4, "cold")])
b4 = K[("kvstash", n4)][0]["file_bytes"]
lg = gbs(b4, med([x["load_state_ms"] for x in loads("kvstash", n4, "warm")]))
lrg = gbs(b4, med([x["load_state_ms"] + x["loaded_prefix_ms"] for x in loads("kvstash", n4, "warm")]))
lfg = gbs(b4, med([x["loaded_prefix_ms"] for x in loads("kvstash", n4, "warm_fused")]))
sg = gbs(b4, med([r["save_ms"] for r in K[("kvstash", n4)]]))
rw = med([r["raw_write"]["write_ms"] for r in K[("kvstash", n4)]]); rf = med([r["raw_write"]["fsync_ms"] for r in K[("kvstash", n4)]])
sv = med([r["save_ms"] for r in K[("kvstash", n4)]])
rl = med(recompute("llamacpp", n4)); wl = med([x["ttft_ms"] for x in loads("llamacpp", n4, "warm")])
def vs(a, b):  # kvstash time a vs llama.cpp time b
    return f"kvstash {b / a:.2f}× faster" if a <= b else f"kvstash takes {a / b:.2f}× as long"
ok = lambda c: "**met**" if c else "**not met**"
L.append(f"**Targets** (issue 3), at {n4:,} tokens:")
L.append("")
L.append(f"- Load + first token ≥ 100× faster than recomputing: {fx(rk / wk)} warm, {fx(rk / ck)} cold — "
         f"{ok(rk / wk >= 100 and rk / ck >= 100)}. (llama.cpp: {fx(rl / wl)} warm.) kvstash vs llama.cpp: warm load "
         f"TTFT {fms(wk)} vs {fms(wl)} ({vs(wk, wl)}), recompute {fms(rk)} vs {fms(rl)} ({vs(rk, rl)}).")
L.append(f"- Load throughput ≥ 50% of memcpy ({mc/2:.2f} GB/s) from a warm page cache: `load_state` "
         f"{fg(lg)} = {100 * lg / mc:.0f}% of memcpy — {ok(lg >= mc / 2)}; including the copy into the block pool "
         f"{fg(lrg)} = {100 * lrg / mc:.0f}%; in one pass (issue 10: `load_state_into`, checksums verified while "
         f"copying into the pool) {fg(lfg)} = {100 * lfg / mc:.0f}% — {ok(lfg >= mc / 2)}.")
L.append(f"- Save throughput ≥ 50% of memcpy: durable `save_state` {fg(sg)} = {100 * sg / mc:.0f}% — {ok(sg >= mc / 2)}. "
         f"A save must reach the disk (fsync before rename), and that part is disk-bound: a plain `fsync` of the "
         f"same {b4 / 1e6:.0f} MB takes {fms(rf)} of the save's {fms(sv)} on this machine's disk, while writing them "
         f"into the page cache with `write(2)` takes {fms(rw)} ({fg(gbs(b4, rw))}, {100 * gbs(b4, rw) / mc:.0f}% of memcpy: "
         f"the kernel's copy into page-cache pages, which is the ceiling for any save through a file).")
L.append(f"- Exactness: the first token after every load equals the recompute's first token on each engine "
         f"(kvstash token {'/'.join(str(t) for t in sorted(firsts[('kvstash', n4)]))} = {json.dumps(text.get(n4, ''))}; "
         f"every kvstash load reused all prefix tokens) — {'**yes**' if exact else '**NO**'}.")
L.append("")
de = drop_error("kvstash")
max_res = max([x["resident_before"] for n in sizes for x in loads("kvstash", n, "cold")] or [0])
L.append("Notes:")
L.append("")
L.append(f"- Machine: {E['SB_CPU']}, {E['SB_NPROC']} cores, {E['SB_MEM']}, {E['SB_VIRT'] or 'no'} hypervisor, "
         f"Linux {E['SB_KERNEL']}, files on {E['SB_FS']}; kvstash at commit {E['SB_COMMIT']}"
         f"{' with ' + E['SB_DIRTY'] + ' modified tracked files' if E['SB_DIRTY'] != '0' else ''}. "
         f"Load average {E['SB_LOAD_START']} at the start, {E['SB_LOAD_END']} at the end: the machine is shared "
         f"(other builds and tests run beside the benchmark), so absolute times are noisy; the two sides run "
         f"alternately, round by round, so they see the same conditions.")
L.append(f"- llama.cpp: llama-cpp-python {E['SB_LLAMA_INFO']}; n_ctx = largest prefix + 64, n_batch = n_ubatch = 512, "
         f"f16 KV cache, mmap'd model. The state is saved with `llama_state_save_file` from the context that "
         f"evaluated the prefix and loaded with `llama_state_load_file` into a second context that never saw it "
         f"(memory cleared before every load). `llama_state_save_file` does not fsync; its fsync is timed separately. "
         f"Run with `OMP_WAIT_POLICY={E['SB_OMP']}`: its OpenMP threads otherwise spin at every barrier, and on this "
         f"busy 2-core machine a 3-token continuation after a 4,096-token load then took ~7.5 s instead of ~0.1 s.")
L.append("- kvstash: recompute = forward of the prefix in 512-token chunks (as `run` does) + forward of the "
         "continuation + greedy sample; the snapshot that is saved is taken between the two and is not timed. "
         "A load is `load_state` + `LoadedPrefix` + `LoadedPrefix::generate(continuation, n_predict=1)` on an "
         "engine already in memory (model load and the once-per-model fingerprint are not counted, as for llama.cpp's "
         f"context). Rounds after the first {E['SB_RECOMPUTE_ROUNDS']} skip the recompute and re-save the file from "
         "the previous round's state. Both sides run in the same order of steps; the engine's prefill speed is being "
         "improved, so recompute times (and the ratios) will change: rerun the script.")
L.append("- Cold: the file is fsync'ed and evicted with `posix_fadvise(POSIX_FADV_DONTNEED)` (kvstash checks with "
         f"`mincore` how much stayed resident: at most {100 * max_res:.0f}% of the pages before a cold load). " +
         (f"`drop_caches` was not permitted: {de}." if de else
          "`echo 3 > /proc/sys/vm/drop_caches` was permitted (root in this VM); it also evicts other clean pages, so "
          "that row can include re-reading parts of the model or libraries."))
L.append(f"- Raw results (one JSON object per round, size and engine): `{E['SB_RESULTS']}` (not committed).")
md = "\n".join(L) + "\n"
print(md)

doc = E.get("SB_DOC")
if doc:
    begin, end = "<!-- state-bench:begin -->", "<!-- state-bench:end -->"
    section = begin + "\n" + md + end
    old = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin in old and end in old and old.index(begin) < old.index(end):
        new = old[:old.index(begin)] + section + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n## Attention state: load vs recompute\n\n" + section + "\n"
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, doc)
    print(f"wrote {doc}")
EOF
echo "command: $SB_COMMAND  (${ELAPSED} s)" >&2
