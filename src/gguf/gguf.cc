// GGUF reader (v2 and v3, little-endian). What is accepted and rejected: docs/format-gguf-notes.md.
// Every read is bounds-checked against the buffer, and every length the file states is checked
// against the bytes left before anything is allocated for it.
#include "kvstash/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "kvstash/error.h"
#include "util/quote.h"

namespace kvstash {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;         // arrays of arrays nested deeper are rejected
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;          // key length, value type, smallest value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // name length, n_dims, type, offset
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Decimal text of any unsigned value (128 bits so that offset + size sums print without wrapping).
std::string str(unsigned __int128 v) {
  std::string s;
  do s.insert(s.begin(), char('0' + int(v % 10))); while (v /= 10);
  return s;
}

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default:
      return false;
  }
}
bool is_float_type(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }
bool is_known_type(uint32_t t) { return t <= uint32_t(GgufType::FLOAT64); }

// Bytes an element of type t takes in the file: exact for scalars, the minimum for strings
// (length prefix) and arrays (element type + count).
uint64_t min_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: case GgufType::STRING:
      return 8;
    case GgufType::ARRAY: return 12;
  }
  return 1;
}

// A cursor over the buffer. Every read checks the bytes left; errors name the file and `ctx`
// (what is being read, set by the parser) and throw Error.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}
  std::string ctx = "header";
  int64_t elem = -1;  // array element being read, or -1

  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }
  std::string where() const { return elem < 0 ? ctx : ctx + " element " + std::to_string(elem); }
  [[noreturn]] void fail(const std::string& what, ErrorKind kind = ErrorKind::Corruption) const {
    throw Error(kind, name_ + ": " + what);
  }

  // n must be at most the file size (so pos_ + n cannot overflow).
  void need(uint64_t n) const {
    if (n > left())
      fail("truncated file: " + where() + " ends at byte " + str(pos_ + n) +
           " past end of file (" + str(n_) + " bytes)");
  }
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  void skip(uint64_t n) {
    need(n);
    pos_ += n;
  }
  uint64_t read_string_length() {
    uint64_t len = read<uint64_t>();
    if (len > n_) fail(where() + ": string length " + str(len) + " is larger than the file (" + str(n_) + " bytes)");
    need(len);
    return len;
  }
  std::string read_string() {
    uint64_t len = read_string_length();
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  // An array's element count, checked against the bytes left for elements of at least `size`.
  uint64_t read_count(uint64_t size) {
    uint64_t count = read<uint64_t>();
    if (count > left() / size)
      fail(where() + ": array of " + str(count) + " elements does not fit in the " + str(left()) +
           " bytes left in the file");
    return count;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& name_;
};

GgufType read_type(Reader& r) {
  uint32_t t = r.read<uint32_t>();
  if (!is_known_type(t)) r.fail(r.where() + " has unknown value type " + str(t));
  return GgufType(t);
}

// Reads one scalar number or bool into v's u/i/f/is_negative.
void read_number(Reader& r, GgufType t, GgufValue& v) {
  auto set_u = [&](uint64_t x) {
    v.u = x;
    v.i = x > uint64_t(kInt64Max) ? 0 : int64_t(x);
    v.f = double(x);
    v.is_negative = false;
  };
  auto set_i = [&](int64_t x) {
    v.i = x;
    v.is_negative = x < 0;
    v.u = x < 0 ? 0 : uint64_t(x);
    v.f = double(x);
  };
  switch (t) {
    case GgufType::UINT8: set_u(r.read<uint8_t>()); break;
    case GgufType::INT8: set_i(r.read<int8_t>()); break;
    case GgufType::UINT16: set_u(r.read<uint16_t>()); break;
    case GgufType::INT16: set_i(r.read<int16_t>()); break;
    case GgufType::UINT32: set_u(r.read<uint32_t>()); break;
    case GgufType::INT32: set_i(r.read<int32_t>()); break;
    case GgufType::UINT64: set_u(r.read<uint64_t>()); break;
    case GgufType::INT64: set_i(r.read<int64_t>()); break;
    case GgufType::FLOAT32: v.f = r.read<float>(); break;
    case GgufType::FLOAT64: v.f = r.read<double>(); break;
    case GgufType::BOOL: {
      uint8_t b = r.read<uint8_t>();
      if (b > 1) r.fail(r.where() + ": bool value " + str(b) + " is neither 0 nor 1");
      set_u(b);
      break;
    }
    case GgufType::STRING: case GgufType::ARRAY: break;  // not numbers; callers never pass them
  }
}

// Checks and skips an array (element type, count, elements) inside an array.
void skip_array(Reader& r, int depth) {
  if (depth > kMaxArrayDepth)
    r.fail(r.where() + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
  GgufType t = read_type(r);
  uint64_t count = r.read_count(min_size(t));
  if (t == GgufType::STRING) {
    for (uint64_t k = 0; k < count; ++k) r.skip(r.read_string_length());
  } else if (t == GgufType::ARRAY) {
    for (uint64_t k = 0; k < count; ++k) skip_array(r, depth + 1);
  } else if (t == GgufType::BOOL) {
    GgufValue tmp;
    for (uint64_t k = 0; k < count; ++k) read_number(r, t, tmp);
  } else {
    r.skip(count * min_size(t));  // fits: read_count checked it against the bytes left
  }
}

void read_array(Reader& r, GgufValue& v) {
  GgufType t = v.array_type = read_type(r);
  uint64_t count = v.u = r.read_count(min_size(t));
  if (t == GgufType::STRING) v.strings.reserve(count);
  else if (is_float_type(t)) v.floats.reserve(count);
  else if (t != GgufType::ARRAY) v.ints.reserve(count);
  GgufValue x;
  for (uint64_t k = 0; k < count; ++k) {
    r.elem = int64_t(k);
    if (t == GgufType::STRING) {
      v.strings.push_back(r.read_string());
    } else if (t == GgufType::ARRAY) {
      skip_array(r, 2);
    } else {
      read_number(r, t, x);
      if (is_float_type(t)) {
        v.floats.push_back(x.f);
      } else {
        if (!x.is_negative && x.u > uint64_t(kInt64Max))
          r.fail(r.where() + ": value " + str(x.u) + " does not fit in int64");
        v.ints.push_back(x.i);
      }
    }
  }
  r.elem = -1;
}

std::string value_type_desc(const GgufValue& v) {
  if (v.type != GgufType::ARRAY) return gguf_type_name(v.type);
  return std::string("array of ") + gguf_type_name(v.array_type);
}

[[noreturn]] void mismatch(const GgufValue& v, const char* expected) {
  throw Error(ErrorKind::Corruption, "metadata key " + quote(v.key) + " has type " + value_type_desc(v) + ", expected " + expected);
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                      "bool",  "string", "array", "uint64", "int64",  "float64"};
  return is_known_type(uint32_t(t)) ? names[uint32_t(t)] : "unknown";
}

// ---- GgufValue ----

bool GgufValue::is_integer() const { return is_int_type(type); }
bool GgufValue::is_number() const { return is_int_type(type) || is_float_type(type); }

uint64_t GgufValue::as_uint() const {
  if (!is_integer()) mismatch(*this, "an integer");
  if (is_negative)
    throw Error(ErrorKind::Corruption, "metadata key " + quote(key) + " has negative value " + std::to_string(i) +
                ", expected a non-negative integer");
  return u;
}

int64_t GgufValue::as_int() const {
  if (!is_integer()) mismatch(*this, "an integer");
  if (!is_negative && u > uint64_t(kInt64Max))
    throw Error(ErrorKind::Corruption, "metadata key " + quote(key) + " has value " + str(u) + ", which does not fit in int64");
  return i;
}

double GgufValue::as_float() const {
  if (!is_number()) mismatch(*this, "a number");
  return f;
}

bool GgufValue::as_bool() const {
  if (type != GgufType::BOOL) mismatch(*this, "a bool");
  return u != 0;
}

const std::string& GgufValue::as_string() const {
  if (type != GgufType::STRING) mismatch(*this, "a string");
  return s;
}

size_t GgufValue::array_size() const { return type == GgufType::ARRAY ? size_t(u) : 0; }

const std::vector<std::string>& GgufValue::as_string_array() const {
  if (type != GgufType::ARRAY || array_type != GgufType::STRING) mismatch(*this, "an array of strings");
  return strings;
}

std::vector<int64_t> GgufValue::as_int_array() const {
  if (type != GgufType::ARRAY || !(is_int_type(array_type) || array_type == GgufType::BOOL))
    mismatch(*this, "an array of integers");
  return ints;
}

std::vector<double> GgufValue::as_float_array() const {
  if (type != GgufType::ARRAY || !(is_int_type(array_type) || is_float_type(array_type)))
    mismatch(*this, "an array of numbers");
  if (is_float_type(array_type)) return floats;
  return std::vector<double>(ints.begin(), ints.end());
}

// ---- GgufTensor ----

// In the order the reader checked for overflow: rows left to right, then shape[0] * rows.
int64_t GgufTensor::elements() const { return (shape.empty() ? 1 : shape[0]) * rows(); }

int64_t GgufTensor::rows() const {
  int64_t n = 1;
  for (size_t k = 1; k < shape.size(); ++k) n *= shape[k];
  return n;
}

// ---- GgufFile ----

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto cannot = [&](const char* verb, int err) {
    return Error(err == ENOENT ? ErrorKind::NotFound : err == EISDIR ? ErrorKind::InvalidArgument : ErrorKind::IOError,
                 "cannot " + std::string(verb) + " model file '" + path + "': " + std::strerror(err));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw cannot("open", errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw cannot("open", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) throw cannot("open", EISDIR);
    throw Error(ErrorKind::InvalidArgument, "cannot open model file '" + path + "': not a regular file");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {  // an empty file cannot be mapped; parse_all() rejects it
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw cannot("map", err);
    }
    f->map_ = p;
    f->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  f->parse_all();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  if (size > 0) f->owned_.assign(data, data + size);
  f->base_ = f->owned_.data();
  f->size_ = size;
  f->parse_all();
  return f;
}

GgufFile::~GgufFile() {
  if (map_) munmap(map_, size_);
}

void GgufFile::parse_all() {
  Reader r(base_, size_, path_);
  if (size_ == 0) r.fail("not a GGUF file (the file is empty)");
  if (std::memcmp(base_, "GGUF", std::min<size_t>(size_, 4)) != 0) r.fail("not a GGUF file (bad magic)");
  r.skip(4);
  version_ = r.read<uint32_t>();
  if (version_ != 2 && version_ != 3) {
    uint32_t swapped = __builtin_bswap32(version_);
    r.fail("unsupported GGUF version " + str(version_) +
           (version_ == 1                  ? " (kvstash reads versions 2 and 3)"
            : swapped >= 1 && swapped <= 3 ? " (big-endian GGUF files are not supported)"
                                           : ""),
           ErrorKind::NotSupported);
  }
  uint64_t n_tensors = r.read<uint64_t>();
  uint64_t n_kv = r.read<uint64_t>();
  if (n_kv > r.left() / kMinKvBytes || n_tensors > (r.left() - n_kv * kMinKvBytes) / kMinTensorInfoBytes)
    r.fail("header claims " + str(n_tensors) + " tensors and " + str(n_kv) +
           " metadata entries, more than the " + str(r.left()) + " bytes left in the file can hold");

  metadata_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    r.ctx = "metadata entry " + str(k);
    GgufValue v;
    v.key = r.read_string();
    r.ctx = "metadata key " + quote(v.key);
    if (key_index_.count(v.key)) r.fail("duplicate metadata key " + quote(v.key));
    v.type = read_type(r);
    if (v.type == GgufType::STRING) {
      v.s = r.read_string();
    } else if (v.type == GgufType::ARRAY) {
      read_array(r, v);
    } else {
      read_number(r, v.type, v);
    }
    key_index_.emplace(v.key, metadata_.size());
    metadata_.push_back(std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer()) r.fail("general.alignment has type " + value_type_desc(*a) + ", expected uint32");
    // The spec asks for a multiple of 8; below that, f32 and q8_K fields could sit misaligned.
    if (a->is_negative || a->u < 8 || a->u > std::numeric_limits<uint32_t>::max() || !std::has_single_bit(a->u))
      r.fail("general.alignment is " + (a->is_negative ? std::to_string(a->i) : str(a->u)) +
             ", not a power of two between 8 and 2^31");
    alignment_ = a->u;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    r.ctx = "tensor info " + str(k);
    GgufTensor t;
    t.name = r.read_string();
    r.ctx += " (" + quote(t.name) + ")";
    if (tensor_index_.count(t.name)) r.fail("duplicate tensor " + quote(t.name));
    uint32_t n_dims = r.read<uint32_t>();
    if (n_dims > kMaxDims)
      r.fail(r.ctx + " has " + str(n_dims) + " dimensions, more than " + str(kMaxDims));
    int64_t rows = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = r.read<uint64_t>();
      if (dim > uint64_t(kInt64Max)) r.fail(r.ctx + " has negative dimension " + std::to_string(int64_t(dim)));
      if (d > 0 && __builtin_mul_overflow(rows, int64_t(dim), &rows))
        r.fail(r.ctx + ": row count overflows int64");
      t.shape.push_back(int64_t(dim));
    }
    int64_t elements;
    if (__builtin_mul_overflow(t.shape.empty() ? 1 : t.shape[0], rows, &elements))
      r.fail(r.ctx + ": element count overflows int64");
    t.type_id = r.read<uint32_t>();
    t.offset = r.read<uint64_t>();
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  data_offset_ = (uint64_t(r.pos()) + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensor& t : tensors_) {
    std::string name = "tensor " + quote(t.name);
    if (t.offset % alignment_ != 0)
      r.fail(name + " has data offset " + str(t.offset) + ", not a multiple of the alignment " + str(alignment_));
    const DTypeInfo& info = dtype_info(t.type_id);
    if (info.type_size > 0) {  // unknown types keep nbytes 0; the model loader rejects them
      int64_t ne0 = t.shape.empty() ? 1 : t.shape[0];
      if (ne0 % info.block_size != 0)
        r.fail(name + " has rows of " + std::to_string(ne0) + " elements, not a multiple of the " +
               info.name + " block size " + std::to_string(info.block_size));
      uint64_t row;
      if (__builtin_mul_overflow(uint64_t(ne0 / info.block_size), uint64_t(info.type_size), &row) ||
          __builtin_mul_overflow(row, uint64_t(t.rows()), &t.nbytes))
        r.fail(name + " is too large: its byte size overflows 64 bits");
    }
    unsigned __int128 begin = (unsigned __int128)data_offset_ + t.offset, end = begin + t.nbytes;
    if (end > size_)
      r.fail(name + " data [" + str(begin) + ", " + str(end) + ") lies outside the file (" + str(size_) + " bytes)");
    t.data = base_ + size_t(begin);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second];
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(ErrorKind::NotFound, path_ + ": missing metadata key " + quote(key));
  return *v;
}

uint64_t GgufFile::get_uint(const std::string& key, uint64_t def) const {
  const GgufValue* v = find(key);
  return v ? v->as_uint() : def;
}

double GgufFile::get_float(const std::string& key, double def) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : def;
}

bool GgufFile::get_bool(const std::string& key, bool def) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool() : def;
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  const GgufValue* v = find(key);
  return v ? v->as_string() : def;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) throw Error(ErrorKind::NotFound, path_ + ": missing tensor " + quote(name));
  return *t;
}

}  // namespace kvstash
