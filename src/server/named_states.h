// The named states of --state-dir: <name>.kvs files in one directory. Names are checked by
// valid_state_name (no separators, no ".."), and a symlink there is only followed when it stays
// inside the directory, so a request can never read or write outside it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvstash::server {

struct NamedState {
  std::string name;
  uint64_t bytes = 0;
  int64_t modified = 0;  // Unix seconds
};

class NamedStates {
 public:
  // Creates the directory if missing (IOError when it cannot).
  explicit NamedStates(const std::string& dir);
  bool enabled() const { return !dir_.empty(); }
  // Where the state is written (the file is replaced atomically by save_state).
  std::string path_for_save(const std::string& name) const;
  // The file to read; Error(NotFound) if it does not exist or leads out of the directory.
  std::string path_to_load(const std::string& name) const;
  std::vector<NamedState> list() const;
  // Removes the state (a symlink itself, never its target); Error(NotFound) if absent.
  void remove(const std::string& name) const;

 private:
  std::string dir_, real_dir_;
};

}  // namespace kvstash::server
