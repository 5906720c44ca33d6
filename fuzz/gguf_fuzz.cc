// GGUF reader fuzzer: parse in memory, then read metadata and tensors as the model loader does,
// and if the bytes make a loadable model, load it from a memfd and run two tokens through it.
// kvstash::Error is the expected outcome for bad input; anything else is a finding.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"
#include "kvstash/engine.h"
#include "kvstash/error.h"
#include "kvstash/gguf.h"
#include "kvstash/kernels.h"
#include "kvstash/model.h"
#include "kvstash/thread_pool.h"
#include "kvstash/tokenizer.h"

using namespace kvstash;

namespace {

template <class Fn>
void expect_error_or_ok(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  }
}

void touch_value(const GgufValue& v) {
  expect_error_or_ok([&] { (void)v.as_uint(); });
  expect_error_or_ok([&] { (void)v.as_int(); });
  expect_error_or_ok([&] { (void)v.as_float(); });
  expect_error_or_ok([&] { (void)v.as_bool(); });
  expect_error_or_ok([&] { (void)v.as_string().size(); });
  expect_error_or_ok([&] { (void)v.as_string_array().size(); });
  expect_error_or_ok([&] { (void)v.as_int_array(); });
  expect_error_or_ok([&] { (void)v.as_float_array(); });
  (void)gguf_type_name(v.type);
  (void)v.array_size();
}

// Dequantizes the first row of each supported tensor: reads the bytes the reader vouched for.
void touch_tensors(const GgufFile& f) {
  std::vector<float> row;
  for (const GgufTensor& t : f.tensors()) {
    if (f.find_tensor(t.name) != &t) __builtin_trap();
    const DTypeInfo& info = dtype_info(t.type_id);
    (void)t.elements();
    if (!info.supported || t.elements() == 0) continue;
    const int64_t n = t.shape.empty() ? 1 : t.shape[0];
    row.resize(size_t(n));
    dequantize_row(t.type(), t.data, row.data(), n);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ThreadPool threads(1);
  static fuzz::MemFile file("gguf_fuzz");
  std::unique_ptr<GgufFile> f;
  try {
    f = GgufFile::parse(data, size, "fuzz");
  } catch (const Error& e) {
    fuzz::note(e.what());
    return 0;
  }
  for (const GgufValue& v : f->metadata()) {
    if (f->find(v.key) != &v) __builtin_trap();
    touch_value(v);
  }
  touch_tensors(*f);
  expect_error_or_ok([&] { (void)f->get_uint("general.alignment", 32); });
  expect_error_or_ok([&] { (void)detect_chat_template(*f); });
  expect_error_or_ok([&] {
    const ModelConfig c = config_from_gguf(*f);
    (void)compute_fingerprint(*f, c);
  });
  expect_error_or_ok([&] {
    const auto tok = Tokenizer::from_gguf(*f);
    const auto ids = tok->encode(" Hello world <|im_start|>\xC3\xA9\xE6\x97\xA5 123\n", true, true);
    TextStream stream(*tok);
    for (Token t : ids) stream.push(t);
    stream.flush();
    (void)tok->decode(ids, true);
  });

  // The whole loader, and a forward pass on what it accepts (shapes it checked, weights it read).
  std::unique_ptr<Model> model;
  try {
    model = Model::load(file.write(data, size));
  } catch (const Error& e) {
    fuzz::note(e.what());
    return 0;
  }
  expect_error_or_ok([&] {
    EngineOptions opt;
    opt.n_ctx = 8;
    Engine engine(*model, threads, opt);
    Sequence seq = engine.new_sequence();
    const Token toks[2] = {0, Token(model->config().n_vocab - 1)};
    (void)engine.forward(seq, toks, 2);
    fuzz::note("(none: ran)");
  });
  return 0;
}
