// One section of a chunk: the K (or V) of one layer, every KV head, `count` slots. A chunk is
// 2 * n_layer sections coded independently (so encode and decode parallelise over them); each
// head's slots are contiguous rows of head_dim values.
#pragma once
#include <cstdint>
#include <vector>

#include "codec/codec_bytes.h"
#include "codec/level_params.h"

namespace kvstash::codec {

struct SectionIn {
  std::vector<const uint16_t*> head;  // n_head_kv pointers to count * head_dim values
  int64_t count = 0;
  int head_dim = 0;
  int layer = 0, n_layer = 0;
  bool is_v = false;
};
struct SectionOut {
  std::vector<uint16_t*> head;
  int64_t count = 0;
  int head_dim = 0;
  int layer = 0, n_layer = 0;
  bool is_v = false;
};

void encode_lossy(const LossyParams& p, const SectionIn& in, std::vector<uint8_t>& out);
void decode_lossy(const LossyParams& p, ByteReader& r, const SectionOut& out);

void encode_cachegen(const CacheGenParams& p, const SectionIn& in, std::vector<uint8_t>& out);
void decode_cachegen(const CacheGenParams& p, ByteReader& r, const SectionOut& out);

}  // namespace kvstash::codec
