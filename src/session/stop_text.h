// Helpers of text generation shared by generate() and the server's scheduler: stop strings that
// hold back text which could still begin one, and end-of-generation masking.
#pragma once
#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kvstash/tokenizer.h"

namespace kvstash {

// The generated text with stop strings: finds the first stop string and holds back text whose end
// could still begin one, so a stream never shows text that a stop string later cuts off.
class StopText {
 public:
  StopText(const std::vector<std::string>& stop, const std::function<void(const std::string&)>& on_text)
      : on_text_(on_text) {
    for (const std::string& s : stop)
      if (!s.empty()) stop_.push_back(s);
  }
  // Appends a piece; true when a stop string is complete (the text is cut before it).
  bool append(std::string& text, const std::string& piece) {
    const size_t before = text.size();
    text += piece;
    size_t at = std::string::npos;
    for (const std::string& s : stop_) {
      const size_t from = before >= s.size() - 1 ? before - (s.size() - 1) : 0;
      at = std::min(at, text.find(s, from));
    }
    if (at != std::string::npos) {
      text.resize(at);
      emit(text, at);
      return true;
    }
    emit(text, text.size() - held_back(text));
    return false;
  }
  void finish(const std::string& text) { emit(text, text.size()); }

 private:
  // Bytes at the end of text that begin some stop string.
  size_t held_back(const std::string& text) const {
    size_t keep = 0;
    for (const std::string& s : stop_)
      for (size_t k = std::min(s.size() - 1, text.size()); k > keep; --k)
        if (text.compare(text.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
    return keep;
  }
  void emit(const std::string& text, size_t upto) {
    if (upto > emitted_ && on_text_) on_text_(text.substr(emitted_, upto - emitted_));
    emitted_ = std::max(emitted_, upto);
  }
  std::vector<std::string> stop_;
  const std::function<void(const std::string&)>& on_text_;
  size_t emitted_ = 0;
};

// The logits to sample from: with ignore_eos a copy in which end-of-generation tokens are masked.
class EosMask {
 public:
  EosMask(const Tokenizer& tok, int n_vocab, bool ignore_eos) : n_vocab_(n_vocab) {
    if (!ignore_eos) return;
    for (Token t = 0; t < n_vocab; ++t)
      if (tok.is_end_of_generation(t)) eog_.push_back(t);
  }
  const float* apply(const float* logits) {
    if (eog_.empty()) return logits;
    masked_.assign(logits, logits + n_vocab_);
    for (Token t : eog_) masked_[size_t(t)] = -std::numeric_limits<float>::infinity();
    return masked_.data();
  }

 private:
  int n_vocab_;
  std::vector<Token> eog_;
  std::vector<float> masked_;
};
}  // namespace kvstash
