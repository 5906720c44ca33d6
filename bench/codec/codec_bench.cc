// Size, quality and speed of the KV codec against the known schemes (issue 9): a benchmark, not a
// test. bench/codec/run.py drives it and renders docs/codec.md. Every mode prints one JSON object.
//
//   kvstash_codec_bench table --text FILE --prefix P --cont C --greedy G --work DIR [--name N]
//       The state of the first P tokens of FILE (BOS first), then per scheme (f16 .kvs, lossless
//       and every lossy .kvz level, per-token int8/int4, KIVI-2, q8_0, q4_0, CacheGen): stored bytes
//       (all overhead) and K/V-only bytes, perplexity of the next C tokens of FILE, mean KL(exact ||
//       scheme) over them, and over G greedy tokens of the exact state the teacher-forced top-1
//       agreement and the first divergence. Writes DIR/<N>.kvs (zstd is applied to it by run.py).
//   kvstash_codec_bench speed --text FILE --tokens T --work DIR [--reps R] [--level L]
//       [--links 0.1,1,10] [--target-factor F] [--cont C] [--recompute-reps K] [--level-ppl 0|1]
//       Encode/decode throughput of every level at 1 and 2 threads on the T-token state (cached in
//       DIR), and time to first token when the bytes arrive over a throttled link: .kvz streamed
//       (every level and an adaptive choice), .kvs received then loaded, and recompute.
//   kvstash_codec_bench check
//       Exact values of the baseline quantisers on hand-made rows (exit 1 on a mismatch).
// Common options: --model GGUF, --threads N (the engine's; default 2).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "baselines.h"
#include "codec/kv_codec.h"
#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/generate.h"
#include "kvstash/kvz.h"
#include "kvstash/model.h"
#include "kvstash/prefix.h"
#include "kvstash/state.h"
#include "kvstash/thread_pool.h"
#include "kvstash/tokenizer.h"

using namespace kvstash;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string mode, model = default_model_path(), text, work, name = "text";
  int threads = 2;
  int64_t prefix = 2048, cont = 512, greedy = 128, tokens = 4096, reps = 5, recompute_reps = 2;
  int level = 0;  // speed: the fixed lossy level (0: the best lossy level)
  bool level_ppl = true;  // speed: perplexity at every fixed level (deterministic: one run needs it)
  double target_factor = 1.5;
  std::vector<double> links = {0.1, 1, 10};
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<Token> text_tokens(const Model& m, const std::string& path, int64_t n) {
  std::vector<Token> t = m.tokenizer().encode(read_file(path), true, false);
  if (int64_t(t.size()) < n)
    throw std::runtime_error(path + " has only " + std::to_string(t.size()) + " tokens, " + std::to_string(n) + " wanted");
  t.resize(size_t(n));
  return t;
}

Token argmax(const float* l, int n) { return Token(std::max_element(l, l + n) - l); }

double lse(const float* l, int n) {
  const float mx = *std::max_element(l, l + n);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(double(l[i] - mx));
  return double(mx) + std::log(s);
}

uint64_t kv_values(const State& s) { return 2 * uint64_t(s.arch.n_layer) * s.kv_elements(); }

bool same_kv(const State& a, const State& b) {
  for (int l = 0; l < a.arch.n_layer; ++l)
    if (std::memcmp(a.k(l), b.k(l), a.kv_elements() * 2) || std::memcmp(a.v(l), b.v(l), a.kv_elements() * 2)) return false;
  return true;
}

uint64_t chunk_bytes(const KvzInfo& info) {
  uint64_t n = 0;
  for (const KvzChunk& c : info.chunks)
    for (const KvzChunk::Stored& s : c.levels) n += s.size;
  return n;
}

// ---- table --------------------------------------------------------------------------------------

// The exact state's continuation: the logits (and their log-sum-exp) of every position, and the
// greedy tokens it generates.
struct Reference {
  std::vector<Token> cont, greedy;
  std::vector<float> logits;  // cont.size() rows of n_vocab
  std::vector<double> lse;
};

