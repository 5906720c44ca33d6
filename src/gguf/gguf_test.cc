// GGUF reader tests: well-formed files built in memory parse to what was written; broken files
// (named for how they are broken) give one kvstash::Error naming the file and the problem.
#include "kvstash/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "kvstash/error.h"
#include "gguf_builder.h"

namespace kvstash {
namespace {

using T = GgufType;
using testing_gguf::Builder;
using testing_gguf::Bytes;

std::unique_ptr<GgufFile> parse(const std::vector<uint8_t>& b, size_t n = SIZE_MAX) {
  return GgufFile::parse(b.data(), std::min(n, b.size()), "model.gguf");
}

// The message of the kvstash::Error that parsing throws ("" if it parses).
std::string parse_error(const std::vector<uint8_t>& b, size_t n = SIZE_MAX) {
  try {
    parse(b, n);
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("model.gguf: ", 0), 0u) << msg;
    // A damaged file is Corruption; only a well-formed file of another version is NotSupported.
    const bool version = msg.find("unsupported GGUF version") != std::string::npos;
    EXPECT_EQ(e.kind(), version ? ErrorKind::NotSupported : ErrorKind::Corruption) << msg;
    return msg;
  }
  return "";
}

#define EXPECT_REJECTED(bytes, text)                                           \
  do {                                                                         \
    std::string msg_ = parse_error(bytes);                                     \
    EXPECT_NE(msg_, "") << "expected an error containing: " << (text);         \
    EXPECT_NE(msg_.find(text), std::string::npos) << "message: " << msg_;      \
  } while (0)

// A file using every metadata value type, arrays (nested too) and a few tensors.
Builder full_builder() {
  Builder b;
  b.alignment = 64;
  b.kv_string("general.architecture", "llama")
      .kv("general.alignment", T::UINT32, uint32_t(64))
      .kv("v.u8", T::UINT8, uint8_t(200))
      .kv("v.i8", T::INT8, int8_t(-5))
      .kv("v.u16", T::UINT16, uint16_t(60000))
      .kv("v.i16", T::INT16, int16_t(-30000))
      .kv("v.u32", T::UINT32, uint32_t(4000000000u))
      .kv("v.i32", T::INT32, int32_t(-2000000000))
      .kv("v.f32", T::FLOAT32, 1.5f)
      .kv("v.bool", T::BOOL, uint8_t(1))
      .kv("v.u64", T::UINT64, (uint64_t(1) << 63) + 5)
      .kv("v.i64", T::INT64, -(int64_t(1) << 62))
      .kv("v.f64", T::FLOAT64, 2.25)
      .kv_string("v.empty", "")
      .kv_array("a.u8", T::UINT8, std::vector<uint8_t>{1, 2, 255})
      .kv_array("a.i16", T::INT16, std::vector<int16_t>{-1, 2})
      .kv_array("a.u64", T::UINT64, std::vector<uint64_t>{7, uint64_t(1) << 62})
      .kv_array("a.bool", T::BOOL, std::vector<uint8_t>{1, 0})
      .kv_array("a.f32", T::FLOAT32, std::vector<float>{0.5f, -1.0f})
      .kv_array("a.f64", T::FLOAT64, std::vector<double>{1e300})
      .kv_array("a.empty", T::INT32, std::vector<int32_t>{})
      .kv_strings("a.str", {"a", "", "ccc"});
  // Arrays of arrays: [[1, 2], [3]] of uint32 and [["x"], []] of strings.
  Bytes nested;
  nested.str("a.nested").type(T::ARRAY).type(T::ARRAY).put(uint64_t(2));
  nested.type(T::UINT32).put(uint64_t(2)).put(uint32_t(1)).put(uint32_t(2));
  nested.type(T::UINT32).put(uint64_t(1)).put(uint32_t(3));
  b.kv_raw(nested);
  Bytes nested_str;
  nested_str.str("a.nested_str").type(T::ARRAY).type(T::ARRAY).put(uint64_t(2));
  nested_str.type(T::STRING).put(uint64_t(1)).str("x").type(T::STRING).put(uint64_t(0));
  b.kv_raw(nested_str);
  b.tensor("a", {4, 3}, DType::F32)
      .tensor({"unknown_type", {7}, 99, 0, {}})
      .tensor("b", {64, 2}, DType::Q8_0)
      .tensor("scalar", {}, DType::F32)
      .tensor("c", {5}, DType::F16);
  return b;
}

TEST(Gguf, EveryValueTypeParses) {
  auto f = parse(full_builder().build());
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->path(), "model.gguf");
  EXPECT_EQ(f->metadata().size(), 24u);
  EXPECT_EQ(f->metadata()[2].key, "v.u8");  // file order
  EXPECT_EQ(f->get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f->get("v.u8").as_uint(), 200u);
  EXPECT_EQ(f->get("v.i8").as_int(), -5);
  EXPECT_EQ(f->get("v.u16").as_int(), 60000);
  EXPECT_EQ(f->get("v.i16").as_int(), -30000);
  EXPECT_EQ(f->get("v.u32").as_uint(), 4000000000u);
  EXPECT_EQ(f->get("v.i32").as_int(), -2000000000);
  EXPECT_EQ(f->get("v.f32").as_float(), 1.5);
  EXPECT_EQ(f->get("v.i32").as_float(), -2e9);  // integers read as numbers too
  EXPECT_TRUE(f->get("v.bool").as_bool());
  EXPECT_EQ(f->get("v.u64").as_uint(), (uint64_t(1) << 63) + 5);
  EXPECT_EQ(f->get("v.i64").as_int(), -(int64_t(1) << 62));
  EXPECT_EQ(f->get("v.f64").as_float(), 2.25);
  EXPECT_EQ(f->get("v.empty").as_string(), "");
  EXPECT_TRUE(f->get("v.u8").is_integer());
  EXPECT_FALSE(f->get("v.f32").is_integer());
  EXPECT_TRUE(f->get("v.f32").is_number());
  EXPECT_FALSE(f->get("v.bool").is_number());

