"""Renders docs/codec.md (from doc_template.md) and docs/codec_size_quality.png from
bench/codec/results/*.json (table_genesis.json, table_devil.json, speed.json, machine.json)."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = [("genesis", "Genesis (KJV)"), ("devil", "The Devil's Dictionary")]
PLOT = "codec_size_quality.png"


def load(res, name):
    p = os.path.join(res, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(p, ref):
    return 100.0 * (p / ref - 1.0)


def fmt_pct(x):
    if abs(x) < 0.0005:
        return "0"
    return f"{x:+.3f}" if abs(x) < 1 else f"{x:+.2f}"


def fmt_bits(x):
    return "–" if x is None else f"{x:.3f}"


def table_md(t):
    ref = t["exact"]["ppl"]
    f16 = next(r for r in t["schemes"] if r["kind"] == "kvs")["bytes"]
    lines = ["| scheme | bits/value (all) | K/V-only bits/value | × smaller than .kvs | perplexity | Δ perplexity % "
             "| mean KL (nats) | greedy agreement | first divergence |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in t["schemes"]:
        name = r["name"]
        if r["kind"] == "kvz":
            name = f"kvz level {r['level']}"
        exact = not r["evaluated"]
        lines.append("| " + " | ".join([
            name + (" (exact)" if exact else ""),
            fmt_bits(r["bits_per_value"]),
            fmt_bits(r["kv_bits_per_value"]),
            f"{f16 / r['bytes']:.2f}",
            f"{r['ppl']:.4f}",
            fmt_pct(pct(r["ppl"], ref)),
            f"{r['kl_mean']:.5f}",
            f"{r['greedy_agree'] * t['greedy']:.0f}/{t['greedy']}",
            f"{r['first_divergence']}" if r["first_divergence"] < t["greedy"] else f"none in {t['greedy']}",
        ]) + " |")
    return "\n".join(lines)


def params_md(t):
    rows = ["| level | codec parameters (as stored in the .kvz header) |", "|---|---|"]
    for r in sorted((r for r in t["schemes"] if r["kind"] in ("kvz", "kvz-lossless")), key=lambda r: r["level"]):
        rows.append(f"| {r['level']} | `{r['params']}` |")
    return "\n".join(rows)


def plot(tables, out_png):
    """Left: bits per value against the perplexity increase (the issue's plot); right: against mean KL,
    which is positive and far less noisy near zero."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    markers = {"genesis": "o", "devil": "s"}
    for ax, metric in zip(axes, ("ppl", "kl")):
        prefix = cont = 0
        for name, title in TEXTS:
            t = tables.get(name)
            if not t:
                continue
            ref = t["exact"]["ppl"]
            prefix, cont = t["prefix"], t["cont"]
            pts = []
            for r in t["schemes"]:
                if r["kind"] in ("kvs", "zstd", "kvz-lossless"):
                    continue
                y = pct(r["ppl"], ref) if metric == "ppl" else r["kl_mean"]
                label = f"L{r['level']}" if r["kind"] == "kvz" else r["name"]
                pts.append((r["bits_per_value"], y, label, r["kind"] == "kvz"))
            kvz = sorted((p for p in pts if p[3]), key=lambda p: p[0])
            line, = ax.plot([p[0] for p in kvz], [p[1] for p in kvz], marker=markers[name], label=f"{title}: .kvz levels")
            other = [p for p in pts if not p[3]]
            ax.scatter([p[0] for p in other], [p[1] for p in other], marker=markers[name], facecolors="none",
                       edgecolors=line.get_color(), label=f"{title}: other schemes")
            for x, y, label, _ in pts:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3 if name == "genesis" else -9),
                            fontsize=7)
        if metric == "ppl":
            ax.set_yscale("symlog", linthresh=0.01)  # log above 0.01 %, linear through 0 (a scheme may even gain)
            ax.set_ylabel("continuation perplexity increase, % (symlog)")
            ax.axhline(1.0, color="grey", lw=0.6, ls="--")
            ax.axhline(0.1, color="grey", lw=0.6, ls=":")
            ax.set_title(f"perplexity of the next {cont} tokens after a {prefix:,}-token prefix")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("mean KL(exact || scheme), nats (log)")
            ax.set_title("mean KL of the next-token distributions, same positions")
        ax.axvline(2.0, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("bits per K/V value, all overhead included (f16 = 16)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("KV state size vs quality, SmolLM2-135M")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def targets_md(tables, speed):
    out = []
    for name, title in TEXTS:
        t = tables.get(name)
        if not t:
            continue
        ref = t["exact"]["ppl"]
        kvz = sorted((r for r in t["schemes"] if r["kind"] == "kvz"), key=lambda r: r["bits_per_value"])
        # |Δ|: a level that lowers perplexity by 2 % is as far from the exact state as one that raises it
        # A level counts only when it and every better level are within the bound: perplexity over 512
        # tokens is noisy enough that a coarse level can land inside it by chance.
        def within(bound):
            return [r for i, r in enumerate(kvz) if all(abs(pct(x["ppl"], ref)) <= bound for x in kvz[i:])]
        ok1, ok01 = within(1.0), within(0.1)
        ll = next((r for r in t["schemes"] if r["kind"] == "kvz-lossless"), None)
        f16 = next(r for r in t["schemes"] if r["kind"] == "kvs")["bytes"]
        s = f"- {title}: "
        if ok1:
            r = ok1[0]
            s += (f"smallest level with it and every better level at |Δ perplexity| ≤ 1 %: level {r['level']}, {r['bits_per_value']:.3f} bits/value "
                  f"({f16 / r['bytes']:.2f}× smaller than the .kvs; target ≥ 8×), {fmt_pct(pct(r['ppl'], ref))} %; ")
        else:
            s += "no level with it and every better level at |Δ perplexity| ≤ 1 %; "
        if ok01:
            r = ok01[0]
            s += f"within 0.1 %: level {r['level']}, {r['bits_per_value']:.3f} bits/value ({fmt_pct(pct(r['ppl'], ref))} %); "
        else:
            s += "no level within 0.1 %; "
        if ll:
            s += f"lossless {f16 / ll['bytes']:.3f}× smaller than the .kvs (target ≥ 1.25×)."
        out.append(s)
    if speed:
        lossless, fixed = speed[0]["lossless_level"], speed[0]["fixed_level"]
        f16 = speed[0]["f16_bytes"]
        dec2 = {}
        for run in speed:
            for r in run["throughput"]:
                if r["threads"] == 2:
                    dec2.setdefault(r["level"], []).extend(r["decode_s"])
        best = max((f16 / med(v) / 1e9, l) for l, v in dec2.items() if l != lossless)
        out.append(f"- Decode at 2 threads (target ≥ 1 GB/s of f16): {best[0]:.3f} GB/s at best (level {best[1]}), "
                   f"lossless {f16 / med(dec2[lossless]) / 1e9:.3f} GB/s.")
        kvs, kvz = [], []
        for run in speed:
            for L in run["links"]:
                if L["gbit"] == 1:
                    kvs += L["kvs_s"]
                    kvz += L["kvz"][str(fixed)]["s"]
        if kvs and kvz:
            out.append(f"- Time to first token at 1 Gbit/s (target: .kvz ≥ 3× better than .kvs): .kvs {med(kvs) * 1000:.0f} ms, "
                       f".kvz level {fixed} {med(kvz) * 1000:.0f} ms: {med(kvs) / med(kvz):.2f}×.")
    return "\n".join(out)


def speed_md(speed, machine):
    if not speed:
        return "(no speed results yet)", "", "", "", ""
    first = speed[0]
    lossless = first["lossless_level"]
    fixed = first["fixed_level"]
    # Throughput: every run's samples pooled, median.
    thr = {}
    for run in speed:
        for r in run["throughput"]:
            d = thr.setdefault((r["level"], r["threads"]), {"enc": [], "dec": [], "bytes": r["bytes"]})
            d["enc"] += r["encode_s"]
            d["dec"] += r["decode_s"]
    f16 = first["f16_bytes"]
    lines = ["| level | size MB | bits/value | encode GB/s, 1 thread | encode GB/s, 2 threads | decode GB/s, 1 thread "
             "| decode GB/s, 2 threads |", "|---|---:|---:|---:|---:|---:|---:|"]
    for level in range(1, lossless + 1):
        d1, d2 = thr.get((level, 1)), thr.get((level, 2))
        if not d1 or not d2:
            continue
        lines.append(f"| {'lossless' if level == lossless else level} | {d1['bytes'] / 1e6:.2f} | "
                     f"{d1['bytes'] * 8 / (f16 / 2):.3f} | {f16 / med(d1['enc']) / 1e9:.3f} | {f16 / med(d2['enc']) / 1e9:.3f} | "
                     f"{f16 / med(d1['dec']) / 1e9:.3f} | {f16 / med(d2['dec']) / 1e9:.3f} |")
    throughput = "\n".join(lines)
    # Time to first token.
    links = {}
    for run in speed:
        for L in run["links"]:
            d = links.setdefault(L["gbit"], {"kvs": [], "kvz": {}, "adaptive": []})
            d["kvs"] += L["kvs_s"]
            for level, v in L["kvz"].items():
                d["kvz"].setdefault(int(level), []).extend(v["s"])
            d["adaptive"].append(L["adaptive"])
    recompute = [x for run in speed for x in run["recompute_s"]]
    rc = med(recompute)
    hdr = "| link | .kvs received, loaded | " + " | ".join(
        f".kvz {'lossless' if l == lossless else 'level ' + str(l)}" for l in range(1, lossless + 1)) + " | recompute |"
    lines = [hdr, "|---|" + "---:|" * (lossless + 2)]
    for gbit in sorted(links):
        d = links[gbit]
        cells = [f"{med(d['kvs']) * 1000:.0f}"] + [f"{med(d['kvz'][l]) * 1000:.0f}" for l in range(1, lossless + 1)]
        lines.append(f"| {gbit:g} Gbit/s | " + " | ".join(cells) + f" | {rc * 1000:.0f} |")
    ttft = "\n".join(lines)
    ratio_lines = []
    for gbit in sorted(links):
        d = links[gbit]
        kvs = med(d["kvs"])
        ratio_lines.append(f"- {gbit:g} Gbit/s: .kvs / .kvz level {fixed} = {kvs / med(d['kvz'][fixed]):.2f}×, "
                           f".kvs / lossless .kvz = {kvs / med(d['kvz'][lossless]):.2f}×, "
                           f"recompute / .kvz level {fixed} = {rc / med(d['kvz'][fixed]):.2f}×")
    ratios = "\n".join(ratio_lines)
    # Adaptive.
    exact_ppl = first["exact_ppl"]
    for run in speed:
        assert run["exact_ppl"] == exact_ppl, "speed runs of different states"
    lines = ["| link | target ms | time to first token ms (median) | chunks per level (level: count) | first chunk's level "
             "| bytes read MB | perplexity | Δ perplexity % |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for gbit in sorted(links):
        for a in links[gbit]["adaptive"]:
            counts = {}
            for l in a["chunk_levels"]:
                counts[l] = counts.get(l, 0) + 1
            cl = ", ".join(f"{'lossless' if l == lossless else l}: {n}" for l, n in sorted(counts.items()))
            first_l = a["chunk_levels"][0] if a["chunk_levels"] else "–"
            lines.append(f"| {gbit:g} Gbit/s | {a['target_ms']:.0f} | {med(a['s']) * 1000:.0f} | {cl} | "
                         f"{'lossless' if first_l == lossless else first_l} | "
                         f"{a['bytes_read'] / 1e6:.2f} | {a['ppl']:.4f} | {fmt_pct(pct(a['ppl'], exact_ppl))} |")
    lp = ", ".join(f"level {l}: {p:.4f} ({fmt_pct(pct(p, exact_ppl))} %)" for l, p in sorted(
        ((int(k), v) for k, v in first["level_ppl"].items())))
    adaptive = "\n".join(lines) + f"\n\nThe same {first['tokens']:,}-token state at fixed levels (perplexity of the next " \
        f"{first['cont']} tokens; exact {exact_ppl:.4f}): {lp}."
    return throughput, ttft, ratios, adaptive, f"{rc:.2f} s"


def machine_md(machine, speed):
    if not machine:
        return "(unknown)"
    bw = []
    for run in speed or [{"machine": machine}]:
        m = run.get("machine", machine)
        bw += m["membw_gbps"]["2"]
    bw1 = []
    for run in speed or [{"machine": machine}]:
        m = run.get("machine", machine)
        bw1 += m["membw_gbps"]["1"]
    return (f"{machine['cpu']}{machine.get('family', '')}, {machine['cores']} cores (shared VM), ISA: {', '.join(machine['isa'])}; "
            f"{machine.get('mem_gib', '?')} GiB RAM; read bandwidth (`kvstash_membw`, 512 MiB) median "
            f"{med(bw1):.1f} GB/s at 1 thread, {med(bw):.1f} GB/s at 2 threads (samples {', '.join(f'{x:.1f}' for x in bw)}); "
            f"load average before the last run {' '.join(machine.get('loadavg', []))}.")


def fixed_why(tables, fixed):
    """run.py's pick_level: the smallest level within 1 % on every text, else the best lossy level."""
    within = all(any(r["kind"] == "kvz" and r["level"] == fixed and pct(r["ppl"], t["exact"]["ppl"]) <= 1.0
                     for r in t["schemes"]) for t in tables.values())
    if within:
        return f"Level {fixed} is the smallest level within 1 % perplexity on both texts in the table above."
    return (f"No level is within 1 % perplexity on both texts in the table above, so the fixed level is the best "
            f"lossy one, level {fixed}.")


def render(res, out_dir, quick=False):
    os.makedirs(out_dir, exist_ok=True)
    tables = {n: load(res, f"table_{n}.json") for n, _ in TEXTS}
    tables = {k: v for k, v in tables.items() if v}
    speed = load(res, "speed.json")
    machine = load(res, "machine.json")
    with open(os.path.join(HERE, "doc_template.md")) as f:
        doc = f.read()
    if tables:
        plot(tables, os.path.join(out_dir, PLOT))
    any_t = next(iter(tables.values()), None)
    throughput, ttft, ratios, adaptive, recompute = speed_md(speed, machine)
    subs = {
        "MACHINE": machine_md(machine, speed),
        "PARAMS": params_md(any_t) if any_t else "",
        "TARGETS": targets_md(tables, speed),
        "THROUGHPUT": throughput,
        "TTFT": ttft,
        "RATIOS": ratios,
        "ADAPTIVE": adaptive,
        "RECOMPUTE": recompute,
        "PLOT": PLOT,
        "QUICK": "\n> **Quick setting** (`--quick`): tiny sizes, figures for checking the pipeline only.\n" if quick else "",
    }
    for name, title in TEXTS:
        t = tables.get(name)
        subs[f"TABLE_{name.upper()}"] = table_md(t) if t else "(not run)"
        subs[f"EXACT_{name.upper()}"] = (f"exact perplexity {t['exact']['ppl']:.4f} (perplexity_after: "
                                         f"{t['exact']['perplexity_after']:.4f}); .kvs {t['kvs_bytes'] / 1e6:.2f} MB for "
                                         f"{t['values']:,} K/V values, of which {t['kvs_meta_bytes']:,} bytes are not K/V "
                                         f"(header, tokens, positions, logits)") if t else ""
    if any_t:
        subs["TABLE_CMD"] = any_t["command"]
    if speed:
        subs["SPEED_CMD"] = speed[0]["command"]
        subs["SPEED_FINISHED"] = ", ".join(r["finished"] for r in speed)
        subs["FIXED"] = str(speed[0]["fixed_level"])
        subs["FIXED_WHY"] = fixed_why(tables, speed[0]["fixed_level"])
        subs["SPEED_TOKENS"] = f"{speed[0]['tokens']:,}"
        subs["SPEED_CONT"] = str(speed[0].get("cont", ""))
        subs["F16_MB"] = f"{speed[0]['f16_bytes'] / 1e6:.1f}"
    for k, v in subs.items():
        doc = doc.replace("{{" + k + "}}", v)
    with open(os.path.join(out_dir, "codec.md"), "w") as f:
        f.write(doc)
    print(f"wrote {os.path.join(out_dir, 'codec.md')}")
