// States of the real model: snapshot, save, load and restore continue bitwise exactly; a state
// from another model or one that does not fit is refused, and a refused restore changes nothing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "kvstash/error.h"
#include "kvstash/engine.h"
#include "kvstash/prefix.h"
#include "kvstash/state.h"
#include "test_util.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;

const Fingerprint& fingerprint() { return testing::default_model().fingerprint(); }

ThreadPool& threads() {
  static ThreadPool pool(2);
  return pool;
}

// Prefills `tokens` into a new sequence of `engine` and snapshots it.
State prefill_state(Engine& engine, Sequence& seq, const std::vector<Token>& tokens) {
  const float* logits = engine.forward(seq, tokens.data(), int64_t(tokens.size()));
  return snapshot(engine.model(), seq, engine.n_ctx(), logits);
}

// A .kvs file's safetensors header: its size (the u64 at offset 0; the JSON follows at 8) and JSON.
struct SafetensorsHeader {
  uint64_t size = 0;
  nlohmann::json json;
};
SafetensorsHeader safetensors_header(const std::string& bytes) {
  SafetensorsHeader h;
  for (int i = 7; i >= 0; --i) h.size = h.size << 8 | uint8_t(bytes[size_t(i)]);
  h.json = nlohmann::json::parse(bytes.substr(8, h.size));
  return h;
}

// Everything a restore could have changed, bit for bit.
void expect_same_entries(const State& a, const State& b) {
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.positions, b.positions);
  ASSERT_EQ(a.kv_elements(), b.kv_elements());
  for (int l = 0; l < a.arch.n_layer; ++l) {
    ASSERT_EQ(0, std::memcmp(a.k(l), b.k(l), a.kv_elements() * 2)) << "k." << l;
    ASSERT_EQ(0, std::memcmp(a.v(l), b.v(l), a.kv_elements() * 2)) << "v." << l;
  }
}

// The default model's file with one bit of one weight changed: another model.
const Model& other_model() {
  static const std::unique_ptr<Model> other = [] {
    const Model& m = testing::default_model();
    const std::string copy = testing::temp_path("other_model.gguf");
    fs::copy_file(KVSTASH_DEFAULT_MODEL, copy, fs::copy_options::overwrite_existing);
    const GgufTensor& t = m.gguf().tensor("blk.3.ffn_down.weight");
    {
      std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
      const std::streamoff at = std::streamoff(t.data - m.gguf().bytes() + t.nbytes / 2);
      f.seekg(at);
      const char byte = char(f.get() ^ 0x01);
      f.seekp(at);
      f.put(byte);
    }
    std::unique_ptr<Model> loaded = Model::load(copy);
    fs::remove(copy);  // the mapping stays valid
    return loaded;
  }();
  return *other;
}

TEST(StateModel, FingerprintIsStableAndCoversTensorData) {
  const std::string fp = fingerprint().hex();
  ASSERT_EQ(fp.size(), 32u);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(Fingerprint::from_hex(fp), fingerprint());
  EXPECT_EQ(Model::load(KVSTASH_DEFAULT_MODEL)->fingerprint(), fingerprint());
  EXPECT_NE(other_model().fingerprint(), fingerprint());
}

TEST(StateModel, StateFromAnotherModelIsRejected) {
  Engine mine(testing::default_model(), threads(), EngineOptions{.n_ctx = 64});
  Sequence seq = mine.new_sequence();
  const std::string path = testing::temp_path("mine.kvs");
  save_state(prefill_state(mine, seq, testing::prose_tokens(8)), path);
  const State s = load_state(path);
  fs::remove(path);

  Engine theirs(other_model(), threads(), EngineOptions{.n_ctx = 64});
  Sequence target = theirs.new_sequence();
  const Token t = 5;
  theirs.forward(target, &t, 1);
  try {
    restore(s, theirs.model(), theirs.n_ctx(), target);
    ADD_FAILURE() << "a state of another model was restored";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ModelMismatch) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("state was made by another model (fingerprint " + fingerprint().hex(), 0), 0u)
        << e.what();
  }
  EXPECT_EQ(target.tokens(), std::vector<Token>{t});
}

