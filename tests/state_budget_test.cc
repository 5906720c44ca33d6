// Budgeted sequences (issue 8) as states, on the real model: a snapshot of a sequence that has
// evicted, saved, loaded and restored into a new sequence (of this engine or another one) continues
// with bitwise the logits of the original sequence, for every policy, with and without a summary
// entry, with original and contiguous positions; forks continue like their parent. An unbudgeted
// state makes a budgeted sequence unbudgeted, and a refused restore leaves the sequence as it was.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/state.h"
#include "test_util.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;

ThreadPool& threads() {
  static ThreadPool pool(2);
  return pool;
}

constexpr size_t kPrompt = 200, kMore = 24;

// The prompt through a budgeted sequence (SnapKV's prompt ends with its selection); the last logits.
std::vector<float> prefill(Engine& engine, Sequence& seq, const std::vector<Token>& tokens) {
  const float* l = engine.end_prefill(seq, engine.forward(seq, tokens.data(), int64_t(tokens.size())));
  return std::vector<float>(l, l + engine.model().config().n_vocab);
}

// kMore tokens one by one; every step's logits, back to back.
std::vector<float> continue_one_by_one(Engine& engine, Sequence& seq, const std::vector<Token>& next) {
  const size_t nv = size_t(engine.model().config().n_vocab);
  std::vector<float> out;
  for (Token t : next) {
    const float* l = engine.forward(seq, &t, 1);
    out.insert(out.end(), l, l + nv);
  }
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_same_state(const State& a, const State& b) {
  EXPECT_EQ(a.model_fingerprint, b.model_fingerprint);
  EXPECT_EQ(a.n_ctx, b.n_ctx);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.book, b.book);
  EXPECT_TRUE(bitwise_equal(a.logits, b.logits));
  ASSERT_EQ(a.kv_elements(), b.kv_elements());
  for (int l = 0; l < a.arch.n_layer; ++l) {
    ASSERT_EQ(0, std::memcmp(a.k(l), b.k(l), a.kv_elements() * 2)) << "k." << l;
    ASSERT_EQ(0, std::memcmp(a.v(l), b.v(l), a.kv_elements() * 2)) << "v." << l;
  }
}

struct Config {
  const char* name;
  KvBudget budget;
};

KvBudget budget(EvictionPolicy p, SummaryMode s = SummaryMode::None, PositionMode pos = PositionMode::Original) {
  KvBudget b;
  b.budget = 64;
  b.interval = 32;
  b.policy = p;
  b.summary = s;
  b.positions = pos;
  b.snapkv_window = 16;
  return b;
}

const Config kConfigs[] = {
    {"h2o", budget(EvictionPolicy::H2O)},
    {"h2o_mean", budget(EvictionPolicy::H2O, SummaryMode::Mean)},
    {"sinks", budget(EvictionPolicy::Sinks)},
    {"sinks_mean_contiguous", budget(EvictionPolicy::Sinks, SummaryMode::Mean, PositionMode::Contiguous)},
    {"tova", budget(EvictionPolicy::Tova)},
    {"fsdc_sum", budget(EvictionPolicy::Fsdc, SummaryMode::Sum)},
    {"window_contiguous", budget(EvictionPolicy::Window, SummaryMode::None, PositionMode::Contiguous)},
    {"h2o_mean_contiguous", budget(EvictionPolicy::H2O, SummaryMode::Mean, PositionMode::Contiguous)},
    {"snapkv", budget(EvictionPolicy::SnapKV)},
};

class BudgetedState : public ::testing::TestWithParam<Config> {};
class BudgetedFork : public ::testing::TestWithParam<Config> {};

