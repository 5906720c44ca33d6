// The disk tier: one file per entry in a directory that several processes may share. Files are
// replaced atomically (util/atomic_file), so a reader sees a whole entry or none; the directory
// itself is the index, so entries survive restarts; least recently used files go first (a hit
// rewrites the file's hit count, which also moves its mtime).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "kvstash/error.h"
#include "kvstash/store.h"
#include "util/atomic_file.h"
#include "util/little_endian.h"

namespace kvstash {

namespace {

// docs/format-store.md, "Disk tier".
constexpr char kMarkerName[] = "kvstash-store";
constexpr char kMarkerText[] = "kvstash prefix store 1\n";
constexpr char kSuffix[] = ".kvc";
constexpr char kFileMagic[8] = {'K', 'V', 'S', 'D', 'I', 'S', 'K', '1'};
constexpr size_t kHeader = 16;  // magic, hits (u64 LE; advisory, rewritten in place)
constexpr int64_t kForeignTempAge = 24 * 3600;  // another machine's temp file this old is abandoned

int64_t mtime_ms(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000; }

bool read_all(int fd, uint8_t* p, size_t n, off_t at) {
  for (size_t done = 0; done < n;) {
    const ssize_t k = ::pread(fd, p + done, n - done, at + off_t(done));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    done += size_t(k);
  }
  return true;
}

class DiskTier final : public StoreTier {
 public:
  DiskTier(const std::string& dir, uint64_t max_bytes, StoreWarn warn)
      : dir_(dir), max_(max_bytes), warn_(std::move(warn)) {
    open_directory();
    remove_stale_temps(dir_);
    remove_foreign_temps();
    std::lock_guard<std::mutex> lock(mu_);
    evict_locked(max_);  // the budget may be smaller than the last process's
  }
  std::string name() const override { return "disk " + dir_; }

  std::vector<bool> contains(const std::vector<StoreKey>& keys) override {
    std::vector<bool> r;
    struct stat st;
    for (const StoreKey& k : keys) r.push_back(::stat(path(k).c_str(), &st) == 0 && S_ISREG(st.st_mode));
    return r;
  }

  void get_many(const std::vector<StoreKey>& keys,
                const std::function<bool(size_t, std::optional<std::vector<uint8_t>>)>& on_value) override {
    for (size_t i = 0; i < keys.size(); ++i)
      if (!on_value(i, read(keys[i]))) return;
  }

  void put(const StoreKey& key, const std::vector<uint8_t>& value) override {
    const std::string p = path(key);
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) return;  // the same key always holds the same bytes
    try {
      AtomicFile f(p);
      uint8_t header[kHeader] = {};
      std::memcpy(header, kFileMagic, 8);
      f.write(header, kHeader);
      f.write(value.data(), value.size());
      f.commit();
    } catch (const Error& e) {
      fail(std::string("cannot store an entry: ") + e.what());
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_written += value.size();
    write_failed_ = false;
    evict_locked(max_);
  }

  void drop(const StoreKey& key) override {
    ::unlink(path(key).c_str());
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.errors;
  }

  TierStats stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::vector<StoreEntry> all = scan();
    TierStats s = stats_;
    s.tier = name();
    s.entries = all.size();
    for (const StoreEntry& e : all) s.bytes += e.bytes;
    return s;
  }

  std::vector<StoreEntry> list() override {
    std::lock_guard<std::mutex> lock(mu_);
    return scan();
  }
  uint64_t evict_to(uint64_t max_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    return evict_locked(max_bytes);
  }

 private:
  std::string path(const StoreKey& k) const { return dir_ + "/" + k.hex() + kSuffix; }