struct Quality {
  double ppl = 0, kl_mean = 0, kl_max = 0, agree = 0;
  int64_t first_divergence = 0, nonfinite = 0;
  double eval_s = 0;
};

Quality evaluate(Engine& engine, const State& s, const Reference& ref) {
  const int V = engine.model().config().n_vocab;
  Quality q;
  const auto t0 = Clock::now();
  double nll = 0, kl = 0;
  continuation_logits(engine, s, ref.cont, [&](int64_t i, const float* l) {
    nll -= log_prob(l, V, ref.cont[size_t(i)]);
    for (int j = 0; j < V; ++j)
      if (!std::isfinite(l[j])) {
        ++q.nonfinite;
        return;
      }
    const double ls = lse(l, V), le = ref.lse[size_t(i)];
    const float* e = &ref.logits[size_t(i) * size_t(V)];
    double k = 0;  // sum p_e (log p_e - log p_s), in double
    for (int j = 0; j < V; ++j) {
      const double lpe = double(e[j]) - le, lps = double(l[j]) - ls;
      k += std::exp(lpe) * (lpe - lps);
    }
    kl += k;
    q.kl_max = std::max(q.kl_max, k);
  });
  const double n = double(ref.cont.size());
  q.ppl = std::exp(nll / n);
  q.kl_mean = kl / n;
  // Teacher-forced: the scheme's argmax at i given the exact greedy tokens before i. Its first
  // mismatch is also where free-running greedy decoding diverges (the logits of a position do not
  // depend on how tokens are batched, and before the mismatch the inputs are the same tokens).
  int64_t agree = 0;
  q.first_divergence = int64_t(ref.greedy.size());
  continuation_logits(engine, s, ref.greedy, [&](int64_t i, const float* l) {
    if (argmax(l, V) == ref.greedy[size_t(i)]) ++agree;
    else q.first_divergence = std::min(q.first_divergence, i);
  });
  q.agree = double(agree) / double(ref.greedy.size());
  q.eval_s = seconds_since(t0);
  return q;
}

