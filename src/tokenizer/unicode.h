// UTF-8 helpers for the tokenizers, with llama.cpp's rules for malformed input, and the GPT-2
// byte <-> character mapping used by byte-level BPE vocabularies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvstash::tok {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes, as llama.cpp).
size_t utf8_seq_len(uint8_t lead);

// Decodes leniently, exactly as llama.cpp's unicode_cpts_from_utf8: a well-formed 1-4 byte
// sequence gives its value (overlong forms and surrogates included); anything else gives U+FFFD
// and consumes one byte. Values above U+10FFFF also become U+FFFD (llama.cpp aborts on them).
std::vector<uint32_t> decode_utf8_lenient(std::string_view text);

// Appends the 1-4 byte encoding of cpt (cpt <= 0x10FFFF; surrogates are encoded as-is).
void append_utf8(std::string& out, uint32_t cpt);

// True when cpt is a Unicode scalar value (not a surrogate, at most U+10FFFF).
inline bool is_scalar(uint32_t cpt) { return cpt <= 0x10FFFF && (cpt < 0xD800 || cpt > 0xDFFF); }

// Splits `bytes` into the longest prefix that is complete, valid UTF-8 (invalid bytes already
// replaced by U+FFFD) and a tail that is a proper prefix of a valid sequence, held back.
// With final=true nothing is held back: an incomplete tail becomes U+FFFD.
std::string take_valid_utf8(std::string& bytes, bool final);

// GPT-2 byte-level mapping: every byte 0..255 stands for one printable character.
const std::string& gpt2_byte_to_utf8(uint8_t byte);
// The byte a mapped character stands for, or -1 when cpt is not in the mapping.
int gpt2_cpt_to_byte(uint32_t cpt);

}  // namespace kvstash::tok
