#include "kvstash/dtype.h"

#include "kvstash/error.h"

namespace kvstash {

namespace {
constexpr DTypeInfo kUnknown{"unknown", 1, 0, false};

const DTypeInfo* lookup(uint32_t id) {
  static const DTypeInfo f32{"f32", 1, 4, true}, f16{"f16", 1, 2, true}, bf16{"bf16", 1, 2, true},
      q4_0{"q4_0", 32, 18, true}, q4_1{"q4_1", 32, 20, true}, q5_0{"q5_0", 32, 22, true},
      q5_1{"q5_1", 32, 24, true}, q8_0{"q8_0", 32, 34, true}, q8_1{"q8_1", 32, 36, false},
      q2_K{"q2_K", 256, 84, false}, q3_K{"q3_K", 256, 110, false}, q4_K{"q4_K", 256, 144, true},
      q5_K{"q5_K", 256, 176, true}, q6_K{"q6_K", 256, 210, true}, q8_K{"q8_K", 256, 292, false};
  switch (static_cast<DType>(id)) {
    case DType::F32: return &f32;
    case DType::F16: return &f16;
    case DType::BF16: return &bf16;
    case DType::Q4_0: return &q4_0;
    case DType::Q4_1: return &q4_1;
    case DType::Q5_0: return &q5_0;
    case DType::Q5_1: return &q5_1;
    case DType::Q8_0: return &q8_0;
    case DType::Q8_1: return &q8_1;
    case DType::Q2_K: return &q2_K;
    case DType::Q3_K: return &q3_K;
    case DType::Q4_K: return &q4_K;
    case DType::Q5_K: return &q5_K;
    case DType::Q6_K: return &q6_K;
    case DType::Q8_K: return &q8_K;
  }
  return nullptr;
}
}  // namespace

const DTypeInfo& dtype_info(uint32_t id) {
  const DTypeInfo* info = lookup(id);
  return info ? *info : kUnknown;
}

std::string dtype_name(uint32_t id) {
  const DTypeInfo* info = lookup(id);
  return info ? info->name : "type " + std::to_string(id);
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (info.type_size == 0) throw Error(ErrorKind::NotSupported, "unknown tensor type " + dtype_name(uint32_t(t)));
  if (n < 0 || n % info.block_size != 0)
    throw Error(ErrorKind::InvalidArgument, "row of " + std::to_string(n) + " elements is not a multiple of the " +
                info.name + " block size " + std::to_string(info.block_size));
  return size_t(n / info.block_size) * size_t(info.type_size);
}

}  // namespace kvstash
