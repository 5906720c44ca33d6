#!/usr/bin/env bash
# Serving benchmark: `kvstash serve` against llama.cpp's `llama-server` (same GGUF, same threads),
# both OpenAI-compatible HTTP servers on loopback, driven by bench/serve/load.py:
#   - TTFT with a ~2,048-token shared prefix: MISS (never-seen prefix) and HIT (prefix sent before);
#   - throughput at 1, 4 and 16 concurrent clients sharing a ~500-token system prompt.
# llama-server runs with OMP_WAIT_POLICY=ACTIVE and PASSIVE, each with a unified and a per-slot KV
# cache, and keeps its best figure per metric (the peer gets its best settings). Writes bench/out/serve.json, prints a markdown table.
#   bash bench/serve/run.sh
# Environment: MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (2), ROUNDS (5, TTFT
# rounds), REQUESTS (8, requests per client), MAX_TOKENS (32, throughput), CLIENTS (1,4,16),
# SERVERS ("kvstash llama"; e.g. SERVERS=llama runs llama-server only), OMP_POLICIES (ACTIVE PASSIVE),
# LLAMA_KVS (llama-server KV layouts tried: "-kvu -no-kvu"). llama-server runs once per OMP policy
# and layout; per metric its best run counts (serve.json's llama_server_best_of names it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODEL=$(realpath "${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}")
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-8}
MAX_TOKENS=${MAX_TOKENS:-32}
CLIENTS=${CLIENTS:-1,4,16}
SERVERS=${SERVERS:-kvstash llama}
OMP_POLICIES=${OMP_POLICIES:-ACTIVE PASSIVE}
LLAMA_KVS=${LLAMA_KVS:--kvu -no-kvu}
PARALLEL=16
CTX=4096
OUT="$ROOT/bench/out"
LOGS="$OUT/serve-logs"
PROMPTS="$OUT/serve_prompts.json"
mkdir -p "$OUT" "$LOGS"
rm -f "$PROMPTS" "$OUT"/serve-*.jsonl "$LOGS"/*.log
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- builds
if [[ " $SERVERS " == *" kvstash "* ]]; then
  log "building kvstash"
  [ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build build -j2 --target kvstash >&2
fi
KVSTASH="$ROOT/build/kvstash"
if [[ " $SERVERS " == *" llama "* ]]; then
  log "building llama-server"
  LLAMA_SERVER=$(bash bench/serve/build_llama_server.sh)
  log "llama-server: $("$LLAMA_SERVER" --version 2>&1 | head -1)"
fi

# ---- machine
log "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
log "SIMD: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(sse4_2|avx|avx2|fma|f16c|avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*)$' | sort -u | tr '\n' ' ')"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
log "model $MODEL, threads $THREADS, rounds $ROUNDS, $REQUESTS requests/client, max_tokens $MAX_TOKENS"

# ---- helpers
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
CACHE_DIRS=()
cleanup() { stop_server; for d in "${CACHE_DIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
wait_health() {  # url logfile
  for _ in $(seq 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server exited; its log:"; tail -30 "$2" >&2; return 1
    fi
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/health" || true)" = 200 ] && return 0
    sleep 0.5
  done
  log "server did not become healthy in 300 s"; return 1
}

# run_one NAME ENV... -- CMD...: start the server, measure, stop it.
run_one() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local port url logf jsonl
  port=$(free_port); url="http://127.0.0.1:$port"
  logf="$LOGS/$name.log"; jsonl="$OUT/serve-$name.jsonl"
  local cmd=("$@" --port "$port")
  log "$name: ${envs[*]} ${cmd[*]}"
  env "${envs[@]}" "${cmd[@]}" >"$logf" 2>&1 &
  SERVER_PID=$!
  wait_health "$url" "$logf"
  if [ ! -f "$PROMPTS" ]; then  # once, so that every server gets identical request bodies
    if [ -x "$KVSTASH" ]; then
      python3 bench/serve/load.py prepare --prompts "$PROMPTS" --kvstash-bin "$KVSTASH" --model-path "$MODEL" >/dev/null
    else
      python3 bench/serve/load.py prepare --prompts "$PROMPTS" --tokenize-url "$url" >/dev/null
    fi
  fi
  local common=(--url "$url" --prompts "$PROMPTS" --model-name "$(basename "$MODEL")")
  python3 bench/serve/load.py ttft "${common[@]}" --rounds "$ROUNDS" >"$jsonl"
  python3 bench/serve/load.py throughput "${common[@]}" --clients "$CLIENTS" --requests "$REQUESTS" \
    --max-tokens "$MAX_TOKENS" >>"$jsonl"
  stop_server
}

for s in $SERVERS; do
  case $s in
    kvstash)
      dir=$(mktemp -d /tmp/kvstash-serve-cache.XXXXXX); CACHE_DIRS+=("$dir")
      run_one kvstash -- "$KVSTASH" serve -m "$MODEL" --host 127.0.0.1 -t "$THREADS" \
        --parallel "$PARALLEL" --ctx-size "$CTX" --prompt-cache "$dir"
      ;;
    llama)
      # -np 16 slots, -c 16 x 4096 cells. Two KV layouts, both tried (the peer gets its best):
      #   -kvu     one unified KV buffer shared by all slots (a slot may use up to the model's
      #            8192-token training context); idle slots are saved to the host-memory prompt
      #            cache and cleared (--cache-idle-slots, default on);
      #   -no-kvu  one 4096-cell stream per slot, like kvstash's --ctx-size 4096 per slot.
      # In both, a request goes to the slot whose cached prompt shares the longest prefix (else
      # the LRU slot), the host-memory prompt cache (--cache-ram, 8 GiB by default) keeps prompts
      # evicted from slots, and --cache-reuse 256 also reuses matching chunks after the common
      # prefix via KV shifting. cache_prompt is on by default.
      for kv in $LLAMA_KVS; do
        for pol in $OMP_POLICIES; do
          run_one "llama-$pol$kv" OMP_WAIT_POLICY="$pol" -- "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 \
            -t "$THREADS" -np "$PARALLEL" -c $((CTX * PARALLEL)) "$kv" --cache-reuse 256
        done
      done
      ;;
    *) log "unknown server '$s'"; exit 2 ;;
  esac
done

# ---- summary
python3 - "$OUT" "$MODEL" "$THREADS" "$ROUNDS" "$REQUESTS" "$MAX_TOKENS" "$SERVERS" "$PROMPTS" <<'EOF'
import glob, json, os, sys
out, model, threads, rounds, requests, max_tokens, servers, prompts = sys.argv[1:]
runs = {}
for path in sorted(glob.glob(os.path.join(out, "serve-*.jsonl"))):
    name = os.path.basename(path)[len("serve-"):-len(".jsonl")]
    m = {}
    for line in open(path):
        r = json.loads(line)
        if r["mode"] == "ttft":
            m[f"ttft_{r['kind']}_ms"] = r["median_ms"]
        elif r["mode"] == "throughput":
            c = r["clients"]
            m[f"req_per_s_{c}"] = r["req_per_s"]
            m[f"tok_per_s_{c}"] = r["tok_per_s"]
            m[f"errors_{c}"] = r["errors"]
    if "ttft_miss_ms" in m and "ttft_hit_ms" in m:
        m["hit_speedup"] = m["ttft_miss_ms"] / m["ttft_hit_ms"]
    runs[name] = m

def best(names):
    """Per metric, the best figure over the runs (lowest TTFT, highest rate), and which run."""
    names = [n for n in names if n in runs]
    if not names:
        return None, {}
    b, src = {}, {}
    for k in sorted({k for n in names for k in runs[n]}):
        vals = [(runs[n][k], n) for n in names if k in runs[n]]
        pick = min(vals) if k.startswith(("ttft", "errors")) else max(vals)
        b[k], src[k] = pick
    if "ttft_miss_ms" in b and "ttft_hit_ms" in b:  # consistent with the two rows shown
        b["hit_speedup"] = b["ttft_miss_ms"] / b["ttft_hit_ms"]
        src["hit_speedup"] = "derived"
    return b, src

kv, _ = best(["kvstash"])
ll, ll_src = best([n for n in runs if n.startswith("llama-")])
with open(prompts) as f:
    p = json.load(f)
result = {
    "model": os.path.basename(model), "threads": int(threads), "rounds": int(rounds),
    "requests_per_client": int(requests), "max_tokens": int(max_tokens),
    "prefix_tokens": p["prefix_tokens"], "system_tokens": p["system_tokens"], "tokens_counted_with": p["counted_with"],
    "loadavg": open("/proc/loadavg").read().split()[:3],
    "runs": runs, "kvstash": kv, "llama_server": ll, "llama_server_best_of": ll_src,
}
with open(os.path.join(out, "serve.json"), "w") as f:
    json.dump(result, f, indent=2)

rows = [("TTFT miss (ms)", "ttft_miss_ms", False), ("TTFT hit (ms)", "ttft_hit_ms", False),
        ("hit/miss speedup (x)", "hit_speedup", True)]
levels = sorted({int(k.split("_")[-1]) for m in runs.values() for k in m if k.startswith("req_per_s_")})
for c in levels:
    rows.append((f"throughput {c} client{'s' if c > 1 else ''} (req/s)", f"req_per_s_{c}", True))
for c in levels:
    rows.append((f"throughput {c} client{'s' if c > 1 else ''} (tok/s)", f"tok_per_s_{c}", True))
fmt = lambda v: "n/a" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")
print(f"\nModel {os.path.basename(model)}, {threads} threads, prefix {p['prefix_tokens']} tokens, "
      f"system prompt {p['system_tokens']} tokens, TTFT median of {rounds}, {requests} requests/client, "
      f"max_tokens {max_tokens}; llama-server: best per metric over its OMP_WAIT_POLICY x KV-layout runs.\n")
print("| metric | kvstash | llama-server | ratio (>1: kvstash better) |")
print("|---|---:|---:|---:|")
for label, k, higher in rows:
    a, b = (kv or {}).get(k), (ll or {}).get(k)
    ratio = None if a is None or b is None else (a / b if higher else b / a)
    print(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(ratio)} |")
errs = {n: sum(v for k, v in m.items() if k.startswith("errors_")) for n, m in runs.items()}
if any(errs.values()):
    print(f"\nrequest errors: {errs}", file=sys.stderr)
print(f"\nwrote {os.path.join(out, 'serve.json')}", file=sys.stderr)
EOF
