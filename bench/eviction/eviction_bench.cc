// Quality and speed of budgeted KV caches (issue 8): a benchmark, not a test. bench/eviction/run.py
// drives it and renders docs/eviction.md. Every mode prints one JSON object on stdout.
//
//   kvstash_eviction_bench stream  --text FILE --tokens N [--config SPEC]...
//       The first N tokens of FILE (BOS first) as one stream, fed in chunks of the eviction interval
//       with all logits, through the full cache and every budgeted configuration side by side: each
//       token is predicted from the cache of everything before it. Per configuration: perplexity,
//       mean KL(full || budgeted) of the next-token distributions, top-1 agreement with the full
//       cache; the same over the "tail" (tokens after the largest budget + interval, where every
//       budget has evicted).
//   kvstash_eviction_bench greedy  --text FILE --prefix P --gen G [--config SPEC]...
//       Prefill the first P tokens, end the prompt (SnapKV selects there), generate G greedy tokens.
//       Against the full cache's G tokens: position-wise agreement, tokens until the first
//       divergence, and teacher-forced top-1 agreement (the budgeted cache fed the full cache's
//       tokens: does its argmax equal the full cache's next token?).
//   kvstash_eviction_bench passkey --length L [--depths 0.1,0.3,...] [--keys K] [--gen 8] [--chat]
//       [--config SPEC]...
//       A 5-digit pass key stated once at each depth of L tokens of filler, asked for at the end;
//       greedy decode; correct if the digits appear. K keys per depth. The filler before a depth is
//       shared between its trials (the sequence is forked there).
//   kvstash_eviction_bench decode  --text FILE --prefill N --decode G --reps R [--config SPEC]
//       Prefill N tokens of FILE, then R times G greedy tokens: decode tokens/s per repetition,
//       peak RSS (VmHWM, ru_maxrss). One configuration per process.
//
// SPEC: comma-separated key=value: name=, policy=full|window|sinks|h2o|tova|snapkv|fsdc, budget=,
// interval=, sinks=, recent=, normalize=0|1, summary=none|sum|mean, positions=original|contiguous,
// snap_window=, snap_pool=. Common options: --model GGUF, --threads N.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/generate.h"
#include "kvstash/kv_budget.h"
#include "kvstash/model.h"
#include "kvstash/thread_pool.h"
#include "kvstash/tokenizer.h"

using namespace kvstash;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Config {
  std::string name;
  KvBudget b;  // budget 0: the full cache
};

Config parse_config(const std::string& spec) {
  Config c;
  std::stringstream ss(spec);
  std::string item;
  bool full = false;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw std::runtime_error("config item without '=': " + item);
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "name") c.name = v;
    else if (k == "policy") {
      if (v == "full") full = true;
      else c.b.policy = parse_eviction_policy(v);
    } else if (k == "budget") c.b.budget = std::stoll(v);
    else if (k == "interval") c.b.interval = std::stoll(v);
    else if (k == "sinks") c.b.sinks = std::stoi(v);
    else if (k == "recent") c.b.recent = std::stod(v);
    else if (k == "normalize") c.b.normalize = v == "1" || v == "true";
    else if (k == "summary") c.b.summary = parse_summary_mode(v);
    else if (k == "positions") c.b.positions = parse_position_mode(v);
    else if (k == "snap_window") c.b.snapkv_window = std::stoi(v);
    else if (k == "snap_pool") c.b.snapkv_pool = std::stoi(v);
    else throw std::runtime_error("unknown config key: " + k);
  }
  if (full) c.b.budget = 0;
  if (c.b.enabled()) validate(c.b);
  if (c.name.empty()) c.name = c.b.enabled() ? to_string(c.b.policy) + "-" + std::to_string(c.b.budget) : "full";
  return c;
}

