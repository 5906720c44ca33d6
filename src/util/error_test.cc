// Error kinds at the boundary: standard exceptions become kinds, every kind has its own exit code.
#include "kvstash/error.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <new>
#include <set>

namespace kvstash {
namespace {

ErrorKind kind_of(const std::function<void()>& throw_it) {
  try {
    try {
      throw_it();
    } catch (...) {
      rethrow_as_error();
    }
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::Internal;
}

TEST(ErrorKinds, StandardExceptionsBecomeKinds) {
  EXPECT_EQ(kind_of([] { throw std::bad_alloc(); }), ErrorKind::ResourceExhausted);
  EXPECT_EQ(kind_of([] { throw std::length_error("vector"); }), ErrorKind::ResourceExhausted);
  EXPECT_EQ(kind_of([] { (void)std::filesystem::file_size("/nonexistent/kvstash"); }), ErrorKind::NotFound);
  EXPECT_EQ(kind_of([] { throw std::runtime_error("x"); }), ErrorKind::Internal);
  EXPECT_EQ(kind_of([] { throw Error(ErrorKind::ModelMismatch, "m"); }), ErrorKind::ModelMismatch);
  EXPECT_EQ(kind_of([] { throw 42; }), ErrorKind::Internal);
}

TEST(ErrorKinds, EveryKindHasItsOwnExitCodeAndName) {
  std::set<int> codes;
  std::set<std::string> names;
  for (int k = 0; k <= int(ErrorKind::Internal); ++k) {
    codes.insert(exit_code(ErrorKind(k)));
    names.insert(error_kind_name(ErrorKind(k)));
    EXPECT_GE(exit_code(ErrorKind(k)), 2);  // 0 is success, 1 anything unexpected
  }
  EXPECT_EQ(codes.size(), size_t(ErrorKind::Internal) + 1);
  EXPECT_EQ(names.size(), size_t(ErrorKind::Internal) + 1);
}

}  // namespace
}  // namespace kvstash
