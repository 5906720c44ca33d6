// Vocabulary loading and validation, special-token partitioning, decoding and TextStream.
#include <algorithm>
#include <cstdio>

#include "kvstash/error.h"
#include "kvstash/gguf.h"
#include "util/quote.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace kvstash {

using tok::VocabTokenizer;

namespace {

std::string id_key(const char* name) { return std::string("tokenizer.ggml.") + name; }

// Token texts llama.cpp treats as end of generation (and therefore as control tokens).
bool is_eog_text(const std::string& s) {
  static const char* const kTexts[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
      "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
  };
  return std::find(std::begin(kTexts), std::end(kTexts), s) != std::end(kTexts);
}

uint32_t attr_of_type(int32_t type) {
  switch (static_cast<TokenType>(type)) {
    case TokenType::Normal: return tok::kNormal;
    case TokenType::Unknown: return tok::kUnknown;
    case TokenType::Control: return tok::kControl;
    case TokenType::UserDefined: return tok::kUserDefined;
    case TokenType::Unused: return tok::kUnused;
    case TokenType::Byte: return tok::kByte;
    default: return tok::kUndefined;
  }
}

}  // namespace

namespace tok {

VocabTokenizer::VocabTokenizer(const VocabData& v, const Defaults& defaults) {
  const size_t n = v.tokens.size();
  if (n == 0) throw Error(ErrorKind::Corruption, "tokenizer.ggml.tokens is empty");
  if (n > static_cast<size_t>(INT32_MAX)) throw Error(ErrorKind::Corruption, "tokenizer.ggml.tokens is too long");
  if (!v.scores.empty() && v.scores.size() != n) {
    throw Error(ErrorKind::Corruption, "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) +
                " entries but there are " + std::to_string(n) + " tokens");
  }
  if (!v.token_types.empty() && v.token_types.size() != n) {
    throw Error(ErrorKind::Corruption, "tokenizer.ggml.token_type has " + std::to_string(v.token_types.size()) +
                " entries but there are " + std::to_string(n) + " tokens");
  }
  texts_ = v.tokens;
  scores_ = v.scores.empty() ? std::vector<float>(n, 0.0f) : v.scores;
  attrs_.resize(n);
  ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (texts_[i].empty()) texts_[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    const auto [it, fresh] = ids_.emplace(texts_[i], static_cast<Token>(i));
    if (!fresh) {
      throw Error(ErrorKind::Corruption, "duplicate token " + quote(texts_[i]) + " in tokenizer.ggml.tokens (ids " +
                  std::to_string(it->second) + " and " + std::to_string(i) + ")");
    }
    attrs_[i] = v.token_types.empty() ? kNormal : attr_of_type(v.token_types[i]);
  }

  // Special ids: metadata wins; an absent key takes the per-type default if it is in range.
  const auto pick = [&](const std::optional<int64_t>& given, Token def, const char* key) {
    if (given) {
      if (*given < 0 || *given >= static_cast<int64_t>(n)) {
        throw Error(ErrorKind::Corruption, id_key(key) + " = " + std::to_string(*given) +
                    " is out of range (vocabulary of " + std::to_string(n) + " tokens)");
      }
      return static_cast<Token>(*given);
    }
    return def >= 0 && def < static_cast<Token>(n) ? def : Token(-1);
  };
  bos_ = pick(v.bos, defaults.bos, "bos_token_id");
  eos_ = pick(v.eos, defaults.eos, "eos_token_id");
  unk_ = pick(v.unk, defaults.unk, "unknown_token_id");
  const Token eot = pick(v.eot, -1, "eot_token_id");
  const Token eom = pick(v.eom, -1, "eom_token_id");
  add_bos_ = v.add_bos.value_or(defaults.add_bos);
  add_eos_ = v.add_eos.value_or(false);
  if (add_bos_ && bos_ < 0) {
    throw Error(ErrorKind::Corruption, "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
  }
  if (add_eos_ && eos_ < 0) {
    throw Error(ErrorKind::Corruption, "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");
  }

  // End of generation, found by text as llama.cpp does; such tokens become control tokens.
  for (Token id : {eos_, eot, eom}) {
    if (id >= 0) eog_.insert(id);
  }
  for (size_t i = 0; i < n; ++i) {
    if (is_eog_text(texts_[i])) {
      eog_.insert(static_cast<Token>(i));
      attrs_[i] |= kControl;
    }
  }

  for (size_t i = 0; i < n; ++i) {
    if (attrs_[i] & (kControl | kUserDefined | kUnknown)) specials_.push_back(static_cast<Token>(i));
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](Token a, Token b) {
    return texts_[a].size() > texts_[b].size();
  });
}

Token VocabTokenizer::find(std::string_view text) const {
  const auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

void VocabTokenizer::check_id(Token t) const {
  if (t < 0 || t >= n_vocab()) {
    throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(t) + " is out of range (vocabulary of " +
                std::to_string(n_vocab()) + " tokens)");
  }
}

const std::string& VocabTokenizer::token_text(Token t) const {
  check_id(t);
  return texts_[t];
}

// Splits out special-token text, longest token first, each token at every occurrence in every
// remaining text span (llama.cpp's tokenizer_st_partition). Without parse_special only
// user-defined tokens are split out.
std::vector<VocabTokenizer::Fragment> VocabTokenizer::partition(std::string_view text,
                                                                bool parse_special) const {
  std::vector<Fragment> frags{{-1, 0, text.size()}};
  for (Token id : specials_) {
    if (!parse_special && (attrs_[id] & (kControl | kUnknown))) continue;
    const std::string& needle = texts_[id];
    std::vector<Fragment> next;
    next.reserve(frags.size());
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.offset + f.length;
      const std::string_view span = text.substr(0, end);
      size_t pos = f.offset;
      for (size_t m; (m = span.find(needle, pos)) != std::string_view::npos;) {
        if (m > pos) next.push_back({-1, pos, m - pos});
        next.push_back({id, 0, 0});
        pos = m + needle.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags = std::move(next);
  }
  return frags;
}

std::vector<Token> VocabTokenizer::encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<Token> out;
  if (add_special && add_bos_) out.push_back(bos_);
  std::vector<Fragment> frags;
  if (!text.empty()) frags = partition(text, parse_special);
  tokenize_fragments(text, frags, out);
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string VocabTokenizer::token_bytes(Token t, bool render_special) const {
  check_id(t);
  const uint32_t a = attrs_[t];
  const std::string& text = texts_[t];
  if (a & (kUnknown | kControl)) return render_special ? text : std::string();
  if (a & kUserDefined) return text;
  if (a & kNormal) return normal_token_bytes(text);
  if (a & kByte) {
    unsigned value = 0;
    char close = 0;
    if (text.size() == 6 && std::sscanf(text.c_str(), "<0x%2X%c", &value, &close) == 2 &&
        close == '>') {
      return std::string(1, static_cast<char>(value));
    }
    return text;
  }
  return std::string();  // unused / undefined tokens render nothing, as in llama.cpp
}

}  // namespace tok

// ---- public API -------------------------------------------------------------------------------

std::string Tokenizer::decode(const std::vector<Token>& tokens, bool render_special) const {
  std::string out;
  for (Token t : tokens) out += token_bytes(t, render_special);
  return out;
}

std::string TextStream::push(Token t) {
  pending_ += tok_.token_bytes(t);
  return tok::take_valid_utf8(pending_, false);
}

std::string TextStream::flush() { return tok::take_valid_utf8(pending_, true); }

VocabData read_vocab(const GgufFile& file) {
  const auto need = [&](const char* key) -> const GgufValue& {
    const GgufValue* v = file.find(key);
    if (!v) throw Error(ErrorKind::NotFound, std::string("missing tokenizer metadata: ") + key);
    return *v;
  };
  const auto opt_id = [&](const char* key) -> std::optional<int64_t> {
    const GgufValue* v = file.find(key);
    if (!v) return std::nullopt;
    return v->as_int();
  };
  const auto opt_bool = [&](const char* key) -> std::optional<bool> {
    const GgufValue* v = file.find(key);
    if (!v) return std::nullopt;
    return v->as_bool();
  };

  VocabData v;
  v.tokens = need("tokenizer.ggml.tokens").as_string_array();
  v.model = need("tokenizer.ggml.model").as_string();
  v.pre = file.get_string("tokenizer.ggml.pre", "");
  if (const GgufValue* s = file.find("tokenizer.ggml.scores")) {
    for (double x : s->as_float_array()) v.scores.push_back(static_cast<float>(x));
  }
  if (const GgufValue* t = file.find("tokenizer.ggml.token_type")) {
    for (int64_t x : t->as_int_array()) v.token_types.push_back(static_cast<int32_t>(x));
  }
  if (v.model == "gpt2") v.merges = need("tokenizer.ggml.merges").as_string_array();
  v.bos = opt_id("tokenizer.ggml.bos_token_id");
  v.eos = opt_id("tokenizer.ggml.eos_token_id");
  v.eot = opt_id("tokenizer.ggml.eot_token_id");
  v.eom = opt_id("tokenizer.ggml.eom_token_id");
  v.unk = opt_id("tokenizer.ggml.unknown_token_id");
  v.add_bos = opt_bool("tokenizer.ggml.add_bos_token");
  v.add_eos = opt_bool("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = opt_bool("tokenizer.ggml.add_space_prefix");
  return v;
}

std::unique_ptr<Tokenizer> make_tokenizer(const VocabData& vocab) {
  if (vocab.model == "gpt2") return tok::make_bpe_tokenizer(vocab);
  if (vocab.model == "llama") return tok::make_spm_tokenizer(vocab);
  throw Error(ErrorKind::NotSupported, "unsupported tokenizer model " + quote(vocab.model));
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  try {
    return make_tokenizer(read_vocab(file));
  } catch (const Error& e) {  // name the file, once
    const std::string what = e.what();
    if (what.rfind(file.path() + ": ", 0) == 0) throw;
    throw Error(e.kind(), file.path() + ": " + what);
  }
}

}  // namespace kvstash