json config_json(const Config& c) {
  json j;
  j["name"] = c.name;
  j["policy"] = c.b.enabled() ? to_string(c.b.policy) : "full";
  j["budget"] = c.b.budget;
  if (c.b.enabled()) {
    j["interval"] = c.b.interval;
    j["normalize"] = c.b.normalize;
    j["summary"] = to_string(c.b.summary);
    j["positions"] = to_string(c.b.positions);
    j["describe"] = describe(c.b);
  }
  return j;
}

// Slots a configuration's sequence may hold at most (the engine's n_ctx must allow them).
int64_t max_slots(const Config& c, int64_t prompt) {
  if (!c.b.enabled()) return prompt;
  int64_t s = c.b.budget + c.b.interval + 1;
  if (c.b.policy == EvictionPolicy::SnapKV) s = std::max(s, prompt + c.b.interval + 1);
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<Token> text_tokens(const Model& m, const std::string& path, int64_t n) {
  std::vector<Token> t = m.tokenizer().encode(read_file(path), true, false);
  if (int64_t(t.size()) < n)
    throw std::runtime_error(path + " has only " + std::to_string(t.size()) + " tokens, " + std::to_string(n) +
                             " wanted");
  t.resize(size_t(n));
  return t;
}

Token argmax(const float* l, int n) { return Token(std::max_element(l, l + n) - l); }

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// log-sum-exp of a row, in double.
double lse(const float* l, int n) {
  const float mx = *std::max_element(l, l + n);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(double(l[i] - mx));
  return double(mx) + std::log(s);
}

long vm_hwm_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

long vm_rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

struct Args {
  std::string mode, model = default_model_path(), text;
  int threads = 2;
  std::vector<Config> configs;
  int64_t tokens = 8192, prefix = 2048, gen = 256, length = 2048, prefill = 1024, decode = 64, reps = 3;
  int64_t interval = 32, keys = 4, seed = 1, tail_from = -1;
  std::vector<double> depths = {0.1, 0.3, 0.5, 0.7, 0.9};
  bool chat = false;
  std::string filler;  // passkey: a text file for the filler instead of the classic sentences
};

// ---- stream -------------------------------------------------------------------------------------

json run_stream(const Model& model, ThreadPool& pool, const Args& a) {
  const std::vector<Token> toks = text_tokens(model, a.text, a.tokens);
  const int64_t N = int64_t(toks.size()), fed = N - 1;
  const int V = model.config().n_vocab;
  int64_t kv_total = N + 64, n_ctx = N, biggest = 0;
  for (const Config& c : a.configs) {
    if (c.b.policy == EvictionPolicy::SnapKV && c.b.enabled())
      throw std::runtime_error("stream: snapkv has no prompt end (n/a)");
    kv_total += max_slots(c, N) + 64;
    biggest = std::max(biggest, c.b.budget + c.b.interval);
  }
  EngineOptions eo;
  eo.n_ctx = n_ctx;
  eo.kv_tokens = kv_total;
  Engine engine(model, pool, eo);
  const int64_t tail_from = a.tail_from >= 0 ? a.tail_from : biggest;

  Sequence full = engine.new_sequence();
  std::vector<Sequence> seqs;
  for (const Config& c : a.configs) seqs.push_back(engine.new_sequence(c.b));
  const size_t C = a.configs.size();
  struct Acc {
    double nll = 0, kl = 0, agree = 0, nll_t = 0, kl_t = 0, agree_t = 0, max_kl = 0;
    int64_t nonfinite = 0;  // positions whose logits held a NaN or an infinity
    double secs = 0;
  };
  std::vector<Acc> acc(C);
  Acc facc;
  int64_t scored = 0, scored_t = 0;

  const int64_t chunk = a.interval;
  std::vector<float> flog;          // full logits of the chunk
  std::vector<double> f_lse, f_negent;  // per row: lse, sum p log p
  std::vector<Token> f_arg;
  std::vector<float> pf;            // per row: full probabilities
  std::vector<double> r_nll(static_cast<size_t>(chunk)), r_kl(static_cast<size_t>(chunk));
  std::vector<int> r_agree(static_cast<size_t>(chunk));
  const auto t0 = Clock::now();
  double full_secs = 0;
  for (int64_t at = 0; at < fed; at += chunk) {
    const int64_t n = std::min(chunk, fed - at);
    auto tf = Clock::now();
    const float* fl = engine.forward(full, &toks[size_t(at)], n, ForwardOptions{.all_logits = true});
    full_secs += seconds_since(tf);
    flog.assign(fl, fl + n * V);
    f_lse.assign(size_t(n), 0);
    f_negent.assign(size_t(n), 0);
    f_arg.assign(size_t(n), 0);
    pf.resize(size_t(n * V));
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) {
        const float* l = &flog[size_t(r * V)];
        const double z = lse(l, V);
        double ne = 0;
        float* p = &pf[size_t(r * V)];
        for (int v = 0; v < V; ++v) {
          const double lp = double(l[v]) - z;
          const double pv = std::exp(lp);
          p[v] = float(pv);
          ne += pv * lp;
        }
        f_lse[size_t(r)] = z;
        f_negent[size_t(r)] = ne;
        f_arg[size_t(r)] = argmax(l, V);
      }
    });
    for (int64_t r = 0; r < n; ++r) {
      const int64_t pos = at + r;  // predicts token pos + 1
      const double nl = -(double(flog[size_t(r * V + toks[size_t(pos + 1)])]) - f_lse[size_t(r)]);
      facc.nll += nl;
      if (pos + 1 >= tail_from) facc.nll_t += nl;
    }
    for (size_t ci = 0; ci < C; ++ci) {
      auto tc = Clock::now();
      const float* bl = engine.forward(seqs[ci], &toks[size_t(at)], n, ForwardOptions{.all_logits = true});
      pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
          const float* l = bl + r * V;
          const double z = lse(l, V);
          const float* p = &pf[size_t(r * V)];
          double dot = 0;
          for (int v = 0; v < V; ++v) dot += double(p[v]) * double(l[v]);
          // KL(P||Q) = sum p log p - sum p (l - z) = negent - dot + z (sum p = 1)
          const double kl = f_negent[size_t(r)] - dot + z;
          r_kl[size_t(r)] = std::isnan(kl) ? kl : std::max(0.0, kl);
          r_nll[size_t(r)] = -(double(l[toks[size_t(at + r + 1)]]) - z);
          r_agree[size_t(r)] = argmax(l, V) == f_arg[size_t(r)];
        }
      });
      Acc& s = acc[ci];
      for (int64_t r = 0; r < n; ++r) {
        if (!std::isfinite(r_nll[size_t(r)]) || !std::isfinite(r_kl[size_t(r)])) ++s.nonfinite;
        s.nll += r_nll[size_t(r)];
        s.kl += r_kl[size_t(r)];
        s.agree += r_agree[size_t(r)];
        s.max_kl = std::max(s.max_kl, r_kl[size_t(r)]);
        if (at + r + 1 >= tail_from) {
          s.nll_t += r_nll[size_t(r)];
          s.kl_t += r_kl[size_t(r)];
          s.agree_t += r_agree[size_t(r)];
        }
      }
      s.secs += seconds_since(tc);
    }
    for (int64_t r = 0; r < n; ++r) {
      ++scored;
      if (at + r + 1 >= tail_from) ++scored_t;
    }
    if ((at / chunk) % 32 == 0)
      std::fprintf(stderr, "stream %s: %lld/%lld tokens, %.0f s\n", a.text.c_str(), (long long)(at + n),
                   (long long)fed, seconds_since(t0));
  }
  json out;
  out["mode"] = "stream";
  out["text"] = a.text;
  out["tokens"] = N;
  out["scored"] = scored;
  out["tail_from"] = tail_from;
  out["scored_tail"] = scored_t;
  out["chunk"] = chunk;
  out["threads"] = pool.size();
  out["seconds"] = seconds_since(t0);
  out["full"] = {{"ppl", std::exp(facc.nll / double(scored))},
                 {"ppl_tail", scored_t ? std::exp(facc.nll_t / double(scored_t)) : 0.0},
                 {"seconds", full_secs}};
  json rows = json::array();
  for (size_t ci = 0; ci < C; ++ci) {
    const Acc& s = acc[ci];
    json j = config_json(a.configs[ci]);
    j["ppl"] = std::exp(s.nll / double(scored));
    j["ppl_full"] = std::exp(facc.nll / double(scored));
    j["mean_kl"] = s.kl / double(scored);
    j["max_kl"] = s.max_kl;
    j["nonfinite_positions"] = s.nonfinite;  // NaN or infinite logits: ppl and KL are then null in JSON
    j["top1_agree"] = s.agree / double(scored);
    if (scored_t) {
      j["ppl_tail"] = std::exp(s.nll_t / double(scored_t));
      j["ppl_full_tail"] = std::exp(facc.nll_t / double(scored_t));
      j["mean_kl_tail"] = s.kl_t / double(scored_t);
      j["top1_agree_tail"] = s.agree_t / double(scored_t);
    }
    j["seconds"] = s.secs;
    j["slots_end"] = seqs[ci].size();
    rows.push_back(j);
  }
  out["configs"] = rows;
  return out;
}

