// kvstash against llama.cpp on the synthetic Llama-3.2-1B-shaped Q4_K_M model (random weights,
// made with its sidecar of llama.cpp logits by scripts/make_synthetic_model.sh; see
// docs/synthetic-models.md): the same tokens give the same logits up to llama.cpp's own rounding.
// Skipped when the files are missing, unless KVSTASH_REQUIRE_SYNTHETIC=1 (CI makes them).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kvstash {
namespace {

using nlohmann::json;

const std::string kModel = KVSTASH_SOURCE_DIR "/models/synthetic-llama-1b.Q4_K_M.gguf";
const std::string kSidecar = kModel + ".llama_logits.json";
const std::string kMissing = kModel + " or its sidecar is missing";
constexpr const char* kMakeIt = "run scripts/make_synthetic_model.sh --shape 1b --quant q4_k_m";

bool required() {
  const char* e = std::getenv("KVSTASH_REQUIRE_SYNTHETIC");
  return e && std::string(e) == "1";
}

std::vector<uint8_t> base64_decode(const std::string& s) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> out;
  out.reserve(s.size() / 4 * 3);
  uint32_t bits = 0;
  int n_bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const size_t v = kAlphabet.find(c);
    if (v == std::string::npos) throw std::runtime_error("bad base64 character in the sidecar");
    bits = (bits << 6) | uint32_t(v);
    n_bits += 6;
    if (n_bits >= 8) {
      n_bits -= 8;
      out.push_back(uint8_t(bits >> n_bits));
    }
  }
  return out;
}

std::string sha256_of(const std::string& path) {
  const testing::CommandResult r = testing::run_command("sha256sum '" + path + "'", false);
  return r.exit_code == 0 ? r.out.substr(0, 64) : "sha256sum failed: " + r.out;
}

// The model (loaded once) and its sidecar, or null with the test skipped or failed.
struct Synthetic {
  std::unique_ptr<Model> model;
  json sidecar;
};

const Synthetic* synthetic() {
  static const Synthetic s = [] {
    Synthetic r;
    if (!std::filesystem::exists(kModel) || !std::filesystem::exists(kSidecar)) return r;
    std::ifstream in(kSidecar);
    r.sidecar = json::parse(in);
    r.model = Model::load(kModel);
    return r;
  }();
  return s.model ? &s : nullptr;
}

// Skips the test when the files are missing, or fails it under KVSTASH_REQUIRE_SYNTHETIC=1.
#define SYNTHETIC_OR_SKIP(s)                                                              \
  const Synthetic* s = synthetic();                                                       \
  if (!s && required()) FAIL() << kMissing << " (KVSTASH_REQUIRE_SYNTHETIC=1): " << kMakeIt; \
  if (!s) GTEST_SKIP() << kMissing << ": " << kMakeIt

TEST(SyntheticModel, SidecarIsOfThisModelFile) {
  SYNTHETIC_OR_SKIP(s);
  EXPECT_EQ(s->sidecar["model_size"].get<uintmax_t>(), std::filesystem::file_size(kModel))
      << "stale sidecar: " << kMakeIt << " again (it remakes a stale sidecar)";
  EXPECT_EQ(s->sidecar["model_sha256"].get<std::string>(), sha256_of(kModel))
      << "stale sidecar: " << kMakeIt << " again (it remakes a stale sidecar)";
}

TEST(SyntheticModel, HasTheShapeOfLlama32_1B) {
  SYNTHETIC_OR_SKIP(s);
  const ModelConfig& c = s->model->config();
  EXPECT_EQ(c.n_layer, 16);
  EXPECT_EQ(c.n_embd, 2048);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_ff, 8192);
  EXPECT_EQ(c.n_vocab, 128256);
  EXPECT_FLOAT_EQ(c.rope_base, 500000.0f);
  EXPECT_EQ(s->model->output().data, s->model->token_embd().data) << "tied embeddings, as Llama-3.2-1B";
  EXPECT_EQ(s->model->token_embd().type, DType::Q6_K) << "llama.cpp's Q4_K_M keeps the (tied) output in Q6_K";
  EXPECT_EQ(s->model->layer(0).wq.type, DType::Q4_K);
}

// The padded vocabulary tokenizes text as the default model's does; the padding is control tokens.
TEST(SyntheticModel, TokenizerIsTheDefaultModelsPadded) {
  SYNTHETIC_OR_SKIP(s);
  const Tokenizer& mine = s->model->tokenizer();
  const std::string text = testing::corpus_text().substr(0, 2000);
  EXPECT_EQ(mine.encode(text, true, false), testing::default_model().tokenizer().encode(text, true, false));
  EXPECT_EQ(mine.token_text(128255), "<|reserved_128255|>");
  EXPECT_EQ(mine.decode({49152, 128255}), "");
}

