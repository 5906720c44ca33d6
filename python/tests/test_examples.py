"""Runs every example in examples/ that needs nothing but kvstash (hf_* examples need torch and have
their own tests) as a user would: `python examples/X.py` in a fresh interpreter, in a temp dir."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("hf_"))


def run_example(path, *args, cwd):
    env = subprocess_env()
    r = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True, cwd=str(cwd),
                       env=env, timeout=180)
    assert r.returncode == 0, f"{path.name} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return r.stdout


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"story_prefix.py", "document_qa.py"} <= names


def check_story_prefix(out):
    sections = re.findall(r"^--- (.+?) \((\d+) tokens reused\)\n(.*?)(?=^--- |\Z)", out, re.M | re.S)
    prompts = ["The knight was known for", "One day, while riding his horse", "In the castle, there was"]
    assert [s[0] for s in sections] == prompts, out
    for prompt, reused, text in sections:
        assert int(reused) > 20
        assert text.startswith(prompt)
        assert len(text.strip()) > len(prompt) + 10, out  # a continuation, not just the prompt


def check_document_qa(out, questions=None):
    n = int(re.search(r"document: (\d+) tokens", out).group(1))
    answers = re.findall(r"^Q: (.*)\nA: (.*)\n +\((\d+) tokens reused", out, re.M)
    if questions is not None:
        assert [q for q, _, _ in answers] == questions, out
    assert len(answers) == len(questions or [1, 2, 3]), out
    for _, answer, reused in answers:
        assert answer.strip(), out
        assert int(reused) == n, out  # each question reuses the whole document's state


CHECKS = {"story_prefix.py": check_story_prefix, "document_qa.py": check_document_qa}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    out = run_example(path, cwd=tmp_path)
    assert out.strip()
    assert list(tmp_path.iterdir()) == []  # writes nothing into the working directory
    if path.name in CHECKS:
        CHECKS[path.name](out)


def test_story_prefix_state_path(tmp_path):
    state_path = tmp_path / "story.kvs"
    out = run_example(ROOT / "examples" / "story_prefix.py", state_path, cwd=tmp_path)
    assert state_path.is_file() and state_path.stat().st_size > 0
    check_story_prefix(out)


def test_document_qa_with_a_file(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Mira keeps three goats named Pip, Juno and Clover on a farm near the river Tane. "
                   "Every morning she milks them and sells the cheese at the market in Orlen.\n")
    questions = ["What are the goats called?", "Where is the market?"]
    check_document_qa(run_example(ROOT / "examples" / "document_qa.py", doc, *questions, cwd=tmp_path), questions)