json run_table(const Model& model, ThreadPool& pool, const Args& a) {
  const int V = model.config().n_vocab;
  const std::vector<Token> all = text_tokens(model, a.text, a.prefix + a.cont);
  const std::vector<Token> prefix(all.begin(), all.begin() + a.prefix);
  Reference ref;
  ref.cont.assign(all.begin() + a.prefix, all.end());
  EngineOptions eo;
  eo.n_ctx = a.prefix + std::max(a.cont, a.greedy) + 32;
  Engine engine(model, pool, eo);

  auto t0 = Clock::now();
  const State exact = process_prefix(engine, prefix);
  const double prefill_s = seconds_since(t0);
  std::fprintf(stderr, "%s: prefix of %lld tokens in %.1f s\n", a.name.c_str(), (long long)a.prefix, prefill_s);
  ref.logits.resize(ref.cont.size() * size_t(V));
  ref.lse.resize(ref.cont.size());
  continuation_logits(engine, exact, ref.cont, [&](int64_t i, const float* l) {
    std::copy(l, l + V, &ref.logits[size_t(i) * size_t(V)]);
    ref.lse[size_t(i)] = lse(l, V);
  });
  {  // the exact state's greedy continuation, one token at a time
    Sequence seq = engine.new_sequence();
    restore(exact, model, engine.n_ctx(), seq);
    Token t = argmax(exact.logits.data(), V);
    for (int64_t i = 0; i < a.greedy; ++i) {
      ref.greedy.push_back(t);
      if (i + 1 < a.greedy) t = argmax(engine.forward(seq, &t, 1), V);
    }
  }
  const PerplexityResult check = perplexity_after(engine, exact, ref.cont);

  std::filesystem::create_directories(a.work);
  const std::string kvs_path = a.work + "/" + a.name + ".kvs";
  save_state(exact, kvs_path);
  const uint64_t values = kv_values(exact);
  const uint64_t kvs_bytes = std::filesystem::file_size(kvs_path);
  const uint64_t kvs_meta = kvs_bytes - 2 * values;  // header, tokens, positions, logits

  json rows = json::array();
  Quality exact_q;
  auto add = [&](const std::string& name, const std::string& kind, uint64_t bytes, uint64_t kv_bytes, const State* s,
                 double encode_s, double decode_s, json extra) {
    Quality q = exact_q;
    if (s) q = evaluate(engine, *s, ref);
    json r = std::move(extra);
    r["name"] = name;
    r["kind"] = kind;
    r["bytes"] = bytes;
    r["kv_bytes"] = kv_bytes;
    r["bits_per_value"] = double(bytes) * 8 / double(values);
    r["kv_bits_per_value"] = double(kv_bytes) * 8 / double(values);
    r["ppl"] = q.ppl;
    r["kl_mean"] = q.kl_mean;
    r["kl_max"] = q.kl_max;
    r["greedy_agree"] = q.agree;
    r["first_divergence"] = q.first_divergence;
    r["nonfinite_positions"] = q.nonfinite;
    r["evaluated"] = s != nullptr;
    r["encode_s"] = encode_s;
    r["decode_s"] = decode_s;
    rows.push_back(r);
    std::fprintf(stderr, "%s %-14s %7.3f bits/value  ppl %.4f  kl %.5f  agree %.3f  diverge@%lld\n", a.name.c_str(),
                 name.c_str(), double(bytes) * 8 / double(values), q.ppl, q.kl_mean, q.agree,
                 (long long)q.first_divergence);
  };

  exact_q = evaluate(engine, exact, ref);
  {
    t0 = Clock::now();
    const State loaded = load_state(kvs_path);
    const double dec = seconds_since(t0);
    if (!same_kv(loaded, exact)) throw std::runtime_error("the .kvs round trip changed K/V");
    add("f16 .kvs", "kvs", kvs_bytes, 2 * values, nullptr, 0, dec, json::object());
  }
  // .kvz: lossless, then every lossy level, each in a file of its own.
  uint64_t kvz_overhead = 0;  // container bytes besides the chunks (of the level-1 file), for CacheGen
  for (int level = kvz_lossless_level(); level >= 1; --level) {
    KvzOptions o;
    o.levels = {level};
    t0 = Clock::now();
    const std::vector<uint8_t> bytes = encode_kvz(exact, o);
    const double enc = seconds_since(t0);
    const KvzInfo info = read_kvz_info(memory_source(bytes.data(), bytes.size()));
    t0 = Clock::now();
    const State s = load_kvz(memory_source(bytes.data(), bytes.size()));
    const double dec = seconds_since(t0);
    const uint64_t kv = chunk_bytes(info);
    if (level == 1) kvz_overhead = bytes.size() - kv;
    const bool lossless = level == kvz_lossless_level();
    if (lossless && !same_kv(s, exact)) throw std::runtime_error("the lossless .kvz round trip changed K/V");
    json extra = {{"level", level}, {"params", info.level_params.at(0)}, {"container_overhead", bytes.size() - kv}};
    add(lossless ? "kvz lossless" : "kvz L" + std::to_string(level), lossless ? "kvz-lossless" : "kvz", bytes.size(), kv,
        lossless ? nullptr : &s, enc, dec, extra);
  }
  auto baseline = [&](const std::string& name, const std::function<bench::Coded()>& f, uint64_t overhead) {
    t0 = Clock::now();
    const bench::Coded c = f();
    const double s = seconds_since(t0);
    add(name, "baseline", c.kv_bytes + overhead, c.kv_bytes, &c.state, s, 0, {{"overhead", overhead}});
  };
  baseline("int8 per-token", [&] { return bench::per_token(exact, 8); }, kvs_meta);
  baseline("int4 per-token", [&] { return bench::per_token(exact, 4); }, kvs_meta);
  baseline("KIVI-2", [&] { return bench::kivi2(exact); }, kvs_meta);
  baseline("q8_0", [&] { return bench::q8_0(exact); }, kvs_meta);
  baseline("q4_0", [&] { return bench::q4_0(exact); }, kvs_meta);
  baseline("CacheGen", [&] { return bench::cachegen(exact); }, kvz_overhead);

  json j;
  j["mode"] = "table";
  j["text"] = a.name;
  j["prefix"] = a.prefix;
  j["cont"] = a.cont;
  j["greedy"] = a.greedy;
  j["threads"] = pool.size();
  j["values"] = values;
  j["kvs_path"] = kvs_path;
  j["kvs_bytes"] = kvs_bytes;
  j["kvs_meta_bytes"] = kvs_meta;
  j["prefill_s"] = prefill_s;
  j["exact"] = {{"ppl", exact_q.ppl}, {"perplexity_after", check.perplexity}, {"greedy_agree", exact_q.agree},
                {"kl_mean", exact_q.kl_mean}};
  j["built_in_levels"] = codec::built_in_levels();
  j["schemes"] = rows;
  return j;
}