// ---- greedy -------------------------------------------------------------------------------------

std::vector<Token> greedy_from(Engine& engine, Sequence& seq, const float* logits, int64_t g, int V) {
  std::vector<Token> out;
  Token t = argmax(logits, V);
  for (int64_t i = 0; i < g; ++i) {
    out.push_back(t);
    if (i + 1 == g) break;
    const float* l = engine.forward(seq, &t, 1);
    t = argmax(l, V);
  }
  return out;
}

json run_greedy(const Model& model, ThreadPool& pool, const Args& a) {
  const std::vector<Token> toks = text_tokens(model, a.text, a.prefix);
  const int V = model.config().n_vocab;
  const int64_t P = a.prefix, G = a.gen;
  int64_t n_ctx = P + G + 64;
  EngineOptions eo;
  eo.n_ctx = n_ctx;
  eo.kv_tokens = 2 * n_ctx + 256;  // a sequence and its fork (teacher forcing), one at a time
  Engine engine(model, pool, eo);
  const auto t0 = Clock::now();

  std::vector<Token> ref;
  {
    Sequence full = engine.new_sequence();
    const float* l = engine.forward(full, toks.data(), P);
    ref = greedy_from(engine, full, l, G, V);
  }
  const double full_secs = seconds_since(t0);
  json rows = json::array();
  for (const Config& c : a.configs) {
    const auto tc = Clock::now();
    Sequence seq = engine.new_sequence(c.b);
    const float* l = engine.end_prefill(seq, engine.forward(seq, toks.data(), P));
    const std::vector<float> last(l, l + V);
    Sequence tf = seq.fork();
    const std::vector<Token> got = greedy_from(engine, seq, last.data(), G, V);
    int64_t same = 0, first_div = G;
    for (int64_t i = 0; i < G; ++i) {
      if (got[size_t(i)] == ref[size_t(i)]) ++same;
      else if (first_div == G) first_div = i;
    }
    // Teacher forcing: feed the full cache's tokens, compare argmax with its next token.
    int64_t tf_same = argmax(last.data(), V) == ref[0];
    const float* tl = engine.forward(tf, ref.data(), G - 1, ForwardOptions{.all_logits = true});
    for (int64_t i = 0; i + 1 < G; ++i) tf_same += argmax(tl + i * V, V) == ref[size_t(i + 1)];
    json j = config_json(c);
    j["agree_positionwise"] = double(same) / double(G);
    j["first_divergence"] = first_div;
    j["teacher_forced_top1"] = double(tf_same) / double(G);
    j["seconds"] = seconds_since(tc);
    rows.push_back(j);
    std::fprintf(stderr, "greedy %s %s: %lld/%lld same, first divergence %lld\n", a.text.c_str(), c.name.c_str(),
                 (long long)same, (long long)G, (long long)first_div);
  }
  json out;
  out["mode"] = "greedy";
  out["text"] = a.text;
  out["prefix"] = P;
  out["gen"] = G;
  out["threads"] = pool.size();
  out["full_seconds"] = full_secs;
  out["seconds"] = seconds_since(t0);
  out["configs"] = rows;
  return out;
}

