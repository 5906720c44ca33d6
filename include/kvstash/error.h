// The one exception type kvstash throws at module boundaries; the CLI prints what() on one line.
#pragma once
#include <stdexcept>
#include <string>

namespace kvstash {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace kvstash
