// stream_kvz: a .kvz into a new sequence, pipelined over three threads. A fetch thread reads the
// chunks' bytes ahead (choosing levels when adaptive); a decode thread decodes chunk i + 1, with
// the engine's thread pool over the chunk's sections, into one of two staging buffers while the
// calling thread copies chunk i into the KV pool; each waits only for its input. The staging layout is a State's (per layer
// [n_head_kv][chunk slots][head_dim]), so the copy is restore()'s, and the result is bitwise
// restore(load_kvz(...)): the same decoder writes the same values, only in pieces.
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "codec/kvz_chunks.h"
#include "codec/kvz_format.h"
#include "kvstash/error.h"
#include "kvstash/kvz.h"
#include "state/restore_parts.h"

namespace kvstash {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Two staging buffers passed between the reader (fills) and the installer (empties).
class Pipeline {
 public:
  Pipeline(const StateArch& a, int chunk_tokens) : arch_(a), stride_(chunk_tokens) {
    const size_t per = size_t(a.n_head_kv) * size_t(chunk_tokens) * size_t(a.head_dim);
    for (Slot& s : slots_) s.data.resize(2 * size_t(a.n_layer) * per);
  }
  int64_t stride() const { return stride_; }
  struct Slot {
    std::vector<uint16_t> data;
    size_t chunk = 0;
    bool full = false;
  };
  // Views of a slot's K and V of each layer.
  void views(Slot& s, std::vector<uint16_t*>& k, std::vector<uint16_t*>& v) const {
    const size_t per = size_t(arch_.n_head_kv) * size_t(stride_) * size_t(arch_.head_dim);
    k.resize(size_t(arch_.n_layer));
    v.resize(size_t(arch_.n_layer));
    for (size_t l = 0; l < k.size(); ++l) {
      k[l] = s.data.data() + 2 * l * per;
      v[l] = k[l] + per;
    }
  }
  // Reader: the slot for chunk c once the installer has emptied it (nullptr: stop).
  Slot* wait_empty(size_t c) {
    std::unique_lock<std::mutex> lock(mu_);
    Slot& s = slots_[c % 2];
    cv_.wait(lock, [&] { return !s.full || stop_; });
    return stop_ ? nullptr : &s;
  }
  void fill(Slot& s, size_t c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.chunk = c;
      s.full = true;
    }
    cv_.notify_all();
  }
  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = e;
    }
    cv_.notify_all();
  }
  // Installer: the slot holding chunk c (rethrows the reader's error).
  Slot& wait_full(size_t c) {
    std::unique_lock<std::mutex> lock(mu_);
    Slot& s = slots_[c % 2];
    cv_.wait(lock, [&] { return (s.full && s.chunk == c) || error_; });
    if (error_) std::rethrow_exception(error_);
    return s;
  }
  void empty(Slot& s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.full = false;
    }
    cv_.notify_all();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }

 private:
  StateArch arch_;
  int64_t stride_;
  Slot slots_[2];
  std::mutex mu_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  bool stop_ = false;
};

// The chunks' bytes, read ahead by the fetch thread and taken in order by the decode thread.
class Fetched {
 public:
  explicit Fetched(size_t n) : bytes_(n) {}
  void put(size_t c, std::vector<uint8_t> b) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes_[c] = std::move(b);
      ready_ = c + 1;
    }
    cv_.notify_all();
  }
  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = e;
    }
    cv_.notify_all();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  bool stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  }
  // Chunk c's bytes (moved out; rethrows the fetch thread's error); empty optional when stopped.
  bool take(size_t c, std::vector<uint8_t>& out) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return ready_ > c || error_ || stop_; });
    if (error_) std::rethrow_exception(error_);
    if (stop_) return false;
    out = std::move(bytes_[c]);
    return true;
  }

 private:
  std::vector<std::vector<uint8_t>> bytes_;
  size_t ready_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::exception_ptr error_;
  bool stop_ = false;
};

}  // namespace

StreamedState stream_kvz(Engine& engine, const ByteSource& source, const LevelChoice& choice) {
  const Clock::time_point t0 = Clock::now();
  const KvzInfo info = read_kvz_info(source);
  const double header_ms = ms_since(t0);
  const bool adaptive = choice.ttft_target_ms > 0 && choice.per_chunk.empty();
  kvz::check_choice(info, choice, source.name);
  const std::vector<int> fixed = adaptive ? std::vector<int>() : kvz::fixed_levels(info, choice, source.name);

  StreamedState r{info.meta, engine.new_sequence(), {}};
  try {
    restore_prepare(info.meta, engine.model(), engine.n_ctx(), r.seq);
  } catch (const Error& e) {
    throw Error(e.kind(), source.name + ": " + e.what());
  }
  const size_t n = info.chunks.size();
  r.stats.chunk_levels.assign(n, 0);
  r.stats.bytes_read = n == 0 ? info.file_size : info.chunks[0].levels[0].offset;  // the header
  if (n == 0) {
    r.stats.ms = ms_since(t0);
    return r;
  }

  Pipeline pipe(info.meta.arch, info.chunk_tokens);
  Fetched fetched(n);
  uint64_t chunk_bytes = 0;
  std::thread fetcher([&] {
    try {
      const kvz::AdaptivePlanner plan(info, adaptive ? choice.ttft_target_ms : 1);
      // The header's read is the first measure of the link (it includes parsing: conservative).
      double read_ms = header_ms;
      uint64_t read_bytes = r.stats.bytes_read;
      for (size_t c = 0; c < n && !fetched.stopped(); ++c) {
        const int level = adaptive ? plan.level_for(c, ms_since(t0), read_ms, read_bytes) : fixed[c];
        const Clock::time_point r0 = Clock::now();
        std::vector<uint8_t> bytes = kvz::read_chunk(source, info, c, level);
        read_ms += ms_since(r0);
        read_bytes += bytes.size();
        chunk_bytes += bytes.size();
        r.stats.chunk_levels[c] = level;
        fetched.put(c, std::move(bytes));
      }
    } catch (...) {
      fetched.fail(std::current_exception());
    }
  });
  std::thread decoder([&] {
    try {
      std::vector<uint16_t*> k, v;
      std::vector<uint8_t> bytes;
      for (size_t c = 0; c < n; ++c) {
        if (!fetched.take(c, bytes)) return;
        Pipeline::Slot* slot = pipe.wait_empty(c);
        if (!slot) return;
        pipe.views(*slot, k, v);
        codec::KvOut out{k, v, pipe.stride(), 0};
        kvz::decode_chunk(source, info, c, r.stats.chunk_levels[c], bytes, out, &engine.threads());
        pipe.fill(*slot, c);
      }
    } catch (...) {
      pipe.fail(std::current_exception());
    }
  });
  auto join = [&] {
    decoder.join();
    fetcher.join();
  };
  try {
    std::vector<uint16_t*> k, v;
    for (size_t c = 0; c < n; ++c) {
      Pipeline::Slot& slot = pipe.wait_full(c);
      pipe.views(slot, k, v);
      const KvzChunk& chunk = info.chunks[c];
      restore_slots(r.seq, chunk.first, chunk.count, std::vector<const uint16_t*>(k.begin(), k.end()),
                    std::vector<const uint16_t*>(v.begin(), v.end()), pipe.stride(), 0);
      pipe.empty(slot);
    }
  } catch (...) {
    pipe.stop();
    fetched.stop();
    join();
    throw;  // r.seq goes with r: its blocks return to the pool
  }
  join();
  r.stats.bytes_read += chunk_bytes;
  r.stats.ms = ms_since(t0);
  return r;
}

}  // namespace kvstash