// Prefill, snapshot, save, load, restore into a new engine: the next tokens' logits are bitwise
// those of the original sequence and of a run that never cached anything.
TEST(StateModel, LoadedStateContinuesExactly) {
  const Model& m = testing::default_model();
  const size_t nv = size_t(m.config().n_vocab);
  const std::vector<Token> all = testing::prose_tokens(120);
  const std::vector<Token> prefix(all.begin(), all.begin() + 100), next(all.begin() + 100, all.end());

  Engine first(m, threads(), EngineOptions{.n_ctx = 512});
  Sequence seq = first.new_sequence();
  const State s = prefill_state(first, seq, prefix);
  const std::string path = testing::temp_path("continue.kvs");
  save_state(s, path);
  const State loaded = load_state(path);
  fs::remove(path);  // the mapping keeps the data
  ASSERT_EQ(loaded.logits.size(), nv);
  EXPECT_EQ(0, std::memcmp(loaded.logits.data(), s.logits.data(), nv * sizeof(float)));

  Engine second(m, threads(), EngineOptions{.n_ctx = 512});
  Sequence restored = second.new_sequence();
  restore(loaded, second.model(), second.n_ctx(), restored);
  EXPECT_EQ(restored.tokens(), prefix);
  EXPECT_EQ(restored.next_position(), 100);

  const ForwardOptions all_logits{.all_logits = true};
  const float* a = first.forward(seq, next.data(), int64_t(next.size()), all_logits);
  const std::vector<float> want(a, a + next.size() * nv);
  std::vector<float> got;
  for (size_t i = 0; i < next.size(); ++i) {  // one token at a time this time
    const float* l = second.forward(restored, &next[i], 1);
    got.insert(got.end(), l, l + nv);
  }
  Engine scratch(m, threads(), EngineOptions{.n_ctx = 512});
  Sequence whole = scratch.new_sequence();
  const float* w = scratch.forward(whole, all.data(), int64_t(all.size()), all_logits);
  const std::vector<float> uncached(w + prefix.size() * nv, w + all.size() * nv);
  for (size_t i = 0; i < next.size(); ++i) {
    ASSERT_EQ(0, std::memcmp(&want[i * nv], &got[i * nv], nv * sizeof(float))) << "token " << i;
    ASSERT_EQ(0, std::memcmp(&uncached[i * nv], &got[i * nv], nv * sizeof(float))) << "token " << i;
  }
}

// load_state_into (one pass: checksums verified while copying) fills the pool exactly as
// load_state + restore do, and catches a flipped byte in any K/V tensor, leaving seq empty.
TEST(StateModel, LoadIntoEqualsLoadThenRestore) {
  const Model& m = testing::default_model();
  const std::vector<Token> prefix = testing::prose_tokens(70);  // 70: blocks of 16 end mid-block
  Engine engine(m, threads(), EngineOptions{.n_ctx = 256, .kv_tokens = 1024});  // room for 4 sequences
  Sequence seq = engine.new_sequence();
  const State s = prefill_state(engine, seq, prefix);
  const std::string path = testing::temp_path("load_into.kvs");
  save_state(s, path);

  Sequence a = engine.new_sequence(), b = engine.new_sequence();
  restore(load_state(path), m, engine.n_ctx(), a);
  const State meta = load_state_into(path, m, engine.n_ctx(), b);
  EXPECT_EQ(meta.tokens, prefix);
  EXPECT_EQ(meta.logits, s.logits);
  const float* logits = s.logits.data();
  expect_same_entries(snapshot(m, a, engine.n_ctx(), logits), snapshot(m, b, engine.n_ctx(), logits));
  EXPECT_EQ(LoadedPrefix(engine, path).size(), 70);  // the session's one-pass constructor

  std::string bytes = testing::read_file(path);
  const SafetensorsHeader sh = safetensors_header(bytes);
  const uint64_t header = sh.size;
  const nlohmann::json& h = sh.json;
  for (const char* name : {"k.0", "v.0", "k.17", "v.29"}) {
    const uint64_t at = 8 + header + uint64_t(h[name]["data_offsets"][1]) - 3;
    std::string broken = bytes;
    broken[at] = char(broken[at] ^ 0x04);
    testing::write_file(path, broken);
    Sequence c = engine.new_sequence();
    try {
      load_state_into(path, m, engine.n_ctx(), c);
      ADD_FAILURE() << "no error for a flipped byte in " << name;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Corruption);
      EXPECT_EQ(std::string(e.what()), path + ": checksum mismatch in tensor '" + name + "' (file corrupted)");
    }
    EXPECT_EQ(c.size(), 0) << name;
  }
  fs::remove(path);
}

