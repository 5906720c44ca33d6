#include "codec/level_params.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include "codec/kv_codec.h"
#include "kvstash/error.h"

namespace kvstash::codec {

namespace {

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw Error(ErrorKind::Corruption, "codec level \"" + text + "\": " + why);
}

std::string float_str(float f) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::string(buf, r.ptr);
}

std::string join_floats(const std::vector<float>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + float_str(v[i]);
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// "key=value" with the expected key; returns value.
std::string field(const std::string& text, const std::string& token, const std::string& key) {
  if (token.size() <= key.size() + 1 || token.compare(0, key.size() + 1, key + "=") != 0)
    bad(text, "expected " + key + "=...");
  return token.substr(key.size() + 1);
}

float parse_float(const std::string& text, const std::string& s) {
  float f = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), f);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) bad(text, "bad number \"" + s + "\"");
  return f;
}

int parse_int(const std::string& text, const std::string& s) {
  int v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) bad(text, "bad integer \"" + s + "\"");
  return v;
}

std::vector<float> parse_steps(const std::string& text, const std::string& s) {
  std::vector<float> v;
  for (const std::string& x : split(s, ',')) v.push_back(parse_float(text, x));
  if (v.empty() || v.size() > 16) bad(text, "1 to 16 layer groups needed");
  for (float f : v)
    if (!(f >= 1.0f / 1024 && f <= 64)) bad(text, "step " + float_str(f) + " outside [1/1024, 64]");
  return v;
}

// "32,16/10/32": bins first, bins rest, num/den.
void parse_split(const std::string& text, const std::string& s, int& first, int& rest, int& num, int& den) {
  const auto parts = split(s, '/');
  if (parts.size() != 3) bad(text, "expected bins,bins/num/den");
  const auto bins = split(parts[0], ',');
  if (bins.size() != 2) bad(text, "expected two bin counts");
  first = parse_int(text, bins[0]);
  rest = parse_int(text, bins[1]);
  num = parse_int(text, parts[1]);
  den = parse_int(text, parts[2]);
  for (int b : {first, rest})
    if (b < 4 || b > 64 || b % 2) bad(text, "bin counts must be even, 4..64");
  if (den < 1 || den > 1024 || num < 0 || num > den) bad(text, "bad layer fraction");
}

}  // namespace

std::string level_text(const ParsedLevel& l) {
  switch (l.scheme) {
    case Scheme::Lossless:
      return "lossless";
    case Scheme::Lossy:
      return "lossy k=" + join_floats(l.lossy.k) + " v=" + join_floats(l.lossy.v) +
             " alphabet=" + std::to_string(l.lossy.alphabet);
    case Scheme::CacheGen: {
      const CacheGenParams& c = l.cachegen;
      return "cachegen k=" + std::to_string(c.k_bins_first) + "," + std::to_string(c.k_bins_rest) + "/" +
             std::to_string(c.k_num) + "/" + std::to_string(c.k_den) + " v=" + std::to_string(c.v_bins_first) +
             "," + std::to_string(c.v_bins_rest) + "/" + std::to_string(c.v_num) + "/" + std::to_string(c.v_den);
    }
  }
  throw Error(ErrorKind::Internal, "level_text: unknown scheme");
}

ParsedLevel parse_level(const std::string& text) {
  if (text.size() > 1024) bad(text.substr(0, 40), "too long");
  const auto tok = split(text, ' ');
  ParsedLevel l;
  if (tok[0] == "lossless") {
    if (tok.size() != 1) bad(text, "lossless takes no parameters");
    l.scheme = Scheme::Lossless;
  } else if (tok[0] == "lossy") {
    if (tok.size() != 4) bad(text, "expected lossy k=... v=... alphabet=...");
    l.scheme = Scheme::Lossy;
    l.lossy.k = parse_steps(text, field(text, tok[1], "k"));
    l.lossy.v = parse_steps(text, field(text, tok[2], "v"));
    l.lossy.alphabet = parse_int(text, field(text, tok[3], "alphabet"));
    if (l.lossy.alphabet < 2 || l.lossy.alphabet > 256) bad(text, "alphabet must be 2..256");
  } else if (tok[0] == "cachegen") {
    if (tok.size() != 3) bad(text, "expected cachegen k=... v=...");
    l.scheme = Scheme::CacheGen;
    CacheGenParams& c = l.cachegen;
    parse_split(text, field(text, tok[1], "k"), c.k_bins_first, c.k_bins_rest, c.k_num, c.k_den);
    parse_split(text, field(text, tok[2], "v"), c.v_bins_first, c.v_bins_rest, c.v_num, c.v_den);
  } else {
    bad(text, "unknown scheme \"" + tok[0] + "\"");
  }
  if (level_text(l) != text) bad(text, "not in canonical form (\"" + level_text(l) + "\")");
  return l;
}

bool LevelParams::lossless() const { return parse_level(text).scheme == Scheme::Lossless; }

LevelParams LevelParams::parse(const std::string& text) {
  parse_level(text);
  return LevelParams{text};
}

namespace {
// Steps as multiples of the channel's robust RMS, per layer group, from the codec_tune
// measurements (docs/codec.md).
const std::vector<ParsedLevel>& lossy_table() {
  static const std::vector<ParsedLevel> t = [] {
    std::vector<ParsedLevel> v;
    auto add = [&](std::vector<float> k, std::vector<float> vv) {
      ParsedLevel l;
      l.scheme = Scheme::Lossy;
      l.lossy.k = std::move(k);
      l.lossy.v = std::move(vv);
      l.lossy.alphabet = 64;
      v.push_back(l);
    };
    // Keys one step for every layer (coarser keys in the last layers cost the most perplexity
    // in codec_tune), values a little finer in the first third and coarser in the last.
    for (float base : {1.0f, 0.8f, 0.6f, 0.4f, 0.25f, 0.1f})
      add({base}, {base * 0.9f, base * 1.1f, base * 1.3f});
    return v;
  }();
  return t;
}
}  // namespace

int built_in_levels() { return int(lossy_table().size()); }

LevelParams built_in_level(int level) {
  if (level < 1 || level > built_in_levels())
    throw Error(ErrorKind::InvalidArgument, "codec level " + std::to_string(level) + " does not exist (1.." +
                                                std::to_string(built_in_levels()) + ")");
  return LevelParams{level_text(lossy_table()[size_t(level - 1)])};
}

LevelParams lossless_level() { return LevelParams{"lossless"}; }

LevelParams cachegen_level() { return LevelParams{level_text(ParsedLevel{Scheme::CacheGen, {}, {}})}; }

}  // namespace kvstash::codec
