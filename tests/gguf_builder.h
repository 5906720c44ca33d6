// Test helper: GGUF files built in memory, byte by byte, so tests can write valid files and
// break them in precise ways.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/dtype.h"
#include "kvstash/gguf.h"

namespace kvstash::testing_gguf {

using T = GgufType;

// Little-endian byte sink.
struct Bytes {
  std::vector<uint8_t> b;
  template <class V>
  Bytes& put(V v) {
    uint8_t tmp[sizeof v];
    std::memcpy(tmp, &v, sizeof v);
    b.insert(b.end(), tmp, tmp + sizeof v);
    return *this;
  }
  Bytes& type(T t) { return put(uint32_t(t)); }
  Bytes& str(const std::string& s) {
    put(uint64_t(s.size()));
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
};

// Builds a GGUF file: header, metadata, tensor infos, padding, tensor data (each tensor at the
// next aligned offset; the file ends right after the last tensor's data).
class Builder {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // layout only; add general.alignment with kv() to change the file's
  bool zero_data = false;   // tensor bytes all zero (valid weights) instead of a pattern

  template <class V>
  Builder& kv(const std::string& key, T t, V v) {
    kv_.str(key).type(t).put(v);
    return count_kv();
  }
  Builder& kv_string(const std::string& key, const std::string& s) {
    kv_.str(key).type(T::STRING).str(s);
    return count_kv();
  }
  template <class V>
  Builder& kv_array(const std::string& key, T t, const std::vector<V>& vs) {
    kv_.str(key).type(T::ARRAY).type(t).put(uint64_t(vs.size()));
    for (V v : vs) kv_.put(v);
    return count_kv();
  }
  Builder& kv_strings(const std::string& key, const std::vector<std::string>& vs) {
    kv_.str(key).type(T::ARRAY).type(T::STRING).put(uint64_t(vs.size()));
    for (const std::string& v : vs) kv_.str(v);
    return count_kv();
  }
  // A metadata entry given as raw bytes (key, type, value).
  Builder& kv_raw(const Bytes& entry) {
    kv_.raw(entry.b);
    return count_kv();
  }

  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    uint64_t data_bytes;              // bytes of data written
    std::optional<uint64_t> offset;  // stated offset; default: where the data is written
  };
  Builder& tensor(const std::string& name, std::vector<uint64_t> dims, DType type) {
    const DTypeInfo& info = dtype_info(type);
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    tensors_.push_back({name, dims, uint32_t(type), n / info.block_size * info.type_size, {}});
    return *this;
  }
  Builder& tensor(Tensor t) {
    tensors_.push_back(std::move(t));
    return *this;
  }

  std::vector<uint8_t> build() const {
    Bytes f;
    f.b = {'G', 'G', 'U', 'F'};
    f.put(version).put(uint64_t(tensors_.size())).put(n_kv_).raw(kv_.b);
    uint64_t at = 0;
    std::vector<uint64_t> offsets;
    for (const Tensor& t : tensors_) {
      at = align(at);
      offsets.push_back(at);
      at += t.data_bytes;
      f.str(t.name).put(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) f.put(d);
      f.put(t.type).put(t.offset.value_or(offsets.back()));
    }
    uint64_t data_start = align(f.b.size());
    for (size_t k = 0; k < tensors_.size(); ++k) {
      f.b.resize(data_start + offsets[k], 0);
      for (uint64_t j = 0; j < tensors_[k].data_bytes; ++j) f.b.push_back(zero_data ? 0 : pattern(k, j));
    }
    return f.b;
  }
  static uint8_t pattern(size_t tensor, uint64_t j) { return uint8_t(tensor * 51 + j * 7 + 1); }

 private:
  uint64_t align(uint64_t x) const { return (x + alignment - 1) / alignment * alignment; }
  Builder& count_kv() {
    ++n_kv_;
    return *this;
  }
  Bytes kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace kvstash::testing_gguf