// snapshot -> save -> load -> restore into a fresh (unbudgeted) sequence, of this engine and of
// another: both continue exactly as the original, and their books stay equal to its book.
TEST_P(BudgetedState, SaveLoadRestoreContinuesExactly) {
  const Config& cfg = GetParam();
  const Model& m = testing::default_model();
  const std::vector<Token> all = testing::prose_tokens(kPrompt + kMore);
  const std::vector<Token> prompt(all.begin(), all.begin() + kPrompt), next(all.begin() + kPrompt, all.end());

  Engine engine(m, threads(), EngineOptions{.n_ctx = 512, .kv_tokens = 2048});
  Sequence original = engine.new_sequence(cfg.budget);
  const std::vector<float> logits = prefill(engine, original, prompt);
  ASSERT_TRUE(original.budgeted());
  ASSERT_LT(original.size(), int64_t(kPrompt)) << "nothing was evicted";
  const State snap = snapshot(m, original, engine.n_ctx(), logits.data());
  ASSERT_TRUE(snap.book.has_value());
  EXPECT_EQ(snap.size(), int64_t(kPrompt));  // the whole stream
  EXPECT_EQ(snap.kv_entries(), original.size());
  EXPECT_EQ(*snap.book, *original.book());
  EXPECT_EQ(snap.book->has_summary, cfg.budget.summary != SummaryMode::None);

  const std::string path = testing::temp_path(std::string(cfg.name) + ".kvs");
  save_state(snap, path);
  const State loaded = load_state(path);
  fs::remove(path);
  expect_same_state(snap, loaded);

  Sequence restored = engine.new_sequence();
  restore(loaded, m, engine.n_ctx(), restored);
  ASSERT_TRUE(restored.budgeted());
  EXPECT_EQ(restored.book()->budget, cfg.budget);
  EXPECT_EQ(*restored.book(), *original.book());
  EXPECT_EQ(restored.tokens(), original.tokens());
  EXPECT_EQ(restored.positions(), original.positions());
  EXPECT_EQ(restored.next_position(), original.next_position());
  expect_same_state(snap, snapshot(m, restored, engine.n_ctx(), loaded.logits.data()));

  // Another engine, whose context (128) is shorter than the stream (200): slots are what must fit.
  Engine other(m, threads(), EngineOptions{.n_ctx = 128});
  Sequence elsewhere = other.new_sequence();
  restore(loaded, m, other.n_ctx(), elsewhere);

  const std::vector<float> want = continue_one_by_one(engine, original, next);
  EXPECT_TRUE(bitwise_equal(continue_one_by_one(engine, restored, next), want)) << "restored in the same engine";
  EXPECT_TRUE(bitwise_equal(continue_one_by_one(other, elsewhere, next), want)) << "restored in another engine";
  EXPECT_EQ(*restored.book(), *original.book());
  EXPECT_EQ(*elsewhere.book(), *original.book());
  EXPECT_EQ(restored.positions(), original.positions());
}

// A budgeted state saved with keys in Hugging Face order (its K tensors hold the slots): load_state
// and load_state_into give back the snapshot bit for bit, and the sequence continues exactly.
TEST(BudgetedStateModel, HuggingFaceKeyOrderRoundTripsExactly) {
  const Model& m = testing::default_model();
  const std::vector<Token> all = testing::prose_tokens(kPrompt + kMore);
  const std::vector<Token> prompt(all.begin(), all.begin() + kPrompt), next(all.begin() + kPrompt, all.end());
  Engine engine(m, threads(), EngineOptions{.n_ctx = 512, .kv_tokens = 2048});
  for (const KvBudget& b : {budget(EvictionPolicy::H2O, SummaryMode::Mean),
                            budget(EvictionPolicy::Sinks, SummaryMode::None, PositionMode::Contiguous)}) {
    SCOPED_TRACE(describe(b));
    Sequence original = engine.new_sequence(b);
    const std::vector<float> logits = prefill(engine, original, prompt);
    const State snap = snapshot(m, original, engine.n_ctx(), logits.data());
    const std::string path = testing::temp_path("hf_budgeted.kvs");
    save_state(snap, path, StateSaveOptions{KeyOrder::HuggingFace});
    expect_same_state(snap, load_state(path));
    Sequence into = engine.new_sequence();
    expect_same_state(snap, load_state_into(path, m, engine.n_ctx(), into, &threads()));
    fs::remove(path);
    expect_same_state(snap, snapshot(m, into, engine.n_ctx(), logits.data()));
    const std::vector<float> want = continue_one_by_one(engine, original, next);
    EXPECT_TRUE(bitwise_equal(continue_one_by_one(engine, into, next), want));
  }
}

