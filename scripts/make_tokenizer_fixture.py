#!/usr/bin/env python3
"""Records llama.cpp's token ids for kvstash's tokenizer test: tests/fixtures/tokenizer_reference.json.

Run with the reference venv (llama-cpp-python and gguf from PyPI):
    .venv-ref/bin/python scripts/make_tokenizer_fixture.py [--model PATH] [--out PATH]

For every text (scripts/tokenizer_texts/*.txt plus the edge cases below) it stores
llama_tokenize(text, add_special=true, parse_special=true) as "special" and, where it is not
just "special" without its leading BOS, llama_tokenize(text, false, false) as "plain", for several
vocabularies, each derived from the
default model so that the C++ test can rebuild it from the same file:
  smollm       the model as it is (byte-level BPE, pre-tokenizer "smollm")
  smollm-udt   the same, with token 6 "<filename>" marked user-defined (type 4)
  llama-bpe, gpt-2, default
               the model's vocabulary and merges under another pre-tokenizer; the add_bos_token
               key is removed so that the pre-tokenizer's default applies
  spm          a SentencePiece vocabulary ("llama" model) built by spm_vocab() below
Variants other than smollm are written to temporary GGUF files (metadata only) and loaded with
vocab_only=True. Also stored: llama_token_to_piece for a sample of ids, and llama.cpp's built-in
chatml/llama3 chat templates applied to a small conversation.
"""
import argparse
import ctypes
import json
import os
import tempfile
from pathlib import Path

import gguf
import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
TEXT_DIR = ROOT / "scripts" / "tokenizer_texts"

EDGE_CASES = {
    "empty": b"",
    "space": b" ",
    "spaces": b"   ",
    "newline": b"\n",
    "tabs": b"\t\t",
    "crlf": b"line one\r\nline two\r\n\r\n",
    "space_runs": b"a  b   c    d\n\n  e \t f\t\n   \n",
    "leading_trailing": b"  leading and trailing  ",
    "contractions": b"I'm sure you're right; he'll go, she'd stay, they've left. DON'T, It'S, we'LL",
    "digits": b"1 12 123 1234 12345 123456 1234567 3.14 -0.5 1e10 2024-01-01",
    "repeat_letters": b"a" * 120,
    "repeat_emoji": "\U0001F389".encode() * 12,
    "long_space": b" " * 40 + b"x" + b" " * 7,
    "chat": b"<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            b"<|im_start|>assistant\n",
    "special_inline": b"Text with <|im_end|> in the middle and <|endoftext|>at the end<|endoftext|>",
    "special_adjacent": b"<|im_start|><|im_start|>user<|im_end|><|im_end|>",
    "special_partial": b"<|im_start <|im_end| |im_end|> <|im_sta",
    "special_in_word": b"abc<|im_end|>def <filename>main.py<file_sep> <repo_name>kv",
    "spm_markers": b"<s> </s> <unk> <0x41> <sep> x<sep>y \xe2\x96\x81word",
    "invalid_utf8": b"abc\xff\xfe def \xe2\x82 end\xc3 (\xed\xa0\x80) \xc0\x80 ok",
}

BPE_VARIANTS = ["smollm", "smollm-udt", "llama-bpe", "gpt-2", "default"]
SPM_SPECIALS = [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("<sep>", 4)]


def gpt2_byte_decoder():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + n)] = b
            n += 1
    return table


def spm_vocab(tokens, types):
    """SentencePiece vocabulary derived from a byte-level BPE one (rule mirrored in the C++ test):
    <unk> <s> </s> <sep>, then the 256 byte tokens <0x00>..<0xFF>, then every normal BPE token
    whose bytes are valid UTF-8 and not yet present, spaces written as U+2581, score = -(BPE id)."""
    dec = gpt2_byte_decoder()
    out_tokens = [t for t, _ in SPM_SPECIALS] + ["<0x%02X>" % b for b in range(256)]
    out_types = [ty for _, ty in SPM_SPECIALS] + [6] * 256
    out_scores = [0.0] * len(out_tokens)
    seen = set(out_tokens)
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty != 1:
            continue
        raw = bytes(dec[c] for c in tok)
        try:
            text = raw.decode("utf-8").replace(" ", "\u2581")
        except UnicodeDecodeError:
            continue
        if text in seen:
            continue
        seen.add(text)
        out_tokens.append(text)
        out_types.append(1)
        out_scores.append(-float(i))
    return out_tokens, out_types, out_scores


