#include "kvstash/sampler.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_set>

#include "kvstash/error.h"

namespace kvstash {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void require(bool ok, const std::string& name, const std::string& range, double value) {
  if (ok) return;
  std::ostringstream msg;
  msg << name << " must be " << range << ", got " << value;
  throw Error(ErrorKind::InvalidArgument, msg.str());
}
}  // namespace

void validate(const SamplingParams& p) {
  require(std::isfinite(p.temperature) && p.temperature >= 0, "--temp", ">= 0", p.temperature);
  require(p.top_k >= 0, "--top-k", ">= 0", p.top_k);
  require(p.top_p > 0 && p.top_p <= 1, "--top-p", "in (0, 1]", p.top_p);
  require(p.min_p >= 0 && p.min_p <= 1, "--min-p", "in [0, 1]", p.min_p);
  require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0, "--repeat-penalty", "> 0",
          p.repeat_penalty);
  require(p.repeat_last_n >= 0, "--repeat-last-n", ">= 0", p.repeat_last_n);
}

Sampler::Sampler(const SamplingParams& params) : p_(params) {
  validate(p_);
  uint64_t x = p_.seed;
  for (auto& s : state_) s = splitmix64(x);
}

double Sampler::next_uniform() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return double(result >> 11) * 0x1.0p-53;
}

Token Sampler::sample(const float* logits, int n_vocab, const std::vector<Token>& history) {
  cand_.resize(size_t(n_vocab));
  for (int i = 0; i < n_vocab; ++i) {
    // NaN would make the sort's order undefined and +inf the probabilities NaN; -inf masks a token.
    if (std::isnan(logits[i]) || logits[i] == INFINITY)
      throw Error(ErrorKind::InvalidArgument, "logit of token " + std::to_string(i) + " is " +
                                                  (std::isnan(logits[i]) ? "NaN" : "+inf") + ": cannot sample");
    cand_[size_t(i)] = {logits[i], Token(i)};
  }

  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    const size_t from = history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
    std::unordered_set<Token> seen(history.begin() + long(from), history.end());
    for (Token t : seen) {
      if (t < 0 || t >= n_vocab) continue;
      float& l = cand_[size_t(t)].logit;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  // Highest logit first; ties broken by lower id so the order is total.
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (p_.temperature <= 0) return std::min_element(cand_.begin(), cand_.end(), better)->id;

  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) n = size_t(p_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + long(n), cand_.end(), better);
  cand_.resize(n);
  if (cand_[0].logit == -INFINITY) throw Error(ErrorKind::InvalidArgument, "every logit is -inf: cannot sample");

  // Probabilities at temperature 1 decide top-p and min-p (as llama.cpp's chain does).
  probs_.resize(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += probs_[i] = std::exp(cand_[i].logit - cand_[0].logit);
  size_t keep = n;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += probs_[i] / sum;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0) {
    size_t i = 1;
    while (i < keep && probs_[i] >= p_.min_p) ++i;  // probs_[0] == 1 is the maximum
    keep = i;
  }
  // Temperature, then one draw.
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs_[i] = std::exp((cand_[i].logit - cand_[0].logit) / p_.temperature);
  double r = next_uniform() * total;
  for (size_t i = 0; i < keep; ++i) {
    r -= probs_[i];
    if (r < 0) return cand_[i].id;
  }
  return cand_[keep - 1].id;
}

}  // namespace kvstash