// A fork shares its parent's blocks; both continue exactly as a sequence that never forked, and
// evicting in one (private copies first) leaves the other untouched.
TEST_P(BudgetedFork, ForkContinuesLikeTheOriginal) {
  const Config& cfg = GetParam();
  const Model& m = testing::default_model();
  const std::vector<Token> all = testing::prose_tokens(kPrompt + kMore);
  const std::vector<Token> prompt(all.begin(), all.begin() + kPrompt), next(all.begin() + kPrompt, all.end());

  Engine engine(m, threads(), EngineOptions{.n_ctx = 512, .kv_tokens = 2048});
  Sequence reference = engine.new_sequence(cfg.budget);
  prefill(engine, reference, prompt);
  Sequence parent = engine.new_sequence(cfg.budget);
  const std::vector<float> logits = prefill(engine, parent, prompt);
  const State before = snapshot(m, parent, engine.n_ctx(), logits.data());
  Sequence child = parent.fork();
  ASSERT_TRUE(child.budgeted());

  const std::vector<float> want = continue_one_by_one(engine, reference, next);
  EXPECT_TRUE(bitwise_equal(continue_one_by_one(engine, child, next), want)) << "fork";
  EXPECT_TRUE(bitwise_equal(continue_one_by_one(engine, parent, next), want)) << "parent after the fork ran";
  EXPECT_EQ(*child.book(), *reference.book());
  EXPECT_EQ(*parent.book(), *reference.book());
  // A fork of the state's restore, too.
  Sequence restored = engine.new_sequence();
  restore(before, m, engine.n_ctx(), restored);
  Sequence restored_fork = restored.fork();
  EXPECT_TRUE(bitwise_equal(continue_one_by_one(engine, restored_fork, next), want)) << "fork of a restore";
}

std::string config_name(const ::testing::TestParamInfo<Config>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(Policies, BudgetedState, ::testing::ValuesIn(kConfigs), config_name);
// Forks on fewer settings (each runs three sequences): scores, a summary and contiguous
// positions, and SnapKV's selection.
INSTANTIATE_TEST_SUITE_P(Policies, BudgetedFork,
                         ::testing::Values(kConfigs[1], kConfigs[3], kConfigs[5], kConfigs[8]), config_name);

// An unbudgeted state restored into a budgeted sequence makes it unbudgeted (it takes the state's
// budget: none), and it continues like the unbudgeted original.
TEST(BudgetedStateModel, UnbudgetedStateMakesTheSequenceUnbudgeted) {
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 256});
  const std::vector<Token> tokens = testing::prose_tokens(21);
  Sequence full = engine.new_sequence();
  const float* l = engine.forward(full, tokens.data(), 20);
  const State state = snapshot(m, full, engine.n_ctx(), l);
  EXPECT_FALSE(state.book.has_value());
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::H2O));
  restore(state, m, engine.n_ctx(), seq);
  EXPECT_FALSE(seq.budgeted());
  EXPECT_EQ(seq.size(), 20);
  const size_t nv = size_t(m.config().n_vocab);
  const float* a = engine.forward(full, &tokens[20], 1);
  const std::vector<float> want(a, a + nv);
  const float* b = engine.forward(seq, &tokens[20], 1);
  EXPECT_TRUE(bitwise_equal(std::vector<float>(b, b + nv), want));
}

// A budgeted state that fails a check (a crafted book, a context too small for its slots, a full
// pool) is refused before the target sequence changes.
TEST(BudgetedStateModel, RefusedRestoreLeavesTheSequenceIntact) {
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 512});
  const std::vector<Token> tokens = testing::prose_tokens(150);
  Sequence seq = engine.new_sequence(budget(EvictionPolicy::H2O, SummaryMode::Mean));
  const std::vector<float> logits = prefill(engine, seq, tokens);
  const State good = snapshot(m, seq, engine.n_ctx(), logits.data());

  Sequence target = engine.new_sequence();
  const std::vector<Token> mine = testing::prose_tokens(10);
  engine.forward(target, mine.data(), 10);
  const State target_before = snapshot(m, target, engine.n_ctx(), logits.data());
  auto expect_refused = [&](const State& bad, ErrorKind kind, const std::string& words, int64_t n_ctx = 512) {
    try {
      restore(bad, m, n_ctx, target);
      ADD_FAILURE() << "restored";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
    EXPECT_FALSE(target.budgeted());
    expect_same_state(target_before, snapshot(m, target, engine.n_ctx(), logits.data()));
  };
  State bad = good;
  bad.book->entry[5][3] = bad.book->entry[5][2];
  expect_refused(bad, ErrorKind::InvalidArgument, "entries are not increasing at slot 3 in lane 5");
  bad = good;
  bad.book->score[0][0] = std::nanf("");
  expect_refused(bad, ErrorKind::InvalidArgument, "not finite");
  bad = good;
  bad.book->budget.interval = 1;  // the state holds more slots than budget + 1
  expect_refused(bad, ErrorKind::InvalidArgument, "more than budget 64 + interval 1");
  expect_refused(good, ErrorKind::ResourceExhausted, "does not fit the context of 50", 50);
}