// ---- passkey ------------------------------------------------------------------------------------

json run_passkey(const Model& model, ThreadPool& pool, const Args& a) {
  const Tokenizer& tk = model.tokenizer();
  const int V = model.config().n_vocab;
  const std::string intro =
      "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
      "I will quiz you about the important information there.";
  const std::string question = " What is the pass key? The pass key is";
  std::vector<Token> head, tail;
  if (a.chat) {
    const ChatTemplate tmpl = detect_chat_template(model.gguf());
    const std::string marker = "@@KVSTASH_SPLIT@@";
    const std::string r = format_chat(tmpl, {{"user", intro + marker + " What is the pass key?"}}, true);
    const size_t m = r.find(marker);
    head = tk.encode(r.substr(0, m), true, true);
    tail = tk.encode(r.substr(m + marker.size()) + "The pass key is", false, true);
  } else {
    head = tk.encode(intro, true, false);
    tail = tk.encode(question, false, false);
  }
  // Filler: units that each start with a space, so their concatenation tokenizes as the text would.
  std::vector<std::vector<Token>> units;
  if (a.filler.empty()) {
    units.push_back(tk.encode(" The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
                              false, false));
  } else {
    // Sentences of a real text, cut at ". " (each unit is " sentence.").
    std::string t = read_file(a.filler);
    for (char& ch : t)
      if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
    size_t at = 0;
    while (at < t.size() && units.size() < 100000) {
      size_t e = t.find(". ", at);
      if (e == std::string::npos) break;
      std::string s = t.substr(at, e + 1 - at);
      size_t b = s.find_first_not_of(' ');
      if (b != std::string::npos) units.push_back(tk.encode(" " + s.substr(b), false, false));
      at = e + 2;
    }
  }
  const auto needle_tokens = [&](int key) {
    const std::string k = std::to_string(key);
    return tk.encode(" The pass key is " + k + ". Remember it. " + k + " is the pass key.", false, false);
  };
  const int64_t needle_len = int64_t(needle_tokens(12345).size());
  // Filler units until the total reaches L.
  std::vector<Token> filler;
  std::vector<int64_t> unit_end;  // filler token count after each unit
  const int64_t want = a.length - int64_t(head.size() + tail.size()) - needle_len;
  for (size_t u = 0; int64_t(filler.size()) < want; ++u) {
    const auto& un = units[u % units.size()];
    if (int64_t(filler.size() + un.size()) > want && !filler.empty()) break;
    filler.insert(filler.end(), un.begin(), un.end());
    unit_end.push_back(int64_t(filler.size()));
  }
  // Keys: a fixed pseudo-random sequence (the same for every configuration).
  std::vector<std::vector<int>> keys(a.depths.size());
  uint64_t st = uint64_t(a.seed) * 0x9E3779B97F4A7C15ull + 12345;
  for (auto& ks : keys)
    for (int64_t i = 0; i < a.keys; ++i) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      ks.push_back(10000 + int((st >> 33) % 90000));
    }
  const int64_t total = int64_t(head.size() + filler.size() + tail.size()) + needle_len;
  int64_t n_ctx = total + a.gen + 64;
  EngineOptions eo;
  eo.n_ctx = n_ctx;
  eo.kv_tokens = 2 * n_ctx + 256;
  Engine engine(model, pool, eo);
  const auto t0 = Clock::now();

  json rows = json::array();
  for (const Config& c : a.configs) {
    const auto tc = Clock::now();
    Sequence main = engine.new_sequence(c.b);
    engine.forward(main, head.data(), int64_t(head.size()));
    int64_t done = 0;  // filler tokens in main
    int correct = 0, trials = 0;
    json tr = json::array();
    for (size_t di = 0; di < a.depths.size(); ++di) {
      // Cut at the unit boundary nearest the depth.
      const int64_t target = int64_t(std::llround(a.depths[di] * double(filler.size())));
      int64_t cut = 0;
      for (int64_t e : unit_end)
        if (std::llabs(e - target) < std::llabs(cut - target)) cut = e;
      if (cut > done) {
        engine.forward(main, &filler[size_t(done)], cut - done);
        done = cut;
      }
      for (int key : keys[di]) {
        Sequence s = main.fork();
        std::vector<Token> rest = needle_tokens(key);
        rest.insert(rest.end(), filler.begin() + cut, filler.end());
        rest.insert(rest.end(), tail.begin(), tail.end());
        const float* l = engine.end_prefill(s, engine.forward(s, rest.data(), int64_t(rest.size())));
        const std::vector<float> last(l, l + V);
        std::vector<Token> out;
        Token t = argmax(last.data(), V);
        for (int64_t i = 0; i < a.gen; ++i) {
          if (tk.is_end_of_generation(t)) break;
          out.push_back(t);
          if (i + 1 == a.gen) break;
          const float* l2 = engine.forward(s, &t, 1);
          t = argmax(l2, V);
        }
        const std::string text = tk.decode(out);
        const bool ok = text.find(std::to_string(key)) != std::string::npos;
        correct += ok;
        ++trials;
        tr.push_back({{"depth", a.depths[di]}, {"key", key}, {"correct", ok}, {"output", text},
                      {"needle_at", int64_t(head.size()) + cut}});
      }
    }
    json j = config_json(c);
    j["accuracy"] = double(correct) / double(trials);
    j["correct"] = correct;
    j["trials"] = trials;
    j["per_trial"] = tr;
    j["seconds"] = seconds_since(tc);
    rows.push_back(j);
    std::fprintf(stderr, "passkey L=%lld %s: %d/%d (%.0f s)\n", (long long)total, c.name.c_str(), correct, trials,
                 seconds_since(tc));
  }
  json out;
  out["mode"] = "passkey";
  out["length"] = total;
  out["filler_tokens"] = int64_t(filler.size());
  out["chat"] = a.chat;
  out["filler"] = a.filler.empty() ? "classic" : a.filler;
  out["depths"] = a.depths;
  out["keys_per_depth"] = a.keys;
  out["gen"] = a.gen;
  out["threads"] = pool.size();
  out["seconds"] = seconds_since(t0);
  out["configs"] = rows;
  return out;
}

