// Shared machinery of the vocabulary-based tokenizers: token attributes, special-token
// partitioning (llama.cpp's tokenizer_st_partition), BOS/EOS, end-of-generation set, decoding.
#pragma once
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace kvstash::tok {

// Token attributes (llama.cpp's llama_token_attr bits that tokenization depends on).
enum Attr : uint32_t {
  kUndefined = 0, kUnknown = 1u << 0, kUnused = 1u << 1, kNormal = 1u << 2,
  kControl = 1u << 3, kUserDefined = 1u << 4, kByte = 1u << 5,
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class VocabTokenizer : public Tokenizer {
 public:
  // Defaults apply when the metadata key is absent (they differ per vocabulary type in llama.cpp).
  struct Defaults {
    bool add_bos = false;
    Token bos = -1, eos = -1, unk = -1;
  };
  VocabTokenizer(const VocabData& vocab, const Defaults& defaults);

  std::vector<Token> encode(std::string_view text, bool add_special,
                            bool parse_special) const override;
  std::string token_bytes(Token t, bool render_special = false) const override;
  int32_t n_vocab() const override { return static_cast<int32_t>(texts_.size()); }
  const std::string& token_text(Token t) const override;
  Token bos() const override { return bos_; }
  Token eos() const override { return eos_; }
  bool add_bos() const override { return add_bos_; }
  bool is_end_of_generation(Token t) const override { return eog_.count(t) > 0; }

 protected:
  // A piece of the input: a special token (token >= 0) or the raw text span [offset, +length).
  struct Fragment {
    Token token;
    size_t offset, length;
  };
  virtual void tokenize_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                                  std::vector<Token>& out) const = 0;
  // Bytes of a normal token, from its vocabulary text.
  virtual std::string normal_token_bytes(const std::string& text) const = 0;

  Token find(std::string_view text) const;  // -1 if not in the vocabulary
  uint32_t attr(Token t) const { return attrs_[t]; }
  float score(Token t) const { return scores_[t]; }
  Token unk() const { return unk_; }

 private:
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
  void check_id(Token t) const;

  std::vector<std::string> texts_;
  std::vector<uint32_t> attrs_;
  std::vector<float> scores_;
  StringMap ids_;
  std::vector<Token> specials_;  // control/user-defined/unknown tokens, longest text first
  std::set<Token> eog_;
  Token bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const VocabData& vocab);
std::unique_ptr<Tokenizer> make_spm_tokenizer(const VocabData& vocab);

}  // namespace kvstash::tok
