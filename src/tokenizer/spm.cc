// SentencePiece-style BPE (tokenizer.ggml.model "llama"), as llama.cpp's llm_tokenizer_spm:
// spaces become U+2581, a space is prefixed to text that starts the input or follows a special
// token (tokenizer.ggml.add_space_prefix), adjacent pieces whose concatenation is a token merge
// by best score (leftmost on ties), and leftover characters fall back to <0xAB> byte tokens.
#include <cstdio>
#include <queue>

#include "kvstash/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace kvstash::tok {

namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class SpmTokenizer final : public VocabTokenizer {
 public:
  SpmTokenizer(const VocabData& v, const Defaults& d)
      : VocabTokenizer(v, d), add_space_prefix_(v.add_space_prefix.value_or(true)) {}

 private:
  void tokenize_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                          std::vector<Token>& out) const override {
    bool prev_special = true;  // the start of the input counts as "after a special token"
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      std::string s;
      if (add_space_prefix_ && prev_special) s = kSpace;
      for (char c : text.substr(f.offset, f.length)) {
        if (c == ' ') {
          s += kSpace;
        } else {
          s.push_back(c);
        }
      }
      tokenize_piece(s, out);
      prev_special = false;
    }
  }

  void tokenize_piece(const std::string& s, std::vector<Token>& out) const {
    struct Sym {
      uint32_t start, len;
      int prev, next;
    };
    std::vector<Sym> syms;
    for (size_t off = 0; off < s.size();) {
      const size_t len = std::min(utf8_seq_len(static_cast<uint8_t>(s[off])), s.size() - off);
      const int i = static_cast<int>(syms.size());
      syms.push_back({static_cast<uint32_t>(off), static_cast<uint32_t>(len), i - 1, -1});
      if (i > 0) syms[i - 1].next = i;
      off += len;
    }
    struct Bigram {
      float score;
      int left, right;
      uint32_t size;
      bool operator<(const Bigram& o) const {  // pops the highest score, then the leftmost
        return score != o.score ? score < o.score : left > o.left;
      }
    };
    std::priority_queue<Bigram> queue;
    const auto consider = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const uint32_t size = syms[l].len + syms[r].len;
      const Token id = find(std::string_view(s).substr(syms[l].start, size));
      if (id >= 0) queue.push({score(id), l, r, size});
    };
    for (size_t i = 1; i < syms.size(); ++i) consider(static_cast<int>(i - 1), static_cast<int>(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Sym& l = syms[b.left];
      Sym& r = syms[b.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = b.left;
      consider(l.prev, b.left);
      consider(b.left, l.next);
    }
    for (int i = 0; i >= 0 && !syms.empty(); i = syms[i].next) {
      const std::string_view piece = std::string_view(s).substr(syms[i].start, syms[i].len);
      if (const Token id = find(piece); id >= 0) {
        out.push_back(id);
        continue;
      }
      for (char c : piece) out.push_back(byte_token(static_cast<uint8_t>(c)));
    }
  }

  Token byte_token(uint8_t byte) const {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", byte);
    if (const Token id = find(hex); id >= 0) return id;
    const char raw = static_cast<char>(byte);
    if (const Token id = find(std::string_view(&raw, 1)); id >= 0) return id;
    if (unk() >= 0) return unk();
    throw Error(ErrorKind::InvalidArgument, "tokenizer has no token for byte " + std::string(hex) + " and no unknown token");
  }

  std::string normal_token_bytes(const std::string& text) const override {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, kSpace.size(), kSpace) == 0) {
        out.push_back(' ');
        i += kSpace.size();
      } else {
        out.push_back(text[i++]);
      }
    }
    return out;
  }

  bool add_space_prefix_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(const VocabData& vocab) {
  VocabTokenizer::Defaults defaults;  // llama.cpp's defaults for SentencePiece vocabularies
  defaults.add_bos = true;
  defaults.bos = 1;
  defaults.eos = 2;
  defaults.unk = 0;
  return std::make_unique<SpmTokenizer>(vocab, defaults);
}

}  // namespace kvstash::tok