// ---- decode -------------------------------------------------------------------------------------

json run_decode(const Model& model, ThreadPool& pool, const Args& a) {
  if (a.configs.size() != 1) throw std::runtime_error("decode: exactly one --config");
  const Config& c = a.configs[0];
  const int V = model.config().n_vocab;
  const std::vector<Token> toks = text_tokens(model, a.text, a.prefill);
  const int64_t total = a.prefill + a.decode * a.reps;
  EngineOptions eo;
  if (c.b.enabled()) {
    eo.n_ctx = max_slots(c, a.prefill) + 32;
    eo.kv_tokens = eo.n_ctx + 64;
  } else {
    eo.n_ctx = total + 32;  // sized to the work, as the CLI does
  }
  const long rss_model0 = vm_rss_kb();
  Engine engine(model, pool, eo);
  Sequence seq = engine.new_sequence(c.b);
  auto t0 = Clock::now();
  const float* l = nullptr;
  for (int64_t at = 0; at < a.prefill; at += 512)
    l = engine.forward(seq, &toks[size_t(at)], std::min<int64_t>(512, a.prefill - at));
  l = engine.end_prefill(seq, l);
  const double prefill_s = seconds_since(t0);
  const long hwm_after_prefill = vm_hwm_kb();
  Token t = argmax(l, V);
  std::vector<double> tps;
  for (int64_t r = 0; r < a.reps; ++r) {
    t0 = Clock::now();
    for (int64_t i = 0; i < a.decode; ++i) {
      l = engine.forward(seq, &t, 1);
      t = argmax(l, V);
    }
    tps.push_back(double(a.decode) / seconds_since(t0));
  }
  std::vector<double> sorted = tps;
  std::sort(sorted.begin(), sorted.end());
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  json j = config_json(c);
  j["mode"] = "decode";
  j["prefill"] = a.prefill;
  j["decode"] = a.decode;
  j["reps"] = a.reps;
  j["threads"] = pool.size();
  j["n_ctx"] = engine.n_ctx();
  j["kv_pool_tokens"] = engine.kv_pool().n_blocks() * 32;
  j["prefill_s"] = prefill_s;
  j["decode_tokens_per_s"] = tps;
  j["decode_tokens_per_s_median"] = sorted[sorted.size() / 2];
  j["vm_hwm_kb"] = vm_hwm_kb();
  j["vm_hwm_after_prefill_kb"] = hwm_after_prefill;
  j["maxrss_kb"] = ru.ru_maxrss;
  j["rss_before_engine_kb"] = rss_model0;
  j["slots_end"] = seq.size();
  return j;
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
    std::fprintf(stderr, "usage: kvstash_eviction_bench stream|greedy|passkey|decode [options] (see the source)\n");
    return 2;
  }
  Args a;
  a.mode = argv[1];
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--chat") {
        a.chat = true;
        continue;
      }
      if (i + 1 >= argc) throw std::runtime_error("option " + k + " needs a value");
      const std::string v = argv[++i];
      if (k == "--model") a.model = v;
      else if (k == "--text") a.text = v;
      else if (k == "--threads") a.threads = std::stoi(v);
      else if (k == "--config") a.configs.push_back(parse_config(v));
      else if (k == "--tokens") a.tokens = std::stoll(v);
      else if (k == "--prefix") a.prefix = std::stoll(v);
      else if (k == "--gen") a.gen = std::stoll(v);
      else if (k == "--length") a.length = std::stoll(v);
      else if (k == "--prefill") a.prefill = std::stoll(v);
      else if (k == "--decode") a.decode = std::stoll(v);
      else if (k == "--reps") a.reps = std::stoll(v);
      else if (k == "--interval") a.interval = std::stoll(v);
      else if (k == "--keys") a.keys = std::stoll(v);
      else if (k == "--seed") a.seed = std::stoll(v);
      else if (k == "--tail-from") a.tail_from = std::stoll(v);
      else if (k == "--depths") a.depths = parse_list(v);
      else if (k == "--filler") a.filler = v;
      else throw std::runtime_error("unknown option " + k);
    }
    std::unique_ptr<Model> model = Model::load(a.model);
    ThreadPool pool(a.threads);
    json out;
    if (a.mode == "stream") out = run_stream(*model, pool, a);
    else if (a.mode == "greedy") out = run_greedy(*model, pool, a);
    else if (a.mode == "passkey") {
      if (a.gen == 256) a.gen = 8;  // the default of --gen is greedy's
      out = run_passkey(*model, pool, a);
    } else if (a.mode == "decode") out = run_decode(*model, pool, a);
    else throw std::runtime_error("unknown mode " + a.mode);
    std::printf("%s\n", out.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvstash_eviction_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
