// A `kvstash serve` process for tests: started on a free loopback port, stopped with SIGTERM (or
// killed with the test process: PR_SET_PDEATHSIG), with HTTP helpers over cpp-httplib.
#pragma once
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"
#include "test_util.h"

namespace kvstash::testing {

class ServerProcess {
 public:
  // args: flags after `kvstash serve` (the port is chosen here).
  explicit ServerProcess(const std::vector<std::string>& args) {
    port_ = free_loopback_port();
    std::vector<std::string> argv = {cli(), "serve", "--port", std::to_string(port_), "-t", "2"};
    argv.insert(argv.end(), args.begin(), args.end());
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(fds[1], 2);
      close(fds[0]);
      std::vector<char*> cargv;
      for (auto& s : argv) cargv.push_back(s.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(fds[1]);
    err_fd_ = fds[0];
    reader_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(err_fd_, buf, sizeof buf)) > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        log_.append(buf, size_t(n));
      }
    });
    // Ready when it answers /health.
    for (int i = 0; i < 600; ++i) {
      httplib::Client c("127.0.0.1", port_);
      if (auto r = c.Get("/health"); r && r->status == 200) return;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("kvstash serve exited at start:\n" + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("kvstash serve did not answer /health within 60 s:\n" + log());
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
    close(err_fd_);
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const {
    std::lock_guard<std::mutex> lk(mu_);
    return log_;
  }
  httplib::Client client(const std::string& api_key = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300, 0);
    if (!api_key.empty()) c.set_bearer_token_auth(api_key.c_str());
    return c;
  }
  // SIGTERM, then the exit status (-1 if it did not exit within `seconds`).
  int terminate(double seconds = 120) {
    kill(pid_, SIGTERM);
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  int err_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::string log_;
};

struct HttpResult {
  int status = 0;  // 0: no response (connection failed)
  std::string body;
  std::string retry_after;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

inline HttpResult post(httplib::Client& c, const std::string& path, const std::string& body) {
  auto r = c.Post(path.c_str(), body, "application/json");
  if (!r) return {};
  return {r->status, r->body, r->get_header_value("Retry-After")};
}
inline HttpResult post(httplib::Client& c, const std::string& path, const nlohmann::json& body) {
  return post(c, path, body.dump());
}
inline HttpResult get(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body, r->get_header_value("Retry-After")};
}

// The data lines of a server-sent event stream, in order ("[DONE]" included).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    out.push_back(body.substr(at + 6, end - at - 6));
    at = end;
  }
  return out;
}

}  // namespace kvstash::testing
