// Tensor element types (ggml numbering, as stored in GGUF) and their block layouts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvstash {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

struct DTypeInfo {
  const char* name;      // "q4_K", "f16", ...; "unknown" for ids kvstash does not know
  int64_t block_size;    // elements per block (1 for float types)
  int64_t type_size;     // bytes per block
  bool supported;        // kvstash can dequantize it and take dot products with it
};

// Info for any id read from a file; never throws (unknown ids get supported=false).
const DTypeInfo& dtype_info(uint32_t id);
inline const DTypeInfo& dtype_info(DType t) { return dtype_info(static_cast<uint32_t>(t)); }
std::string dtype_name(uint32_t id);  // "q4_K", or "type 42" for unknown ids

// Bytes of a row of n elements; throws Error if n is not a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace kvstash
