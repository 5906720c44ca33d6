#include "codec/kv_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "codec/level_params.h"
#include "codec/lossy_quant.h"
#include "kvstash/error.h"
#include "kvstash/kernels.h"
#include "kvstash/thread_pool.h"

namespace kvstash::codec {
namespace {

// A synthetic chunk source: n_layer layers of [H][stride][D] f16, K with per-channel offsets and
// scales, a huge first token (attention sink), V smaller.
struct Synthetic {
  ChunkShape shape;
  int64_t stride = 0;
  std::vector<std::vector<uint16_t>> k, v;
  Synthetic(int n_layer, int H, int D, int64_t stride_, uint32_t seed) : stride(stride_) {
    shape = {n_layer, H, D, stride_};
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (int l = 0; l < n_layer; ++l) {
      std::vector<uint16_t> kl(size_t(H) * size_t(stride) * size_t(D)), vl(kl.size());
      for (int h = 0; h < H; ++h)
        for (int64_t t = 0; t < stride; ++t)
          for (int c = 0; c < D; ++c) {
            const size_t i = (size_t(h) * size_t(stride) + size_t(t)) * size_t(D) + size_t(c);
            const float scale = 0.2f + float((c * 7 + h) % 11);
            const float sink = t == 0 ? 40.0f : 1.0f;
            kl[i] = f32_to_f16(sink * (float(c % 5) - 2.0f + scale * g(rng)));
            vl[i] = f32_to_f16(sink * 0.3f * g(rng));
          }
      k.push_back(std::move(kl));
      v.push_back(std::move(vl));
    }
  }
  KvIn in(int64_t first) const {
    KvIn r;
    for (auto& x : k) r.k.push_back(x.data());
    for (auto& x : v) r.v.push_back(x.data());
    r.stride = stride;
    r.first = first;
    return r;
  }
};

struct Sink {
  std::vector<std::vector<uint16_t>> k, v;
  KvOut out;
  Sink(const ChunkShape& s, int64_t stride, int64_t first) {
    for (int l = 0; l < s.n_layer; ++l) {
      k.emplace_back(size_t(s.n_head_kv) * size_t(stride) * size_t(s.head_dim), 0xABCD);
      v.emplace_back(size_t(s.n_head_kv) * size_t(stride) * size_t(s.head_dim), 0xABCD);
    }
    for (auto& x : k) out.k.push_back(x.data());
    for (auto& x : v) out.v.push_back(x.data());
    out.stride = stride;
    out.first = first;
  }
};

TEST(KvCodec, LosslessRoundTripsAnyBits) {
  Synthetic s(2, 2, 8, 40, 1);
  std::mt19937 rng(5);
  for (auto& x : s.k[1]) x = uint16_t(rng());  // NaN, inf, subnormals, -0 included
  s.k[0][3] = 0x8000;
  s.k[0][4] = 0x7C00;
  s.k[0][5] = 0x7E01;
  s.k[0][6] = 0x0001;
  ChunkShape shape = s.shape;
  shape.count = 30;
  const auto bytes = encode_chunk(shape, s.in(5), lossless_level());
  Sink out(shape, 40, 5);
  decode_chunk(shape, bytes.data(), bytes.size(), lossless_level(), out.out);
  for (int l = 0; l < 2; ++l)
    for (size_t i = 0; i < s.k[size_t(l)].size(); ++i) {
      const size_t t = (i / 8) % 40;
      const bool inside = t >= 5 && t < 35;
      EXPECT_EQ(out.k[size_t(l)][i], inside ? s.k[size_t(l)][i] : 0xABCD) << l << " " << i;
      EXPECT_EQ(out.v[size_t(l)][i], inside ? s.v[size_t(l)][i] : 0xABCD) << l << " " << i;
    }
}

TEST(KvCodec, LevelParamsRoundTripAndRefuseMalformed) {
  for (int l = 1; l <= built_in_levels(); ++l) {
    const LevelParams p = built_in_level(l);
    EXPECT_EQ(LevelParams::parse(p.text).text, p.text);
    EXPECT_FALSE(p.lossless());
  }
  EXPECT_TRUE(LevelParams::parse("lossless").lossless());
  EXPECT_EQ(cachegen_level().text, "cachegen k=32,16/10/32 v=32,16/2/32");
  EXPECT_EQ(LevelParams::parse(cachegen_level().text).text, cachegen_level().text);
  for (const char* bad : {"", "lossless ", "lossy", "lossy k=1 v=1", "lossy k=1 v=1 alphabet=1",
                          "lossy k=1 v=1 alphabet=257", "lossy k=0 v=1 alphabet=64", "lossy k=1,x v=1 alphabet=64",
                          "lossy k=1.0 v=1 alphabet=64", "lossy v=1 k=1 alphabet=64", "lossy k=nan v=1 alphabet=64",
                          "cachegen k=32,16/10/32", "cachegen k=33,16/10/32 v=32,16/2/32",
                          "cachegen k=32,16/33/32 v=32,16/2/32", "zstd"}) {
    try {
      LevelParams::parse(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Corruption) << bad;
    }
  }
  EXPECT_THROW(built_in_level(0), Error);
  EXPECT_THROW(built_in_level(built_in_levels() + 1), Error);
}

TEST(KvCodec, SameBytesForAnyThreadCount) {
  Synthetic s(4, 3, 16, 64, 2);
  ThreadPool one(1), two(2);
  std::vector<LevelParams> levels = {lossless_level(), cachegen_level()};
  for (int l = 1; l <= built_in_levels(); ++l) levels.push_back(built_in_level(l));
  for (const LevelParams& lv : levels) {
    const auto a = encode_chunk(s.shape, s.in(0), lv);
    EXPECT_EQ(a, encode_chunk(s.shape, s.in(0), lv, &one)) << lv.text;
    EXPECT_EQ(a, encode_chunk(s.shape, s.in(0), lv, &two)) << lv.text;
    Sink o1(s.shape, 64, 0), o2(s.shape, 64, 0);
    decode_chunk(s.shape, a.data(), a.size(), lv, o1.out);
    decode_chunk(s.shape, a.data(), a.size(), lv, o2.out, &two);
    EXPECT_EQ(o1.k, o2.k);
    EXPECT_EQ(o1.v, o2.v);
  }
}

TEST(KvCodec, LossyErrorWithinHalfStepAndSizesShrinkWithLevel) {
  Synthetic s(3, 2, 32, 128, 3);
  size_t prev = 0;
  for (int l = built_in_levels(); l >= 1; --l) {
    const LevelParams lv = built_in_level(l);
    const auto bytes = encode_chunk(s.shape, s.in(0), lv);
    if (prev) {
      EXPECT_LT(bytes.size(), prev) << l;
    }
    prev = bytes.size();
    Sink o(s.shape, 128, 0);
    decode_chunk(s.shape, bytes.data(), bytes.size(), lv, o.out);
    // Every step is below 2^12 and each value decodes to within half a step plus f16 rounding:
    // check against the step the decoder used, read back from the section header.
    const ParsedLevel p = parse_level(lv.text);
    size_t pos = 5 + 4 * 6;  // scheme, empty prelude, section sizes
    for (int layer = 0; layer < 3; ++layer)
      for (int kind = 0; kind < 2; ++kind) {
        const auto& src = kind ? s.v[size_t(layer)] : s.k[size_t(layer)];
        const auto& dst = kind ? o.v[size_t(layer)] : o.k[size_t(layer)];
        std::vector<float> step(64);
        size_t q = pos;
        for (int ch = 0; ch < 64; ++ch) {
          step[size_t(ch)] = step_of_code(bytes[q]);
          ++q;
          while (bytes[q] & 0x80) ++q;
          ++q;
        }
        for (size_t i = 0; i < src.size(); ++i) {
          const int ch = int(i / (128 * 32)) * 32 + int(i % 32);
          const float x = f16_to_f32(src[i]), y = f16_to_f32(dst[i]);
          EXPECT_LE(std::fabs(x - y), step[size_t(ch)] * 0.5f + std::fabs(x) * 0.001f) << l << " " << i;
        }
        const size_t at = 5 + 4 * size_t(2 * layer + kind);
        const size_t sec = size_t(bytes[at]) | size_t(bytes[at + 1]) << 8 | size_t(bytes[at + 2]) << 16;
        pos += sec;
      }
    (void)p;
  }
}

TEST(KvCodec, AllEscapeLevelIsExact) {
  // alphabet=2: the only codable symbol is "the channel offset"; nearly everything escapes (stored
  // exactly), the rest is within half a step (steps here are below 0.012).
  Synthetic s(2, 2, 16, 48, 6);
  const LevelParams lv = LevelParams::parse("lossy k=0.0009765625 v=0.0009765625 alphabet=2");
  const auto bytes = encode_chunk(s.shape, s.in(0), lv);
  Sink o(s.shape, 48, 0);
  EXPECT_GT(bytes.size(), size_t(2 * 2 * 2 * 48 * 16 * 2 * 9 / 10));
  decode_chunk(s.shape, bytes.data(), bytes.size(), lv, o.out);
  int exact = 0;
  for (int l = 0; l < 2; ++l)
    for (size_t i = 0; i < s.k[size_t(l)].size(); ++i) {
      EXPECT_LE(std::fabs(f16_to_f32(o.k[size_t(l)][i]) - f16_to_f32(s.k[size_t(l)][i])), 0.006f) << i;
      EXPECT_LE(std::fabs(f16_to_f32(o.v[size_t(l)][i]) - f16_to_f32(s.v[size_t(l)][i])), 0.006f) << i;
      exact += (o.k[size_t(l)][i] == s.k[size_t(l)][i]) + (o.v[size_t(l)][i] == s.v[size_t(l)][i]);
    }
  EXPECT_GT(exact, 2 * 2 * 48 * 16 * 2 * 9 / 10);
  // Decoding twice gives the same values.
  Sink o2(s.shape, 48, 0);
  decode_chunk(s.shape, bytes.data(), bytes.size(), lv, o2.out);
  EXPECT_EQ(o.k, o2.k);
  EXPECT_EQ(o.v, o2.v);
}

TEST(KvCodec, EmptyChunkRoundTrips) {
  Synthetic s(2, 2, 8, 8, 7);
  ChunkShape shape = s.shape;
  shape.count = 0;
  for (const LevelParams& lv : {lossless_level(), built_in_level(1), cachegen_level()}) {
    const auto bytes = encode_chunk(shape, s.in(0), lv);
    EXPECT_EQ(bytes.size(), 1u + 4u + 4u * 4u) << lv.text;
    Sink o(shape, 8, 0);
    decode_chunk(shape, bytes.data(), bytes.size(), lv, o.out);
    EXPECT_EQ(o.k[0][0], 0xABCD);
  }
}

TEST(KvCodec, RefusesTruncatedAndGarbageChunks) {
  Synthetic s(2, 2, 16, 32, 4);
  std::vector<LevelParams> levels = {lossless_level(), cachegen_level(), built_in_level(1)};
  std::mt19937 rng(9);
  for (const LevelParams& lv : levels) {
    const auto bytes = encode_chunk(s.shape, s.in(0), lv);
    Sink o(s.shape, 32, 0);
    for (size_t cut = 0; cut < bytes.size(); cut += 1 + bytes.size() / 97) {
      try {
        decode_chunk(s.shape, bytes.data(), cut, lv, o.out);
        ADD_FAILURE() << lv.text << " accepted " << cut << " bytes";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Corruption);
      }
    }
    for (int trial = 0; trial < 300; ++trial) {
      auto bad = bytes;
      for (int f = 0; f < 1 + trial % 4; ++f) bad[rng() % bad.size()] ^= uint8_t(1 + rng() % 255);
      try {
        decode_chunk(s.shape, bad.data(), bad.size(), lv, o.out);
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Corruption);
      }
    }
    // Another scheme's level refuses the chunk.
    const LevelParams other = lv.lossless() ? built_in_level(1) : lossless_level();
    EXPECT_THROW(decode_chunk(s.shape, bytes.data(), bytes.size(), other, o.out), Error);
  }
}

}  // namespace
}  // namespace kvstash::codec