  // Creates the directory and its marker, or checks that an existing directory is a store: a
  // command like `cache clear` must never delete files of a directory named by mistake.
  void open_directory() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw Error(ErrorKind::IOError, "prompt cache " + dir_ + ": cannot create the directory: " + ec.message());
    if (!std::filesystem::is_directory(dir_, ec))
      throw Error(ErrorKind::InvalidArgument, "prompt cache " + dir_ + ": not a directory");
    const std::string marker = dir_ + "/" + kMarkerName;
    if (std::filesystem::exists(marker, ec)) return;
    // Another process may be creating the marker right now: its temp file does not count.
    bool others = false;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec))
      others = others || e.path().filename().string().find(kTempMarker) == std::string::npos;
    if (std::filesystem::exists(marker, ec)) return;
    if (others)
      throw Error(ErrorKind::InvalidArgument, "prompt cache " + dir_ +
                                                  ": the directory holds other files and no '" + kMarkerName +
                                                  "' file: not a kvstash prompt cache (use an empty or new directory)");
    try {
      AtomicFile f(marker);
      f.write(kMarkerText, sizeof kMarkerText - 1);
      f.commit();
    } catch (const Error& e) {
      throw Error(e.kind(), "prompt cache " + dir_ + ": cannot initialise the directory: " + e.what());
    }
  }

  // Temp files of other machines (a shared network directory) left for a day.
  void remove_foreign_temps() {
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return;
    const int64_t now = int64_t(std::time(nullptr));
    while (const dirent* e = ::readdir(d)) {
      struct stat st;
      if (std::strstr(e->d_name, kTempMarker) && ::fstatat(::dirfd(d), e->d_name, &st, 0) == 0 &&
          now - int64_t(st.st_mtim.tv_sec) > kForeignTempAge)
        ::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
  }

  // Every entry file now in the directory (other processes add and remove them too).
  std::vector<StoreEntry> scan() const {
    std::vector<StoreEntry> r;
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return r;
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() != 32 + std::strlen(kSuffix) || n.compare(32, std::string::npos, kSuffix) != 0) continue;
      const std::optional<StoreKey> key = StoreKey::from_hex(n.substr(0, 32));
      struct stat st;
      if (!key || ::fstatat(::dirfd(d), e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
      StoreEntry entry{*key, uint64_t(st.st_size), 0, mtime_ms(st)};
      const int fd = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
      uint8_t h[kHeader];
      if (fd >= 0 && read_all(fd, h, kHeader, 0) && std::memcmp(h, kFileMagic, 8) == 0) entry.hits = get_u64le(h + 8);
      if (fd >= 0) ::close(fd);
      r.push_back(entry);
    }
    ::closedir(d);
    return r;
  }
  uint64_t evict_locked(uint64_t max_bytes) {
    std::vector<StoreEntry> all = scan();
    uint64_t total = 0;
    for (const StoreEntry& e : all) total += e.bytes;
    if (total <= max_bytes) return 0;
    std::sort(all.begin(), all.end(), [](const StoreEntry& a, const StoreEntry& b) { return a.last_used_ms < b.last_used_ms; });
    uint64_t n = 0;
    for (const StoreEntry& e : all) {
      if (total <= max_bytes) break;
      if (::unlink(path(e.key).c_str()) == 0) ++n;  // another process may have removed it already
      total -= e.bytes;
    }
    return n;
  }

  std::optional<std::vector<uint8_t>> read(const StoreKey& key) {
    const std::string p = path(key);
    bool writable = true;
    int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
      writable = false;
      fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
      if (errno != ENOENT) fail(p + ": " + std::strerror(errno));
      count_miss();
      return std::nullopt;
    }
    struct stat st;
    std::optional<std::vector<uint8_t>> v;
    uint8_t h[kHeader];
    if (::fstat(fd, &st) == 0 && size_t(st.st_size) >= kHeader && read_all(fd, h, kHeader, 0) &&
        std::memcmp(h, kFileMagic, 8) == 0) {
      std::vector<uint8_t> bytes(size_t(st.st_size) - kHeader);
      if (read_all(fd, bytes.data(), bytes.size(), off_t(kHeader))) v = std::move(bytes);
      if (v && writable) {  // count the hit; the write also marks the file as recently used
        put_u64le(h + 8, get_u64le(h + 8) + 1);
        (void)!::pwrite(fd, h + 8, 8, 8);
      }
    } else {
      v.emplace();  // not a disk-tier file: no envelope either, so the caller drops it with a warning
    }
    ::close(fd);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.hits;
    stats_.bytes_read += v ? v->size() + kHeader : 0;
    return v;
  }
  void count_miss() {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.misses;
  }
  // One warning until a write succeeds again (a full or read-only disk is not news on every write).
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.errors;
    if (write_failed_) return;
    write_failed_ = true;
    if (warn_) warn_("prompt cache " + dir_ + ": " + what + "; continuing without it");
  }

  const std::string dir_;
  const uint64_t max_;
  StoreWarn warn_;
  std::mutex mu_;
  TierStats stats_;
  bool write_failed_ = false;
};

}  // namespace

std::unique_ptr<StoreTier> disk_tier(const std::string& dir, uint64_t max_bytes, StoreWarn warn) {
  return std::make_unique<DiskTier>(dir, max_bytes, std::move(warn));
}

}  // namespace kvstash
