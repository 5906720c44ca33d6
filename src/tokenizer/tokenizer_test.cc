// Tokenizer tests: token ids identical to llama.cpp's (fixture made by
// scripts/make_tokenizer_fixture.py from the default model and vocabularies derived from it),
// exact decoding, TextStream, chat rendering, and one-line errors for bad metadata.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvstash/error.h"
#include "kvstash/gguf.h"
#include "kvstash/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace kvstash {
namespace {

using json = nlohmann::json;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

ErrorKind last_kind = ErrorKind::Internal;
std::string thrown_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    last_kind = e.kind();
    return e.what();
  }
  return "(no error)";
}

// ---- the default model and the fixture ------------------------------------------------------

struct Reference {
  std::unique_ptr<GgufFile> model;
  VocabData vocab;  // as read from the model
  json fixture;
  std::map<std::string, std::string> texts;
};

const Reference& reference() {
  static const Reference* ref = [] {
    auto* r = new Reference;
    r->model = GgufFile::open(KVSTASH_DEFAULT_MODEL);
    r->vocab = read_vocab(*r->model);
    std::ifstream in(KVSTASH_SOURCE_DIR "/tests/fixtures/tokenizer_reference.json");
    if (!in) throw std::runtime_error("cannot read tests/fixtures/tokenizer_reference.json");
    r->fixture = json::parse(in);
    for (const auto& [name, t] : r->fixture["texts"].items()) {
      r->texts[name] = t.is_string() ? t.get<std::string>() : from_hex(t["hex"]);
    }
    return r;
  }();
  return *ref;
}

// The SentencePiece vocabulary of make_tokenizer_fixture.py's spm_vocab(), rebuilt from the
// byte-level vocabulary: specials, 256 byte tokens, then each normal token whose bytes are valid
// UTF-8 (first occurrence), spaces as U+2581, score -(BPE id).
VocabData spm_vocab(const VocabData& bpe) {
  VocabData v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "<sep>"};
  v.token_types = {2, 3, 3, 4};
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    v.tokens.push_back(hex);
    v.token_types.push_back(6);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  std::set<std::string> seen(v.tokens.begin(), v.tokens.end());
  auto gpt2 = make_tokenizer(bpe);
  for (size_t i = 0; i < bpe.tokens.size(); ++i) {
    if (bpe.token_types[i] != 1) continue;
    std::string bytes = gpt2->token_bytes(static_cast<Token>(i));
    std::string copy = bytes;
    if (tok::take_valid_utf8(copy, true) != bytes) continue;
    std::string text;
    for (char c : bytes) text += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    if (!seen.insert(text).second) continue;
    v.tokens.push_back(text);
    v.token_types.push_back(1);
    v.scores.push_back(-static_cast<float>(i));
  }
  return v;
}

VocabData variant_vocab(const std::string& name) {
  VocabData v = reference().vocab;
  if (name == "smollm") return v;
  if (name == "smollm-udt") {
    v.token_types[6] = 4;  // "<filename>" becomes user-defined
    return v;
  }
  if (name == "spm") return spm_vocab(v);
  v.pre = name == "default" ? "" : name;
  v.add_bos.reset();  // the fixture dropped tokenizer.ggml.add_bos_token for these
  return v;
}

class LlamaCppReference : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppReference, TokenIdsMatchLlamaCpp) {
  const Reference& ref = reference();
  const json& variant = ref.fixture["variants"][GetParam()];
  auto tok = make_tokenizer(variant_vocab(GetParam()));
  EXPECT_EQ(tok->n_vocab(), variant["n_vocab"].get<int>());
  EXPECT_EQ(tok->bos(), variant["bos"].get<int>());
  EXPECT_EQ(tok->eos(), variant["eos"].get<int>());
  EXPECT_EQ(tok->add_bos(), variant["add_bos"].get<bool>());

