#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora into OUT/{gguf,kvs,kvz,tokenizer,server_request} (python3 stdlib
only).

GGUF seeds are written here (v3 layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md),
among them two tiny llama models that Model::load accepts, so the fuzzer starts from inputs that
reach the loader and the forward pass. .kvs seeds come from kvs_make_seeds (the library's own
writer: xxh3 is not in the stdlib), each prefixed with kvs_fuzz's mode byte; so do the .kvz seeds
(prefixed with kvz_fuzz's mode byte). server_request seeds are request bodies: completions, chat
and state, valid and not.

usage: make_corpus.py OUT [--kvs-seeds PATH/TO/kvs_make_seeds]
"""
import argparse
import os
import random
import struct
import subprocess
import tempfile

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
          U64: "Q", I64: "q", F64: "d"}
T_F32, T_F16, T_Q8_0 = 0, 1, 8


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gvalue(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gvalue(et, x) for x in items)
    return struct.pack("<" + SCALAR[t], v)


def tensor_bytes(ttype, values):
    if ttype == T_F32:
        return struct.pack("<%df" % len(values), *values)
    if ttype == T_F16:
        return struct.pack("<%de" % len(values), *values)
    out = b""  # q8_0: blocks of 32 values, an f16 scale then 32 int8
    for i in range(0, len(values), 32):
        block = values[i:i + 32]
        d = max(abs(x) for x in block) / 127 or 1.0
        out += struct.pack("<e", d) + bytes((round(x / d) & 0xFF) for x in block)
    return out


def gguf(metadata, tensors=(), alignment=32):
    """metadata: [(key, type, value)]; tensors: [(name, dims, ttype, values)], dims ne0 first."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    head += b"".join(gstr(k) + struct.pack("<I", t) + gvalue(t, v) for k, t, v in metadata)
    data, infos = b"", b""
    for name, dims, ttype, values in tensors:
        data += b"\0" * (-len(data) % alignment)
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ttype, len(data))
        data += tensor_bytes(ttype, values)
    head += infos
    return head + b"\0" * (-len(head) % alignment) + data


def values(rng, n, scale=0.5):
    return [rng.uniform(-scale, scale) for _ in range(n)]


def tiny_llama(rng, tokenizer_md, n_vocab, matrix_types):
    """A one-layer llama: width 32, 2 heads of 16, 1 KV head, FFN 32 (q8_0 needs rows of 32)."""
    e, hd, ff = 32, 16, 32
    md = [("general.architecture", STR, "llama"), ("general.name", STR, "fuzz seed"),
          ("llama.block_count", U32, 1), ("llama.context_length", U32, 64),
          ("llama.embedding_length", U32, e), ("llama.feed_forward_length", U32, ff),
          ("llama.attention.head_count", U32, 2), ("llama.attention.head_count_kv", U32, 1),
          ("llama.rope.freq_base", F32, 10000.0),
          ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5)] + tokenizer_md
    shapes = [("token_embd.weight", [e, n_vocab]), ("blk.0.attn_q.weight", [e, e]),
              ("blk.0.attn_k.weight", [e, hd]), ("blk.0.attn_v.weight", [e, hd]),
              ("blk.0.attn_output.weight", [e, e]), ("blk.0.ffn_gate.weight", [e, ff]),
              ("blk.0.ffn_up.weight", [e, ff]), ("blk.0.ffn_down.weight", [ff, e])]
    tensors = [("output_norm.weight", [e], T_F32, [1.0] * e),
               ("blk.0.attn_norm.weight", [e], T_F32, values(rng, e, 1.0)),
               ("blk.0.ffn_norm.weight", [e], T_F32, values(rng, e, 1.0))]
    for (name, dims), ttype in zip(shapes, matrix_types):
        tensors.append((name, dims, ttype, values(rng, dims[0] * dims[1])))
    return gguf(md, tensors)


