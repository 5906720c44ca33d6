// load_state_into: a .kvs file straight into a sequence in one pass over its K/V. Each K/V tensor
// is read with preadv from the file into the sequence's blocks (the kernel copies from the page
// cache: no page tables to build for a mapping) and hashed right after, while it is still in
// cache, instead of one pass to verify everything (load_state) and another to copy it (restore).
#include <sys/uio.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>

#include "kvstash/error.h"
#include "kvstash/thread_pool.h"
#include "state/kvs_format.h"
#include "state/kvs_read.h"
#include "state/restore_parts.h"

namespace kvstash {

namespace {

// Where a K or V tensor of one layer ([n_head_kv][slots][head_dim], file order) goes in seq's
// blocks: one run per head and block, in file order.
std::vector<iovec> runs_of(Sequence& seq, int layer, bool key, int64_t slots) {
  KvPool& pool = seq.pool();
  const KvShape& shape = pool.shape();
  const size_t hd = size_t(shape.head_dim);
  std::vector<iovec> runs;
  for (int h = 0; h < shape.n_head_kv; ++h)
    for (int64_t at = 0; at < slots;) {
      const int64_t run = std::min<int64_t>(shape.block_tokens - seq.slot_of(at), slots - at);
      const int32_t b = seq.block_of(at);
      uint16_t* dst = (key ? pool.k(b, layer, h) : pool.v(b, layer, h)) + size_t(seq.slot_of(at)) * hd;
      runs.push_back({dst, size_t(run) * hd * 2});
      at += run;
    }
  return runs;
}

// Reads `sum`'s bytes from fd into `runs` (which cover exactly that many bytes; the copy is
// consumed as reads complete).
void read_runs(int fd, const kvs::DeferredChecksum& sum, std::vector<iovec> runs, const std::string& path) {
  uint64_t offset = sum.offset;
  for (size_t i = 0; i < runs.size();) {
    const int count = int(std::min<size_t>(runs.size() - i, IOV_MAX));
    const ssize_t n = ::preadv(fd, runs.data() + i, count, off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorKind::IOError, path + ": cannot read tensor '" + sum.tensor + "': " + std::strerror(errno));
    if (n == 0) throw Error(ErrorKind::Corruption, path + ": truncated file (it shrank while tensor '" + sum.tensor + "' was read)");
    offset += uint64_t(n);
    for (size_t left = size_t(n); left > 0;) {  // skip what was read; a run may be read in part
      const size_t take = std::min(left, runs[i].iov_len);
      runs[i].iov_base = static_cast<uint8_t*>(runs[i].iov_base) + take;
      runs[i].iov_len -= take;
      left -= take;
      if (runs[i].iov_len == 0) ++i;
    }
  }
}

// Reads one tensor into the blocks and says whether its bytes hash to the stored checksum. Keys
// stored in Hugging Face order (hf_keys set) are then permuted in the blocks, after the hash of
// the bytes as written, and copied to hf_keys for the returned state.
bool read_and_verify(int fd, const kvs::DeferredChecksum& sum, Sequence& seq, int layer, bool key,
                     int64_t slots, const std::string& path, uint16_t* hf_keys) {
  const std::vector<iovec> runs = runs_of(seq, layer, key, slots);
  read_runs(fd, sum, runs, path);
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(), XXH3_freeState);
  if (!st) throw std::bad_alloc();
  XXH3_64bits_reset(st.get());
  for (const iovec& r : runs) XXH3_64bits_update(st.get(), r.iov_base, r.iov_len);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits_digest(st.get())));
  if (sum.hex != hex) return false;
  if (key && hf_keys) {
    const size_t hd = size_t(seq.pool().shape().head_dim);
    for (const iovec& r : runs) {  // runs are whole rows, in file order
      auto* row = static_cast<uint16_t*>(r.iov_base);
      kvs::keys_from_hf(row, hf_keys, r.iov_len / 2 / hd, hd);  // GGUF order into the state's copy,
      std::memcpy(row, hf_keys, r.iov_len);                     // then back into the blocks
      hf_keys += r.iov_len / 2;
    }
  }
  return true;
}

}  // namespace

State load_state_into(const std::string& path, const Model& model, int64_t n_ctx, Sequence& seq,
                      ThreadPool* threads) {
  kvs::UnverifiedKv u = kvs::open_unverified_kv(path);
  State& s = u.state;
  restore_prepare(s, model, n_ctx, seq);  // the checks of restore(); seq untouched if they fail
  const int64_t slots = s.kv_entries();
  if (slots == 0) return std::move(s);
  if (u.sums.size() != size_t(2 * s.arch.n_layer) || !u.fd)
    throw Error(ErrorKind::Internal, path + ": K/V checksums missing");
  for (const kvs::DeferredChecksum& sum : u.sums)  // the reader checked the layout; the runs rely on it
    if (sum.bytes != s.kv_elements() * 2) throw Error(ErrorKind::Internal, path + ": K/V tensor size mismatch");
  // The returned state's K from a Hugging Face-ordered file: the permuted blocks, copied.
  const bool hf = u.key_order == KeyOrder::HuggingFace;
  const kvs::KeyBuffer keys = hf ? kvs::allocate_keys(s) : kvs::KeyBuffer{};
  std::vector<uint8_t> bad(u.sums.size(), 0);
  auto tensors = [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const int layer = int(i / 2);
      bad[size_t(i)] = !read_and_verify(*u.fd, u.sums[size_t(i)], seq, layer, i % 2 == 0, slots, path,
                                        hf ? keys.layer(layer) : nullptr);
    }
  };
  try {
    if (threads)
      threads->parallel_for(int64_t(u.sums.size()), tensors);
    else
      tensors(0, int64_t(u.sums.size()), 0);
  } catch (...) {
    seq = Sequence(seq.pool());  // part of the K/V may be missing: keep none of it
    throw;
  }
  for (size_t i = 0; i < bad.size(); ++i)
    if (bad[i]) {
      seq = Sequence(seq.pool());  // part of the K/V is corrupt: keep none of it
      throw Error(ErrorKind::Corruption, path + ": checksum mismatch in tensor '" + u.sums[i].tensor + "' (file corrupted)");
    }
  if (hf) kvs::use_keys(s, keys, u.mapping);
  return std::move(s);
}

}  // namespace kvstash
