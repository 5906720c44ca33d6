#include <gtest/gtest.h>

#include "kvstash/error.h"
#include "kvstash/kv_cache.h"

namespace kvstash {
namespace {

const KvShape kShape{2, 1, 4, 4};  // 2 layers, 1 KV head, head_dim 4, 4 tokens per block

void fill(Sequence& s, int64_t n, uint16_t value) {
  std::vector<Token> t(size_t(n), 7);
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = s.next_position() + int32_t(i);
  const int64_t first = s.append(t.data(), pos.data(), n);
  for (int64_t e = first; e < first + n; ++e) s.pool().k(s.block_of(e), 0, 0)[s.slot_of(e) * 4] = value;
}

TEST(KvPool, ForkSharesBlocksUntilWritten) {
  KvPool pool(kShape, 64);
  Sequence a(pool);
  fill(a, 6, 1);  // blocks: full + half
  EXPECT_EQ(pool.free_blocks(), 14);
  Sequence b = a.fork();
  EXPECT_EQ(pool.free_blocks(), 14);  // nothing copied
  EXPECT_EQ(b.blocks(), a.blocks());
  fill(b, 1, 2);                      // writes into the shared half block: copied first
  EXPECT_EQ(pool.free_blocks(), 13);
  EXPECT_EQ(b.blocks()[0], a.blocks()[0]);
  EXPECT_NE(b.blocks()[1], a.blocks()[1]);
  EXPECT_EQ(pool.k(a.block_of(5), 0, 0)[a.slot_of(5) * 4], 1);
  EXPECT_EQ(pool.k(b.block_of(5), 0, 0)[b.slot_of(5) * 4], 1);  // the copy kept the prefix
  EXPECT_EQ(a.size(), 6);
  EXPECT_EQ(b.size(), 7);
  EXPECT_EQ(b.positions().back(), 6);
}

TEST(KvPool, TruncateAndDestroyReturnBlocks) {
  KvPool pool(kShape, 64);
  {
    Sequence a(pool);
    fill(a, 10, 1);
    EXPECT_EQ(pool.free_blocks(), 13);
    a.truncate(4);
    EXPECT_EQ(pool.free_blocks(), 15);
    EXPECT_EQ(a.size(), 4);
    EXPECT_EQ(a.next_position(), 4);
    Sequence b = a.fork();
    a.clear();
    EXPECT_EQ(pool.free_blocks(), 15);  // still held by b
  }
  EXPECT_EQ(pool.free_blocks(), 16);
}

TEST(KvPool, ExhaustedPoolIsAnErrorAndLeavesSequenceIntact) {
  KvPool pool(kShape, 8);
  Sequence a(pool);
  fill(a, 6, 1);
  std::vector<Token> t(5, 1);
  std::vector<int32_t> pos(5, 0);
  EXPECT_THROW(a.append(t.data(), pos.data(), 5), Error);
  EXPECT_EQ(a.size(), 6);
  EXPECT_THROW(a.truncate(7), Error);
}

}  // namespace
}  // namespace kvstash