def gguf_seeds(rng):
    seeds = {}
    seeds["metadata_kinds"] = gguf([
        ("general.architecture", STR, "llama"), ("u8", U8, 7), ("i8", I8, -3), ("u16", U16, 600),
        ("i16", I16, -600), ("u32", U32, 1 << 20), ("i32", I32, -1), ("f32", F32, 0.5),
        ("bool", BOOL, True), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)), ("f64", F64, 2.5),
        ("strings", ARR, (STR, ["a", "", "<|im_start|>", "日本"])), ("ints", ARR, (I32, [1, -2, 3])),
        ("floats", ARR, (F32, [0.25, -1.0])), ("bools", ARR, (BOOL, [True, False])),
        ("nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["x"])])),
    ])
    seeds["tensors_align64"] = gguf(
        [("general.alignment", U32, 64), ("general.name", STR, "t")],
        [("a", [4], T_F32, [1.0, -2.0, 0.5, 3.0]), ("b", [8, 2], T_F16, values(rng, 16)),
         ("c", [32, 2], T_Q8_0, values(rng, 64))], alignment=64)
    seeds["tensors_default_align"] = gguf(
        [], [("x", [3, 1, 1, 1], T_F32, [1.0, 2.0, 3.0]), ("q", [64], T_Q8_0, values(rng, 64))])

    # Byte-level BPE (gpt2): specials, letters, "Ġ" for space (GPT-2's byte mapping), merges.
    letters = list("abcdefghijklmnopqrstuvwxyz") + ["Ġ", "Ċ", "!", "."]
    merged = ["he", "ll", "llo", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"]
    toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + letters + merged
    merges = ["h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
    gpt2 = [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "smollm"),
            ("tokenizer.ggml.tokens", ARR, (STR, toks)),
            ("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 3] + [1] * (len(toks) - 3))),
            ("tokenizer.ggml.merges", ARR, (STR, merges)),
            ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
            ("tokenizer.chat_template", STR, "{% for m in messages %}<|im_start|>{% endfor %}")]
    seeds["llama_gpt2"] = tiny_llama(rng, gpt2, len(toks), [T_Q8_0, T_F16, T_Q8_0, T_F32, T_Q8_0,
                                                           T_Q8_0, T_F16, T_Q8_0])
    # SentencePiece-style (llama): <unk> <s> </s>, a few byte tokens, pieces with scores.
    pieces = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x20>", "<0xC3>", "▁", "▁h", "e", "l", "o", "h",
              "▁he", "ll", "▁hello", "w", "r", "d", "▁w"]
    types = [2, 3, 3, 6, 6, 6] + [1] * (len(pieces) - 6)
    spm = [("tokenizer.ggml.model", STR, "llama"), ("tokenizer.ggml.tokens", ARR, (STR, pieces)),
           ("tokenizer.ggml.scores", ARR, (F32, [0.0] * 6 + [-float(i) for i in range(len(pieces) - 6)])),
           ("tokenizer.ggml.token_type", ARR, (I32, types)),
           ("tokenizer.ggml.add_bos_token", BOOL, True), ("tokenizer.ggml.add_space_prefix", BOOL, True)]
    seeds["llama_spm"] = tiny_llama(rng, spm, len(pieces), [T_F16] + [T_Q8_0] * 7)
    return seeds


TEXTS = {
    "ascii": b"The three primary colors are red, yellow and blue.",
    "code": b"int main(int argc, char** argv) {\n\treturn argc > 1 ? 0 : -1;  // ok\n}\n",
    "spaces": b"  two  spaces\t\ttabs\r\n\n\nnewlines   ",
    "digits": b"1234567890 3.14159 1e-5 0x1F",
    "cjk": "日本語のテキストと中文文本，한국어 텍스트".encode(),
    "emoji": "emoji 👍🏽 family 👨‍👩‍👧 flags 🇫🇷".encode(),
    "accents": "Ça va? naïve café Ångström ß".encode(),
    "invalid_utf8": b"bad \xff\xfe bytes \xc3( \xe2\x82 \xf0\x9f\x98 end \xed\xa0\x80",
    "special": b"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
    "special_partial": b"<|im_start| <|im_end <|endoftext|",
    "contractions": b"I'm sure you're right, we'll see; it's what they'd've done.",
}

REQUESTS = {
    "completion_min": b'{"prompt": "Once upon a time"}',
    "completion_full": (b'{"model": "smol", "prompt": ["Hi"], "max_tokens": 32, "temperature": 0.7, "top_p": 0.9,'
                        b' "seed": -5, "stop": ["\\n", ""], "n": 2, "stream": true,'
                        b' "stream_options": {"include_usage": true}, "logprobs": 3, "echo": false,'
                        b' "best_of": 1, "logit_bias": {}, "suffix": null, "user": "u", "state": "sys-1"}'),
    "completion_ids": b'{"prompt": [1, 2, 3, 4096], "max_tokens": 0}',
    "completion_ids_nested": b'{"prompt": [[5, 6]], "logprobs": null}',
    "chat_min": b'{"messages": [{"role": "user", "content": "Hello"}]}',
    "chat_full": ('{"model": "m", "messages": [{"role": "developer", "content": "Be brief."},'
                  ' {"role": "user", "content": [{"type": "text", "text": "caf\u00e9 "}, {"type": "text", "text": "日本"}]},'
                  ' {"role": "assistant", "content": null}], "max_completion_tokens": 64, "logprobs": true,'
                  ' "top_logprobs": 5, "response_format": {"type": "text"}, "tools": [], "tool_choice": "none",'
                  ' "parallel_tool_calls": false, "presence_penalty": 0, "frequency_penalty": 0.0}').encode(),
    "chat_bad_part": b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
    "bad_types": b'{"prompt": 5, "max_tokens": "9", "n": 0, "temperature": 3, "stop": [1]}',
    "bad_json": b'{"prompt": "unterminated',
    "state_prompt": b'{"prompt": "You are a pirate."}',
    "state_messages": b'{"messages": [{"role": "system", "content": "Answer in French."}]}',
    "huge_numbers": b'{"prompt": "x", "max_tokens": 18446744073709551616, "seed": -9223372036854775808, "top_p": 1e-320}',
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--kvs-seeds", help="the kvs_make_seeds program (kvs seeds are skipped without it)")
    args = ap.parse_args()
    dirs = {d: os.path.join(args.out, d) for d in ("gguf", "kvs", "kvz", "tokenizer", "server_request")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    for name, data in gguf_seeds(random.Random(7)).items():
        with open(os.path.join(dirs["gguf"], name + ".gguf"), "wb") as f:
            f.write(data)
    for name, data in TEXTS.items():
        with open(os.path.join(dirs["tokenizer"], name + ".txt"), "wb") as f:
            f.write(data)
    for name, data in REQUESTS.items():
        with open(os.path.join(dirs["server_request"], name + ".json"), "wb") as f:
            f.write(data)
    if args.kvs_seeds:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([args.kvs_seeds, tmp], check=True)
            for name in sorted(os.listdir(tmp)):
                with open(os.path.join(tmp, name), "rb") as f:
                    data = f.read()
                # kvs_fuzz's first byte: as is / fix checksums / fix layout; kvz_fuzz's: as is / fix checksums.
                kind, modes = ("kvz", 2) if name.endswith(".kvz") else ("kvs", 3)
                for mode in range(modes):
                    with open(os.path.join(dirs[kind], "%s.mode%d" % (name, mode)), "wb") as f:
                        f.write(bytes([mode]) + data)
    counts = ", ".join("%s %d" % (d, len(os.listdir(p))) for d, p in dirs.items())
    print("make_corpus: %s seeds in %s" % (counts, args.out))


if __name__ == "__main__":
    main()
