#include "version.h"

#include "kvstash/kernels.h"

// CMake passes both (CMakeLists.txt); the fallbacks keep other builds compiling.
#ifndef KVSTASH_VERSION
#define KVSTASH_VERSION "unknown"
#endif
#ifndef KVSTASH_BUILD_TYPE
#define KVSTASH_BUILD_TYPE "unknown"
#endif

namespace kvstash::cli {

std::string version_text() {
  std::string build = KVSTASH_BUILD_TYPE;
#if defined(__SANITIZE_ADDRESS__)
  build += ", AddressSanitizer";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  build += ", AddressSanitizer";
#endif
#endif
#ifdef __clang__
  build += std::string(", clang ") + __clang_version__;
#else
  build += std::string(", gcc ") + __VERSION__;
#endif
  return std::string("kvstash ") + KVSTASH_VERSION + "\nsimd: " + Kernels::active().name() + "\nbuild: " + build;
}

}  // namespace kvstash::cli