// The independent Python reader (scripts/check_kvs_python.py, safetensors + numpy + xxhash) accepts
// version-3 files, budgeted or not. Runs where $KVSTASH_TEST_PYTHON (default python3) has those
// packages; skipped elsewhere.
TEST(BudgetedStateModel, PythonReaderAcceptsBudgetedFiles) {
  const std::string python = testing::python_for_kvs_reader();
  if (python.empty()) GTEST_SKIP() << "no python with safetensors, numpy and xxhash (set KVSTASH_TEST_PYTHON)";
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 512});
  const std::vector<Token> tokens = testing::prose_tokens(150);
  std::vector<KvBudget> budgets = {KvBudget{}, budget(EvictionPolicy::H2O, SummaryMode::Mean, PositionMode::Contiguous),
                                   budget(EvictionPolicy::Sinks), budget(EvictionPolicy::SnapKV)};
  for (const KvBudget& b : budgets) {
    SCOPED_TRACE(describe(b));
    Sequence seq = engine.new_sequence(b);
    const std::vector<float> logits = prefill(engine, seq, tokens);
    const std::string path = testing::temp_path("python.kvs");
    save_state(snapshot(m, seq, engine.n_ctx(), logits.data()), path);
    const testing::CommandResult r =
        testing::run_command(python + " " KVSTASH_SOURCE_DIR "/scripts/check_kvs_python.py " + path);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.rfind("ok: 150 tokens, 30 layers x 3 KV heads x 64", 0), 0u) << r.out;
    EXPECT_EQ(r.out.find("budgeted: ") != std::string::npos, b.enabled()) << r.out;
    if (b.enabled()) {
      std::string bytes = testing::read_file(path);  // a flipped bit in the book: the reader says so
      const size_t at = bytes.rfind("book.merged");
      ASSERT_NE(at, std::string::npos);
      bytes[bytes.size() - 3] ^= 0x01;  // book.merged is the last tensor
      testing::write_file(path, bytes);
      const testing::CommandResult bad =
          testing::run_command(python + " " KVSTASH_SOURCE_DIR "/scripts/check_kvs_python.py " + path);
      EXPECT_EQ(bad.exit_code, 1) << bad.out;
      EXPECT_NE(bad.out.find("checksum mismatch in tensor 'book.merged'"), std::string::npos) << bad.out;
    }
    fs::remove(path);
  }
}

// A file saved with key_order "hf" holds what the Python reader would make of the GGUF-ordered one:
// check_kvs_python.py --hf-npz writes the same arrays for both (it permutes only the latter).
TEST(BudgetedStateModel, PythonReaderSeesHuggingFaceKeyOrder) {
  const std::string python = testing::python_for_kvs_reader();
  if (python.empty()) GTEST_SKIP() << "no python with safetensors, numpy and xxhash (set KVSTASH_TEST_PYTHON)";
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 512});
  for (const KvBudget& b : {KvBudget{}, budget(EvictionPolicy::H2O, SummaryMode::Mean)}) {
    SCOPED_TRACE(describe(b));
    Sequence seq = engine.new_sequence(b);
    const std::vector<float> logits = prefill(engine, seq, testing::prose_tokens(150));
    const State s = snapshot(m, seq, engine.n_ctx(), logits.data());
    std::string npz[2];
    for (int hf = 0; hf < 2; ++hf) {
      const std::string path = testing::temp_path(hf ? "python_hf.kvs" : "python_gguf.kvs");
      npz[hf] = path + ".npz";
      save_state(s, path, StateSaveOptions{hf ? KeyOrder::HuggingFace : KeyOrder::Gguf});
      const testing::CommandResult r = testing::run_command(
          python + " " KVSTASH_SOURCE_DIR "/scripts/check_kvs_python.py --hf-npz " + npz[hf] + " " + path);
      EXPECT_EQ(r.exit_code, 0) << r.out;
      EXPECT_NE(r.out.find(hf ? "key_order hf" : "key_order gguf"), std::string::npos) << r.out;
      fs::remove(path);
    }
    const testing::CommandResult same = testing::run_command(
        python + " -c 'import sys, numpy as np; a, b = np.load(sys.argv[1]), np.load(sys.argv[2]); "
                 "sys.exit(0 if sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a) else 1)' " +
        npz[0] + " " + npz[1]);
    EXPECT_EQ(same.exit_code, 0) << same.out;
    fs::remove(npz[0]);
    fs::remove(npz[1]);
  }
}

}  // namespace
}  // namespace kvstash