// Keys saved in Hugging Face order come back bit for bit through load_state and load_state_into
// (permuted in the blocks after the checksum of the bytes as written), and the restored sequence
// continues exactly; a flipped byte is still caught, leaving the sequence empty.
TEST(StateModel, HuggingFaceKeyOrderLoadsExactly) {
  const Model& m = testing::default_model();
  const std::vector<Token> prefix = testing::prose_tokens(70);
  Engine engine(m, threads(), EngineOptions{.n_ctx = 256, .kv_tokens = 1024});
  Sequence seq = engine.new_sequence();
  const State s = prefill_state(engine, seq, prefix);
  const std::string path = testing::temp_path("hf_order.kvs");
  save_state(s, path, StateSaveOptions{KeyOrder::HuggingFace});

  const State loaded = load_state(path);
  expect_same_entries(s, loaded);
  ASSERT_EQ(loaded.logits.size(), s.logits.size());
  EXPECT_EQ(0, std::memcmp(loaded.logits.data(), s.logits.data(), s.logits.size() * sizeof(float)));
  Sequence a = engine.new_sequence(), b = engine.new_sequence();
  restore(loaded, m, engine.n_ctx(), a);
  const State meta = load_state_into(path, m, engine.n_ctx(), b, &threads());
  expect_same_entries(s, meta);  // the returned state's keys are in kvstash's order too
  expect_same_entries(s, snapshot(m, a, engine.n_ctx(), s.logits.data()));
  expect_same_entries(s, snapshot(m, b, engine.n_ctx(), s.logits.data()));
  const size_t nv = size_t(m.config().n_vocab);
  const Token next = prefix[5];
  auto step = [&](Sequence& q) {
    const float* l = engine.forward(q, &next, 1);
    return std::vector<float>(l, l + nv);
  };
  const std::vector<float> want = step(seq);
  EXPECT_EQ(0, std::memcmp(step(a).data(), want.data(), nv * sizeof(float))) << "load_state + restore";
  EXPECT_EQ(0, std::memcmp(step(b).data(), want.data(), nv * sizeof(float))) << "load_state_into";

  std::string bytes = testing::read_file(path);
  const SafetensorsHeader sh = safetensors_header(bytes);
  const uint64_t header = sh.size;
  const nlohmann::json& h = sh.json;
  EXPECT_EQ(h["__metadata__"]["key_order"], "hf");
  const uint64_t at = 8 + header + uint64_t(h["k.17"]["data_offsets"][0]) + 5;
  bytes[at] = char(bytes[at] ^ 0x04);
  testing::write_file(path, bytes);
  Sequence c = engine.new_sequence();
  try {
    load_state_into(path, m, engine.n_ctx(), c);
    ADD_FAILURE() << "no error for a flipped byte in k.17";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": checksum mismatch in tensor 'k.17' (file corrupted)");
  }
  EXPECT_EQ(c.size(), 0);
  fs::remove(path);
}

// Entries removed from the middle (as eviction does) keep their positions through a restore.
TEST(StateModel, RestoreKeepsPositionGaps) {
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 128});
  Sequence seq = engine.new_sequence();
  const State full = prefill_state(engine, seq, testing::prose_tokens(50));

  State gappy;  // entries 0..9 and 30..49
  gappy.model_fingerprint = full.model_fingerprint;
  gappy.arch = full.arch;
  gappy.n_ctx = full.n_ctx;
  gappy.logits = full.logits;
  std::vector<size_t> keep;
  for (size_t i = 0; i < 50; ++i)
    if (i < 10 || i >= 30) keep.push_back(i);
  for (size_t i : keep) {
    gappy.tokens.push_back(full.tokens[i]);
    gappy.positions.push_back(full.positions[i]);
  }
  gappy.allocate_kv();
  const size_t hd = size_t(full.arch.head_dim);
  for (int l = 0; l < full.arch.n_layer; ++l)
    for (size_t h = 0; h < size_t(full.arch.n_head_kv); ++h)
      for (size_t j = 0; j < keep.size(); ++j) {
        std::memcpy(gappy.mutable_k(l) + (h * keep.size() + j) * hd, full.k(l) + (h * 50 + keep[j]) * hd, hd * 2);
        std::memcpy(gappy.mutable_v(l) + (h * keep.size() + j) * hd, full.v(l) + (h * 50 + keep[j]) * hd, hd * 2);
      }
  const std::string path = testing::temp_path("gaps.kvs");
  save_state(gappy, path);
  const State loaded = load_state(path);
  fs::remove(path);

  Sequence restored = engine.new_sequence();
  restore(loaded, engine.model(), engine.n_ctx(), restored);
  EXPECT_EQ(restored.positions(), gappy.positions);
  EXPECT_EQ(restored.next_position(), 50);
  expect_same_entries(gappy, snapshot(engine.model(), restored, engine.n_ctx(), loaded.logits.data()));
  const Token t = 42;
  EXPECT_NO_THROW(engine.forward(restored, &t, 1));
  EXPECT_EQ(restored.positions().back(), 50);
}

