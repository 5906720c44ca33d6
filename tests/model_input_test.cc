// Crafted models and misused engines: every defect is one Error of the right kind, never a crash.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "gguf_builder.h"
#include "kvstash/kvstash.h"  // the umbrella header compiles on its own
#include "test_util.h"

namespace kvstash {
namespace {

using testing_gguf::Builder;
using T = GgufType;

// A one-layer llama of width 32 with a three-token BPE vocabulary; `broken` edits the builder.
std::string tiny_model(const std::string& name, const std::function<void(Builder&)>& extra = {},
                       const std::vector<uint64_t>& q_dims = {32, 32}) {
  Builder b;
  b.zero_data = true;
  b.kv_string("general.architecture", "llama")
      .kv("llama.block_count", T::UINT32, uint32_t(1))
      .kv("llama.embedding_length", T::UINT32, uint32_t(32))
      .kv("llama.feed_forward_length", T::UINT32, uint32_t(64))
      .kv("llama.attention.head_count", T::UINT32, uint32_t(2))
      .kv("llama.attention.head_count_kv", T::UINT32, uint32_t(1))
      .kv("llama.context_length", T::UINT32, uint32_t(64))
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_strings("tokenizer.ggml.tokens", {"a", "b", "ab"})
      .kv_strings("tokenizer.ggml.merges", {"a b"});
  if (extra) extra(b);
  b.tensor("token_embd.weight", {32, 3}, DType::F32).tensor("output_norm.weight", {32}, DType::F32);
  b.tensor("blk.0.attn_norm.weight", {32}, DType::F32).tensor("blk.0.ffn_norm.weight", {32}, DType::F32);
  b.tensor("blk.0.attn_q.weight", q_dims, DType::F32).tensor("blk.0.attn_k.weight", {32, 16}, DType::F32);
  b.tensor("blk.0.attn_v.weight", {32, 16}, DType::F32).tensor("blk.0.attn_output.weight", {32, 32}, DType::F32);
  b.tensor("blk.0.ffn_gate.weight", {32, 64}, DType::F32).tensor("blk.0.ffn_up.weight", {32, 64}, DType::F32);
  b.tensor("blk.0.ffn_down.weight", {64, 32}, DType::F32);
  const std::vector<uint8_t> bytes = b.build();
  const std::string path = ::testing::TempDir() + name + ".gguf";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

// The kind and message of the Error fn throws; the message must be one line.
std::pair<ErrorKind, std::string> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << "no error";
  return {ErrorKind::Internal, ""};
}

TEST(ModelInput, TinyModelLoadsAndRuns) {
  const auto m = Model::load(tiny_model("tiny"));
  ThreadPool threads(2);
  Engine engine(*m, threads, {.n_ctx = 16});
  Sequence seq = engine.new_sequence();
  const Token t[2] = {0, 2};
  const float* logits = engine.forward(seq, t, 2);
  EXPECT_TRUE(std::isfinite(logits[0]));
}

TEST(ModelInput, WeightWithZeroDimensionsIsRejected) {
  const auto [kind, what] = error_of([] { Model::load(tiny_model("zero_dims", {}, {})); });
  EXPECT_EQ(kind, ErrorKind::Corruption);
  EXPECT_NE(what.find("'blk.0.attn_q.weight' has shape [], expected 32x32"), std::string::npos) << what;
}

TEST(ModelInput, MissingTensorIsNotFound) {
  const std::string path = tiny_model("missing_tensor", {}, {32, 32});
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes.replace(bytes.find("blk.0.ffn_up"), 12, "blk.0.ffn_UP");
  std::ofstream(path, std::ios::binary) << bytes;
  const auto [kind, what] = error_of([&] { Model::load(path); });
  EXPECT_EQ(kind, ErrorKind::NotFound) << what;
}

TEST(ModelInput, NamesFromTheFileAreQuotedOnOneLine) {
  auto [kind, what] = error_of([] {
    Model::load(tiny_model("arch_newline", [](Builder& b) { b.kv_string("general.architecture", "lla\nma"); }));
  });
  // The second general.architecture is a duplicate key: the file is refused before the arch.
  EXPECT_EQ(kind, ErrorKind::Corruption);
  std::tie(kind, what) = error_of([] {
    Model::load(tiny_model("rope_nul", [](Builder& b) {
      b.kv_string("llama.rope.scaling.type", std::string("yarn\0\nx", 7));
    }));
  });
  EXPECT_EQ(kind, ErrorKind::NotSupported);
  EXPECT_NE(what.find("unsupported rope scaling type 'yarn\\x00\\x0ax'"), std::string::npos) << what;
}

TEST(ModelInput, NonPositiveRmsEpsilonIsRejected) {
  const auto [kind, what] = error_of([] {
    Model::load(tiny_model("eps", [](Builder& b) {
      b.kv("llama.attention.layer_norm_rms_epsilon", T::FLOAT32, -1.0f);
    }));
  });
  EXPECT_EQ(kind, ErrorKind::Corruption) << what;
}

TEST(EngineInput, BadOptionsAreRejected) {
  const auto m = Model::load(tiny_model("options"));
  ThreadPool threads(1);
  EXPECT_EQ(error_of([&] { Engine(*m, threads, {.n_ctx = 16, .block_tokens = 0}); }).first,
            ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of([&] { Engine(*m, threads, {.n_ctx = -1}); }).first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of([&] { Engine(*m, threads, {.n_ctx = int64_t(1) << 40}); }).first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of([&] { Engine(*m, threads, {.n_ctx = 16, .kv_tokens = -5}); }).first, ErrorKind::InvalidArgument);
  EXPECT_EQ(error_of([] { ThreadPool(100000); }).first, ErrorKind::InvalidArgument);
}

TEST(EngineInput, HugeContextIsResourceExhaustedNotBadAlloc) {
  // 2^23 tokens of the default model's KV cache: 180 GiB.
  ThreadPool threads(1);
  const auto [kind, what] = error_of([&] {
    Engine(testing::default_model(), threads, {.n_ctx = int64_t(1) << 23});
  });
  EXPECT_EQ(kind, ErrorKind::ResourceExhausted) << what;
}

TEST(EngineInput, SequenceOfAnotherEngineIsRejected) {
  const auto m = Model::load(tiny_model("two_engines"));
  ThreadPool threads(1);
  Engine a(*m, threads, {.n_ctx = 16}), b(*m, threads, {.n_ctx = 16});
  Sequence seq = a.new_sequence();
  const Token t = 1;
  const auto [kind, what] = error_of([&] { b.forward(seq, &t, 1); });
  EXPECT_EQ(kind, ErrorKind::InvalidArgument) << what;
  EXPECT_EQ(seq.size(), 0);
}

TEST(EngineInput, ExceptionInsideParallelForReachesTheCaller) {
  ThreadPool threads(4);
  std::atomic<int64_t> ran{0};
  const auto [kind, what] = error_of([&] {
    threads.parallel_for(1000, [&](int64_t b, int64_t e, int) {
      ran += e - b;
      if (b <= 500 && 500 < e) throw Error(ErrorKind::Internal, "boom");
    });
  });
  EXPECT_EQ(what, "boom");
  EXPECT_LE(ran.load(), 1000);
  // The pool is still usable: every index runs exactly once in the next job.
  std::vector<std::atomic<int>> hits(1000);
  threads.parallel_for(1000, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
  });
  for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
}

// The fingerprint covers rms epsilon: a model that differs only there refuses the other's state.
TEST(ModelInput, FingerprintCoversRmsEpsilon) {
  std::string bytes;
  {
    std::ifstream in(KVSTASH_DEFAULT_MODEL, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string key = "llama.attention.layer_norm_rms_epsilon";
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const float eps = 1e-4f;
  std::memcpy(&bytes[at + key.size() + 4], &eps, 4);  // after the u32 value type
  const std::string path = ::testing::TempDir() + "eps_model.gguf";
  std::ofstream(path, std::ios::binary) << bytes;
  const auto other = Model::load(path);
  ASSERT_EQ(other->config().rms_eps, eps);
  EXPECT_NE(other->fingerprint(), testing::default_model().fingerprint());

  ThreadPool threads(2);
  Engine mine(testing::default_model(), threads, {.n_ctx = 32});
  Sequence seq = mine.new_sequence();
  const Token t[3] = {1, 2, 3};
  const State s = snapshot(mine.model(), seq, 32, mine.forward(seq, t, 3));
  Engine theirs(*other, threads, {.n_ctx = 32});
  Sequence target = theirs.new_sequence();
  EXPECT_EQ(error_of([&] { restore(s, theirs.model(), theirs.n_ctx(), target); }).first, ErrorKind::ModelMismatch);
}

}  // namespace
}  // namespace kvstash
