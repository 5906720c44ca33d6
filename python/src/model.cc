// kvstash.Model: load a GGUF model, tokenize, process a prefix into a State, generate from a state.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "bindings.h"

namespace kvstash::py {

LoadedPrefix& PyModel::prefix_for(const std::shared_ptr<const State>& state) {
  if (loaded && loaded_for == state) return *loaded;
  drop_loaded();
  loaded = std::make_unique<LoadedPrefix>(*engine, *state);
  loaded_for = state;
  return *loaded;
}

void PyModel::drop_loaded() {
  loaded.reset();
  loaded_for.reset();
}

Continuation run_generate(PyModel& m, const std::shared_ptr<const State>& state, const std::string& prompt,
                          const GenerateOptions& options, const std::function<void(const std::string&)>& on_text) {
  if (state) return m.prefix_for(state).generate(prompt, options, on_text);
  m.drop_loaded();
  Sequence seq = m.engine->new_sequence();
  Continuation c;
  c.result = generate(*m.engine, seq, prompt_tokens(m.model->tokenizer(), prompt), options, on_text);
  return c;
}

void check_signals() {
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

GenerateOptions generate_options(int max_tokens, double temperature, double top_p, int top_k, double min_p,
                                 double repeat_penalty, uint64_t seed, const std::vector<std::string>& stop,
                                 bool ignore_eos) {
  if (max_tokens < -1)
    throw Error(ErrorKind::InvalidArgument, "max_tokens must be -1 (until the end of generation) or >= 0, got " +
                                                std::to_string(max_tokens));
  GenerateOptions o;
  o.n_predict = max_tokens;
  o.sampling.temperature = float(temperature);
  o.sampling.top_p = float(top_p);
  o.sampling.top_k = top_k;
  o.sampling.min_p = float(min_p);
  o.sampling.repeat_penalty = float(repeat_penalty);
  o.sampling.seed = seed;
  o.stop = stop;
  o.ignore_eos = ignore_eos;
  try {
    validate(o.sampling);
  } catch (const Error& e) {  // the library names the CLI's flags; say the Python argument's name
    std::string message = e.what();
    for (const auto& [flag, arg] : {std::pair{"--temp", "temperature"}, {"--top-k", "top_k"}, {"--top-p", "top_p"},
                                    {"--min-p", "min_p"}, {"--repeat-penalty", "repeat_penalty"},
                                    {"--repeat-last-n", "repeat_last_n"}})
      if (message.rfind(flag, 0) == 0) message = arg + message.substr(std::strlen(flag));
    throw Error(e.kind(), message);
  }
  return o;
}

namespace {

std::shared_ptr<const State> state_of(const std::optional<PyState*>& s) {
  return s && *s ? (*s)->state : nullptr;
}

// Text with invalid UTF-8 replaced (a token may end inside a character).
nb::str utf8_text(const std::string& s) {
  return nb::steal<nb::str>(PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace"));
}

std::vector<Token> tokens_of(const Model& model, const nb::handle& text_or_tokens) {
  if (nb::isinstance<nb::str>(text_or_tokens))
    return prompt_tokens(model.tokenizer(), nb::cast<std::string>(text_or_tokens));
  std::vector<Token> tokens;
  if (!nb::try_cast(text_or_tokens, tokens))
    throw nb::type_error("expected a str or a sequence of int token ids");
  return tokens;
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

// The thread count to use: more threads than cores only wait on each other (as the CLI says too).
int thread_count(const std::optional<int>& requested) {
  if (requested && *requested < 0)
    throw Error(ErrorKind::InvalidArgument, "threads must be >= 0, got " + std::to_string(*requested));
  const int cores = available_cores();
  if (!requested || *requested == 0) return cores;
  if (*requested <= cores) return *requested;
  const std::string note = "kvstash: using " + std::to_string(cores) + " threads, not " + std::to_string(*requested) +
                           ": " + std::to_string(cores) + " cores are available";
  if (PyErr_WarnEx(PyExc_RuntimeWarning, note.c_str(), 1) != 0) throw nb::python_error();
  return cores;
}

void init_model(PyModel* self, const std::optional<std::string>& path, const std::optional<int>& threads,
                const std::optional<int64_t>& ctx, const std::optional<std::string>& simd, bool float_weights,
                bool ctx_beyond_training) {
  const int n_threads = thread_count(threads);
  if (ctx && *ctx <= 0) throw Error(ErrorKind::InvalidArgument, "ctx must be > 0, got " + std::to_string(*ctx));
  EngineOptions options;
  options.n_ctx = ctx.value_or(0);
  if (simd) options.simd = parse_simd_level(simd->c_str(), Kernels::best_level());
  const std::string file = path.value_or(default_model_path());
  std::unique_ptr<Model> model;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Engine> engine;
  {
    nb::gil_scoped_release release;
    ModelOptions model_options;
    model_options.float_weights = float_weights;
    model = Model::load(file, model_options);
    const int64_t train = model->config().n_ctx_train;
    if (ctx && train > 0 && *ctx > train && !ctx_beyond_training)
      throw Error(ErrorKind::InvalidArgument, "ctx of " + std::to_string(*ctx) +
                                                  " tokens is beyond the model's training context of " +
                                                  std::to_string(train) + " tokens (ctx_beyond_training=True to use it anyway)");
    pool = std::make_unique<ThreadPool>(n_threads);
    engine = std::make_unique<Engine>(*model, *pool, options);
  }
  new (self) PyModel();
  self->path = file;
  self->float_weights = float_weights;
  self->model = std::move(model);
  self->threads = std::move(pool);
  self->engine = std::move(engine);
}

}  // namespace

void bind_model(nb::module_& m) {
  nb::class_<Continuation>(m, "Completion", "The result of Model.generate: text, token ids, why it stopped, timings.")
      .def_prop_ro("text", [](const Continuation& c) { return utf8_text(c.result.text); }, "The generated text.")
      .def_prop_ro("tokens", [](const Continuation& c) { return c.result.tokens; },
                   "Generated token ids (an end-of-generation token is not included).")
      .def_prop_ro("stop_reason", [](const Continuation& c) { return c.result.stop_reason; },
                   "'length' (max_tokens reached), 'eos', 'stop' (a stop string) or 'context' (the context is full).")
      .def_prop_ro("prompt_tokens", [](const Continuation& c) { return c.result.prompt_tokens; },
                   "Tokens computed for the prompt (those not taken from the state).")
      .def_prop_ro("reused_tokens", [](const Continuation& c) { return c.reused_tokens; },
                   "Tokens taken from the state's cache instead of being computed.")
      .def_prop_ro("time_to_first_token_ms", [](const Continuation& c) { return c.result.time_to_first_token_ms; })
      .def_prop_ro("prefill_tokens_per_s", [](const Continuation& c) { return c.result.prefill_tokens_per_s; })
      .def_prop_ro("decode_tokens_per_s", [](const Continuation& c) { return c.result.decode_tokens_per_s; })
      .def("__str__", [](const Continuation& c) { return utf8_text(c.result.text); })
      .def("__repr__", [](const Continuation& c) {
        return "Completion(tokens=" + std::to_string(c.result.tokens.size()) + ", reused_tokens=" +
               std::to_string(c.reused_tokens) + ", stop_reason='" + c.result.stop_reason + "')";
      });

  nb::class_<PyModel>(m, "Model",
                      "A LLaMA-architecture GGUF model with its own inference engine (threads, KV cache of `ctx` tokens).")
      .def("__init__", &init_model, nb::arg("path") = nb::none(), nb::arg("threads") = nb::none(),
           nb::arg("ctx") = nb::none(), nb::arg("simd") = nb::none(), nb::arg("float_weights") = false,
           nb::arg("ctx_beyond_training") = false,
           "Loads a GGUF model (default: $KVSTASH_MODEL, else the set-up's SmolLM2-135M-Instruct).\n\n"
           "threads: worker threads (default: one per available core; more are cut to that with a RuntimeWarning);\n"
           "ctx: tokens a sequence may hold (default: the training context, at most 4096; beyond the training\n"
           "context only with ctx_beyond_training=True); simd: 'scalar', 'avx2' or 'avx512' (default: the best the CPU has;\n"
           "every level gives the same bits); float_weights: dequantize the weights to float32 at load and\n"
           "compute with float32 activations, as Hugging Face transformers does on the same GGUF (for states that\n"
           "transformers continues exactly as its own; 4 bytes per weight, slower).")
      .def_prop_ro("path", [](const PyModel& s) { return s.path; })
      .def_prop_ro("fingerprint", [](const PyModel& s) { return s.model->fingerprint().hex(); },
                   "The model's identity (32 hex digits); a state is only continued by the model that made it.")
      .def_prop_ro("ctx", [](const PyModel& s) { return s.engine->n_ctx(); }, "Tokens one sequence may hold.")
      .def_prop_ro("threads", [](const PyModel& s) { return s.engine->n_threads(); })
      .def_prop_ro("n_ctx_train", [](const PyModel& s) { return s.model->config().n_ctx_train; },
                   "The context the model was trained with (from the GGUF).")
      .def_prop_ro("n_vocab", [](const PyModel& s) { return s.model->config().n_vocab; })
      .def_prop_ro("n_layer", [](const PyModel& s) { return s.model->config().n_layer; })
      .def_prop_ro("n_head", [](const PyModel& s) { return s.model->config().n_head; })
      .def_prop_ro("n_head_kv", [](const PyModel& s) { return s.model->config().n_head_kv; })
      .def_prop_ro("head_dim", [](const PyModel& s) { return s.model->config().head_dim; })
      .def_prop_ro("bos", [](const PyModel& s) { return s.model->tokenizer().bos(); }, "BOS token id (-1: none).")
      .def_prop_ro("eos", [](const PyModel& s) { return s.model->tokenizer().eos(); }, "EOS token id (-1: none).")
      .def_prop_ro("float_weights", [](const PyModel& s) { return s.float_weights; })
      .def_prop_ro("simd", [](const PyModel& s) { return std::string(s.engine->kernels().name()); })
      .def(
          "tokenize",
          [](const PyModel& s, const std::string& text, bool add_special, bool parse_special) {
            return s.model->tokenizer().encode(text, add_special, parse_special);
          },
          nb::arg("text"), nb::arg("add_special") = true, nb::arg("parse_special") = true,
          "Token ids of `text`, as llama.cpp's tokenizer gives them. add_special: BOS/EOS as the model's\n"
          "metadata asks; parse_special: text of control tokens such as '<|im_start|>' becomes that token.")
      .def(
          "detokenize",
          [](const PyModel& s, const std::vector<Token>& tokens, bool render_special) {
            const Tokenizer& tok = s.model->tokenizer();
            for (Token t : tokens)
              if (t < 0 || t >= tok.n_vocab())
                throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(t) + " is outside the vocabulary of " +
                                                            std::to_string(tok.n_vocab()));
            return utf8_text(tok.decode(tokens, render_special));
          },
          nb::arg("tokens"), nb::arg("render_special") = false,
          "The text of token ids (invalid UTF-8 from a cut character is replaced by U+FFFD).")
      .def(
          "process_prefix",
          [](PyModel& s, nb::handle text_or_tokens, nb::object progress) {
            const std::vector<Token> tokens = tokens_of(*s.model, text_or_tokens);
            nb::object report = progress;
            if (progress.is(nb::handle(Py_True))) report = nb::module_::import_("kvstash._progress").attr("ProgressBar")();
            const bool call = nb::bool_(report) && !report.is(nb::handle(Py_True));
            const auto on_chunk = [&](int64_t done, int64_t total) {
              check_signals();
              if (!call) return;
              nb::gil_scoped_acquire gil;
              report(done, total);
            };
            State state;
            {
              nb::gil_scoped_release release;
              std::lock_guard lock(s.mutex);
              s.drop_loaded();
              state = process_prefix(*s.engine, tokens, on_chunk);
            }
            return PyState{std::make_shared<const State>(std::move(state))};
          },
          nb::arg("text_or_tokens"), nb::arg("progress") = true,
          nb::sig("def process_prefix(self, text_or_tokens: str | collections.abc.Sequence[int], progress: bool | "
                  "collections.abc.Callable[[int, int], None] = True) -> State"),
          "Reads a prefix (text, or token ids) once and returns its attention state.\n\n"
          "progress: True draws a progress bar on stderr when it is a terminal; a callable gets (done, total)\n"
          "tokens after every chunk of 512; False: nothing. Ctrl-C stops it between chunks (KeyboardInterrupt).")
      .def(
          "generate",
          [](PyModel& s, std::optional<PyState*> state, nb::handle prompt, int max_tokens, double temperature, double top_p,
             int top_k, double min_p, double repeat_penalty, uint64_t seed, const std::optional<std::vector<std::string>>& stop,
             bool ignore_eos) -> nb::object {
            const GenerateOptions o = generate_options(max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed,
                                                       stop.value_or(std::vector<std::string>{}), ignore_eos);
            const bool many = !nb::isinstance<nb::str>(prompt);
            std::vector<std::string> prompts;
            if (!many) prompts.push_back(nb::cast<std::string>(prompt));
            else if (nb::isinstance<nb::bytes>(prompt) || !nb::try_cast(prompt, prompts))
              throw nb::type_error("prompt: expected a str or a list of str");
            const std::shared_ptr<const State> st = state_of(state);
            std::vector<Continuation> out;
            {
              nb::gil_scoped_release release;
              std::lock_guard lock(s.mutex);
              const auto on_text = [](const std::string&) { check_signals(); };  // Ctrl-C between pieces
              for (const std::string& p : prompts) out.push_back(run_generate(s, st, p, o, on_text));
            }
            if (!many) return nb::cast(std::move(out[0]));
            return nb::cast(std::move(out));
          },
          nb::arg("state").none(), nb::arg("prompt"), nb::kw_only(), nb::arg("max_tokens") = 128,
          nb::arg("temperature") = 0.8, nb::arg("top_p") = 0.95, nb::arg("top_k") = 40, nb::arg("min_p") = 0.05,
          nb::arg("repeat_penalty") = 1.0, nb::arg("seed") = 0, nb::arg("stop") = nb::none(),
          nb::arg("ignore_eos") = false,
          nb::sig("def generate(self, state: State | None, prompt: str | collections.abc.Sequence[str], *, "
                  "max_tokens: int = 128, temperature: float = 0.8, top_p: float = 0.95, top_k: int = 40, "
                  "min_p: float = 0.05, repeat_penalty: float = 1.0, seed: int = 0, "
                  "stop: collections.abc.Sequence[str] | None = None, ignore_eos: bool = False) -> Completion | list[Completion]"),
          "Continues the state's text with `prompt` (a str, or a list of str: one Completion each) and generates\n"
          "up to max_tokens tokens (-1: until an end-of-generation token). state=None starts from nothing.\n\n"
          "The state is restored into the engine once; every prompt runs in a fork of it that shares its K/V\n"
          "(copy-on-write), never a copy. The prompt is appended as text: prefix text + prompt is tokenized and\n"
          "the longest common token prefix with the state is reused, so tokens come out exactly as if the whole\n"
          "text had been run from scratch. temperature <= 0 is greedy; a seed gives the same tokens on every\n"
          "machine. Generation ends before the first of the `stop` strings.")
      .def("__repr__", [](const PyModel& s) {
        return "Model('" + s.path + "', ctx=" + std::to_string(s.engine->n_ctx()) +
               ", threads=" + std::to_string(s.engine->n_threads()) + ")";
      });
}

}  // namespace kvstash::py
