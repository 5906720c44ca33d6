// The parameters behind a LevelParams text: which scheme codes the chunk and its settings. The
// text is strict and canonical ("lossless", "lossy k=0.5,0.7,1 v=0.6,0.9,1.2 alphabet=64",
// "cachegen k=32,16/10/32 v=32,16/2/32"); parse_level accepts exactly what level_text writes.
#pragma once
#include <string>
#include <vector>

namespace kvstash::codec {

enum class Scheme { Lossless = 1, Lossy = 2, CacheGen = 3 };

struct LossyParams {
  // Quantiser step per layer group (layers split into equal fractions of n_layer, first group
  // first), as a multiple of each channel's robust RMS in the chunk. K and V separately.
  std::vector<float> k, v;
  int alphabet = 64;  // symbols per value including the escape symbol (alphabet - 1)
};

struct CacheGenParams {
  // Bins for the first layers and for the rest, and the fraction of layers given the first count.
  int k_bins_first = 32, k_bins_rest = 16, k_num = 10, k_den = 32;
  int v_bins_first = 32, v_bins_rest = 16, v_num = 2, v_den = 32;
};

struct ParsedLevel {
  Scheme scheme = Scheme::Lossless;
  LossyParams lossy;
  CacheGenParams cachegen;
};

ParsedLevel parse_level(const std::string& text);  // Error(Corruption) unless canonical and valid
std::string level_text(const ParsedLevel& level);

// The group of a layer when n_layer layers are split into n_groups equal fractions.
inline int layer_group(int layer, int n_layer, int n_groups) {
  return int(int64_t(layer) * n_groups / n_layer);
}

}  // namespace kvstash::codec