// kvstash and llama.cpp both round activations to 8 bits (q8_K) before K-quant dot products;
// float differences elsewhere (llama.cpp rounds queries and attention weights to f16, its exp
// differs) move elements across rounding boundaries, and after a few layers the two roundings
// are independent noise. Measured on this file: max|kvstash - llama.cpp| / max|llama.cpp| is
// 1.8% at position 0 and 2.6-3.8% (mean 3.1%) elsewhere -- and each is as far from an exact f64
// evaluation of the same dequantized weights (2.6-4.1%). The bounds leave room for other kernels'
// float orders; a wrong kernel or RoPE gives tens of percent.
constexpr double kMaxRelativeError = 0.06;
constexpr double kMaxMeanKl = 0.01;  // nats, KL(llama.cpp || kvstash) over the full vocabulary; measured 0.0046
// Where llama.cpp's best token leads its runner-up by this much (logit units), kvstash must pick
// the same token: the logit differences have a std of about 0.1.
constexpr double kClearMargin = 0.5;

double kl_divergence(const float* p_logits, const float* q_logits, size_t n) {
  const auto log_softmax = [n](const float* x) {
    const double m = *std::max_element(x, x + n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - m);
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = double(x[i]) - m - std::log(sum);
    return out;
  };
  const std::vector<double> lp = log_softmax(p_logits), lq = log_softmax(q_logits);
  double kl = 0;
  for (size_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

TEST(SyntheticModel, LogitsMatchLlamaCppOnTheSameFile) {
  SYNTHETIC_OR_SKIP(s);
  const std::vector<Token> tokens = s->sidecar["tokens"].get<std::vector<Token>>();
  const size_t n_vocab = s->sidecar["n_vocab"].get<size_t>();
  ASSERT_EQ(n_vocab, size_t(s->model->config().n_vocab));
  const std::vector<uint8_t> bytes = base64_decode(s->sidecar["logits_f32_base64"].get<std::string>());
  ASSERT_EQ(bytes.size(), tokens.size() * n_vocab * sizeof(float));
  std::vector<float> ref(tokens.size() * n_vocab);
  std::memcpy(ref.data(), bytes.data(), bytes.size());  // little-endian float32, as x86 and arm

  ThreadPool threads(2);
  Engine engine(*s->model, threads, EngineOptions{.n_ctx = 64});
  Sequence seq = engine.new_sequence();
  const float* ours = engine.forward(seq, tokens.data(), int64_t(tokens.size()), ForwardOptions{.all_logits = true});

  double worst = 0, sum_rel = 0, sum_kl = 0;
  int clear = 0, clear_agree = 0, agree = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    const float* a = ours + p * n_vocab;
    const float* b = ref.data() + p * n_vocab;
    double max_diff = 0, max_ref = 0;
    for (size_t v = 0; v < n_vocab; ++v) {
      max_diff = std::max(max_diff, std::fabs(double(a[v]) - double(b[v])));
      max_ref = std::max(max_ref, std::fabs(double(b[v])));
    }
    const double rel = max_diff / max_ref;
    worst = std::max(worst, rel);
    sum_rel += rel;
    EXPECT_LE(rel, kMaxRelativeError) << "position " << p;
    sum_kl += kl_divergence(b, a, n_vocab);

    const size_t mine = size_t(std::max_element(a, a + n_vocab) - a);
    std::vector<float> top(b, b + n_vocab);
    std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
    const size_t theirs = size_t(std::max_element(b, b + n_vocab) - b);
    agree += mine == theirs;
    if (top[0] - top[1] > kClearMargin) {
      ++clear;
      clear_agree += mine == theirs;
      EXPECT_EQ(mine, theirs) << "position " << p << ": llama.cpp's top-1 leads by " << top[0] - top[1];
    }
  }
  const double n = double(tokens.size());
  std::printf("synthetic 1b Q4_K_M vs llama.cpp: %zu positions, max|diff|/max|ref| worst %.5f mean %.5f; "
              "mean KL %.5f nats; argmax agrees at %d, at %d of %d where llama.cpp's margin > %.2f\n",
              tokens.size(), worst, sum_rel / n, sum_kl / n, agree, clear_agree, clear, kClearMargin);
  EXPECT_LE(sum_kl / n, kMaxMeanKl);
  EXPECT_GE(clear, 10) << "too few positions with a clear llama.cpp choice to judge the argmax";
}

}  // namespace
}  // namespace kvstash