  EXPECT_EQ(f->get("a.u8").as_int_array(), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f->get("a.i16").as_int_array(), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(f->get("a.u64").as_int_array(), (std::vector<int64_t>{7, int64_t(1) << 62}));
  EXPECT_EQ(f->get("a.bool").as_int_array(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(f->get("a.f32").as_float_array(), (std::vector<double>{0.5, -1.0}));
  EXPECT_EQ(f->get("a.f64").as_float_array(), (std::vector<double>{1e300}));
  EXPECT_EQ(f->get("a.i16").as_float_array(), (std::vector<double>{-1.0, 2.0}));
  EXPECT_EQ(f->get("a.empty").array_size(), 0u);
  EXPECT_EQ(f->get("a.str").as_string_array(), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f->get("a.str").array_size(), 3u);
  EXPECT_EQ(f->get("a.str").array_type, T::STRING);
  EXPECT_EQ(f->get("v.u8").array_size(), 0u);
  const GgufValue& nested = f->get("a.nested");
  EXPECT_EQ(nested.type, T::ARRAY);
  EXPECT_EQ(nested.array_type, T::ARRAY);
  EXPECT_EQ(nested.array_size(), 2u);
  EXPECT_EQ(f->get("a.nested_str").array_size(), 2u);
}

TEST(Gguf, TensorsPointAtTheirAlignedData) {
  auto f = parse(full_builder().build());
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  ASSERT_EQ(f->tensors().size(), 5u);
  const GgufTensor& a = f->tensor("a");
  EXPECT_EQ(a.type(), DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(a.elements(), 12);
  EXPECT_EQ(a.rows(), 3);
  EXPECT_EQ(a.nbytes, 48u);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.data, f->bytes() + f->data_offset());
  const GgufTensor& b = f->tensor("b");
  EXPECT_EQ(b.type(), DType::Q8_0);
  EXPECT_EQ(b.nbytes, 2u * 2 * 34);
  EXPECT_EQ(b.offset, 64u);  // after "a" (48 bytes) and the zero-size unknown tensor, aligned
  EXPECT_EQ(b.data[0], Builder::pattern(2, 0));
  EXPECT_EQ(b.data[b.nbytes - 1], Builder::pattern(2, b.nbytes - 1));
  const GgufTensor& unknown = f->tensor("unknown_type");
  EXPECT_EQ(unknown.type_id, 99u);
  EXPECT_EQ(unknown.nbytes, 0u);  // unknown types are kept; the model loader rejects them
  const GgufTensor& scalar = f->tensor("scalar");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.elements(), 1);
  EXPECT_EQ(scalar.rows(), 1);
  EXPECT_EQ(scalar.nbytes, 4u);
  const GgufTensor& c = f->tensor("c");
  EXPECT_EQ(c.nbytes, 10u);
  EXPECT_EQ(c.data + c.nbytes, f->bytes() + f->size());  // the file ends with c's data
  EXPECT_EQ(f->find_tensor("nope"), nullptr);
  EXPECT_EQ(&f->tensors()[2], &b);
}

TEST(Gguf, Version2AndDefaultAlignmentParse) {
  Builder b;
  b.version = 2;
  b.kv("x", T::UINT32, uint32_t(1)).tensor("t", {8}, DType::F32).tensor("u", {3}, DType::F32);
  auto f = parse(b.build());
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->tensor("u").offset, 32u);
}

TEST(Gguf, EmptyFileWithNoTensorsParses) {
  auto f = parse(Builder().build());
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_TRUE(f->tensors().empty());
}

TEST(Gguf, LongTensorNameIsAccepted) {
  std::string name(300, 'n');
  auto f = parse(Builder().tensor(name, {2}, DType::F32).build());
  EXPECT_EQ(f->tensors()[0].name, name);
}

TEST(Gguf, ZeroSizedDimensionIsAccepted) {
  auto f = parse(Builder().tensor("empty", {0, 1ull << 40, 1ull << 20}, DType::F32).build());
  EXPECT_EQ(f->tensor("empty").elements(), 0);
  EXPECT_EQ(f->tensor("empty").nbytes, 0u);
  // shape[0] * shape[1] alone would overflow int64; elements() must not compute it (found by fuzzing).
  auto g = parse(Builder().tensor("late_zero", {1ull << 48, 1ull << 43, 0}, DType::F32).build());
  EXPECT_EQ(g->tensor("late_zero").elements(), 0);
  EXPECT_EQ(g->tensor("late_zero").rows(), 0);
}

TEST(Gguf, AccessorTypeMismatchNamesTheKey) {
  auto f = parse(full_builder().build());
  auto error_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      const bool missing = std::string(e.what()).find("missing") != std::string::npos;
      EXPECT_EQ(e.kind(), missing ? ErrorKind::NotFound : ErrorKind::Corruption) << e.what();
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of([&] { f->get("general.architecture").as_uint(); }),
            "metadata key 'general.architecture' has type string, expected an integer");
  EXPECT_EQ(error_of([&] { f->get("v.u8").as_string(); }), "metadata key 'v.u8' has type uint8, expected a string");
  EXPECT_EQ(error_of([&] { f->get("v.u32").as_bool(); }), "metadata key 'v.u32' has type uint32, expected a bool");
  EXPECT_EQ(error_of([&] { f->get("v.bool").as_float(); }), "metadata key 'v.bool' has type bool, expected a number");
  EXPECT_EQ(error_of([&] { f->get("a.u8").as_string_array(); }),
            "metadata key 'a.u8' has type array of uint8, expected an array of strings");
  EXPECT_EQ(error_of([&] { f->get("a.str").as_int_array(); }),
            "metadata key 'a.str' has type array of string, expected an array of integers");
  EXPECT_EQ(error_of([&] { f->get("a.nested").as_float_array(); }),
            "metadata key 'a.nested' has type array of array, expected an array of numbers");
  EXPECT_EQ(error_of([&] { f->get("v.i8").as_uint(); }),
            "metadata key 'v.i8' has negative value -5, expected a non-negative integer");
  EXPECT_EQ(error_of([&] { f->get("v.u64").as_int(); }),
            "metadata key 'v.u64' has value 9223372036854775813, which does not fit in int64");
  EXPECT_EQ(error_of([&] { f->get("llama.block_count"); }), "model.gguf: missing metadata key 'llama.block_count'");
  EXPECT_EQ(error_of([&] { f->tensor("output.weight"); }), "model.gguf: missing tensor 'output.weight'");
  EXPECT_EQ(error_of([&] { f->get_uint("general.architecture", 1); }),
            "metadata key 'general.architecture' has type string, expected an integer");
  EXPECT_EQ(f->get_uint("absent", 7), 7u);
  EXPECT_EQ(f->get_float("absent", 0.25), 0.25);
  EXPECT_TRUE(f->get_bool("absent", true));
  EXPECT_EQ(f->get_string("absent", "d"), "d");
  EXPECT_EQ(f->find("absent"), nullptr);
}