  size_t checked = 0;
  for (const auto& [name, c] : variant["cases"].items()) {
    const std::string& text = ref.texts.at(name);
    const auto special = c["special"].get<std::vector<Token>>();
    std::vector<Token> plain;
    if (c.contains("plain")) {
      plain = c["plain"].get<std::vector<Token>>();
    } else {
      plain.assign(special.begin() + (tok->add_bos() ? 1 : 0), special.end());
    }
    EXPECT_EQ(tok->encode(text, true, true), special) << GetParam() << " text '" << name << "'";
    EXPECT_EQ(tok->encode(text, false, false), plain) << GetParam() << " text '" << name << "'";
    checked += special.size() + plain.size();
  }
  EXPECT_GT(checked, 1000u);
  std::printf("[%s] %zu token ids over %zu texts identical to llama.cpp\n", GetParam().c_str(),
              checked, variant["cases"].size());

  if (variant.contains("pieces")) {
    for (const auto& [id, pieces] : variant["pieces"].items()) {
      const Token t = std::stoi(id);
      EXPECT_EQ(tok->token_bytes(t, false), from_hex(pieces[0])) << "token " << t;
      EXPECT_EQ(tok->token_bytes(t, true), from_hex(pieces[1])) << "token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, LlamaCppReference,
                         ::testing::Values("smollm", "smollm-udt", "llama-bpe", "gpt-2", "default",
                                           "spm"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return s;
                         });

// ---- the real model -------------------------------------------------------------------------

TEST(Tokenizer, DefaultModelMetadata) {
  auto tok = Tokenizer::from_gguf(*reference().model);
  EXPECT_EQ(tok->n_vocab(), 49152);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->token_text(1), "<|im_start|>");
  EXPECT_TRUE(tok->is_end_of_generation(2));   // <|im_end|>, the eos
  EXPECT_TRUE(tok->is_end_of_generation(0));   // <|endoftext|>
  EXPECT_FALSE(tok->is_end_of_generation(1));  // <|im_start|>
  EXPECT_FALSE(tok->is_end_of_generation(tok->encode("Hello", false, false)[0]));
  EXPECT_EQ(detect_chat_template(*reference().model), ChatTemplate::ChatML);
  EXPECT_EQ(thrown_message([&] { tok->token_text(49152); }),
            "token id 49152 is out of range (vocabulary of 49152 tokens)");
}

TEST(Tokenizer, DecodeRoundTripsEveryText) {
  const Reference& ref = reference();
  auto bpe = Tokenizer::from_gguf(*ref.model);
  auto spm = make_tokenizer(variant_vocab("spm"));
  for (const auto& [name, text] : ref.texts) {
    if (name == "invalid_utf8") continue;
    EXPECT_EQ(bpe->decode(bpe->encode(text, false, false)), text) << name;
    EXPECT_EQ(bpe->decode(bpe->encode(text, true, true), true), text) << name;
    if (name != "spm_markers" && !text.empty()) {  // "▁" in the text decodes as a space
      EXPECT_EQ(spm->decode(spm->encode(text, false, false)), " " + text) << name;
    }
  }
  // Malformed UTF-8 is read as llama.cpp reads it: each bad byte becomes U+FFFD, the overlong
  // C0 80 becomes NUL, and the surrogate ED A0 80 is kept.
  const std::string decoded = bpe->decode(bpe->encode(ref.texts.at("invalid_utf8"), false, false));
  using namespace std::string_literals;
  EXPECT_EQ(decoded, "abc\xEF\xBF\xBD\xEF\xBF\xBD def \xEF\xBF\xBD\xEF\xBF\xBD end\xEF\xBF\xBD (\xED\xA0\x80) "s +
                         '\0' + " ok");
}

TEST(Tokenizer, ControlTokensRenderOnlyOnRequest) {
  auto tok = Tokenizer::from_gguf(*reference().model);
  const auto ids = tok->encode("<|im_start|>user\nhi<|im_end|>", false, true);
  EXPECT_EQ(ids, (std::vector<Token>{1, 4093, 198, 6004, 2}));
  EXPECT_EQ(tok->decode(ids), "user\nhi");
  EXPECT_EQ(tok->decode(ids, true), "<|im_start|>user\nhi<|im_end|>");
  // Without parse_special the same text is ordinary text.
  const auto plain = tok->encode("<|im_start|>user\nhi<|im_end|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok->decode(plain), "<|im_start|>user\nhi<|im_end|>");
}

TEST(TextStream, HoldsBackEmojiSplitAcrossTokens) {
  auto tok = Tokenizer::from_gguf(*reference().model);
  const std::string text = "family: \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 ok";
  const auto ids = tok->encode(text, false, false);
  TextStream stream(*tok);
  std::string joined;
  int held = 0;
  for (Token t : ids) {
    const std::string bytes = tok->token_bytes(t);
    const std::string piece = stream.push(t);
    std::string check = piece;
    EXPECT_EQ(tok::take_valid_utf8(check, true), piece) << "push returned invalid UTF-8";
    if (piece.size() < bytes.size()) ++held;
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, text);
  EXPECT_GT(held, 0) << "the emoji should be split across byte tokens";

  // An incomplete sequence left at the end is flushed as U+FFFD.
  TextStream cut(*tok);
  std::string out;
  for (Token t : tok->encode("\xF0\x9F\x91\xA8", false, false)) {
    if (tok->token_bytes(t) != "\xA8") out += cut.push(t);  // drop the last byte's token
  }
  EXPECT_EQ(out, "");
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, TenKilobytesTakeWellUnder100ms) {
  const Reference& ref = reference();
  auto tok = Tokenizer::from_gguf(*ref.model);
  std::string text;
  while (text.size() < 10000) {
    for (const auto& [name, t] : ref.texts) text += t;
  }
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, false, false);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu tokens in %.2f ms\n", text.size(), ids.size(), ms);
  EXPECT_LT(ms, 100.0);
}

// ---- chat templates -------------------------------------------------------------------------

TEST(Chat, RendersAsLlamaCpp) {
  const json& chat = reference().fixture["chat"];
  std::vector<ChatMessage> messages;
  for (const auto& m : chat["messages"]) messages.push_back({m["role"], m["content"]});
  EXPECT_EQ(format_chat(ChatTemplate::ChatML, messages, false), chat["chatml"].get<std::string>());
  EXPECT_EQ(format_chat(ChatTemplate::ChatML, messages, true), chat["chatml_gen"].get<std::string>());
  EXPECT_EQ(format_chat(ChatTemplate::Llama3, messages, false), chat["llama3"].get<std::string>());
  EXPECT_EQ(format_chat(ChatTemplate::Llama3, messages, true), chat["llama3_gen"].get<std::string>());
}

TEST(Chat, ExactStrings) {
  const std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "hi"}};
  EXPECT_EQ(format_chat(ChatTemplate::ChatML, m, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(format_chat(ChatTemplate::Llama3, m, true),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// ---- small hand-made vocabularies -----------------------------------------------------------

// Byte-level BPE over a, b, c and space (Ġ): merges "b c" (rank 0) before "a b" (rank 1).
VocabData tiny_bpe() {
  VocabData v;
  v.model = "gpt2";
  v.pre = "gpt-2";
  v.tokens = {"a", "b", "c", "\xC4\xA0", "bc", "ab", "abc", "<|end|>"};
  v.token_types = {1, 1, 1, 1, 1, 1, 1, 3};
  v.merges = {"b c", "a b", "a bc", "ab c"};
  return v;
}

TEST(BpeTiny, MergesByRankThenLeftmost) {
  auto tok = make_tokenizer(tiny_bpe());
  // "abc": "b c" has the better rank, then "a bc".
  EXPECT_EQ(tok->encode("abc", false, false), (std::vector<Token>{6}));
  // "abab": only "a b" applies, at both places.
  EXPECT_EQ(tok->encode("abab", false, false), (std::vector<Token>{5, 5}));
  // A space before a letter joins its word; "Ġ a" is no merge.
  EXPECT_EQ(tok->encode("ab abc", false, false), (std::vector<Token>{5, 3, 6}));
  EXPECT_EQ(tok->decode({5, 3, 6}), "ab abc");
  EXPECT_EQ(tok->encode("a<|end|>b", false, true), (std::vector<Token>{0, 7, 1}));
  EXPECT_TRUE(tok->is_end_of_generation(7));  // text "<|end|>"
  EXPECT_EQ(tok->bos(), -1);  // llama.cpp's default id 11 is out of range: no BOS
}

// SentencePiece: "▁" pieces, scores decide merges, bytes fall back to <0xAB>.
VocabData tiny_spm() {
  VocabData v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "h", "e", "l", "o", "\xE2\x96\x81h", "he",
              "ll", "llo", "\xE2\x96\x81he", "\xE2\x96\x81hello", "<0xC3>", "<0xA9>", "<br>"};
  v.token_types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 6, 6, 4};
  v.scores = {0, 0, 0, -1, -2, -2, -2, -2, -3, -1, -1, -4, -5, -6, 0, 0, 0};
  return v;
}

TEST(SpmTiny, ScoresSpacePrefixAndByteFallback) {
  auto tok = make_tokenizer(tiny_spm());
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  // "▁hello": "he"(-1) and "ll"(-1) first (leftmost first), "▁he" beats "▁h", "llo", then
  // "▁hello".
  EXPECT_EQ(tok->encode("hello", true, false), (std::vector<Token>{1, 13}));
  // é is not a piece: its two UTF-8 bytes become byte tokens.
  EXPECT_EQ(tok->encode("h\xC3\xA9", false, false), (std::vector<Token>{8, 14, 15}));
  EXPECT_EQ(tok->decode({8, 14, 15}), " h\xC3\xA9");
  // User-defined tokens are split out even without parse_special; text after any special token
  // gets the space prefix again.
  EXPECT_EQ(tok->encode("he<br>he", false, false), (std::vector<Token>{12, 16, 12}));
  EXPECT_EQ(tok->encode("<s>he", false, true), (std::vector<Token>{1, 12}));
  EXPECT_EQ(tok->decode({1, 12}), " he");

  VocabData no_prefix = tiny_spm();
  no_prefix.add_space_prefix = false;
  no_prefix.add_bos = false;
  auto tok2 = make_tokenizer(no_prefix);
  EXPECT_EQ(tok2->encode("he", true, false), (std::vector<Token>{9}));
}

// ---- errors ---------------------------------------------------------------------------------

// A minimal GGUF v3 file with string and string-array metadata only.
class GgufBuilder {
 public:
  GgufBuilder& str(const std::string& key, const std::string& value) {
    this->key(key, 8);
    put_str(value);
    ++n_;
    return *this;
  }
  GgufBuilder& strs(const std::string& key, const std::vector<std::string>& values) {
    this->key(key, 9);
    put<uint32_t>(8);
    put<uint64_t>(values.size());
    for (const auto& s : values) put_str(s);
    ++n_;
    return *this;
  }
  std::unique_ptr<GgufFile> parse() const {
    std::string head = "GGUF";
    const auto raw = [&](auto x) { head.append(reinterpret_cast<const char*>(&x), sizeof x); };
    raw(uint32_t{3});
    raw(uint64_t{0});
    raw(uint64_t{n_});
    const std::string all = head + body_;
    return GgufFile::parse(reinterpret_cast<const uint8_t*>(all.data()), all.size(), "test.gguf");
  }

 private:
  template <class T>
  void put(T x) { body_.append(reinterpret_cast<const char*>(&x), sizeof x); }
  void put_str(const std::string& s) {
    put<uint64_t>(s.size());
    body_ += s;
  }
  void key(const std::string& k, uint32_t type) {
    put_str(k);
    put<uint32_t>(type);
  }
  std::string body_;
  uint64_t n_ = 0;
};

TEST(TokenizerErrors, MissingTokensIsRejected) {
  auto file = GgufBuilder().str("general.architecture", "llama").parse();
  EXPECT_EQ(thrown_message([&] { Tokenizer::from_gguf(*file); }),
            "test.gguf: missing tokenizer metadata: tokenizer.ggml.tokens");
  EXPECT_EQ(last_kind, ErrorKind::NotFound);
}

TEST(TokenizerErrors, UnknownModelIsRejected) {
  auto file = GgufBuilder().str("tokenizer.ggml.model", "xyz").strs("tokenizer.ggml.tokens", {"a"}).parse();
  EXPECT_EQ(thrown_message([&] { Tokenizer::from_gguf(*file); }),
            "test.gguf: unsupported tokenizer model 'xyz'");
  EXPECT_EQ(last_kind, ErrorKind::NotSupported);
}

TEST(TokenizerErrors, UnknownPreTokenizerIsRejected) {
  auto file = GgufBuilder()
                  .str("tokenizer.ggml.model", "gpt2")
                  .str("tokenizer.ggml.pre", "xyz")
                  .strs("tokenizer.ggml.tokens", {"a", "b", "ab"})
                  .strs("tokenizer.ggml.merges", {"a b"})
                  .parse();
  EXPECT_EQ(thrown_message([&] { Tokenizer::from_gguf(*file); }),
            "test.gguf: unsupported pre-tokenizer 'xyz' (tokenizer.ggml.pre)");
  EXPECT_EQ(last_kind, ErrorKind::NotSupported);
}

TEST(TokenizerErrors, MissingMergesIsRejected) {
  auto file = GgufBuilder().str("tokenizer.ggml.model", "gpt2").strs("tokenizer.ggml.tokens", {"a"}).parse();
  EXPECT_EQ(thrown_message([&] { Tokenizer::from_gguf(*file); }),
            "test.gguf: missing tokenizer metadata: tokenizer.ggml.merges");
  EXPECT_EQ(last_kind, ErrorKind::NotFound);
}

TEST(TokenizerErrors, MergeNamingUnknownTokenIsRejected) {
  VocabData v = tiny_bpe();
  v.merges.push_back("a z");
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.merges[4] 'a z' does not name two tokens of the vocabulary");
  v.merges.back() = "abc";
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.merges[4] 'abc' does not name two tokens of the vocabulary");
  EXPECT_EQ(last_kind, ErrorKind::Corruption);
}

TEST(TokenizerErrors, TokenTypeLengthMismatchIsRejected) {
  VocabData v = tiny_bpe();
  v.token_types.pop_back();
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.token_type has 7 entries but there are 8 tokens");
  v = tiny_spm();
  v.scores.push_back(0);
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.scores has 18 entries but there are 17 tokens");
  EXPECT_EQ(last_kind, ErrorKind::Corruption);
}

TEST(TokenizerErrors, BosOutOfRangeIsRejected) {
  VocabData v = tiny_bpe();
  v.bos = 8;
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.bos_token_id = 8 is out of range (vocabulary of 8 tokens)");
  v.bos.reset();
  v.add_bos = true;
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
  EXPECT_EQ(last_kind, ErrorKind::Corruption);
}

TEST(TokenizerErrors, NamesFromTheFileStayOnOneLine) {
  VocabData v = tiny_bpe();
  v.model = std::string("evil\nmodel\0x", 12);
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }), "unsupported tokenizer model 'evil\\x0amodel\\x00x'");
  EXPECT_EQ(last_kind, ErrorKind::NotSupported);
}

TEST(TokenizerErrors, DuplicateTokenIsRejected) {
  VocabData v = tiny_bpe();
  v.tokens[2] = "a";
  EXPECT_EQ(thrown_message([&] { make_tokenizer(v); }),
            "duplicate token 'a' in tokenizer.ggml.tokens (ids 0 and 2)");
  EXPECT_EQ(last_kind, ErrorKind::Corruption);
}

}  // namespace
}  // namespace kvstash
