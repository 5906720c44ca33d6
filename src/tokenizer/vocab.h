// The vocabulary metadata a tokenizer is built from, as plain data. Tokenizer::from_gguf reads it
// from tokenizer.ggml.* keys; tests build it in memory.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/tokenizer.h"

namespace kvstash {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct VocabData {
  std::string model = "gpt2";            // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;                       // tokenizer.ggml.pre ("" = llama.cpp's default)
  std::vector<std::string> tokens;       // tokenizer.ggml.tokens
  std::vector<float> scores;             // tokenizer.ggml.scores (empty: all 0)
  std::vector<int32_t> token_types;      // tokenizer.ggml.token_type (empty: all normal)
  std::vector<std::string> merges;       // tokenizer.ggml.merges, "left right", by rank
  std::optional<int64_t> bos, eos, eot, eom, unk;  // tokenizer.ggml.*_token_id
  std::optional<bool> add_bos, add_eos;  // tokenizer.ggml.add_bos_token / add_eos_token
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix
};

// Reads tokenizer.ggml.* (throws Error naming what is missing or malformed).
VocabData read_vocab(const GgufFile& file);

// Validates `vocab` and builds the tokenizer its model names (throws Error on inconsistencies).
std::unique_ptr<Tokenizer> make_tokenizer(const VocabData& vocab);

}  // namespace kvstash