// ---- broken files ----

TEST(Gguf, EmptyFileIsRejected) {
  EXPECT_REJECTED(std::vector<uint8_t>{}, "not a GGUF file (the file is empty)");
}

TEST(Gguf, BadMagicIsRejected) {
  auto f = full_builder().build();
  f[3] = 'G';
  EXPECT_EQ(parse_error(f), "model.gguf: not a GGUF file (bad magic)");
  EXPECT_REJECTED((std::vector<uint8_t>{'G', 'X'}), "bad magic");
}

TEST(Gguf, Version1IsRejected) {
  Builder b;
  b.version = 1;
  EXPECT_REJECTED(b.build(), "model.gguf: unsupported GGUF version 1");
  b.version = 4;
  EXPECT_EQ(parse_error(b.build()), "model.gguf: unsupported GGUF version 4");
}

TEST(Gguf, BigEndianFileIsRejected) {
  Builder b;
  b.version = 0x03000000;  // version 3 written big-endian
  EXPECT_REJECTED(b.build(), "big-endian GGUF files are not supported");
}

TEST(Gguf, TruncatedAtEveryByteIsRejectedCleanly) {
  auto f = full_builder().build();
  for (size_t n = 0; n < f.size(); ++n) EXPECT_NE(parse_error(f, n), "") << "prefix of " << n << " bytes parsed";
  EXPECT_EQ(parse_error(f), "");
}

