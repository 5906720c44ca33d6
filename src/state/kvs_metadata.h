// String metadata shared by the state files (.kvs, and .kvz which reuses its keys): the typed,
// checked reading of values, and the budgeted state's keys both ways.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "kvstash/error.h"
#include "kvstash/kv_budget.h"
#include "kvstash/state.h"
#include "util/quote.h"

namespace kvstash::kvs {

// Values of `meta`, each refused as "invalid metadata <key> <value>" (or "missing metadata key")
// through `fail`, which must throw (the reader's "<path>: <what>" Error of that kind).
class MetadataValues {
 public:
  using Fail = std::function<void(const std::string&, ErrorKind)>;
  MetadataValues(const std::map<std::string, std::string>& meta, Fail fail) : meta_(meta), fail_(std::move(fail)) {}
  const std::string& string_value(const std::string& key) const;
  int64_t int_value(const std::string& key, int64_t max) const;  // decimal, unsigned, <= max
  int64_t signed_value(const std::string& key, int64_t min, int64_t max) const;
  bool bool_value(const std::string& key) const;   // "true" or "false"
  float float_value(const std::string& key) const;  // finite and > 0
  template <class E, size_t N>
  E enum_value(const std::string& key, const E (&choices)[N]) const {
    const std::string& s = string_value(key);
    std::string all;
    for (E e : choices) {
      if (s == to_string(e)) return e;
      all += (all.empty() ? "" : ", ") + to_string(e);
    }
    fail("invalid metadata " + key + " " + quote(s, 64) + " (expected one of " + all + ")");
  }
  // The KvBudget of a budgeted state (docs/format-kvs.md, "Budgeted states"); validate() and the
  // book's checks follow in check_state.
  KvBudget budget() const;

  // The keys every state file has (architecture, n_tokens, n_ctx, cache_dtype, key_order,
  // model_fingerprint: NotSupported for another dtype or key order) and, when budgeted, the budget
  // and book keys, into s (its book emplaced). Returns n_tokens and the slots per lane. key_order
  // "hf" is accepted only where the caller takes it (key_order set; a .kvz reads "gguf" only).
  struct Sizes {
    int64_t n_tokens = 0;
    uint64_t slots = 0;
  };
  Sizes read_state(State& s, bool budgeted, KeyOrder* key_order = nullptr) const;

 private:
  [[noreturn]] void fail(const std::string& what, ErrorKind kind = ErrorKind::Corruption) const;
  const std::map<std::string, std::string>& meta_;
  Fail fail_;
};

// The keys read_state reads (format and format_version are the file's own to add).
std::map<std::string, std::string> state_metadata(const State& s, KeyOrder key_order = KeyOrder::Gguf);

}  // namespace kvstash::kvs
