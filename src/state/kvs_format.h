// Constants and the fixed tensor layout of the .kvs state file. The format is specified in
// docs/format-kvs.md: change both together, and bump kKvsVersion for any change readers would
// misread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/state.h"
#include "util/little_endian.h"

namespace kvstash::kvs {

inline constexpr char kFormatName[] = "kvstash.state";
inline constexpr int kVersion = 3;  // written; 2 (no budgeted states) is read too
inline constexpr int kOldestVersion = 2;  // 1: fingerprint v1, no n_ctx (refused)
inline constexpr uint64_t kAlign = 64;                     // data and every tensor start here
inline constexpr uint64_t kMaxHeaderBytes = 64ull << 20;   // a longer header is not ours
inline constexpr char kMetadataChecksumKey[] = "checksum.metadata";
inline constexpr char kChecksumPrefix[] = "checksum.";
inline constexpr char kPadPrefix[] = "__pad.";

// One tensor of the byte buffer, at its offsets from the start of the buffer.
struct TensorSlot {
  std::string name;
  std::string dtype;           // safetensors dtype: "F16", "I32", "F32", "I64", "U8" (padding)
  std::vector<uint64_t> shape;
  uint64_t begin = 0, end = 0;
  bool padding() const { return name.rfind(kPadPrefix, 0) == 0; }
};

// Every tensor of a state with `tokens` entries, in file order: k.0 v.0 k.1 v.1 ... logits tokens
// positions, each followed by "__pad.<name>" (U8, zero bytes) when the next tensor would not
// start at a multiple of kAlign. logits_len is n_vocab, or 0 for an empty state. A budgeted state
// (book_slots set: its slots per lane) has K/V of [n_head_kv, book_slots, head_dim] and, after
// positions, book.entry (I32 [n_layer, n_head_kv, slots]), book.score (F32, same shape) and
// book.merged (I64 [n_layer, n_head_kv]).
std::vector<TensorSlot> tensor_layout(const StateArch& arch, uint64_t tokens, uint64_t logits_len,
                                      std::optional<uint64_t> book_slots = std::nullopt);

// Metadata keys of a budgeted state (version 3); the presence of kBudgetPolicy marks one.
inline constexpr char kBudgetPolicy[] = "budget.policy";
inline constexpr char kBudgetEntries[] = "budget.entries";
inline constexpr char kBudgetInterval[] = "budget.interval";
inline constexpr char kBudgetSinks[] = "budget.sinks";
inline constexpr char kBudgetRecent[] = "budget.recent";
inline constexpr char kBudgetNormalize[] = "budget.normalize";
inline constexpr char kBudgetSummary[] = "budget.summary";
inline constexpr char kBudgetPositions[] = "budget.positions";
inline constexpr char kBudgetSnapkvWindow[] = "budget.snapkv_window";
inline constexpr char kBudgetSnapkvPool[] = "budget.snapkv_pool";
inline constexpr char kBookSlots[] = "book.slots";
inline constexpr char kBookPinned[] = "book.pinned";
inline constexpr char kBookHasSummary[] = "book.has_summary";
inline constexpr char kBookSelected[] = "book.selected";

// key_order values. Hugging Face's rotate-half order needs an even head_dim.
inline constexpr char kKeyOrderGguf[] = "gguf";
inline constexpr char kKeyOrderHf[] = "hf";
// Rows of head_dim keys between GGUF pair order and Hugging Face's (docs/kv-layout.md):
// hf[i] = gguf[2i], hf[i + d/2] = gguf[2i + 1]. src and dst must not overlap.
void keys_to_hf(const uint16_t* gguf, uint16_t* hf, size_t rows, size_t head_dim);
void keys_from_hf(const uint16_t* hf, uint16_t* gguf, size_t rows, size_t head_dim);

// xxh3-64 as 16 lowercase hex digits.
std::string hash_hex64(const void* data, size_t size);
// The checksum of the metadata entries (all but kMetadataChecksumKey), sorted by key:
// u32le len(key), key, u32le len(value), value for each; xxh3-64 hex.
std::string metadata_checksum(const std::map<std::string, std::string>& metadata);

// Little-endian encoding (util/little_endian.h).
using kvstash::get_u32le;
using kvstash::get_u64le;
using kvstash::put_u32le;
using kvstash::put_u64le;

// Floats in metadata: the shortest fixed-notation decimal that reads back to the same float
// ("100000", "0.25").
std::string float_text(float f);
// Doubles likewise (the shortest fixed-notation decimal that reads back to the same double).
std::string double_text(double d);

}  // namespace kvstash::kvs
