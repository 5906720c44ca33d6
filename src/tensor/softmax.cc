// softmax over attention scores, the same bits at every SIMD level: an exp of our own (libm's
// differs between builds and cannot be vectorized bit for bit), computed in double and rounded to
// float, and a sum in 16 fixed double lanes (element i goes to lane i % 16) reduced by a fixed
// tree. The AVX2 path is that algorithm four lanes at a time, with the same operations (FMA where
// the scalar code calls fma).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "tensor/avx2_util.h"
#include "tensor/kernels_impl.h"

namespace kvstash::detail {

namespace {

// exp(x) in double: n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts, n ln2_hi exact),
// exp(r) by its Taylor series to r^10 (|r| <= 0.35: relative error below 1e-11), times 2^n, then
// rounded to float, which is then the correctly rounded exp(x) but in the rarest cases. Below kLow
// (where expf leaves the normal range) the result is 0.
constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 0.6931471803691238, kLn2Lo = 1.9082149292705877e-10;
constexpr float kLow = -87.3365f, kHigh = 88.3762f;
constexpr int kTerms = 11;  // 1/k! for k = 10 down to 0
constexpr double kInvFact[kTerms] = {1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                     1.0 / 24,      1.0 / 6,      0.5,          1.0,        1.0};

float exp_scalar(float xf) {
  if (!(xf >= kLow)) return 0.0f;  // NaN and -inf too
  const double x = double(xf < kHigh ? xf : kHigh);
  const double n = std::nearbyint(x * kLog2e);
  double r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  double p = kInvFact[0];
  for (int i = 1; i < kTerms; ++i) p = std::fma(p, r, kInvFact[i]);
  const int64_t bits = (int64_t(n) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, 8);
  return float(p * scale);
}

// Lanes 0..15 summed by halves: s[i] += s[i + 8], then + 4, + 2, + 1.
double reduce16(double* s) {
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) s[i] += s[i + w];
  return s[0];
}

}  // namespace

void softmax_scalar(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  double lanes[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_scalar(x[i] - max);
    lanes[i % 16] += double(x[i]);
  }
  const float inv = float(1.0 / reduce16(lanes));
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

namespace {

KV_AVX2 __m128 exp4_avx2(__m128 xf) {
  const __m128 keep = _mm_cmp_ps(xf, _mm_set1_ps(kLow), _CMP_GE_OQ);
  const __m256d x = _mm256_cvtps_pd(_mm_min_ps(xf, _mm_set1_ps(kHigh)));
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fmadd_pd(n, _mm256_set1_pd(-kLn2Hi), x);
  r = _mm256_fmadd_pd(n, _mm256_set1_pd(-kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kInvFact[0]);
  for (int i = 1; i < kTerms; ++i) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kInvFact[i]));
  // n lies in [-126, 128) wherever keep holds; elsewhere the lane is masked out below.
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)),
                                                       _mm256_set1_epi64x(1023)), 52);
  return _mm_and_ps(_mm256_cvtpd_ps(_mm256_mul_pd(p, _mm256_castsi256_pd(e))), keep);
}

// exp of 8 floats, and their values added to 8 double lanes (two registers of 4).
KV_AVX2 __m256 exp8_sum(__m256 v, __m256d& s0, __m256d& s1) {
  const __m128 a = exp4_avx2(_mm256_castps256_ps128(v)), b = exp4_avx2(_mm256_extractf128_ps(v, 1));
  s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(a));
  s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(b));
  return _mm256_set_m128(b, a);
}

}  // namespace

KV_AVX2 void softmax_avx2(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 vmax = _mm256_set1_ps(x[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float m[8];
  _mm256_storeu_ps(m, vmax);
  float max = m[0];
  for (int k = 1; k < 8; ++k) max = m[k] > max ? m[k] : max;
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;

  const __m256 vm = _mm256_set1_ps(max);
  __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(x + i, exp8_sum(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), s[0], s[1]));
    _mm256_storeu_ps(x + i + 8, exp8_sum(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm), s[2], s[3]));
  }
  double lanes[16];
  for (int k = 0; k < 4; ++k) _mm256_storeu_pd(lanes + 4 * k, s[k]);
  if (i < n) {  // the tail through a padded block, so its lanes take the same operations
    float tail[16];
    for (int k = 0; k < 16; ++k) tail[k] = i + k < n ? x[i + k] - max : -INFINITY;
    __m256d z[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    _mm256_storeu_ps(tail, exp8_sum(_mm256_loadu_ps(tail), z[0], z[1]));
    _mm256_storeu_ps(tail + 8, exp8_sum(_mm256_loadu_ps(tail + 8), z[2], z[3]));
    for (int k = 0; i + k < n; ++k) {
      x[i + k] = tail[k];
      lanes[k] += double(tail[k]);
    }
  }
  const float inv = float(1.0 / reduce16(lanes));
  const __m256 vinv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
  for (; i < n; ++i) x[i] *= inv;
}

}  // namespace kvstash::detail
