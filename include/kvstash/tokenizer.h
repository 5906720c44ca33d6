// Tokenizers built from GGUF vocabulary metadata: byte-level BPE (tokenizer.ggml.model "gpt2",
// pre-split by the regex that tokenizer.ggml.pre names) and SentencePiece-style BPE ("llama").
// Token ids match llama.cpp's llama_tokenize for the same text and flags.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/types.h"

namespace kvstash {

class GgufFile;

class Tokenizer {
 public:
  // Throws Error naming the missing/unsupported metadata (e.g. "missing tokenizer metadata:
  // tokenizer.ggml.tokens", "unsupported pre-tokenizer 'xyz' (tokenizer.ggml.pre)").
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  virtual ~Tokenizer() = default;

  // add_special: add BOS/EOS as the model's metadata asks (tokenizer.ggml.add_bos_token ...).
  // parse_special: text of control tokens (e.g. "<|im_start|>") maps to that token. Text of
  // user-defined tokens always does, as in llama.cpp.
  virtual std::vector<Token> encode(std::string_view text, bool add_special,
                                    bool parse_special) const = 0;
  // The bytes a token stands for (may be a partial UTF-8 sequence). Control tokens give ""
  // unless render_special.
  virtual std::string token_bytes(Token t, bool render_special = false) const = 0;
  // The concatenated token_bytes: exact, no clean-up. (SentencePiece vocabularies keep the
  // space that add_space_prefix put in front of the text.)
  std::string decode(const std::vector<Token>& tokens, bool render_special = false) const;

  virtual int32_t n_vocab() const = 0;
  virtual const std::string& token_text(Token t) const = 0;  // the vocabulary entry as stored
  virtual Token bos() const = 0;                             // -1 if none
  virtual Token eos() const = 0;                             // -1 if none
  virtual bool add_bos() const = 0;
  virtual bool is_end_of_generation(Token t) const = 0;      // eos, eot, <|im_end|>, <|eot_id|>
};

// Turns a stream of tokens into valid UTF-8 text pieces, holding back incomplete sequences.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tok) : tok_(tok) {}
  std::string push(Token t);  // the text that became complete with this token
  std::string flush();        // whatever is held back (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatTemplate { ChatML, Llama3 };
// From tokenizer.chat_template; ChatML when absent or unrecognised.
ChatTemplate detect_chat_template(const GgufFile& file);
// Rendered prompt text (special tokens as text; encode with parse_special=true).
std::string format_chat(ChatTemplate tmpl, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

}  // namespace kvstash
