"""Process a story's beginning once, keep its attention state in a file, continue it three ways.

    python examples/story_prefix.py [STATE.kvs]      (default: a file in a temporary directory)
"""
import os
import sys
import tempfile

import kvstash

model = kvstash.Model()  # $KVSTASH_MODEL, else the set-up's SmolLM2-135M-Instruct
prefix = ("Here's a story about a brave knight named Sir Roland. He lived in a small kingdom at the edge of a "
          "great forest, and every morning he rode out on his grey horse to guard the roads.")
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "story.kvs")

model.process_prefix(prefix).save(path)  # read the prefix once; the file appears only when complete
state = kvstash.load_state(path)         # mapped: K/V are used in place, not copied
for prompt in [" The knight was known for", " One day, while riding his horse", " In the castle, there was"]:
    # Each continuation starts from the saved state: only the prompt's tokens are computed.
    c = model.generate(state, prompt, max_tokens=40, temperature=0.7, seed=1)
    print(f"--- {prompt.strip()} ({c.reused_tokens} tokens reused)\n{prompt.strip()}{c.text}\n")