TEST(Gguf, TruncatedTensorInfoNamesTheTensor) {
  auto f = Builder().tensor("blk.0.attn_q.weight", {32, 4}, DType::F32).build();
  // Cut inside the tensor info, just after the name: the message names the info and the tensor.
  size_t cut = 4 + 4 + 8 + 8 + 8 + 19 + 2;
  EXPECT_EQ(parse_error(f, cut), "model.gguf: truncated file: tensor info 0 ('blk.0.attn_q.weight') ends at byte " +
                                     std::to_string(cut + 2) + " past end of file (" + std::to_string(cut) + " bytes)");
}

TEST(Gguf, HugeStringLengthIsRejected) {
  for (uint64_t len : {uint64_t(1) << 63, ~uint64_t(0), uint64_t(1) << 40}) {
    Bytes key;  // the key's own length
    key.put(len).raw(std::vector<uint8_t>(16, 'a'));
    EXPECT_REJECTED(Builder().kv_raw(key).build(), "string length " + std::to_string(len) + " is larger than the file");
    Bytes value;  // a string value
    value.str("general.name").type(T::STRING).put(len);
    EXPECT_REJECTED(Builder().kv_raw(value).build(), "metadata key 'general.name': string length");
    Bytes element;  // an element of a string array
    element.str("tokens").type(T::ARRAY).type(T::STRING).put(uint64_t(2)).str("ok").put(len);
    EXPECT_REJECTED(Builder().kv_raw(element).build(), "metadata key 'tokens' element 1: string length");
  }
  Builder b;
  b.tensor({"t", {4}, uint32_t(DType::F32), 16, {}});
  auto f = b.build();
  uint64_t huge = uint64_t(1) << 62;
  std::memcpy(&f[24], &huge, 8);  // the tensor name's length
  EXPECT_REJECTED(f, "tensor info 0: string length 4611686018427387904 is larger than the file");
}

