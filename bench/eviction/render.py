"""Renders docs/eviction.md (from doc_template.md) and its plots from bench/eviction/results/*.json."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))

ORDER = ["window", "sinks", "h2o", "h2o-norm", "tova", "snapkv", "fsdc", "h2o-sum", "h2o-mean", "fsdc-sum", "fsdc-mean"]
ATTENTION = ["h2o", "h2o-norm", "tova", "fsdc"]


def load(res, name):
    p = os.path.join(res, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def base(name):
    return name.split("@")[0]


def by_policy(rows):
    """{policy name: {budget: row}}"""
    out = {}
    for r in rows:
        out.setdefault(base(r["name"]), {})[r["budget"]] = r
    return dict(sorted(out.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99))


def pct(x, ref):
    return 100.0 * (x / ref - 1.0)


def fmt_ppl(p, ref):
    if p is None:  # NaN or infinite logits somewhere (JSON null)
        return "∞ (non-finite logits)"
    if p > 1000:
        return f"{p:.3g} (×{p / ref:.0f})"
    return f"{p:.3f} ({pct(p, ref):+.1f} %)"


def stream_tables(s, budgets=None):
    if not s:
        return "(not run)"
    rows = by_policy(s["configs"])
    budgets = budgets or sorted({r["budget"] for r in s["configs"]})
    full = s["full"]["ppl"]
    hdr = "| policy | " + " | ".join(f"{b}" for b in budgets) + " |\n|---|" + "---:|" * len(budgets) + "\n"
    out = [f"Perplexity over {s['tokens']:,} tokens (full cache: **{full:.3f}**); in brackets the change against "
           "the full cache. Bold: the best policy at that budget.\n", hdr.rstrip("\n")]
    best = {b: min((r[b]["ppl"], p) for p, r in rows.items() if b in r and r[b]["ppl"] is not None)[1] for b in budgets}
    for p, r in rows.items():
        cells = []
        for b in budgets:
            if b not in r:
                cells.append("")
                continue
            c = fmt_ppl(r[b]["ppl"], full)
            cells.append(f"**{c}**" if best[b] == p else c)
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    out.append("| snapkv | " + " | ".join("n/a" for _ in budgets) + " |")
    out.append("")
    out.append(f"Mean KL divergence KL(full ‖ budgeted) of the next-token distributions, nats per token "
               f"(all {s['scored']:,} predicted tokens; in brackets the tokens from {s['tail_from']:,} on, where "
               "every budget has evicted):\n")
    out.append(hdr.rstrip("\n"))
    for p, r in rows.items():
        cells = [f"{r[b]['mean_kl']:.4f} ({r[b]['mean_kl_tail']:.4f})" if b in r else "" for b in budgets]
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    out.append("| snapkv | " + " | ".join("n/a" for _ in budgets) + " |")
    out.append("")
    out.append("Top-1 agreement with the full cache (the share of positions whose most likely next token is "
               "the full cache's):\n")
    out.append(hdr.rstrip("\n"))
    for p, r in rows.items():
        cells = [f"{100 * r[b]['top1_agree']:.1f} %" if b in r else "" for b in budgets]
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"Time: {s['wall_s'] / 60:.1f} min for the full cache and {s.get('n_all', len(s['configs']))} configurations "
               f"side by side ({s['threads']} threads).")
    return "\n".join(out)


def summary_table(s):
    if not s:
        return "(not run)"
    rows = by_policy(s["configs"])
    full = s["full"]["ppl"]
    out = ["| policy | budget | perplexity | mean KL | top-1 agreement |", "|---|---:|---:|---:|---:|"]
    budgets = sorted({b for p in ("h2o-sum", "h2o-mean", "fsdc-sum", "fsdc-mean") if p in rows for b in rows[p]})
    for b in budgets:
        for p in ("h2o", "h2o-sum", "h2o-mean", "fsdc", "fsdc-sum", "fsdc-mean"):
            if p in rows and b in rows[p]:
                r = rows[p][b]
                out.append(f"| {p} | {b} | {fmt_ppl(r['ppl'], full)} | {r['mean_kl']:.4f} | "
                           f"{100 * r['top1_agree']:.1f} % |")
    verdict = []
    for b in budgets:
        for pol in ("h2o", "fsdc"):
            if pol in rows and b in rows[pol]:
                ref = rows[pol][b]["ppl"]
                for v in ("sum", "mean"):
                    n = f"{pol}-{v}"
                    if n in rows and b in rows[n]:
                        x = rows[n][b]["ppl"]
                        if x is None:
                            verdict.append(f"{n} at budget {b}: **hurts** (perplexity infinite: non-finite logits)")
                            continue
                        d = pct(x, ref)
                        word = "helps" if d < -1 else ("hurts" if d > 1 else "changes little")
                        amount = f"{d:+.1f} %" if abs(d) < 1000 else f"×{x / ref:,.0f}"
                        verdict.append(f"{n} at budget {b}: **{word}** ({amount} perplexity against {pol} without a summary)")
    return "\n".join(out) + "\n\n" + "\n".join(f"- {v}" for v in verdict)


def devil_table(s):
    if not s:
        return "(not run)"
    full = s["full"]["ppl"]
    out = [f"Perplexity over {s['tokens']:,} tokens (full cache **{full:.3f}**):\n",
           "| policy | budget | perplexity | mean KL | top-1 agreement |", "|---|---:|---:|---:|---:|"]
    for p, r in by_policy(s["configs"]).items():
        for b, x in sorted(r.items()):
            out.append(f"| {p} | {b} | {fmt_ppl(x['ppl'], full)} | {x['mean_kl']:.4f} | {100 * x['top1_agree']:.1f} % |")
    return "\n".join(out)


def greedy_table(g):
    if not g:
        return "(not run)"
    out = [f"{g['prefix']:,}-token prefix of Genesis, then {g['gen']} greedy tokens.\n",
           "| policy | budget | position-wise agreement | tokens before the first divergence | teacher-forced top-1 |",
           "|---|---:|---:|---:|---:|"]
    rows = by_policy(g["configs"])
    budgets = sorted({r["budget"] for r in g["configs"]})
    for b in budgets:
        for p, r in rows.items():
            if b in r:
                x = r[b]
                out.append(f"| {p} | {b} | {100 * x['agree_positionwise']:.1f} % | {x['first_divergence']} | "
                           f"{100 * x['teacher_forced_top1']:.1f} % |")
    return "\n".join(out)


def passkey_table(pk):
    if not pk:
        return "(not run)"
    depths = pk["depths"]
    out = [f"Prompt of {pk['length']:,} tokens ({'chat template' if pk['chat'] else 'plain text'}, "
           f"{pk['filler']} filler), {pk['keys_per_depth']} keys per depth, greedy {pk['gen']} tokens.\n",
           "| policy | budget | budget / prompt | accuracy | " + " | ".join(f"depth {int(100 * d)} %" for d in depths) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(depths)]
    for c in pk["configs"]:
        per = []
        for d in depths:
            t = [x for x in c["per_trial"] if abs(x["depth"] - d) < 1e-9]
            per.append(f"{sum(x['correct'] for x in t)}/{len(t)}")
        b = c["budget"]
        share = f"{100 * b / pk['length']:.0f} %" if b else "100 %"
        out.append(f"| {base(c['name'])} | {b or 'full'} | {share} | **{100 * c['accuracy']:.0f} %** ({c['correct']}/{c['trials']}) | "
                   + " | ".join(per) + " |")
    return "\n".join(out)


def decode_table(d):
    if not d:
        return "(not run)"
    r0 = d[0]
    out = [f"| processed tokens | cache | slots held | decode tokens/s (median of {r0['reps']} × {r0['decode']}) | the runs | peak RSS (VmHWM) | prefill s |",
           "|---:|---|---:|---:|---|---:|---:|"]
    for r in d:
        runs = ", ".join(f"{x:.1f}" for x in r["decode_tokens_per_s"])
        cache = "full" if not r["budget"] else f"{r['policy']} budget {r['budget']}"
        out.append(f"| {r['prefill']:,} | {cache} | {r['slots_end']:,} | {r['decode_tokens_per_s_median']:.1f} | {runs} | "
                   f"{r['vm_hwm_kb'] / 1024:.0f} MiB | {r['prefill_s']:.1f} |")
    return "\n".join(out)


def targets(res, s, devil, pk, d):
    lines = ["| target | figure | met? |", "|---|---|---|"]
    for name, st in (("Genesis", s), ("Devil's Dictionary", devil)):
        if not st:
            continue
        rows = [r for r in st["configs"] if r["budget"] == 1024]
        if not rows:
            continue
        best = min(rows, key=lambda r: r["ppl"])
        dp = pct(best["ppl"], st["full"]["ppl"])
        lines.append(f"| budget 1,024 on {st['tokens']:,} tokens of {name}: best policy within 2 % of full perplexity "
                     f"(llama.cpp's StreamingLLM PR: +2.7 %) | {base(best['name'])}: {best['ppl']:.3f} vs {st['full']['ppl']:.3f} "
                     f"= {dp:+.2f} % | {'yes' if dp <= 2.0 else 'no'} |")
    if s:
        rows = by_policy(s["configs"])
        budgets = sorted({r["budget"] for r in s["configs"]})
        ok_all, notes = True, []
        for b in budgets:
            base_best = min(rows[p][b]["ppl"] for p in ("sinks", "window") if p in rows and b in rows[p])
            att = {p: rows[p][b]["ppl"] for p in ATTENTION if p in rows and b in rows[p]}
            bp = min(att, key=att.get)
            ahead = [p for p in att if att[p] < base_best]
            ok_all &= att[bp] < base_best
            notes.append(f"{b}: {bp} {att[bp]:.3f} vs sinks/window {base_best:.3f} (ahead: {', '.join(ahead) or 'none'})")
        lines.append("| an attention-based policy ahead of sinks and window at every budget (perplexity, Genesis) | "
                     + "; ".join(notes) + f" | {'yes' if ok_all else 'no'} |")
    if pk:
        full = [c for c in pk["configs"] if not c["budget"]]
        fa = full[0]["accuracy"] if full else None
        for c in pk["configs"]:
            if not c["budget"]:
                continue
        q = [c for c in pk["configs"] if c["budget"] and abs(c["budget"] / pk["length"] - 0.25) < 0.02]
        if q and fa:
            best = max(q, key=lambda c: c["accuracy"])
            win = [c for c in q if base(c["name"]) == "window"]
            wtxt = f"window {100 * win[0]['accuracy']:.0f} %" if win else "window not run"
            lines.append(f"| passkey at 25 % budget ≥ 90 % of full accuracy where window cannot | full {100 * fa:.0f} %; "
                         + ", ".join(f"{base(c['name'])} {100 * c['accuracy']:.0f} %" for c in q)
                         + f" (best {base(best['name'])} = {100 * best['accuracy'] / fa:.0f} % of full; {wtxt}) | "
                         + f"{'yes' if best['accuracy'] >= 0.9 * fa and (not win or win[0]['accuracy'] < 0.9 * fa) else 'no'} |")
    if d:
        b = [r for r in d if r["budget"]]
        f = [r for r in d if not r["budget"]]
        if b:
            lo, hi = min(b, key=lambda r: r["prefill"]), max(b, key=lambda r: r["prefill"])
            ratio = lo["decode_tokens_per_s_median"] / hi["decode_tokens_per_s_median"]
            lines.append(f"| decode tokens/s after {hi['prefill']:,} within 1.1× of after {lo['prefill']:,} (budget "
                         f"{hi['budget']}) | {hi['decode_tokens_per_s_median']:.1f} vs {lo['decode_tokens_per_s_median']:.1f} "
                         f"tokens/s: after {lo['prefill']:,} ÷ after {hi['prefill']:,} = {ratio:.2f} | {'yes' if ratio <= 1.1 else 'no'} |")
            grow = (hi["vm_hwm_kb"] - lo["vm_hwm_kb"]) / 1024
            fgrow = ""
            if f:
                flo, fhi = min(f, key=lambda r: r["prefill"]), max(f, key=lambda r: r["prefill"])
                fgrow = f"; full cache {flo['vm_hwm_kb'] / 1024:.0f} → {fhi['vm_hwm_kb'] / 1024:.0f} MiB"
            lines.append(f"| peak RSS flat (budget {hi['budget']}) | {lo['vm_hwm_kb'] / 1024:.0f} MiB after {lo['prefill']:,}, "
                         f"{hi['vm_hwm_kb'] / 1024:.0f} MiB after {hi['prefill']:,} ({grow:+.0f} MiB){fgrow} | "
                         f"{'yes' if abs(grow) < 8 else 'no'} |")
    return "\n".join(lines)


def plots(res, docs, s, pk):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("render: matplotlib missing, no plots (bench/eviction/run.sh makes .venv-eviction)")
        return []
    made = []
    if s:
        rows = {p: r for p, r in by_policy(s["configs"]).items() if p in ORDER[:7]}
        full = s["full"]["ppl"]
        budgets = sorted({r["budget"] for r in s["configs"]})
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
        for p, r in rows.items():
            bs = sorted(r)
            ax1.plot(bs, [r[b]["ppl"] for b in bs], marker="o", label=p)
            if p != "window":
                ax2.plot(bs, [pct(r[b]["ppl"], full) for b in bs], marker="o", label=p)
            else:
                ax2.plot([], [])  # keep the colours of both panels in step
        ax1.axhline(full, color="black", linestyle="--", label=f"full cache ({full:.2f})")
        ax2.axhline(0, color="black", linestyle="--", label="full cache")
        ax2.axhline(2, color="grey", linestyle=":", label="+2 % (target at 1,024)")
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets)
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("KV budget (entries per layer and KV head)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        ax1.set_yscale("log")
        ax1.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax1.get_yaxis().set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax1.set_ylabel("perplexity (log scale)")
        ax1.set_title("all policies")
        ax2.set_ylabel("perplexity vs full cache, %")
        ax2.set_title("without window, change against the full cache")
        fig.suptitle(f"SmolLM2-135M, {s['tokens']:,} tokens of Genesis (KJV), one stream, chunks of 32")
        fig.tight_layout()
        path = os.path.join(docs, "eviction_ppl.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)
    if pk:
        depths = pk["depths"]
        names = [c["name"] for c in pk["configs"]]
        grid = []
        for c in pk["configs"]:
            row = []
            for d in depths:
                t = [x for x in c["per_trial"] if abs(x["depth"] - d) < 1e-9]
                row.append(sum(x["correct"] for x in t) / max(1, len(t)))
            grid.append(row)
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.5))
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(depths)))
        ax.set_xticklabels([f"{int(100 * d)} %" for d in depths])
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([f"{n} ({100 * c['accuracy']:.0f} %)" for n, c in zip(names, pk["configs"])])
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xlabel("depth of the pass key")
        ax.set_title(f"Passkey retrieval, {pk['length']:,}-token prompt, {pk['keys_per_depth']} keys per depth")
        fig.colorbar(im, ax=ax, fraction=0.04)
        fig.tight_layout()
        path = os.path.join(docs, "eviction_passkey.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def commands(res):
    out = []
    for n in ("stream_genesis.json", "passkey.json", "greedy_genesis.json", "stream_devil.json",
              "summary_nonfinite_check.json"):
        j = load(res, n)
        if j:
            out.append(f"# {n} ({j['wall_s'] / 60:.1f} min, finished {j['finished']})\n{j['command']}")
    d = load(res, "decode.json")
    if d:
        for r in d:
            out.append(f"{r['command']}   # {r['wall_s']:.0f} s")
    return "```\n" + "\n".join(out) + "\n```"


def render(res, docs):
    os.makedirs(docs, exist_ok=True)
    s = load(res, "stream_genesis.json")
    devil = load(res, "stream_devil.json")
    g = load(res, "greedy_genesis.json")
    pk = load(res, "passkey.json")
    d = load(res, "decode.json")
    m = load(res, "machine.json") or {}
    plots(res, docs, s, pk)
    main_budgets = None
    if s:
        main_budgets = sorted({r["budget"] for r in s["configs"] if base(r["name"]) in ("window", "h2o")})
    sub = {
        "MACHINE": f"{m.get('cpu', '?')}{m.get('family', '')}, {m.get('cores', '?')} cores (shared with other work), ISA: "
                   f"{' '.join(m.get('isa', []))}, {m.get('mem_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}",
        "STREAM": stream_tables(s and {**s, "n_all": len(s["configs"]), "configs": [r for r in s["configs"] if base(r["name"]) not in
                                                        ("h2o-sum", "h2o-mean", "fsdc-sum", "fsdc-mean")]}, main_budgets),
        "SUMMARY": summary_table(s),
        "DEVIL": devil_table(devil),
        "GREEDY": greedy_table(g),
        "PASSKEY": passkey_table(pk),
        "DECODE": decode_table(d),
        "TARGETS": targets(res, s, devil, pk, d),
        "COMMANDS": commands(res),
        "FINDINGS": open(os.path.join(HERE, "findings.md")).read().strip() if os.path.exists(os.path.join(HERE, "findings.md")) else "",
    }
    with open(os.path.join(HERE, "doc_template.md")) as f:
        text = f.read()
    for k, v in sub.items():
        text = text.replace("{{" + k + "}}", v)
    path = os.path.join(docs, "eviction.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"render: wrote {path}")
