#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "kvstash/error.h"
#include "tokenizer/unicode.h"

namespace kvstash::tok {

namespace {

// Whitespace as llama.cpp's tables define it (Unicode White_Space, from Python's `regex` \s).
// Spelled out rather than \s so that PCRE2's own definition cannot differ from it.
#define KV_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define KV_SPACE "[" KV_WS "]"
#define KV_NONSPACE "[^" KV_WS "]"

// llama.cpp's GPT-2 split; its hand-written version also takes a lone whitespace (the final \s+).
const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" KV_WS "\\p{L}\\p{N}]+"
    "|" KV_SPACE "+(?!" KV_NONSPACE ")|" KV_SPACE "+";

// Llama 3 (tiktoken cl100k style); llama.cpp spells (?i:...) out as ASCII classes.
const char* const kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}| ?[^" KV_WS "\\p{L}\\p{N}]+[\\r\\n]*|" KV_SPACE "*[\\r\\n]+"
    "|" KV_SPACE "+(?!" KV_NONSPACE ")|" KV_SPACE "+";

struct PreSpec {
  std::vector<const char*> names;
  std::vector<std::string> patterns;
  bool ignore_merges = false;
  bool add_bos = false;
};

const std::vector<PreSpec>& pre_specs() {
  static const std::vector<PreSpec> specs = {
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"}, {kLlama3}, true, true},
      {{"dbrx", "smaug-bpe"}, {kLlama3}, false, false},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {"\\p{N}", kGpt2}, false, false},
      {{"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "mpt", "olmo",
        "jais", "exaone4", "gigachat"},
       {kGpt2}, false, false},
      {{"", "default"},
       {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
  };
  return specs;
}

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

std::unique_ptr<PreTokenizer> PreTokenizer::for_name(const std::string& pre, bool* ignore_merges,
                                                     bool* add_bos_default) {
  for (const PreSpec& spec : pre_specs()) {
    for (const char* name : spec.names) {
      if (pre == name) {
        *ignore_merges = spec.ignore_merges;
        *add_bos_default = spec.add_bos;
        return std::make_unique<PreTokenizer>(spec.patterns);
      }
    }
  }
  return nullptr;
}

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
  for (const std::string& pattern : patterns) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    auto re = std::make_unique<Regex>();
    re->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                             PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!re->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error(ErrorKind::Internal, "pre-tokenizer regex does not compile at offset " + std::to_string(err_off) +
                  ": " + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
    regexes_.push_back(std::move(re));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  // `safe` is valid UTF-8 for PCRE2; `raw` holds the bytes llama.cpp tokenizes. They differ only
  // where the input has surrogate code points, which both encode in three bytes.
  const std::vector<uint32_t> cpts = decode_utf8_lenient(text);
  std::string safe, raw;
  safe.reserve(text.size());
  raw.reserve(text.size());
  for (uint32_t c : cpts) {
    append_utf8(safe, is_scalar(c) ? c : kReplacementChar);
    append_utf8(raw, c);
  }

  using Span = std::pair<size_t, size_t>;  // byte range [first, second) of `safe`
  std::vector<Span> pieces;
  if (!safe.empty()) pieces.push_back({0, safe.size()});

  pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
  for (const auto& re : regexes_) {
    std::vector<Span> next;
    next.reserve(pieces.size() * 2);
    for (const auto& [begin, end] : pieces) {
      // The subject is the piece alone, so look-arounds stop at its edges, as in llama.cpp.
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(safe.data() + begin);
      const size_t len = end - begin;
      size_t emitted = 0, search = 0;
      while (search < len) {
        const int rc = pcre2_match(re->code, subject, len, search, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc < 0) break;  // no further match (or a match error: keep the rest as one piece)
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {  // empty match: none of our patterns has one, but never loop
          search = ov[0] + utf8_seq_len(static_cast<uint8_t>(subject[ov[0]]));
          continue;
        }
        if (ov[0] > emitted) next.push_back({begin + emitted, begin + ov[0]});
        next.push_back({begin + ov[0], begin + ov[1]});
        emitted = search = ov[1];
      }
      if (emitted < len) next.push_back({begin + emitted, end});
    }
    pieces = std::move(next);
  }
  pcre2_match_data_free(md);

  std::vector<std::string> words;
  words.reserve(pieces.size());
  for (const auto& [begin, end] : pieces) {
    std::string word;
    word.reserve(2 * (end - begin));
    for (size_t i = begin; i < end; ++i) word += gpt2_byte_to_utf8(static_cast<uint8_t>(raw[i]));
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace kvstash::tok
