"""How often transformers, continuing a kvstash state, gives exactly the greedy tokens it gives from
scratch: for kvstash's default arithmetic (8-bit activations, as llama.cpp) and for float_weights
(transformers' arithmetic). Prefixes are windows of the King James Bible (scripts/corpus.sh).

    PY=$(bash scripts/ensure_hf_venv.sh); PYTHONPATH=python $PY bench/hf/agreement.py [pairs] [tokens]
"""
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

import kvstash
import kvstash.hf as khf


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n_new = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    text = subprocess.run(["bash", "scripts/corpus.sh"], capture_output=True, text=True, check=True).stdout
    quant = kvstash.Model(ctx=2048)
    flt = kvstash.Model(ctx=2048, float_weights=True)
    path = quant.path
    hf = AutoModelForCausalLM.from_pretrained(path.rsplit("/", 1)[0], gguf_file=path.rsplit("/", 1)[1], dtype=torch.float32).eval()
    same = {"default": 0, "float_weights": 0}
    first_diff = {"default": [], "float_weights": []}
    for i in range(pairs):
        start = (len(text) - 1300) * i // max(pairs, 1)
        prefix, prompt = text[start:start + 1200], text[start + 1200:start + 1260]
        for name, m in (("default", quant), ("float_weights", flt)):
            state = m.process_prefix(prefix, progress=False)
            new_ids = m.tokenize(prompt, add_special=False)
            full = torch.tensor([state.tokens.tolist() + new_ids])
            with torch.no_grad():
                scratch = hf.generate(full, attention_mask=torch.ones_like(full), max_new_tokens=n_new, do_sample=False)[0, full.shape[1]:].tolist()
                cached = hf.generate(**khf.to_dynamic_cache(state).generate_inputs(new_ids), max_new_tokens=n_new, do_sample=False)[0, full.shape[1]:].tolist()
            same[name] += cached == scratch
            first_diff[name].append(next((j for j, (a, b) in enumerate(zip(cached, scratch)) if a != b), None))
        print(f"pair {i}: first differing token default={first_diff['default'][-1]} float_weights={first_diff['float_weights'][-1]}", flush=True)
    for name in same:
        print(f"{name}: {same[name]}/{pairs} pairs give transformers' from-scratch tokens exactly ({n_new} greedy tokens)")


if __name__ == "__main__":
    main()