TEST(Gguf, StringLongerThanTheRestOfTheFileIsRejected) {
  Bytes value;
  value.str("k").type(T::STRING).put(uint64_t(10)).raw({'x', 'y'});
  auto f = Builder().kv_raw(value).build();
  EXPECT_REJECTED(f, "truncated file: metadata key 'k' ends at byte");
}

TEST(Gguf, HugeArrayCountIsRejected) {
  for (T t : {T::UINT8, T::UINT32, T::FLOAT64, T::BOOL, T::STRING, T::ARRAY}) {
    // 2^62 + 1 elements of 4 bytes would wrap a 64-bit byte count around to 4.
    for (uint64_t count : {uint64_t(1) << 60, (uint64_t(1) << 62) + 1, ~uint64_t(0)}) {
      Bytes e;
      e.str("arr").type(T::ARRAY).type(t).put(count).put(uint64_t(0));
      EXPECT_REJECTED(Builder().kv_raw(e).build(), "metadata key 'arr': array of " + std::to_string(count) +
                                                      " elements does not fit in the");
      Bytes nested;
      nested.str("arr").type(T::ARRAY).type(T::ARRAY).put(uint64_t(1)).type(t).put(count);
      EXPECT_REJECTED(Builder().kv_raw(nested).build(), "metadata key 'arr' element 0: array of");
    }
  }
}

TEST(Gguf, HugeTensorAndKeyCountsAreRejected) {
  auto f = full_builder().build();
  for (size_t at : {8, 16}) {  // tensor_count, kv_count
    auto g = f;
    uint64_t huge = uint64_t(1) << 60;
    std::memcpy(&g[at], &huge, 8);
    EXPECT_REJECTED(g, "more than the");
  }
}

TEST(Gguf, Uint64ArrayElementBeyondInt64IsRejected) {
  auto f = Builder().kv_array("a", T::UINT64, std::vector<uint64_t>{1, ~uint64_t(0)}).build();
  EXPECT_REJECTED(f, "metadata key 'a' element 1: value 18446744073709551615 does not fit in int64");
}

TEST(Gguf, UnknownValueTypeIsRejected) {
  EXPECT_REJECTED(Builder().kv("k", T(13), uint32_t(0)).build(), "metadata key 'k' has unknown value type 13");
  Bytes arr;
  arr.str("k").type(T::ARRAY).type(T(77)).put(uint64_t(0));
  EXPECT_REJECTED(Builder().kv_raw(arr).build(), "metadata key 'k' has unknown value type 77");
}

TEST(Gguf, BoolOtherThanZeroOrOneIsRejected) {
  EXPECT_REJECTED(Builder().kv("k", T::BOOL, uint8_t(2)).build(), "metadata key 'k': bool value 2 is neither 0 nor 1");
}

TEST(Gguf, DeeplyNestedArrayIsRejected) {
  Bytes e;
  e.str("deep").type(T::ARRAY);
  for (int k = 0; k < 20; ++k) e.type(T::ARRAY).put(uint64_t(1));
  e.type(T::UINT8).put(uint64_t(0));
  EXPECT_REJECTED(Builder().kv_raw(e).build(), "arrays nested deeper than");
}

TEST(Gguf, DuplicateKeyIsRejected) {
  auto f = Builder().kv("a", T::UINT8, uint8_t(1)).kv_string("a", "again").build();
  EXPECT_EQ(parse_error(f), "model.gguf: duplicate metadata key 'a'");
}

