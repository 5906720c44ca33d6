"""The long public-domain texts the benchmarks read, prepared from Debian packages (no text is
committed): the book of Genesis from bible-kjv and Bierce's Devil's Dictionary from dict-devil.
Used by bench/eviction/run.py and bench/codec/run.py."""
import datetime
import gzip
import os
import re
import subprocess
import sys


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def have_pkg(name):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return "install ok installed" in r.stdout


def install_texts():
    missing = [p for p in ("bible-kjv", "dict-devil") if not have_pkg(p)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log("installing " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True, env=env,
                       stdout=subprocess.DEVNULL)


def prepare_texts(work):
    """Writes the texts under work/texts (a build directory: no text is committed)."""
    d = os.path.join(work, "texts")
    os.makedirs(d, exist_ok=True)
    gen = os.path.join(d, "genesis.txt")
    if not os.path.exists(gen):
        # The book of Genesis (KJV): one paragraph per chapter, verse references removed, as
        # scripts/corpus.sh does for chapters 1-3.
        raw = subprocess.run(["bible", "-f", "gen1:1-50:26"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, check=True).stdout
        chapters, prev = [], None
        for line in raw.splitlines():
            ref, _, text = line.partition(" ")
            if ":" not in ref:
                continue
            chap = ref.split(":")[0]
            if chap != prev:
                chapters.append([])
                prev = chap
            chapters[-1].append(text)
        with open(gen, "w") as f:
            f.write("\n\n".join(" ".join(c) for c in chapters) + "\n")
    devil = os.path.join(d, "devil.txt")
    if not os.path.exists(devil):
        # Bierce's Devil's Dictionary from the dictd database, from its first entry on; runs of
        # spaces collapsed (the attribution lines are right-aligned with dozens of spaces).
        with gzip.open("/usr/share/dictd/devil.dict.dz", "rt", encoding="latin-1") as f:
            text = f.read()
        text = text[text.index("ABASEMENT, n."):]
        lines = [re.sub(r" {2,}", " ", ln.strip()) for ln in text.splitlines()]
        with open(devil, "w") as f:
            f.write("\n".join(lines) + "\n")
    return {"genesis": gen, "devil": devil}
