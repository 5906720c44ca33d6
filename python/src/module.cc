// The extension module kvstash._core; the package kvstash (python/kvstash) re-exports it.
#include "bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "kvstash: attention states of LLaMA-family models, kept and continued (C++ core)";
  kvstash::py::bind_errors(m);
  kvstash::py::bind_state(m);
  kvstash::py::bind_model(m);
  kvstash::py::bind_stream(m);
}