TEST(Gguf, ControlBytesInNamesAreEscapedInMessages) {
  auto f = Builder().kv("a\nb'", T::UINT8, uint8_t(1)).kv("a\nb'", T::UINT8, uint8_t(1)).build();
  EXPECT_EQ(parse_error(f), "model.gguf: duplicate metadata key 'a\\x0ab\\x27'");
  auto g = Builder().kv(std::string(300, 'k'), T::UINT8, uint8_t(1)).kv(std::string(300, 'k'), T::UINT8, uint8_t(1)).build();
  EXPECT_EQ(parse_error(g), "model.gguf: duplicate metadata key '" + std::string(200, 'k') + "...'");
}

TEST(Gguf, DuplicateTensorNameIsRejected) {
  auto f = Builder().tensor("w", {2}, DType::F32).tensor("w", {2}, DType::F32).build();
  EXPECT_EQ(parse_error(f), "model.gguf: duplicate tensor 'w'");
}

TEST(Gguf, BadAlignmentIsRejected) {
  for (uint32_t a : {0u, 1u, 2u, 3u, 4u, 48u}) {
    auto f = Builder().kv("general.alignment", T::UINT32, a).tensor("t", {4}, DType::F32).build();
    EXPECT_REJECTED(f, "general.alignment is " + std::to_string(a) + ", not a power of two");
  }
  EXPECT_REJECTED(Builder().kv("general.alignment", T::INT32, int32_t(-32)).build(), "general.alignment is -32");
  EXPECT_REJECTED(Builder().kv("general.alignment", T::UINT64, uint64_t(1) << 40).build(), "not a power of two");
  EXPECT_REJECTED(Builder().kv_string("general.alignment", "32").build(),
                  "general.alignment has type string, expected uint32");
}

TEST(Gguf, MisalignedTensorOffsetIsRejected) {
  Builder b;
  b.tensor("a", {8}, DType::F32).tensor({"b", {1}, uint32_t(DType::F32), 4, 36});
  EXPECT_EQ(parse_error(b.build()), "model.gguf: tensor 'b' has data offset 36, not a multiple of the alignment 32");
}

TEST(Gguf, TensorOutsideFileIsRejected) {
  Builder b;  // says 16 floats (64 bytes) but holds 60 bytes
  b.tensor({"short", {16}, uint32_t(DType::F32), 60, {}});
  auto f = b.build();
  size_t size = f.size();
  EXPECT_EQ(parse_error(f), "model.gguf: tensor 'short' data [" + std::to_string(size - 60) + ", " +
                                std::to_string(size + 4) + ") lies outside the file (" + std::to_string(size) + " bytes)");
  // An offset near 2^64 must not wrap around to inside the file.
  Builder c;
  c.tensor({"far", {4}, uint32_t(DType::F32), 16, ~uint64_t(31)});
  EXPECT_REJECTED(c.build(), "tensor 'far' data [");
  EXPECT_REJECTED(c.build(), ") lies outside the file");
}

TEST(Gguf, TensorSizeOverflowIsRejected) {
  Builder b;  // 2^62 f32 elements fit in int64, but their 2^64 bytes do not fit in 64 bits
  b.tensor({"big", {uint64_t(1) << 31, uint64_t(1) << 31}, uint32_t(DType::F32), 0, {}});
  EXPECT_REJECTED(b.build(), "tensor 'big' is too large");
}

TEST(Gguf, TooManyDimensionsIsRejected) {
  Builder b;
  b.tensor({"t5", {1, 1, 1, 1, 1}, uint32_t(DType::F32), 4, {}});
  EXPECT_REJECTED(b.build(), "tensor info 0 ('t5') has 5 dimensions, more than 4");
  Bytes header;  // n_dims of 2^32 - 1 with nothing after it
  header.raw({'G', 'G', 'U', 'F'}).put(uint32_t(3)).put(uint64_t(1)).put(uint64_t(0));
  header.str("t").put(~uint32_t(0)).put(uint32_t(0)).put(uint64_t(0));
  EXPECT_REJECTED(header.b, "has 4294967295 dimensions");
}

TEST(Gguf, NegativeDimensionIsRejected) {
  Builder b;
  b.tensor({"neg", {4, ~uint64_t(0)}, uint32_t(DType::F32), 16, {}});
  EXPECT_REJECTED(b.build(), "tensor info 0 ('neg') has negative dimension -1");
}

