// Tokenizer fuzzer on the default model's vocabulary ($KVSTASH_MODEL, else the set-up's model).
// Per input: encode with every flag combination and check the round trip for valid UTF-8 whose
// bytes all have tokens;
// stream-decode and check TextStream against decode; and decode the input read as token ids.
// A mismatch traps (a finding), as does any exception other than kvstash::Error.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/error.h"
#include "kvstash/gguf.h"
#include "kvstash/tokenizer.h"
#include "tokenizer/vocab.h"

using namespace kvstash;

namespace {

struct Vocab {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
  bool add_eos = false;
  bool space_prefix = false;  // SentencePiece style: decode(encode(t)) == " " + t
  std::vector<std::string> specials;  // texts of control, user-defined and unknown tokens
  // Bytes some token stands for alone. Others have no token to fall back to: BPE drops them and
  // SentencePiece maps them to <unk>, as llama.cpp does (SmolLM2 has none for 0x13, say).
  bool byte_token[256] = {};
};

const Vocab& vocab() {
  static const Vocab v = [] {
    const char* env = std::getenv("KVSTASH_MODEL");
    const std::string path = env && *env ? env : KVSTASH_DEFAULT_MODEL;
    Vocab v;
    try {
      v.file = GgufFile::open(path);
      v.tok = Tokenizer::from_gguf(*v.file);
      const VocabData data = read_vocab(*v.file);
      v.add_eos = data.add_eos.value_or(false);
      v.space_prefix = data.model == "llama" && data.add_space_prefix.value_or(true);
      for (Token t = 0; t < v.tok->n_vocab(); ++t) {
        const int type = t < int(data.token_types.size()) ? data.token_types[size_t(t)] : 1;
        const std::string& text = v.tok->token_text(t);
        const std::string bytes = v.tok->token_bytes(t);
        if (type == 2 || type == 3 || type == 4 || (bytes.empty() && !text.empty())) v.specials.push_back(text);
        if (bytes.size() == 1) v.byte_token[uint8_t(bytes[0])] = true;
      }
    } catch (const Error& e) {
      std::fprintf(stderr, "tokenizer_fuzz: %s\n", e.what());
      std::exit(1);
    }
    return v;
  }();
  return v;
}

// Strict UTF-8: no overlong forms, surrogates or values above U+10FFFF.
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
      cp = cp << 6 | (uint8_t(s[i + k]) & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

void expect(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "tokenizer_fuzz: %s (input of %zu bytes)\n", what, input.size());
  __builtin_trap();
}

// TextStream over ids gives valid UTF-8, and exactly decode(ids) when that is valid UTF-8.
void check_stream(const Tokenizer& tok, const std::vector<Token>& ids, std::string_view input) {
  TextStream stream(tok);
  std::string streamed;
  for (Token t : ids) streamed += stream.push(t);
  streamed += stream.flush();
  expect(valid_utf8(streamed), "TextStream produced invalid UTF-8", input);
  const std::string decoded = tok.decode(ids);
  if (valid_utf8(decoded)) expect(streamed == decoded, "TextStream differs from decode", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Vocab& v = vocab();
  const Tokenizer& tok = *v.tok;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  bool round_trips = valid_utf8(text);  // and every byte has a token
  for (size_t i = 0; i < size; ++i) round_trips = round_trips && v.byte_token[data[i]];
  bool has_special = false;
  for (const std::string& s : v.specials) has_special = has_special || text.find(s) != text.npos;

  for (int flags = 0; flags < 4; ++flags) {
    const bool add_special = flags & 1, parse_special = flags & 2;
    std::vector<Token> ids;
    try {
      ids = tok.encode(text, add_special, parse_special);
    } catch (const Error&) {
      continue;  // e.g. a SentencePiece vocabulary without a token for some byte
    }
    for (Token t : ids) expect(t >= 0 && t < tok.n_vocab(), "token id out of range", text);
    if (add_special && tok.add_bos() && !ids.empty() && ids.front() == tok.bos()) ids.erase(ids.begin());
    if (add_special && v.add_eos && !ids.empty() && ids.back() == tok.eos()) ids.pop_back();
    if (!parse_special) check_stream(tok, ids, text);
    if (!round_trips) continue;
    // Special-token text decodes to itself when rendered (parse_special) or stays text (not).
    const std::string decoded = tok.decode(ids, parse_special);
    if (!v.space_prefix) {
      expect(decoded == text, "decode(encode(text)) != text", text);
    } else if (!has_special && !text.empty()) {
      expect(decoded == " " + std::string(text), "decode(encode(text)) != \" \" + text", text);
    }
  }

  // The input as token ids (two bytes each): partial UTF-8 pieces in any order.
  std::vector<Token> ids;
  for (size_t i = 0; i + 1 < size && ids.size() < 512; i += 2)
    ids.push_back(Token((data[i] | data[i + 1] << 8) % tok.n_vocab()));
  check_stream(tok, ids, text);
  return 0;
}
