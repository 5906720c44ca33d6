// Byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp's llm_tokenizer_bpe_session:
// regex pre-split, GPT-2 byte mapping, then per word the adjacent pair with the lowest merge
// rank (leftmost on ties) is merged until no pair has a rank.
#include <queue>
#include <unordered_map>

#include "kvstash/error.h"
#include "util/quote.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace kvstash::tok {

namespace {

class BpeTokenizer final : public VocabTokenizer {
 public:
  BpeTokenizer(const VocabData& v, const Defaults& d, std::unique_ptr<PreTokenizer> pre,
               bool ignore_merges)
      : VocabTokenizer(v, d), pre_(std::move(pre)), ignore_merges_(ignore_merges) {
    if (v.merges.empty()) throw Error(ErrorKind::NotFound, "missing tokenizer metadata: tokenizer.ggml.merges");
    ranks_.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t space = m.find(' ', 1);
      if (space == std::string::npos || find(std::string_view(m).substr(0, space)) < 0 ||
          find(std::string_view(m).substr(space + 1)) < 0) {
        throw Error(ErrorKind::Corruption, "tokenizer.ggml.merges[" + std::to_string(i) + "] " + quote(m) +
                    " does not name two tokens of the vocabulary");
      }
      ranks_.emplace(m, static_cast<int32_t>(i));  // the first of duplicate merges wins
    }
  }

 private:
  using Cache = std::unordered_map<std::string, std::vector<Token>>;

  void tokenize_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                          std::vector<Token>& out) const override {
    Cache cache;
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      for (const std::string& word : pre_->split(text.substr(f.offset, f.length))) {
        auto it = cache.find(word);
        if (it == cache.end()) it = cache.emplace(word, merge_word(word)).first;
        out.insert(out.end(), it->second.begin(), it->second.end());
      }
    }
  }

  int32_t rank(std::string_view word, const std::pair<uint32_t, uint32_t>& left,
               const std::pair<uint32_t, uint32_t>& right) const {
    std::string key;
    key.reserve(left.second + right.second + 1);
    key.append(word.substr(left.first, left.second)).append(1, ' ');
    key.append(word.substr(right.first, right.second));
    const auto it = ranks_.find(key);
    return it == ranks_.end() ? -1 : it->second;
  }

  std::vector<Token> merge_word(const std::string& word) const {
    if (ignore_merges_) {
      if (const Token id = find(word); id >= 0) return {id};
    }
    // Symbols are (start, length) byte spans linked in a list; symbol i always starts at the
    // same byte, so a queued pair is still current iff both lengths are unchanged.
    struct Sym {
      uint32_t start, len;
      int prev, next;
    };
    std::vector<Sym> syms;
    for (size_t off = 0; off < word.size();) {
      const size_t len = std::min(utf8_seq_len(static_cast<uint8_t>(word[off])), word.size() - off);
      const int i = static_cast<int>(syms.size());
      syms.push_back({static_cast<uint32_t>(off), static_cast<uint32_t>(len), i - 1, -1});
      if (i > 0) syms[i - 1].next = i;
      off += len;
    }
    struct Pair {
      int32_t rank;
      int left, right;
      uint32_t left_len, right_len;
      bool operator<(const Pair& o) const {  // priority_queue pops the "largest": lowest rank
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    std::priority_queue<Pair> queue;
    const auto consider = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const int32_t rk = rank(word, {syms[l].start, syms[l].len}, {syms[r].start, syms[r].len});
      if (rk >= 0) queue.push({rk, l, r, syms[l].len, syms[r].len});
    };
    for (size_t i = 1; i < syms.size(); ++i) consider(static_cast<int>(i - 1), static_cast<int>(i));
    while (!queue.empty()) {
      const Pair p = queue.top();
      queue.pop();
      Sym& l = syms[p.left];
      Sym& r = syms[p.right];
      if (l.len != p.left_len || r.len != p.right_len || l.next != p.right) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = p.left;
      consider(l.prev, p.left);
      consider(p.left, l.next);
    }
    std::vector<Token> ids;
    for (int i = 0; i >= 0 && !syms.empty(); i = syms[i].next) {
      const std::string_view piece = std::string_view(word).substr(syms[i].start, syms[i].len);
      if (const Token id = find(piece); id >= 0) {
        ids.push_back(id);
        continue;
      }
      for (char c : piece) {  // llama.cpp's fallback: look each raw byte up as a token
        if (const Token id = find(std::string_view(&c, 1)); id >= 0) ids.push_back(id);
      }
    }
    return ids;
  }

  std::string normal_token_bytes(const std::string& text) const override {
    std::string out;
    for (uint32_t cpt : decode_utf8_lenient(text)) {
      const int b = gpt2_cpt_to_byte(cpt);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
      } else {
        append_utf8(out, cpt);  // not a mapped character: keep it as text
      }
    }
    return out;
  }

  std::unique_ptr<PreTokenizer> pre_;
  bool ignore_merges_;
  StringMap ranks_;  // "left right" -> merge rank
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const VocabData& vocab) {
  bool ignore_merges = false, add_bos = false;
  auto pre = PreTokenizer::for_name(vocab.pre, &ignore_merges, &add_bos);
  if (!pre) throw Error(ErrorKind::NotSupported, "unsupported pre-tokenizer " + quote(vocab.pre) + " (tokenizer.ggml.pre)");
  VocabTokenizer::Defaults defaults;
  defaults.add_bos = add_bos;
  defaults.bos = 11;  // llama.cpp's defaults for BPE vocabularies without the keys
  defaults.eos = 11;
  return std::make_unique<BpeTokenizer>(vocab, defaults, std::move(pre), ignore_merges);
}

}  // namespace kvstash::tok
