"""Question answering over a long document: the document is read once, every question reuses it.

    python examples/document_qa.py [DOCUMENT.txt [QUESTION ...]]

Without arguments the document is Genesis 1-3 (King James Version, from scripts/corpus.sh when the
Debian package bible-kjv is installed), else a short built-in text.
"""
import pathlib
import subprocess
import sys
import time

import kvstash

FALLBACK = ("The Lighthouse of Varn stands on a granite island two miles off the northern coast. It was built "
            "in 1871 by the engineer Mara Solberg, who designed its lens herself. The light is 41 metres above the "
            "sea and can be seen from 22 nautical miles away. For ninety years three keepers lived on the island; "
            "since 1962 the light has run automatically, and the keepers' house is now a small museum about "
            "shipwrecks on the northern coast. The island has no trees, and its only spring dries up every August.")


def document_and_questions():
    if len(sys.argv) > 1:
        questions = sys.argv[2:] or ["What is this document about?", "Who is mentioned in it?",
                                     "What happens at the end?"]
        return pathlib.Path(sys.argv[1]).read_text(), questions
    corpus = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "corpus.sh"
    try:
        genesis = subprocess.run(["bash", str(corpus)], capture_output=True, text=True, check=True).stdout
        return genesis, ["What did God create in the beginning?", "Who was the first man?", "What did the serpent say?"]
    except (OSError, subprocess.CalledProcessError):
        return FALLBACK, ["Who built the lighthouse?", "How far can the light be seen?", "What is the keepers' house now?"]


document, questions = document_and_questions()
document = document.strip()
model = kvstash.Model()

# SmolLM2-135M-Instruct speaks ChatML. The state ends inside the user's turn, after the document and
# "Question:", so that each question continues it: kvstash tokenizes state text + question and reuses
# the tokens they share. (Ending at "\n\n" would cost one token: alone it is one token, before a
# word two.)
prefix = ("<|im_start|>system\nYou are a helpful assistant. Answer the question about the document in one "
          f"short sentence.<|im_end|>\n<|im_start|>user\n{document}\n\nQuestion:")
start = time.monotonic()
state = model.process_prefix(prefix)  # the long part, done once (a progress bar on a terminal)
print(f"document: {len(state)} tokens, processed in {time.monotonic() - start:.1f} s\n")

for q in questions:
    c = model.generate(state, f" {q}<|im_end|>\n<|im_start|>assistant\n", max_tokens=40, temperature=0,
                       stop=["<|im_end|>"])
    print(f"Q: {q}\nA: {c.text.strip()}\n   ({c.reused_tokens} tokens reused, {c.prompt_tokens} computed, "
          f"first token after {c.time_to_first_token_ms:.0f} ms)\n")
