"""kvstash: process a prefix once, keep its attention state (KV cache) in memory or in a file, and
continue it any number of times without reading the prefix again.

    import kvstash
    model = kvstash.Model()                      # the set-up's SmolLM2-135M-Instruct, or a GGUF path
    state = model.process_prefix(open("book.txt").read())
    state.save("book.kvs")                       # atomic; mapped, checksummed, no pickle
    state = kvstash.load_state("book.kvs")
    for prompt in ["The knight", "One day"]:     # each continuation forks the state, never copies it
        print(model.generate(state, prompt, max_tokens=40).text)

kvstash.hf (imported on demand) converts states to and from Hugging Face transformers' DynamicCache.
"""
from ._core import (
    Completion,
    CorruptionError,
    Error,
    InternalError,
    InvalidArgumentError,
    IOFailureError,
    Model,
    ModelMismatchError,
    NotFoundError,
    NotSupportedError,
    ResourceExhaustedError,
    State,
    Stream,
    load_state,
)

__version__ = "0.2.0"

__all__ = [
    "Model",
    "State",
    "Completion",
    "Stream",
    "load_state",
    "Error",
    "InvalidArgumentError",
    "NotFoundError",
    "CorruptionError",
    "IOFailureError",
    "NotSupportedError",
    "ResourceExhaustedError",
    "ModelMismatchError",
    "InternalError",
]
