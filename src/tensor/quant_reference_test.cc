// dequantize_row and quantize_activations against reference data made by
// scripts/make_quant_fixture.py (gguf-py's dequantize/quantize, and numpy transcriptions of
// ggml's quantize_row_q8_1_ref / quantize_row_q8_K_ref).
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "kvstash/error.h"
#include "kvstash/kernels.h"

namespace kvstash {
namespace {

struct Record {
  uint32_t kind;  // 1: dequantize bytes -> floats; 2: quantize floats -> bytes
  DType type;
  std::vector<uint8_t> bytes;
  std::vector<float> floats;
};

std::vector<Record> load_fixture() {
  const char* path = KVSTASH_SOURCE_DIR "/tests/fixtures/quant_reference.dat";
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> data{std::istreambuf_iterator<char>(in), {}};
  if (data.size() < 12 || std::memcmp(data.data(), "KVQREF01", 8) != 0)
    throw std::runtime_error(std::string("bad or missing fixture ") + path);
  size_t at = 8;
  auto u32 = [&] {
    uint32_t v;
    if (at + 4 > data.size()) throw std::runtime_error("truncated fixture");
    std::memcpy(&v, data.data() + at, 4);
    at += 4;
    return v;
  };
  std::vector<Record> records(u32());
  for (Record& r : records) {
    r.kind = u32();
    r.type = DType(u32());
    const uint32_t n = u32(), m = u32();
    if (at + m + 4 * size_t(n) > data.size()) throw std::runtime_error("truncated fixture");
    r.bytes.assign(data.begin() + long(at), data.begin() + long(at + m));
    r.floats.resize(n);
    std::memcpy(r.floats.data(), data.data() + at + m, 4 * size_t(n));
    at += m + 4 * size_t(n);
  }
  return records;
}

TEST(QuantReference, DequantizeMatchesGgufPyBitwise) {
  std::set<DType> seen;
  for (const Record& r : load_fixture()) {
    if (r.kind != 1) continue;
    seen.insert(r.type);
    const int64_t n = int64_t(r.floats.size());
    ASSERT_EQ(row_bytes(r.type, n), r.bytes.size()) << dtype_name(uint32_t(r.type));
    std::vector<float> out(r.floats.size());
    dequantize_row(r.type, r.bytes.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t a, b;
      std::memcpy(&a, &out[size_t(i)], 4);
      std::memcpy(&b, &r.floats[size_t(i)], 4);
      ASSERT_EQ(a, b) << dtype_name(uint32_t(r.type)) << " element " << i << ": " << out[size_t(i)]
                      << " vs " << r.floats[size_t(i)];
    }
  }
  EXPECT_EQ(seen.size(), 10u);  // f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K
}

TEST(QuantReference, ActivationQuantizationMatchesGgmlReferenceBytes) {
  std::set<DType> seen;
  for (const Record& r : load_fixture()) {
    if (r.kind != 2) continue;
    seen.insert(r.type);
    const DType weight = r.type == DType::Q8_0 ? DType::Q4_0
                         : r.type == DType::Q8_1 ? DType::Q4_1 : DType::Q4_K;
    ASSERT_EQ(activation_type(weight), r.type);
    const int64_t n = int64_t(r.floats.size());
    std::vector<uint8_t> out(row_bytes(r.type, n));
    ASSERT_EQ(out.size(), r.bytes.size());
    Kernels::active().quantize_activations(weight, r.floats.data(), out.data(), n);
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_EQ(out[i], r.bytes[i]) << dtype_name(uint32_t(r.type)) << " byte " << i;
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(QuantReference, ActivationTypesFollowLlamaCpp) {
  EXPECT_EQ(activation_type(DType::Q4_0), DType::Q8_0);
  EXPECT_EQ(activation_type(DType::Q8_0), DType::Q8_0);
  EXPECT_EQ(activation_type(DType::Q4_1), DType::Q8_1);
  EXPECT_EQ(activation_type(DType::Q5_0), DType::Q8_0);
  EXPECT_EQ(activation_type(DType::Q5_1), DType::Q8_1);
  EXPECT_EQ(activation_type(DType::Q4_K), DType::Q8_K);
  EXPECT_EQ(activation_type(DType::Q5_K), DType::Q8_K);
  EXPECT_EQ(activation_type(DType::Q6_K), DType::Q8_K);
  EXPECT_EQ(activation_type(DType::F16), DType::F32);
  EXPECT_EQ(activation_type(DType::BF16), DType::F32);
  EXPECT_EQ(activation_type(DType::F32), DType::F32);
}

TEST(QuantReference, UnsupportedTypesAndPartialBlocksAreRejected) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> out(256);
  EXPECT_THROW(dequantize_row(DType::Q2_K, buf.data(), out.data(), 256), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_1, buf.data(), out.data(), 31), Error);
  EXPECT_THROW(Kernels::active().vec_dot(DType::Q3_K, 256, buf.data(), buf.data()), Error);
  EXPECT_THROW(Kernels::active().vec_dot(DType::Q5_0, 48, buf.data(), buf.data()), Error);
  EXPECT_THROW(Kernels::active().vec_dot(DType::Q4_K, 128, buf.data(), buf.data()), Error);
  EXPECT_THROW(Kernels::active().vec_dot(DType(42), 32, buf.data(), buf.data()), Error);
  EXPECT_THROW(Kernels::active().quantize_activations(DType::Q8_0, out.data(), buf.data(), 40), Error);
}

}  // namespace
}  // namespace kvstash