TEST(StateModel, RestoreFailureLeavesSequenceIntact) {
  const Model& m = testing::default_model();
  Engine big(m, threads(), EngineOptions{.n_ctx = 160});
  Sequence long_seq = big.new_sequence();
  const State too_long = prefill_state(big, long_seq, testing::prose_tokens(100));

  // 6 blocks of 16 entries: seq holds 2, other 3.
  Engine engine(m, threads(), EngineOptions{.n_ctx = 96, .block_tokens = 16, .kv_tokens = 96});
  Sequence seq = engine.new_sequence();
  const State before = prefill_state(engine, seq, testing::prose_tokens(20));
  Sequence other = engine.new_sequence();
  const State good = prefill_state(engine, other, testing::prose_tokens(40));

  auto expect_refused = [&](const State& s, ErrorKind kind, const std::string& why) {
    SCOPED_TRACE(why);
    try {
      restore(s, engine.model(), engine.n_ctx(), seq);
      ADD_FAILURE() << "restored";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
    }
    expect_same_entries(before, snapshot(engine.model(), seq, engine.n_ctx(), before.logits.data()));
  };
  State s = good;
  s.model_fingerprint = Fingerprint{};
  expect_refused(s, ErrorKind::ModelMismatch, "another model");
  s = good;
  s.arch.rope_base = 500000.0f;
  expect_refused(s, ErrorKind::ModelMismatch, "architecture");
  expect_refused(too_long, ErrorKind::ResourceExhausted, "does not fit the context of 96 tokens");
  s = good;
  s.logits.resize(10);
  expect_refused(s, ErrorKind::InvalidArgument, "logits");
  s = good;
  s.logits[7] = std::nanf("");
  expect_refused(s, ErrorKind::InvalidArgument, "NaN logit");
  s = good;
  s.positions[20] = s.positions[19];
  expect_refused(s, ErrorKind::InvalidArgument, "positions are not increasing");
  s = good;
  s.positions.back() = m.config().n_ctx_train;
  expect_refused(s, ErrorKind::InvalidArgument, "position beyond the training context");
  s = good;
  s.positions.back() = kMaxPosition - 1;
  expect_refused(s, ErrorKind::InvalidArgument, "position with no room to continue");
  s = good;
  s.tokens[3] = m.config().n_vocab;
  expect_refused(s, ErrorKind::InvalidArgument, "outside the vocabulary");
  // A third sequence takes the last free block: good's 3 blocks no longer fit in seq's 2.
  Sequence hog = engine.new_sequence();
  const Token t = 1;
  engine.forward(hog, &t, 1);
  ASSERT_EQ(engine.kv_pool().free_blocks(), 0);
  expect_refused(good, ErrorKind::ResourceExhausted, "does not fit the free KV cache");

  // After all that, seq continues exactly like a sequence that was never touched.
  const std::vector<Token> tokens = testing::prose_tokens(21);
  const float* l = engine.forward(seq, &tokens[20], 1);
  const std::vector<float> got(l, l + m.config().n_vocab);
  Sequence fresh = big.new_sequence();
  const float* w = big.forward(fresh, tokens.data(), 21);
  EXPECT_EQ(0, std::memcmp(got.data(), w, got.size() * sizeof(float)));
}

// Restoring into a fork replaces only the fork: the parent's shared blocks stay as they were.
TEST(StateModel, RestoreIntoForkLeavesParentIntact) {
  const Model& m = testing::default_model();
  Engine engine(m, threads(), EngineOptions{.n_ctx = 256});
  Sequence parent = engine.new_sequence();
  const State before = prefill_state(engine, parent, testing::prose_tokens(45));
  Sequence child = parent.fork();
  Sequence other = engine.new_sequence();
  const std::vector<Token> tokens = testing::prose_tokens(70);
  const State s = prefill_state(engine, other, std::vector<Token>(tokens.begin() + 20, tokens.end()));
  restore(s, engine.model(), engine.n_ctx(), child);
  expect_same_entries(s, snapshot(engine.model(), child, engine.n_ctx(), s.logits.data()));
  expect_same_entries(before, snapshot(engine.model(), parent, engine.n_ctx(), before.logits.data()));
}

}  // namespace
}  // namespace kvstash
