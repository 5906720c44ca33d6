// A file replaced atomically: written under a temp name in the target's directory, fsynced,
// renamed over the target, and the directory fsynced. Readers of the target only ever see the old
// file or the complete new one.
#pragma once
#include <cstddef>
#include <string>

namespace kvstash {

class AtomicFile {
 public:
  // Creates "<path>.kvstash-tmp.<pid>.<n>.<host>" at once, so an unwritable target fails before
  // any work (NotFound for a missing directory, InvalidArgument for a directory as target, IOError
  // otherwise). Removes temp files that dead processes of this host left in that directory first.
  explicit AtomicFile(const std::string& path);
  // Removes the temp file unless committed.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);  // IOError (the temp file is removed)
  void commit();                           // IOError; the target is untouched on failure
  const std::string& temp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(const std::string& step, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  int slot_ = -1;  // in the table the signal handler cleans
};

// The temp-name marker, for code that lists a directory.
inline constexpr char kTempMarker[] = ".kvstash-tmp.";

// Removes "<name>.kvstash-tmp.<pid>.<n>.<host>" files in dir that a process of this machine left
// and that no longer exists (another machine's cannot be checked from here).
void remove_stale_temps(const std::string& dir);

}  // namespace kvstash
