// Vectorisable 8-bit RGB <-> Lab for whole images (the CLAHE-on-L hot path).
//
// Same maths as colour_math.hpp, rearranged so the compiler can use SIMD: the only
// table lookups (8-bit sRGB -> linear) happen in a scalar pass that also splits the
// pixels into planes; cbrt is a bit-trick guess plus two Halley steps (float
// precision, no tables), and the sRGB companding x^(1/2.4) = c * c^(1/4) with
// c = cbrt(x). L is rounded in float and then re-derived exactly, from the Y
// thresholds, for the rare pixels within 1e-3 of a rounding tie: CLAHE amplifies a
// single level of L, so L must agree with the float64 reference.
#include <cmath>
#include <cstring>

#include "colour_math.hpp"
#include "lab_planar.hpp"

namespace hv {
namespace {

constexpr float kT = 0.008856f;        // Lab's linear/cbrt threshold on t
constexpr float kT_enc = 0.0031308f;   // sRGB's linear/power threshold

inline float cbrt_fast(float x) {
  // x >= kT here (callers clamp), so no zero or denormal input.
  int32_t i;
  std::memcpy(&i, &x, sizeof i);
  i = static_cast<int32_t>(static_cast<float>(i) * (1.0f / 3.0f)) + 709921077;
  float y;
  std::memcpy(&y, &i, sizeof y);
  float y3 = y * y * y;
  y = y * (y3 + 2.0f * x) / (2.0f * y3 + x);
  y3 = y * y * y;
  y = y * (y3 + 2.0f * x) / (2.0f * y3 + x);
  return y;
}

inline float lab_f(float t) {
  const float c = cbrt_fast(t > kT ? t : kT);
  return t > kT ? c : 7.787f * t + 16.0f / 116.0f;
}

inline float srgb_encode255(float v) {
  v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
  const float c = cbrt_fast(v > kT_enc ? v : kT_enc);
  const float p = 1.055f * c * std::sqrt(std::sqrt(c)) - 0.055f;
  return 255.0f * (v > kT_enc ? p : 12.92f * v);
}

inline float round_even(float v) { return (v + 12582912.0f) - 12582912.0f; }  // |v| < 2^22

// Restrict-qualified parameters (not locals) are what lets GCC prove the planes
// do not alias and vectorise these loops.
HV_SIMD void fwd_kernel(const float* __restrict r, const float* __restrict g, const float* __restrict b,
                uint8_t* __restrict l8, uint8_t* __restrict tie, float* __restrict da, float* __restrict db,
                float* __restrict yy, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float X = (0.412453f * r[i] + 0.357580f * g[i] + 0.180423f * b[i]) * (1.0f / 0.950456f);
    const float Y = 0.212671f * r[i] + 0.715160f * g[i] + 0.072169f * b[i];
    const float Z = (0.019334f * r[i] + 0.119193f * g[i] + 0.950227f * b[i]) * (1.0f / 1.088754f);
    const float fx = lab_f(X), fy = lab_f(Y), fz = lab_f(Z);
    const float L = Y > kT ? 116.0f * fy - 16.0f : 903.3f * Y;
    float v = L * (255.0f / 100.0f);
    v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
    const float lr = round_even(v);
    const float off = v - lr;
    tie[i] = (off > 0.499f || off < -0.499f) ? 1 : 0;
    l8[i] = static_cast<uint8_t>(static_cast<int>(lr));
    float a = round_even(500.0f * (fx - fy));
    float bb = round_even(200.0f * (fy - fz));
    a = a > -128.0f ? (a < 127.0f ? a : 127.0f) : -128.0f;
    bb = bb > -128.0f ? (bb < 127.0f ? bb : 127.0f) : -128.0f;
    da[i] = a * (1.0f / 500.0f);
    db[i] = bb * (1.0f / 200.0f);
    yy[i] = Y;
  }
}

HV_SIMD void bwd_kernel(const uint8_t* __restrict l8, const float* __restrict da, const float* __restrict db,
                uint8_t* __restrict o0, uint8_t* __restrict o1, uint8_t* __restrict o2, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float L = static_cast<float>(l8[i]) * (100.0f / 255.0f);
    const bool small = L <= 7.9996248f;
    const float fyl = (L + 16.0f) * (1.0f / 116.0f);
    const float ys = L * (1.0f / 903.3f);
    const float y = small ? ys : fyl * fyl * fyl;
    const float fy = small ? 7.787f * ys + 16.0f / 116.0f : fyl;
    const float fx = fy + da[i], fz = fy - db[i];
    const float x = (fx <= 0.206893f ? (fx - 16.0f / 116.0f) * (1.0f / 7.787f) : fx * fx * fx) * 0.950456f;
    const float z = (fz <= 0.206893f ? (fz - 16.0f / 116.0f) * (1.0f / 7.787f) : fz * fz * fz) * 1.088754f;
    const float r = 3.240479f * x - 1.53715f * y - 0.498535f * z;
    const float g = -0.969256f * x + 1.875991f * y + 0.041556f * z;
    const float b = 0.055648f * x - 0.204043f * y + 1.057311f * z;
    o0[i] = static_cast<uint8_t>(static_cast<int>(round_even(srgb_encode255(r))));
    o1[i] = static_cast<uint8_t>(static_cast<int>(round_even(srgb_encode255(g))));
    o2[i] = static_cast<uint8_t>(static_cast<int>(round_even(srgb_encode255(b))));
  }
}

}  // namespace

void rgb_to_l8ab(const View& src, LabPlanes& p) {
  const ColourTables& t = colour_tables();
  const std::size_t n = static_cast<std::size_t>(src.h) * src.w;
  p.resize(n);
  float* r = p.r.data();
  float* g = p.g.data();
  float* b = p.b.data();
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* s = src.row(y);
    const std::size_t o = static_cast<std::size_t>(y) * src.w;
    for (int x = 0; x < src.w; ++x) {
      r[o + x] = t.to_linear[s[3 * x]];
      g[o + x] = t.to_linear[s[3 * x + 1]];
      b[o + x] = t.to_linear[s[3 * x + 2]];
    }
  }
  fwd_kernel(r, g, b, p.l8.data(), p.tie.data(), p.da.data(), p.db.data(), p.y.data(), n);
  uint8_t* l8 = p.l8.data();
  const uint8_t* tie = p.tie.data();
  const float* yy = p.y.data();
  for (std::size_t i = 0; i < n; ++i)
    if (tie[i]) l8[i] = y_to_l8(t, yy[i]);
}

void l8ab_to_rgb(const uint8_t* l8_in, const float* da_in, const float* db_in, int h, int w, LabPlanes& p,
                 Image& dst) {
  const std::size_t n = static_cast<std::size_t>(h) * w;
  p.resize(n);
  bwd_kernel(l8_in, da_in, db_in, p.o0.data(), p.o1.data(), p.o2.data(), n);
  const uint8_t* o0 = p.o0.data();
  const uint8_t* o1 = p.o1.data();
  const uint8_t* o2 = p.o2.data();
  dst.reshape(h, w, 3);
  uint8_t* d = dst.data();
  for (std::size_t i = 0; i < n; ++i) {
    d[3 * i] = o0[i];
    d[3 * i + 1] = o1[i];
    d[3 * i + 2] = o2[i];
  }
}

}  // namespace hv
