// GGUF reader: the file is mmapped read-only; metadata is parsed into values, tensors point into
// the mapping. Layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (v2 and v3).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvstash/dtype.h"

namespace kvstash {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// "uint8", "string", "array", ...; "unknown" for ids outside the enum.
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are widened (integers to int64/uint64, floats to double);
// arrays keep their element type. Accessors throw Error naming the key on a type mismatch.
class GgufValue {
 public:
  GgufType type = GgufType::UINT8;
  GgufType array_type = GgufType::UINT8;  // element type when type == ARRAY
  std::string key;                         // for error messages

  bool is_integer() const;     // any of the integer types
  bool is_number() const;      // integer or float
  uint64_t as_uint() const;    // integer types; throws if negative
  int64_t as_int() const;      // integer types; throws if it overflows int64
  double as_float() const;     // any number
  bool as_bool() const;
  const std::string& as_string() const;

  size_t array_size() const;  // element count of an array (0 for scalars)
  const std::vector<std::string>& as_string_array() const;
  std::vector<int64_t> as_int_array() const;  // integer (or bool) arrays
  std::vector<double> as_float_array() const;  // numeric arrays

  // Storage (filled by the reader). Integers set u (0 if negative), i (0 if above int64) and f;
  // floats set f; bools set u and i to 0 or 1. Arrays set u to the element count; arrays of
  // arrays are checked and skipped (only the count is kept; their contents are not stored).
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool is_negative = false;
  std::string s;
  std::vector<std::string> strings;  // string arrays
  std::vector<int64_t> ints;         // integer/bool arrays (uint64 beyond int64 range is rejected)
  std::vector<double> floats;        // float arrays
};

struct GgufTensor {
  std::string name;
  uint32_t type_id = 0;          // raw id from the file (may be unsupported)
  DType type() const { return static_cast<DType>(type_id); }
  std::vector<int64_t> shape;    // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;           // from the start of the tensor data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr; // into the mapping
  int64_t elements() const;
  int64_t rows() const;          // product of shape[1..]
};

class GgufFile {
 public:
  // Maps and parses the file; throws Error("<path>: <what is wrong>") on any defect.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses a buffer already in memory (the bytes are copied); for tests and fuzzing.
  static std::unique_ptr<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::vector<GgufValue>& metadata() const { return metadata_; }  // file order
  const GgufValue* find(const std::string& key) const;                  // nullptr if absent
  const GgufValue& get(const std::string& key) const;  // throws "missing metadata key 'K'"
  // Typed lookups with a default for absent keys (type mismatches still throw).
  uint64_t get_uint(const std::string& key, uint64_t def) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;  // nullptr if absent
  const GgufTensor& tensor(const std::string& name) const;       // throws "missing tensor 'N'"

  const uint8_t* bytes() const { return base_; }
  size_t size() const { return size_; }
  uint64_t alignment() const { return alignment_; }      // general.alignment, default 32
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section

 private:
  GgufFile() = default;
  void parse_all();
  std::string path_;
  uint32_t version_ = 0;
  std::vector<GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;            // mmap'd region (nullptr for parse())
  std::vector<uint8_t> owned_;     // buffer for parse()
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::unordered_map<std::string, size_t> key_index_, tensor_index_;  // name -> index
};

}  // namespace kvstash
