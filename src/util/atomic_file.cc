// AtomicFile, and the clean-up of temp files on SIGINT/SIGTERM and after crashes.
#include "util/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cctype>
#include <climits>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "kvstash/error.h"

namespace kvstash {

namespace {

// Temp files alive in this process, for the signal handler: it may only read plain memory and
// call async-signal-safe functions (unlink, sigaction, raise).
constexpr int kSlots = 64;
struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 live
  char path[PATH_MAX];
};
Slot g_slots[kSlots];
struct sigaction g_previous[2];
constexpr int kSignals[2] = {SIGINT, SIGTERM};

void on_signal(int sig) {
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == 2) ::unlink(s.path);
  // Take the action that was there before us (by default: terminate), then stand guard again in
  // case it returned (a handler like Python's that only sets a flag).
  const int i = sig == SIGINT ? 0 : 1;
  struct sigaction ours;
  ::sigaction(sig, &g_previous[i], &ours);
  sigset_t set;  // the signal is blocked while its handler runs: let the re-raised one through
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::raise(sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::sigaction(sig, &ours, nullptr);
}

void install_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int i = 0; i < 2; ++i) {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      ::sigaction(kSignals[i], nullptr, &g_previous[i]);
      if (g_previous[i].sa_handler == SIG_IGN) continue;  // nohup and the like: leave it ignored
      ::sigaction(kSignals[i], &sa, nullptr);
    }
  });
}

int register_temp(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].state.store(2, std::memory_order_release);
    return i;
  }
  return -1;  // more than kSlots at once: still removed by the destructor, not by a signal
}

void unregister_temp(int slot) {
  if (slot >= 0) g_slots[slot].state.store(0, std::memory_order_release);
}

bool process_is_dead(long pid) { return pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH; }

// This machine's name, fit for a file name. A directory shared over the network holds temp files
// of other machines, whose processes cannot be checked from here.
const std::string& host_name() {
  static const std::string name = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    std::string s;
    for (const char* c = buf; *c; ++c) s += std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' ? *c : '_';
    return s.empty() ? std::string("localhost") : s;
  }();
  return name;
}

}  // namespace

void remove_stale_temps(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const char* at = std::strstr(e->d_name, kTempMarker);
    if (!at) continue;
    char* end = nullptr;
    const long pid = std::strtol(at + std::strlen(kTempMarker), &end, 10);
    if (end == nullptr || *end != '.') continue;
    const char* host = std::strchr(end + 1, '.');
    if (host == nullptr || host_name() != host + 1) continue;
    if (pid == long(::getpid()) || !process_is_dead(pid)) continue;
    ::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

namespace {

std::string parent_dir(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  static std::atomic<uint64_t> counter{0};
  const std::string dir = parent_dir(path);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(ErrorKind::InvalidArgument, path + ": is a directory, not a file to write");
  if (::stat(dir.c_str(), &st) != 0)
    throw Error(errno == ENOENT ? ErrorKind::NotFound : ErrorKind::IOError,
                path + ": cannot write here: directory " + dir + ": " + std::strerror(errno));
  install_handlers();
  remove_stale_temps(dir);
  tmp_ = path + kTempMarker + std::to_string(::getpid()) + "." + std::to_string(counter++) + "." + host_name();
  slot_ = register_temp(tmp_);  // before the file exists: a signal never misses it
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    unregister_temp(slot_);
    throw Error(err == ENOENT ? ErrorKind::NotFound : ErrorKind::IOError,
                path + ": cannot create temp file " + tmp_ + ": " + std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
  unregister_temp(slot_);
}

void AtomicFile::fail(const std::string& step, int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  unregister_temp(slot_);
  slot_ = -1;
  throw Error(ErrorKind::IOError, path_ + ": cannot save (" + step + " " + tmp_ + "): " + std::strerror(err));
}

void AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) throw Error(ErrorKind::Internal, path_ + ": write after commit or failure");
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < n;) {
    const ssize_t k = ::write(fd_, p + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) fail("writing", k == 0 ? EIO : errno);
    done += size_t(k);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw Error(ErrorKind::Internal, path_ + ": commit after commit or failure");
  if (::fsync(fd_) != 0) fail("syncing", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("closing", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("renaming", errno);
  unregister_temp(slot_);
  slot_ = -1;
  const std::string dir = parent_dir(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    const int err = errno;
    if (dfd >= 0) ::close(dfd);
    throw Error(ErrorKind::IOError, path_ + ": saved, but cannot sync directory " + dir + ": " + std::strerror(err));
  }
  ::close(dfd);
}

}  // namespace kvstash
