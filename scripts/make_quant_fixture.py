#!/usr/bin/env python3
"""Writes tests/fixtures/quant_reference.dat: reference data for src/tensor/kernels_test.cc.

Needs the `gguf` and `numpy` packages (pip install gguf numpy). Run from anywhere:
    python scripts/make_quant_fixture.py

Two kinds of records:
  1 dequantize: raw weight blocks (random bytes with sane f16 scales) and the float32 values
    gguf-py's gguf.quants.dequantize gives for them (f16, bf16, q4_0, q4_1, q5_0, q5_1,
    q8_0, q4_K, q5_K, q6_K).
  2 quantize: float32 activations and the bytes ggml's reference quantizer makes of them:
    q8_0 from gguf-py's gguf.quants.quantize; q8_1 and q8_K from the numpy transcriptions of
    ggml's quantize_row_q8_1_ref / quantize_row_q8_K_ref below (gguf-py has neither).

File layout (little-endian): b"KVQREF01", u32 record count, then per record:
  u32 kind, u32 ggml type id, u32 element count n, u32 byte count m, m bytes, n float32.
"""
import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "quant_reference.dat"
rng = np.random.default_rng(20240611)

# (type, block bytes, elements per block, byte offsets of f16 scale fields, blocks)
WEIGHTS = [
    (T.Q4_0, 18, 32, [0], 16),
    (T.Q4_1, 20, 32, [0, 2], 16),
    (T.Q5_0, 22, 32, [0], 16),
    (T.Q5_1, 24, 32, [0, 2], 16),
    (T.Q8_0, 34, 32, [0], 16),
    (T.Q4_K, 144, 256, [0, 2], 6),
    (T.Q5_K, 176, 256, [0, 2], 6),
    (T.Q6_K, 210, 256, [208], 6),
]


def sane_f16(count):
    """Scales as real files have them, plus edge cases: zero, a subnormal, large, negative."""
    v = (rng.standard_normal(count) * 0.02).astype(np.float16)
    edge = np.array([0.0, 3.0e-6, 1000.0, -0.01, 6.0e-5], dtype=np.float16)
    v[: min(count, len(edge))] = edge[:count]
    return v


def weight_record(qtype, type_size, block_size, fields, nb):
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint8)
    for off in fields:
        raw[:, off : off + 2] = sane_f16(nb).view(np.uint8).reshape(nb, 2)
    floats = quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)
    assert floats.size == nb * block_size
    return (1, int(qtype), raw.tobytes(), floats)


def float16_record():
    exps = rng.uniform(-26, 16, size=512)
    vals = (rng.choice([-1.0, 1.0], size=512) * 2.0**exps).astype(np.float16)  # incl. subnormals
    vals[:4] = np.array([0.0, -0.0, np.inf, -np.inf], dtype=np.float16)
    return (1, int(T.F16), vals.tobytes(), quants.dequantize(vals.view(np.uint8), T.F16).astype(np.float32))


def bf16_record():
    bits = rng.integers(0, 65536, size=256, dtype=np.uint16)
    return (1, int(T.BF16), bits.tobytes(), quants.dequantize(bits.view(np.uint8), T.BF16).reshape(-1))


def activations(n_blocks, block):
    """Random rows with varied magnitudes, a zero block, exact .5 ties, and tiny values."""
    x = rng.standard_normal((n_blocks, block)).astype(np.float32)
    x *= (10.0 ** rng.uniform(-3, 2, size=(n_blocks, 1))).astype(np.float32)
    x[0] = 0.0
    ties = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 126.5], dtype=np.float32)
    x[1, :] = rng.integers(-127, 128, size=block).astype(np.float32)
    x[1, : len(ties)] = ties  # amax 127: the scale is exactly 1, so these are exact halves
    x[2] *= np.float32(1e-30)
    return x


def q8_1_ref(x):
    out = []
    for blk in x:
        d = np.float32(np.max(np.abs(blk))) / np.float32(127)
        idv = np.float32(1) / d if d != 0 else np.float32(0)
        qs = quants.np_roundf(blk * idv).astype(np.int8)  # C roundf: halves away from zero
        s = np.float32(int(qs.astype(np.int32).sum())) * d
        out.append(np.array([d, s], dtype=np.float16).tobytes() + qs.tobytes())
    return b"".join(out)


def q8_K_ref(x):
    out = []
    for blk in x:
        i = int(np.argmax(np.abs(blk)))  # first element of largest magnitude, as ggml's '>' scan
        if blk[i] == 0:
            out.append(bytes(292))
            continue
        iscale = np.float32(-127) / blk[i]
        qs = np.minimum(np.rint(iscale * blk), 127).astype(np.int8)  # rint: ties to even
        bsums = qs.astype(np.int16).reshape(16, 16).sum(axis=1).astype(np.int16)
        out.append(np.float32(np.float32(1) / iscale).tobytes() + qs.tobytes() + bsums.tobytes())
    return b"".join(out)


def main():
    records = [float16_record(), bf16_record()]
    records += [weight_record(*w) for w in WEIGHTS]

    x = activations(64, 32)
    q8_0 = quants.quantize(x, T.Q8_0)
    records.append((2, int(T.Q8_0), q8_0.tobytes(), x.reshape(-1)))
    x = activations(64, 32)
    records.append((2, int(T.Q8_1), q8_1_ref(x), x.reshape(-1)))
    x = activations(5, 256)
    records.append((2, int(T.Q8_K), q8_K_ref(x), x.reshape(-1)))

    blob = bytearray(b"KVQREF01" + struct.pack("<I", len(records)))
    for kind, qtype, raw, floats in records:
        floats = np.ascontiguousarray(floats, dtype="<f4")
        blob += struct.pack("<IIII", kind, qtype, floats.size, len(raw)) + raw + floats.tobytes()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(bytes(blob))
    print(f"wrote {OUT} ({len(blob)} bytes, {len(records)} records)")


if __name__ == "__main__":
    main()
