#!/usr/bin/env python3
"""Checks that data flows one way between kvstash's layers (DESIGN.md, "Architecture"): a file may
include headers of its own layer and of lower layers, never of a higher one. Exits 1 listing every
include that points up; a new header or folder must be given a layer here."""
import pathlib
import re
import sys

# Layer of each source folder and public header, lowest first.
LAYERS = [
    ("util", ["error.h", "thread_pool.h", "types.h", "fingerprint.h"]),
    ("tensor", ["dtype.h", "kernels.h"]),
    ("gguf", ["gguf.h"]),
    ("tokenizer", ["tokenizer.h"]),
    ("sampling", ["sampler.h"]),
    ("kv", ["kv_budget.h", "kv_cache.h"]),
    ("model", ["model.h", "engine.h"]),
    ("state", ["state.h"]),
    ("codec", ["kvz.h"]),
    ("store", ["store.h"]),
    ("session", ["generate.h", "prefix.h", "prefix_cache.h"]),
    ("server", ["server.h"]),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
HEADER_RANK = {h: i for i, (_, hs) in enumerate(LAYERS) for h in hs}
HEADER_RANK["kvstash.h"] = len(LAYERS)  # the umbrella: for users, never for the library


def rank_of_include(inc):
    if inc.startswith("kvstash/"):
        return HEADER_RANK.get(inc[len("kvstash/"):])
    folder = inc.split("/")[0]
    return RANK.get(folder)


def main(root):
    root = pathlib.Path(root)
    errors = []
    files = [p for p in (root / "src").rglob("*") if p.suffix in (".cc", ".h")]
    files += list((root / "include" / "kvstash").glob("*.h"))
    for path in files:
        if path.name.endswith("_test.cc") or "_test_util" in path.name:
            continue
        rel = path.relative_to(root)
        own = HEADER_RANK.get(path.name) if rel.parts[0] == "include" else RANK.get(rel.parts[1])
        if own is None:
            errors.append(f"{rel}: no layer assigned (add it to scripts/check_layers.py)")
            continue
        for inc in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M):
            r = rank_of_include(inc)
            if r is None:
                errors.append(f"{rel}: includes {inc}, which has no layer")
            elif r > own:
                errors.append(f"{rel}: includes {inc} from a higher layer ({LAYERS[r][0]} > {LAYERS[own][0]})")
    # The CLI and the Python module sit above every layer and use the public API only.
    for top in ("tools", "python/src"):
        for path in (root / top).rglob("*"):
            if path.suffix not in (".cc", ".h"):
                continue
            files.append(path)
            for inc in re.findall(r'^#include "([^"]+)"', path.read_text(), re.M):
                if inc.split("/")[0] in RANK:
                    errors.append(f"{path.relative_to(root)}: includes {inc}, a library-internal header (use include/kvstash/)")
    for e in errors:
        print(e)
    print(f"{len(files)} files checked, {len(errors)} upward includes")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent))