TEST(Gguf, ElementCountOverflowIsRejected) {
  Builder b;
  b.tensor({"wide", {1ull << 32, 1ull << 32}, uint32_t(DType::F32), 0, {}});
  EXPECT_REJECTED(b.build(), "tensor info 0 ('wide'): element count overflows int64");
  Builder c;
  c.tensor({"rows", {0, 1ull << 32, 1ull << 32}, uint32_t(DType::F32), 0, {}});
  EXPECT_REJECTED(c.build(), "tensor info 0 ('rows'): row count overflows int64");
}

TEST(Gguf, RowNotMultipleOfBlockSizeIsRejected) {
  Builder b;
  b.tensor({"q", {33, 2}, uint32_t(DType::Q8_0), 68, {}});
  EXPECT_REJECTED(b.build(), "tensor 'q' has rows of 33 elements, not a multiple of the q8_0 block size 32");
}

TEST(Gguf, RandomByteFlipsNeverCrash) {
  auto good = full_builder().build();
  std::mt19937_64 rng(20240601);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto f = good;
    int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Mostly hit the header, metadata and tensor infos, where the structure is.
      size_t at = rng() % 4 ? rng() % 700 : rng() % f.size();
      f[std::min(at, f.size() - 1)] ^= uint8_t(1 + rng() % 255);
    }
    try {
      auto g = GgufFile::parse(f.data(), f.size(), "model.gguf");
      for (const GgufTensor& t : g->tensors())  // what parsed must point inside the buffer
        ASSERT_LE(t.data + t.nbytes, g->bytes() + g->size());
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

// ---- files on disk ----

TEST(Gguf, OpenMapsTheSameBytesAsParse) {
  auto bytes = full_builder().build();
  std::string path = testing::TempDir() + "/gguf_test_open.gguf";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  {
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->path(), path);
    ASSERT_EQ(f->size(), bytes.size());
    EXPECT_EQ(std::memcmp(f->bytes(), bytes.data(), bytes.size()), 0);
    EXPECT_EQ(f->get_string("general.architecture", ""), "llama");
    EXPECT_EQ(f->tensor("c").data[3], Builder::pattern(4, 3));
  }
  // A broken file on disk names the path.
  bytes[0] = 'X';
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened a file with a bad magic";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": not a GGUF file (bad magic)");
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc).flush();
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened an empty file";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": not a GGUF file (the file is empty)");
  }
  std::filesystem::remove(path);
}

TEST(Gguf, OpenMissingFileNamesThePath) {
  try {
    GgufFile::open("/nonexistent/dir/model.gguf");
    ADD_FAILURE() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_EQ(std::string(e.what()), "cannot open model file '/nonexistent/dir/model.gguf': No such file or directory");
  }
  try {
    GgufFile::open(testing::TempDir());
    ADD_FAILURE() << "opened a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(std::string(e.what()), "cannot open model file '" + testing::TempDir() + "': Is a directory");
  }
}

TEST(Gguf, RealModelParses) {
  const std::string path = KVSTASH_DEFAULT_MODEL;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not found: " << path;
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get("general.architecture").as_string(), "llama");
  EXPECT_EQ(f->get("llama.block_count").as_uint(), 30u);
  EXPECT_EQ(f->tensors().size(), 272u);
  const GgufTensor& emb = f->tensor("token_embd.weight");
  EXPECT_EQ(emb.type(), DType::Q8_0);
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(emb.nbytes, 576u / 32 * 34 * 49152);
  EXPECT_EQ(f->get("tokenizer.ggml.tokens").as_string_array().size(), 49152u);
  for (const GgufTensor& t : f->tensors()) {
    EXPECT_TRUE(dtype_info(t.type_id).supported) << t.name << " has type " << dtype_name(t.type_id);
    EXPECT_LE(t.data + t.nbytes, f->bytes() + f->size()) << t.name;
  }
}

}  // namespace
}  // namespace kvstash