def write_variant(reader, path, variant, tokens, types):
    """Writes a metadata-only GGUF: the model's keys with the variant's tokenizer keys."""
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(path), arch)
    skip = {"general.architecture"}
    if variant != "smollm-udt":
        skip |= {"tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token"}
    if variant == "spm":
        skip |= {k for k in reader.fields if k.startswith("tokenizer.")}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in skip:
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if variant == "smollm-udt" and key == "tokenizer.ggml.token_type":
            value = list(value)
            value[6] = 4
        w.add_key_value(key, value, field.types[0], sub_type=sub)
    if variant in ("llama-bpe", "gpt-2"):
        w.add_string("tokenizer.ggml.pre", variant)
    if variant == "spm":
        spm_tokens, spm_types, spm_scores = spm_vocab(tokens, types)
        w.add_string("tokenizer.ggml.model", "llama")
        w.add_array("tokenizer.ggml.tokens", spm_tokens)
        w.add_array("tokenizer.ggml.token_type", spm_types)
        w.add_array("tokenizer.ggml.scores", spm_scores)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def token_pieces(llm, ids):
    out = {}
    buf = ctypes.create_string_buffer(256)
    for i in ids:
        pieces = []
        for special in (False, True):
            n = llama_cpp.llama_token_to_piece(llm._model.vocab, i, buf, 256, 0, special)
            pieces.append(buf.raw[:n].hex())
        out[str(i)] = pieces
    return out


def chat_templates():
    msgs = [("system", "  Be brief.\n"), ("user", "What is 2+2?"), ("assistant", " 4 "),
            ("user", "Thanks!")]
    arr = (llama_cpp.llama_chat_message * len(msgs))()
    keep = []
    for i, (role, content) in enumerate(msgs):
        keep += [role.encode(), content.encode()]
        arr[i].role, arr[i].content = keep[-2], keep[-1]
    result = {"messages": [{"role": r, "content": c} for r, c in msgs]}
    for name in ("chatml", "llama3"):
        for add_ass in (False, True):
            buf = ctypes.create_string_buffer(4096)
            n = llama_cpp.llama_chat_apply_template(name.encode(), arr, len(msgs), add_ass, buf, 4096)
            result[f"{name}{'_gen' if add_ass else ''}"] = buf.raw[:n].decode()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "tokenizer_reference.json"))
    args = ap.parse_args()

    texts = {p.stem: p.read_bytes() for p in sorted(TEXT_DIR.glob("*.txt"))}
    texts.update(EDGE_CASES)
    reader = gguf.GGUFReader(args.model)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()

    fixture = {
        "generator": "scripts/make_tokenizer_fixture.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(args.model),
        "texts": {name: {"hex": t.hex()} if not is_utf8(t) else t.decode() for name, t in texts.items()},
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for variant in BPE_VARIANTS + ["spm"]:
            path = args.model
            if variant != "smollm":
                path = Path(tmp) / f"{variant}.gguf"
                write_variant(reader, path, variant, tokens, types)
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            add_bos = llm._model.add_bos_token()
            cases = {}
            for name, text in texts.items():
                if variant == "smollm-udt" and b"<" not in text:
                    continue  # only the user-defined token's handling differs from smollm
                special = llm.tokenize(text, add_bos=True, special=True)
                plain = llm.tokenize(text, add_bos=False, special=False)
                cases[name] = {"special": special}
                if plain != special[1 if add_bos else 0:]:
                    cases[name]["plain"] = plain
            fixture["variants"][variant] = {
                "n_vocab": llm.n_vocab(),
                "bos": llm.token_bos(),
                "eos": llm.token_eos(),
                "add_bos": add_bos,
                "cases": cases,
            }
            if variant in ("smollm", "spm"):
                sample = list(range(0, 64)) + list(range(64, llm.n_vocab(), 997))
                fixture["variants"][variant]["pieces"] = token_pieces(llm, sample)
            del llm
    fixture["chat"] = chat_templates()

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    n_ids = sum(len(c["special"]) + len(c.get("plain", c["special"]))
                for v in fixture["variants"].values() for c in v["cases"].values())
    print(f"wrote {args.out}: {len(texts)} texts, {n_ids} token ids")


def is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


if __name__ == "__main__":
    main()
