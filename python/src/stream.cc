// kvstash.Stream: Model.stream()'s iterator of text pieces. The generation runs on a thread of its
// own (the engine's API is a call with a callback), handing pieces over through a queue; the
// iterator waits with the GIL released and checks for Ctrl-C while it waits. Closing or dropping
// the stream stops the generation at its next piece.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <thread>

#include "bindings.h"

namespace kvstash::py {

namespace {

struct Cancelled {};

class PyStream {
 public:
  PyStream(PyModel& model, std::shared_ptr<const State> state, std::string prompt, GenerateOptions options)
      : worker_([this, &model, state = std::move(state), prompt = std::move(prompt), options = std::move(options)] {
          run(model, state, prompt, options);
        }) {}
  ~PyStream() { close(); }

  // The next piece, or nullopt at the end; rethrows the generation's error.
  std::optional<std::string> next() {
    std::unique_lock lock(mutex_);
    while (pieces_.empty() && !done_) {
      {
        nb::gil_scoped_release release;
        cv_.wait_for(lock, std::chrono::milliseconds(100));
      }
      if (PyErr_CheckSignals() != 0) {
        lock.unlock();
        close();
        throw nb::python_error();
      }
    }
    if (!pieces_.empty()) {
      std::string piece = std::move(pieces_.front());
      pieces_.pop_front();
      return piece;
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return std::nullopt;
  }

  void close() {
    cancel_ = true;
    if (!worker_.joinable()) return;
    nb::gil_scoped_release release;
    worker_.join();
  }

  const std::optional<Continuation>& completion() const { return completion_; }

 private:
  void run(PyModel& model, const std::shared_ptr<const State>& state, const std::string& prompt,
           const GenerateOptions& options) {
    const auto on_text = [this](const std::string& piece) {
      if (cancel_) throw Cancelled{};
      std::lock_guard lock(mutex_);
      pieces_.push_back(piece);
      cv_.notify_one();
    };
    std::optional<Continuation> result;
    std::exception_ptr error;
    try {
      std::lock_guard model_lock(model.mutex);
      result = run_generate(model, state, prompt, options, on_text);
    } catch (const Cancelled&) {
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard lock(mutex_);
    completion_ = std::move(result);
    error_ = error;
    done_ = true;
    cv_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;
  bool done_ = false;
  std::exception_ptr error_;
  std::optional<Continuation> completion_;
  std::atomic<bool> cancel_{false};
  std::thread worker_;  // last: starts once the members above exist
};

}  // namespace

void bind_stream(nb::module_& m) {
  nb::class_<PyStream>(m, "Stream", "An iterator over the text pieces of one generation (Model.stream).")
      .def("__iter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__next__",
           [](PyStream& s) {
             std::optional<std::string> piece = s.next();
             if (!piece) throw nb::stop_iteration();
             return nb::steal<nb::str>(PyUnicode_DecodeUTF8(piece->data(), Py_ssize_t(piece->size()), "replace"));
           })
      .def("close", &PyStream::close, "Stops the generation (at its next piece) and waits for it.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__exit__", [](PyStream& s, nb::args) { s.close(); })
      .def_prop_ro(
          "completion", [](const PyStream& s) { return s.completion(); },
          "The Completion once the iterator is exhausted (None before, or after close()).");

  nb::type<PyModel>().attr("stream") = nb::cpp_function(
      [](PyModel& model, std::optional<PyState*> state, const std::string& prompt, int max_tokens, double temperature,
         double top_p, int top_k, double min_p, double repeat_penalty, uint64_t seed,
         const std::optional<std::vector<std::string>>& stop, bool ignore_eos) {
        GenerateOptions o = generate_options(max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed,
                                             stop.value_or(std::vector<std::string>{}), ignore_eos);
        std::shared_ptr<const State> st = state && *state ? (*state)->state : nullptr;
        return new PyStream(model, std::move(st), prompt, std::move(o));
      },
      nb::is_method(), nb::name("stream"), nb::arg("state").none(), nb::arg("prompt"), nb::kw_only(),
      nb::arg("max_tokens") = 128, nb::arg("temperature") = 0.8, nb::arg("top_p") = 0.95, nb::arg("top_k") = 40,
      nb::arg("min_p") = 0.05, nb::arg("repeat_penalty") = 1.0, nb::arg("seed") = 0, nb::arg("stop") = nb::none(),
      nb::arg("ignore_eos") = false, nb::keep_alive<0, 1>(), nb::rv_policy::take_ownership,
      "Like generate() for one prompt, but returns an iterator that yields the text as it is generated\n"
      "(complete UTF-8 pieces; text that could begin a stop string is held back). Use it in a for loop or\n"
      "a with block; .completion holds the Completion at the end.");
}

}  // namespace kvstash::py
