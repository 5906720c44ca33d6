// Chat prompts for the two template families kvstash knows, rendered as llama.cpp's
// llama_chat_apply_template renders them (it does not emit BOS; encode adds it).
#include <string>

#include "kvstash/gguf.h"
#include "kvstash/tokenizer.h"

namespace kvstash {

namespace {

// Strips ASCII whitespace from both ends, as llama.cpp's trim() (used by its Llama 3 template).
std::string trim(const std::string& s) {
  const char* const ws = " \t\n\v\f\r";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return std::string();
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

}  // namespace

ChatTemplate detect_chat_template(const GgufFile& file) {
  const std::string tmpl = file.get_string("tokenizer.chat_template", "");
  if (tmpl.find("<|im_start|>") != std::string::npos) return ChatTemplate::ChatML;
  if (tmpl.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::Llama3;
  return ChatTemplate::ChatML;
}

std::string format_chat(ChatTemplate tmpl, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  std::string out;
  switch (tmpl) {
    case ChatTemplate::ChatML:
      for (const ChatMessage& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatTemplate::Llama3:
      for (const ChatMessage& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
  }
  return out;
}

}  // namespace kvstash
