// Regex pre-tokenization for byte-level BPE, as llama.cpp's unicode_regex_split: a list of
// regexes is applied in turn, each one splitting every piece the previous ones produced into its
// matches and the unmatched spans between them. Patterns are PCRE2 (UTF + UCP).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvstash::tok {

class PreTokenizer {
 public:
  // Regex list for a tokenizer.ggml.pre name; nullptr if the name is not supported.
  // ignore_merges/add_bos receive llama.cpp's defaults for that pre-tokenizer.
  static std::unique_ptr<PreTokenizer> for_name(const std::string& pre, bool* ignore_merges,
                                                bool* add_bos_default);
  explicit PreTokenizer(const std::vector<std::string>& patterns);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Words of `text`, each already mapped through the GPT-2 byte-to-character table. Malformed
  // UTF-8 is replaced by U+FFFD first, as llama.cpp does.
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace kvstash::tok