// ---- speed --------------------------------------------------------------------------------------

// A link of `gbit` Gbit/s in front of bytes in memory: a read of n bytes starts when both the
// caller asks and the link is free, and returns once n bytes have crossed it (idle while nobody reads).
ByteSource throttled(const std::vector<uint8_t>& bytes, double gbit, const std::string& name) {
  struct Link {
    std::mutex mu;
    Clock::time_point free_at = Clock::now();
  };
  auto link = std::make_shared<Link>();
  const double bytes_per_s = gbit * 1e9 / 8;
  ByteSource src;
  src.name = name;
  src.size = bytes.size();
  const uint8_t* data = bytes.data();
  src.read = [link, bytes_per_s, data, n = bytes.size(), name](uint64_t offset, uint64_t size, uint8_t* dst) {
    if (offset > n || size > n - offset) throw Error(ErrorKind::Corruption, name + ": read past the end");
    std::lock_guard<std::mutex> lock(link->mu);
    const Clock::time_point start = std::max(Clock::now(), link->free_at);
    const Clock::time_point done =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(size) / bytes_per_s));
    std::memcpy(dst, data + offset, size);
    std::this_thread::sleep_until(done);
    link->free_at = done;
  };
  return src;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  const std::string s = read_file(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// The T-token state, made once and kept in the work directory.
State cached_state(Engine& engine, const std::vector<Token>& tokens, const std::string& path, double* prefill_s) {
  if (std::filesystem::exists(path)) {
    State s = load_state(path);
    if (s.tokens == tokens && s.model_fingerprint == engine.model().fingerprint()) return s;
  }
  const auto t0 = Clock::now();
  State s = process_prefix(engine, tokens);
  *prefill_s = seconds_since(t0);
  save_state(s, path);
  return load_state(path);
}

json run_speed(const Model& model, ThreadPool& pool, const Args& a) {
  const int V = model.config().n_vocab;
  const std::vector<Token> all = text_tokens(model, a.text, a.tokens + a.cont);
  const std::vector<Token> tokens(all.begin(), all.begin() + a.tokens), cont(all.begin() + a.tokens, all.end());
  EngineOptions eo;
  eo.n_ctx = a.tokens + a.cont + 32;
  Engine engine(model, pool, eo);
  std::filesystem::create_directories(a.work);
  const std::string kvs_path = a.work + "/state" + std::to_string(a.tokens) + ".kvs";
  double prefill_s = 0;
  const State state = cached_state(engine, tokens, kvs_path, &prefill_s);
  const uint64_t f16_bytes = 2 * kv_values(state);
  const int lossless = kvz_lossless_level();
  const int fixed = a.level > 0 ? a.level : lossless - 1;
  json j;
  j["mode"] = "speed";
  j["tokens"] = a.tokens;
  j["cont"] = a.cont;
  j["f16_bytes"] = f16_bytes;
  j["reps"] = a.reps;

  // Throughput of every level at 1 and 2 threads (GB/s of f16 consumed / produced).
  json thr = json::array();
  std::map<int, std::vector<uint8_t>> single;  // level -> a file with only that level
  for (int t : {1, 2}) {
    ThreadPool tp(t);
    for (int level = 1; level <= lossless; ++level) {
      KvzOptions o;
      o.levels = {level};
      o.threads = &tp;
      std::vector<double> enc, dec;
      std::vector<uint8_t> bytes;
      for (int64_t r = 0; r < a.reps; ++r) {
        auto t0 = Clock::now();
        std::vector<uint8_t> b = encode_kvz(state, o);
        enc.push_back(seconds_since(t0));
        if (r > 0 && b != bytes) throw std::runtime_error("encode_kvz gave different bytes on a repeat");
        bytes = std::move(b);
      }
      if (single.count(level) && single[level] != bytes)
        throw std::runtime_error("encode_kvz bytes differ between 1 and 2 threads");
      for (int64_t r = 0; r < a.reps; ++r) {
        LevelChoice c;
        c.level = level;
        auto t0 = Clock::now();
        const State s = load_kvz(memory_source(bytes.data(), bytes.size()), c, &tp);
        dec.push_back(seconds_since(t0));
      }
      thr.push_back({{"level", level}, {"threads", t}, {"bytes", bytes.size()},
                     {"encode_s", enc}, {"decode_s", dec},
                     {"encode_gbps", double(f16_bytes) / median(enc) / 1e9},
                     {"decode_gbps", double(f16_bytes) / median(dec) / 1e9}});
      std::fprintf(stderr, "level %d, %d thread(s): %.2f MB, encode %.3f GB/s, decode %.3f GB/s\n", level, t,
                   double(bytes.size()) / 1e6, double(f16_bytes) / median(enc) / 1e9, double(f16_bytes) / median(dec) / 1e9);
      single[level] = std::move(bytes);
    }
  }
  j["throughput"] = thr;

  // Time to first token: the state ready in a sequence plus the first generated token's forward.
  KvzOptions all_levels;
  for (int level = 1; level <= lossless; ++level) all_levels.levels.push_back(level);
  all_levels.threads = &pool;
  const std::vector<uint8_t> kvz = encode_kvz(state, all_levels);
  const std::vector<uint8_t> kvs = file_bytes(kvs_path);
  const KvzInfo info = read_kvz_info(memory_source(kvz.data(), kvz.size()));
  j["kvz_all_levels_bytes"] = kvz.size();
  j["kvs_bytes"] = kvs.size();
  j["chunks"] = info.chunks.size();
  auto first_token = [&](Sequence& seq, const std::vector<float>& logits) {
    Token t = argmax(logits.data(), V);
    engine.forward(seq, &t, 1);
  };
  auto ttft_kvz = [&](double gbit, const LevelChoice& c, StreamStats* stats) {
    const ByteSource src = throttled(kvz, gbit, "kvz");
    const auto t0 = Clock::now();
    StreamedState st = stream_kvz(engine, src, c);
    first_token(st.seq, st.meta.logits);
    const double s = seconds_since(t0);
    if (stats) *stats = st.stats;
    return s;
  };
  const std::string recv_path = a.work + "/received.kvs";
  auto ttft_kvs = [&](double gbit) {
    const ByteSource src = throttled(kvs, gbit, "kvs");
    const auto t0 = Clock::now();
    {  // receive into a file as the bytes arrive, then load as a .kvs is loaded
      std::ofstream out(recv_path, std::ios::binary | std::ios::trunc);
      std::vector<uint8_t> buf(1 << 20);
      for (uint64_t at = 0; at < src.size; at += buf.size()) {
        const uint64_t n = std::min<uint64_t>(buf.size(), src.size - at);
        src.read(at, n, buf.data());
        out.write(reinterpret_cast<const char*>(buf.data()), std::streamsize(n));
      }
    }
    const State s = load_state(recv_path);
    Sequence seq = engine.new_sequence();
    restore(s, model, engine.n_ctx(), seq);
    first_token(seq, s.logits);
    return seconds_since(t0);
  };
  std::vector<double> recompute;
  for (int64_t r = 0; r < a.recompute_reps; ++r) {
    const auto t0 = Clock::now();
    Sequence seq = engine.new_sequence();
    const float* l = nullptr;
    for (int64_t at = 0; at < a.tokens; at += 512) l = engine.forward(seq, &tokens[size_t(at)], std::min<int64_t>(512, a.tokens - at));
    Token t = argmax(l, V);
    engine.forward(seq, &t, 1);
    recompute.push_back(seconds_since(t0));
    std::fprintf(stderr, "recompute: %.2f s\n", recompute.back());
  }
  j["recompute_s"] = recompute;
  j["recompute_median_s"] = median(recompute);
  j["prefill_s_when_cached"] = prefill_s;

  // Perplexity of the next `cont` tokens from a state: the quality the adaptive choice lands on.
  const double exact_ppl = perplexity_after(engine, state, cont).perplexity;
  j["exact_ppl"] = exact_ppl;
  auto ppl_at = [&](const LevelChoice& c) {
    return perplexity_after(engine, load_kvz(memory_source(kvz.data(), kvz.size()), c, &pool), cont).perplexity;
  };
  json level_ppl = json::object();
  for (int level = 1; a.level_ppl && level < lossless; ++level) {
    LevelChoice c;
    c.level = level;
    level_ppl[std::to_string(level)] = ppl_at(c);
  }
  j["level_ppl"] = level_ppl;

  json links = json::array();
  for (double gbit : a.links) {
    json L;
    L["gbit"] = gbit;
    std::vector<double> kvs_t;
    for (int64_t r = 0; r < std::max<int64_t>(1, a.reps / 2); ++r) kvs_t.push_back(ttft_kvs(gbit));
    L["kvs_s"] = kvs_t;
    L["kvs_median_s"] = median(kvs_t);
    json per_level = json::object();
    for (int level = 1; level <= lossless; ++level) {
      std::vector<double> ts;
      StreamStats st;
      for (int64_t r = 0; r < std::max<int64_t>(1, a.reps / 2); ++r) {
        LevelChoice c;
        c.level = level;
        ts.push_back(ttft_kvz(gbit, c, &st));
      }
      per_level[std::to_string(level)] = {{"s", ts}, {"median_s", median(ts)}, {"bytes_read", st.bytes_read}};
    }
    L["kvz"] = per_level;
    // Adaptive: a target `target_factor` times the smallest level's time to first token here.
    const double target_ms = a.target_factor * per_level["1"]["median_s"].get<double>() * 1000;
    std::vector<double> ts;
    StreamStats st;
    for (int64_t r = 0; r < std::max<int64_t>(1, a.reps / 2); ++r) {
      LevelChoice c;
      c.ttft_target_ms = target_ms;
      ts.push_back(ttft_kvz(gbit, c, &st));
    }
    LevelChoice chosen;
    chosen.per_chunk = st.chunk_levels;
    L["adaptive"] = {{"target_ms", target_ms}, {"s", ts}, {"median_s", median(ts)}, {"chunk_levels", st.chunk_levels},
                     {"bytes_read", st.bytes_read}, {"ppl", ppl_at(chosen)}};
    std::fprintf(stderr, "%.1f Gbit/s: kvs %.3f s, kvz L%d %.3f s, lossless %.3f s, adaptive(%.0f ms) %.3f s\n", gbit,
                 median(kvs_t), fixed, per_level[std::to_string(fixed)]["median_s"].get<double>(),
                 per_level[std::to_string(lossless)]["median_s"].get<double>(), target_ms, median(ts));
    links.push_back(L);
  }
  std::filesystem::remove(recv_path);
  j["fixed_level"] = fixed;
  j["lossless_level"] = lossless;
  j["links"] = links;
  j["threads"] = pool.size();
  return j;
}

// ---- check --------------------------------------------------------------------------------------

int run_check() {
  int bad = 0;
  auto expect = [&](const char* what, const std::vector<float>& got, const std::vector<float>& want) {
    if (got != want) {
      ++bad;
      std::fprintf(stderr, "check %s: mismatch\n", what);
      for (size_t i = 0; i < got.size(); ++i) std::fprintf(stderr, "  %zu: got %.9g want %.9g\n", i, got[i], want[i]);
    }
  };
  {  // per-token 4-bit: amax 1.4 -> s = f16(1.4 / 7) = 0.199951171875; x / s rounded half away from 0
    const std::vector<float> x = {1.4f, -0.7f, 0.1f, 0.0f};  // x / s: 7.0017, -3.5009, 0.50012, 0
    std::vector<float> y(4);
    bench::per_token_row(x.data(), y.data(), 4, 4);
    const float s = 0.199951171875f;
    expect("per_token 4-bit", y, {7 * s, -4 * s, 1 * s, 0.0f});
  }
  {  // asymmetric 2-bit: min -1, max 2 -> scale 1, levels -1, 0, 1, 2
    const std::vector<float> x = {-1.0f, 2.0f, 0.4f, 0.6f, 1.5f};  // (x - min) / s: 0, 3, 1.4, 1.6, 2.5
    std::vector<float> y(5);
    bench::asym2_group(x.data(), y.data(), 5, 1);
    expect("asym2", y, {-1.0f, 2.0f, 0.0f, 1.0f, 2.0f});
  }
  {  // q4_0: the value of largest magnitude is -4 -> d = -4 / -8 = 0.5; q = min(15, (int8)(x / d + 8.5))
    std::vector<float> x(32, 0.0f), y(32);
    x[0] = -4.0f;   // 0.5 -> 0 -> (0 - 8) * 0.5
    x[1] = 3.9f;    // 16.3 -> 16, capped at 15 -> 7 * 0.5
    x[2] = 0.26f;   // 9.02 -> 9 -> 0.5
    x[3] = -0.24f;  // 8.02 -> 8 -> 0; zeros: 8.5 -> 8 -> 0
    bench::q4_0_block(x.data(), y.data());
    std::vector<float> want(32, 0.0f);
    want[0] = -4.0f;
    want[1] = 3.5f;
    want[2] = 0.5f;
    expect("q4_0", y, want);
  }
  {  // q8_0: amax 1.27 -> d = 0.01, stored as f16 0.01000213623046875; q = roundf(x / d)
    std::vector<float> x(32, 0.0f), y(32);
    x[0] = 1.27f;     // 127
    x[1] = -0.0051f;  // -0.51 -> -1
    x[2] = 0.3333f;   // 33.33 -> 33
    bench::q8_0_block(x.data(), y.data());
    const float dh = 0.01000213623046875f;
    std::vector<float> want(32, 0.0f);
    want[0] = 127 * dh;
    want[1] = -1 * dh;
    want[2] = 33 * dh;
    expect("q8_0", y, want);
  }
  std::printf("%s\n", json{{"mode", "check"}, {"failures", bad}}.dump().c_str());
  return bad ? 1 : 0;
}

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) v.push_back(std::stod(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kvstash_codec_bench table|speed|check [options] (see the source)\n");
    return 2;
  }
  Args a;
  a.mode = argv[1];
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string k = argv[i];
      if (i + 1 >= argc) throw std::runtime_error("option " + k + " needs a value");
      const std::string v = argv[++i];
      if (k == "--model") a.model = v;
      else if (k == "--text") a.text = v;
      else if (k == "--work") a.work = v;
      else if (k == "--name") a.name = v;
      else if (k == "--threads") a.threads = std::stoi(v);
      else if (k == "--prefix") a.prefix = std::stoll(v);
      else if (k == "--cont") a.cont = std::stoll(v);
      else if (k == "--greedy") a.greedy = std::stoll(v);
      else if (k == "--tokens") a.tokens = std::stoll(v);
      else if (k == "--reps") a.reps = std::stoll(v);
      else if (k == "--recompute-reps") a.recompute_reps = std::stoll(v);
      else if (k == "--level") a.level = std::stoi(v);
      else if (k == "--level-ppl") a.level_ppl = v != "0";
      else if (k == "--target-factor") a.target_factor = std::stod(v);
      else if (k == "--links") a.links = parse_list(v);
      else throw std::runtime_error("unknown option " + k);
    }
    if (a.mode == "check") return run_check();
    if (a.work.empty()) throw std::runtime_error("--work is required");
    std::unique_ptr<Model> model = Model::load(a.model);
    ThreadPool pool(a.threads);
    json out;
    if (a.mode == "table") out = run_table(*model, pool, a);
    else if (a.mode == "speed") out = run_speed(*model, pool, a);
    else throw std::runtime_error("unknown mode " + a.mode);
    std::printf("%s\n", out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvstash_codec_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
