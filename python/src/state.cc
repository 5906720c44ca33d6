// kvstash.State: a read-only attention state with zero-copy NumPy views of its arrays; save and
// load as .kvs (mapped) or .kvz (compressed); a state built from arrays (Hugging Face import).
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "bindings.h"
#include "kvstash/kvz.h"

namespace kvstash::py {

namespace {

using RoArray = nb::ndarray<nb::numpy, nb::ro>;
using F16In = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
constexpr nb::dlpack::dtype kF16{uint8_t(nb::dlpack::dtype_code::Float), 16, 1};

// A read-only NumPy view of `data` that keeps the Python State `owner` (and so the memory) alive.
RoArray view(const void* data, std::initializer_list<size_t> shape, nb::handle owner, nb::dlpack::dtype dtype) {
  alignas(64) static const uint8_t empty[64] = {};  // for zero-size arrays, which have no storage
  return RoArray(data ? data : empty, shape, owner, {}, dtype);
}

int checked_layer(const State& s, int layer) {
  if (layer < 0) layer += s.arch.n_layer;
  if (layer < 0 || layer >= s.arch.n_layer)
    throw nb::index_error(("layer out of range (the state has " + std::to_string(s.arch.n_layer) + " layers)").c_str());
  return layer;
}

RoArray kv_view(nb::pointer_and_handle<PyState> self, int layer, bool key) {
  const State& s = *self.p->state;
  const int l = checked_layer(s, layer);
  const size_t shape[3] = {size_t(s.arch.n_head_kv), size_t(s.kv_entries()), size_t(s.arch.head_dim)};
  return view(key ? s.k(l) : s.v(l), {shape[0], shape[1], shape[2]}, self.h, kF16);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

KeyOrder key_order_of(const std::string& order) {
  if (order == "gguf") return KeyOrder::Gguf;
  if (order == "hf") return KeyOrder::HuggingFace;
  throw Error(ErrorKind::InvalidArgument, "key_order must be 'gguf' or 'hf', got '" + order + "'");
}

// The K or V arrays of every layer, each [n_head_kv, entries, head_dim] float16, copied into the state.
void copy_layers(const std::vector<F16In>& arrays, bool key, State& s) {
  const char* what = key ? "keys" : "values";
  if (int(arrays.size()) != s.arch.n_layer)
    throw Error(ErrorKind::InvalidArgument, std::string(what) + ": expected one array per layer (" +
                                                std::to_string(s.arch.n_layer) + "), got " + std::to_string(arrays.size()));
  for (int l = 0; l < s.arch.n_layer; ++l) {
    const F16In& a = arrays[size_t(l)];
    const bool shape_ok = a.ndim() == 3 && a.shape(0) == size_t(s.arch.n_head_kv) && a.shape(1) == size_t(s.size()) &&
                          a.shape(2) == size_t(s.arch.head_dim);
    if (a.dtype() != kF16 || !shape_ok)
      throw Error(ErrorKind::InvalidArgument,
                  std::string(what) + "[" + std::to_string(l) + "]: expected a float16 array of shape (" +
                      std::to_string(s.arch.n_head_kv) + ", " + std::to_string(s.size()) + ", " +
                      std::to_string(s.arch.head_dim) + ")");
    std::memcpy(key ? s.mutable_k(l) : s.mutable_v(l), a.data(), s.kv_elements() * sizeof(uint16_t));
  }
}

PyState state_from_arrays(PyModel& m, const std::vector<Token>& tokens, const std::vector<F16In>& keys,
                          const std::vector<F16In>& values, const std::optional<std::vector<float>>& logits,
                          const std::optional<std::vector<int32_t>>& positions) {
  if (tokens.empty()) throw Error(ErrorKind::InvalidArgument, "a state needs at least one token");
  auto s = std::make_shared<State>();
  s->model_fingerprint = m.model->fingerprint();
  s->arch = state_arch(m.model->config());
  s->tokens = tokens;
  s->n_ctx = std::max<int64_t>(m.engine->n_ctx(), s->size());
  if (positions) {
    if (positions->size() != tokens.size())
      throw Error(ErrorKind::InvalidArgument, "positions: expected " + std::to_string(tokens.size()) + ", got " +
                                                  std::to_string(positions->size()));
    s->positions = *positions;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) s->positions.push_back(int32_t(i));
  }
  s->allocate_kv();
  copy_layers(keys, true, *s);
  copy_layers(values, false, *s);
  if (logits && int(logits->size()) != s->arch.n_vocab)
    throw Error(ErrorKind::InvalidArgument, "logits: expected " + std::to_string(s->arch.n_vocab) + " values, got " +
                                                std::to_string(logits->size()));
  s->logits = logits ? *logits : std::vector<float>(size_t(s->arch.n_vocab), 0.0f);
  nb::gil_scoped_release release;
  std::lock_guard lock(m.mutex);
  m.drop_loaded();
  Sequence seq = m.engine->new_sequence();
  restore(*s, *m.model, m.engine->n_ctx(), seq);  // every check restore makes, before anyone saves it
  if (!logits) {  // the engine's: the first n - 1 entries restored, the last token run again
    seq.truncate(s->size() - 1);
    const float* l = m.engine->forward(seq, &s->tokens.back(), 1);
    s->logits.assign(l, l + s->arch.n_vocab);
  }
  return PyState{std::move(s)};
}

}  // namespace

void bind_state(nb::module_& m) {
  nb::class_<PyState>(m, "State",
                      "A read-only attention state: the K/V cache entries of one sequence, their tokens and positions,\n"
                      "the last entry's logits and the fingerprint of the model that made it. Arrays are NumPy views\n"
                      "without a copy (of the mapped .kvs file after load_state), valid as long as they are referenced.")
      .def_prop_ro(
          "tokens", [](nb::pointer_and_handle<PyState> s) {
            return view(s.p->state->tokens.data(), {s.p->state->tokens.size()}, s.h, nb::dtype<int32_t>());
          },
          "Token ids processed (int32).")
      .def_prop_ro(
          "positions", [](nb::pointer_and_handle<PyState> s) {
            return view(s.p->state->positions.data(), {s.p->state->positions.size()}, s.h, nb::dtype<int32_t>());
          },
          "The position each token was processed at (int32; a budgeted state lists every processed token).")
      .def_prop_ro(
          "logits", [](nb::pointer_and_handle<PyState> s) {
            return view(s.p->state->logits.data(), {s.p->state->logits.size()}, s.h, nb::dtype<float>());
          },
          "The last entry's logits (float32, n_vocab): they predict the next token.")
      .def("k", [](nb::pointer_and_handle<PyState> s, int layer) { return kv_view(s, layer, true); }, nb::arg("layer"),
           "Keys of a layer: float16 [n_head_kv, entries, head_dim], after RoPE, in kvstash's (GGUF) pair order.")
      .def("v", [](nb::pointer_and_handle<PyState> s, int layer) { return kv_view(s, layer, false); }, nb::arg("layer"),
           "Values of a layer: float16 [n_head_kv, entries, head_dim].")
      .def("__len__", [](const PyState& s) { return s.state->size(); })
      .def_prop_ro("n_tokens", [](const PyState& s) { return s.state->size(); })
      .def_prop_ro("kv_entries", [](const PyState& s) { return s.state->kv_entries(); },
                   "Cache entries per layer and KV head (fewer than n_tokens for a budgeted state that evicted).")
      .def_prop_ro("budgeted", [](const PyState& s) { return s.state->book.has_value(); })
      .def_prop_ro("model_fingerprint", [](const PyState& s) { return s.state->model_fingerprint.hex(); })
      .def_prop_ro("n_ctx", [](const PyState& s) { return s.state->n_ctx; })
      .def_prop_ro("n_layer", [](const PyState& s) { return s.state->arch.n_layer; })
      .def_prop_ro("n_head_kv", [](const PyState& s) { return s.state->arch.n_head_kv; })
      .def_prop_ro("head_dim", [](const PyState& s) { return s.state->arch.head_dim; })
      .def_prop_ro("n_vocab", [](const PyState& s) { return s.state->arch.n_vocab; })
      .def(
          "save",
          [](const PyState& s, const std::string& path, const std::string& key_order,
             const std::optional<std::vector<int>>& levels) {
            const KeyOrder order = key_order_of(key_order);
            nb::gil_scoped_release release;
            if (ends_with(path, ".kvz")) {
              if (order != KeyOrder::Gguf) throw Error(ErrorKind::InvalidArgument, "key_order applies to .kvs files");
              KvzOptions o;
              if (levels) o.levels = *levels;
              save_kvz(*s.state, path, o);
            } else {
              if (levels) throw Error(ErrorKind::InvalidArgument, "levels apply to .kvz files");
              StateSaveOptions o;
              o.key_order = order;
              save_state(*s.state, path, o);
            }
          },
          nb::arg("path"), nb::kw_only(), nb::arg("key_order") = "gguf", nb::arg("levels") = nb::none(),
          "Writes the state atomically (an existing file is replaced only once the new one is complete):\n"
          "a path ending in .kvz is compressed by the KV codec (levels: the quality levels to store, default\n"
          "every other lossy level), anything else is a .kvs file. key_order='hf' stores keys in Hugging Face's\n"
          "order for plain safetensors readers; kvstash reads both.")
      .def("__repr__", [](const PyState& s) {
        return "State(tokens=" + std::to_string(s.state->size()) + ", model='" + s.state->model_fingerprint.hex() +
               "'" + (s.state->book ? ", budgeted" : "") + ")";
      });

  m.def(
      "load_state",
      [](const std::string& path, int level) {
        State s;
        {
          nb::gil_scoped_release release;
          if (is_kvz_file(path)) {
            LevelChoice c;
            c.level = level;
            s = load_kvz(path, c);
          } else {
            if (level != 0) throw Error(ErrorKind::InvalidArgument, path + ": level applies to .kvz states; this is not one");
            s = load_state(path);
          }
        }
        return PyState{std::make_shared<const State>(std::move(s))};
      },
      nb::arg("path"), nb::kw_only(), nb::arg("level") = 0,
      "Loads a .kvs state (mapped, checked: format, sizes, checksums; K/V stay in the mapping) or a .kvz one\n"
      "(decoded; level: the stored quality level, default the best). Raises CorruptionError, NotFoundError,\n"
      "NotSupportedError, ... with a one-line message naming the file and what is wrong.");

  m.def("_state_from_arrays", &state_from_arrays, nb::arg("model"), nb::arg("tokens"), nb::arg("keys"),
        nb::arg("values"), nb::arg("logits") = nb::none(), nb::arg("positions") = nb::none(),
        "A state of `model` from per-layer float16 arrays [n_head_kv, tokens, head_dim] in kvstash's key order\n"
        "(kvstash.hf converts Hugging Face caches). Without logits, the engine computes the last entry's.");
}

}  // namespace kvstash::py
