"""Attention states both ways between kvstash and Hugging Face transformers (needs torch and
transformers: pip install 'kvstash[hf]'). Both load the same GGUF; with float_weights kvstash
computes as transformers does, so each continues the other's cache as it would its own.

    python examples/hf_roundtrip.py [STATE.kvs]
"""
import os
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

import kvstash
import kvstash.hf as khf

model = kvstash.Model(float_weights=True)
hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(model.path), gguf_file=os.path.basename(model.path),
                                          dtype=torch.float32).eval()
prefix = "The three primary colors of light are red, green and blue. Mixing all three gives"
prompt = " white light. Mixing red and green gives"
new_ids = model.tokenize(prompt, add_special=False)

# 1. A kvstash state continued by transformers: a DynamicCache in Hugging Face's key order.
state = model.process_prefix(prefix)
hc = khf.to_dynamic_cache(state)
with torch.no_grad():
    out = hf.generate(**hc.generate_inputs(new_ids), max_new_tokens=12, do_sample=False)
print("transformers from the kvstash state:", repr(model.detokenize(out[0, len(state) + len(new_ids):].tolist())))

# 2. Transformers' own cache saved as a .kvs file (no pickle; checksummed) and continued by kvstash.
ids = model.tokenize(prefix)
with torch.no_grad():
    res = hf(input_ids=torch.tensor([ids]), use_cache=True)
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "hf.kvs")
khf.save_cache_to_disk(res.past_key_values, path, ids, model, logits=res.logits[0, -1])
c = model.generate(kvstash.load_state(path), prompt, max_tokens=12, temperature=0, ignore_eos=True)
print("kvstash from the transformers cache: ", repr(c.text))
