// Small types shared by every layer.
#pragma once
#include <cstdint>

namespace kvstash {

using Token = int32_t;     // a vocabulary id
using Position = int32_t;  // a RoPE position

// Positions lie in [0, kMaxPosition): far beyond any training context, far from int32 overflow.
inline constexpr Position kMaxPosition = Position(1) << 30;

}  // namespace kvstash
