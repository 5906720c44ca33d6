// Files the .kvs reader refuses that are not damaged: safetensors files other tools wrote whole.
// They are refused as NotSupported, naming what they are, instead of as Corruption.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "state/kvs_format.h"

namespace kvstash::kvs {

// Whether the header describes a whole, well-formed safetensors file by safetensors' own rules:
// every tensor's byte count matches its dtype and shape (where the dtype is known), and the tensors
// tile the byte buffer up to the end of the file. A cut or damaged kvstash file almost never
// passes; a file another tool wrote always does.
bool complete_safetensors(const nlohmann::json& header, uint64_t n, uint64_t file_size);

// How a directory holding exactly kvstash's tensors (same names, dtypes and shapes; padding
// tensors kept or dropped) departs from kvstash's layout `slots`; "" when it holds other tensors.
std::string rearranged(const nlohmann::json& header, const std::vector<TensorSlot>& slots, uint64_t data_start);

}  // namespace kvstash::kvs
