"""Fixtures for kvstash's Python tests: one model per session (loading it is cheap, but a shared one
keeps the suite fast on two cores) and a few short English texts."""
import importlib.util
import os
import pathlib
import subprocess

import pytest

import kvstash

# Hugging Face interop tests import torch and transformers at the top: run them in the venv that has
# them (scripts/ensure_hf_venv.sh); elsewhere they are not collected.
if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    collect_ignore_glob = ["test_hf*.py"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"

# A fixed English paragraph (about 150 tokens), so that no test depends on a system package.
STORY = (
    "Here's a story about a brave knight named Sir Roland. He lived in a small kingdom at the edge of "
    "a great forest, where the king trusted him above all his other knights. Every morning Sir Roland "
    "rode out on his grey horse, Thunder, to guard the roads against bandits and wolves. The people of "
    "the villages loved him, because he was kind to children and fair to merchants, and he never asked "
    "for a reward. One winter a dragon came down from the northern mountains and burned the farms near "
    "the river, and the king called Sir Roland to the castle."
)


def subprocess_env():
    """The environment of a child interpreter that imports the same kvstash as this one: the
    installed package, or python/ of a build tree (PYTHONPATH=python)."""
    where = str(pathlib.Path(kvstash.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=where + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="session")
def other_model(model, tmp_path_factory):
    """Another model for ModelMismatchError: the default model's file with one byte of tensor data
    changed (the middle of the file lies in the weights), as tests/state_file_test.cc makes it."""
    path = tmp_path_factory.mktemp("other") / "other.gguf"
    data = bytearray(pathlib.Path(model.path).read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)
    return kvstash.Model(str(path), ctx=1024, threads=1)


@pytest.fixture(scope="session")
def model():
    """The default model ($KVSTASH_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf), ctx 1024."""
    return kvstash.Model(ctx=1024)


@pytest.fixture(scope="session")
def story():
    return STORY


@pytest.fixture(scope="session")
def story_state(model, story):
    """The state of STORY, made once (read-only, so tests may share it)."""
    return model.process_prefix(story, progress=False)


@pytest.fixture(scope="session")
def genesis_text():
    """Genesis 1-3 (King James Version) from scripts/corpus.sh, or None when the Debian package
    bible-kjv is missing."""
    try:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "corpus.sh")], capture_output=True, text=True,
                             timeout=60, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout


@pytest.fixture(scope="session")
def long_text(genesis_text, story):
    """At least ~2500 tokens of English: Genesis 1-3, or STORY repeated."""
    return genesis_text if genesis_text else (story + "\n\n") * 20


@pytest.fixture(scope="session")
def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0
