// What `kvstash --version` prints: the version, the SIMD kernels in use and how it was built.
#pragma once
#include <string>

namespace kvstash::cli {

std::string version_text();

}  // namespace kvstash::cli
