// The objects the Python module wraps, shared by the binding files. Python sees them as
// kvstash.Model, kvstash.State, kvstash.Completion and kvstash.Stream (docs in each binding).
#pragma once
#include <nanobind/nanobind.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvstash/kvstash.h"

namespace kvstash::py {

namespace nb = nanobind;

// A read-only state shared by its Python object and whatever was made from it.
struct PyState {
  std::shared_ptr<const State> state;
};

// A model with its threads and one engine. Long calls release the GIL and hold `mutex` instead, so
// Python threads may share a Model (their calls run one at a time). The engine keeps at most one
// state restored (`loaded`): every generate() from that state forks it, nothing is copied again.
struct PyModel {
  std::string path;
  bool float_weights = false;
  std::unique_ptr<Model> model;
  std::unique_ptr<ThreadPool> threads;
  std::unique_ptr<Engine> engine;
  std::mutex mutex;
  std::shared_ptr<const State> loaded_for;
  std::unique_ptr<LoadedPrefix> loaded;

  // The restored prefix for `state` (restoring it unless it is the one already restored).
  LoadedPrefix& prefix_for(const std::shared_ptr<const State>& state);
  void drop_loaded();  // frees the restored state's blocks before work that needs the whole pool
};

// Options of generate()/stream(), as Python passes them.
GenerateOptions generate_options(int max_tokens, double temperature, double top_p, int top_k, double min_p,
                                 double repeat_penalty, uint64_t seed, const std::vector<std::string>& stop,
                                 bool ignore_eos);

// One continuation of `state` (restored once, then forked) or, for a null state, of nothing.
// The caller holds m.mutex.
Continuation run_generate(PyModel& m, const std::shared_ptr<const State>& state, const std::string& prompt,
                          const GenerateOptions& options, const std::function<void(const std::string&)>& on_text);

// Called with the GIL released: takes it and raises KeyboardInterrupt (as nb::python_error) when
// Ctrl-C was pressed, so that long calls stop cleanly between chunks and tokens.
void check_signals();

void bind_errors(nb::module_& m);
void bind_state(nb::module_& m);
void bind_model(nb::module_& m);
void bind_stream(nb::module_& m);

}  // namespace kvstash::py
