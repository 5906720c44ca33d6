#include "server/named_states.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "kvstash/error.h"
#include "server/openai_request.h"

namespace kvstash::server {

namespace {
constexpr const char* kSuffix = ".kvs";

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? std::string(buf) : std::string();
}

void check_name(const std::string& name) {
  if (!valid_state_name(name))
    throw Error(ErrorKind::InvalidArgument, "invalid state name '" + name +
                                                "': use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'");
}
}  // namespace

NamedStates::NamedStates(const std::string& dir) : dir_(dir) {
  if (dir_.empty()) return;
  if (mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error(ErrorKind::IOError, "--state-dir " + dir_ + ": " + std::strerror(errno));
  real_dir_ = real_path(dir_);
  struct stat st;
  if (real_dir_.empty() || stat(real_dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(ErrorKind::IOError, "--state-dir " + dir_ + " is not a directory");
}

std::string NamedStates::path_for_save(const std::string& name) const {
  check_name(name);
  return real_dir_ + "/" + name + kSuffix;
}

std::string NamedStates::path_to_load(const std::string& name) const {
  check_name(name);
  const std::string path = real_dir_ + "/" + name + kSuffix;
  const std::string real = real_path(path);
  struct stat st;
  if (real.empty() || real.compare(0, real_dir_.size() + 1, real_dir_ + "/") != 0 || stat(real.c_str(), &st) != 0 ||
      !S_ISREG(st.st_mode))
    throw Error(ErrorKind::NotFound, "no state named '" + name + "'");
  return real;
}

std::vector<NamedState> NamedStates::list() const {
  std::vector<NamedState> out;
  DIR* d = opendir(real_dir_.c_str());
  if (!d) throw Error(ErrorKind::IOError, "--state-dir " + dir_ + ": " + std::strerror(errno));
  while (dirent* e = readdir(d)) {
    const std::string file = e->d_name;
    if (file.size() <= std::strlen(kSuffix) || file.compare(file.size() - 4, 4, kSuffix) != 0) continue;
    const std::string name = file.substr(0, file.size() - 4);
    if (!valid_state_name(name)) continue;
    try {
      struct stat st;
      if (stat(path_to_load(name).c_str(), &st) == 0) out.push_back({name, uint64_t(st.st_size), int64_t(st.st_mtime)});
    } catch (const Error&) {  // a link out of the directory: not listed
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const NamedState& a, const NamedState& b) { return a.name < b.name; });
  return out;
}

void NamedStates::remove(const std::string& name) const {
  check_name(name);
  const std::string path = real_dir_ + "/" + name + kSuffix;
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) throw Error(ErrorKind::NotFound, "no state named '" + name + "'");
    throw Error(ErrorKind::IOError, "removing state '" + name + "': " + std::strerror(errno));
  }
}

}  // namespace kvstash::server
