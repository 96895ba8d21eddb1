// Inline per-pixel colour maths shared by colour.cpp and the fused CLAHE-on-L path.
#pragma once
#include <cmath>
#include <cstdint>

namespace hv {

inline uint8_t sat_u8(float v) {
  // Clamp (NaN -> 0), then round half to even as OpenCV's saturate_cast does: adding
  // and removing 1.5 * 2^23 leaves the nearest integer in the default rounding mode.
  // Branch-free and vectorisable, unlike a call to lrint.
  v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
  return static_cast<uint8_t>(static_cast<int>((v + 12582912.0f) - 12582912.0f));
}

struct ColourTables {
  static constexpr int N = 4096;
  float to_linear[256];
  float f_tab[N + 2];      // Lab f(t) on [0, 1]
  float gamma_tab[N + 2];  // 255 * sRGB companding on [0, 1]
  float fy_of_l8[256];     // f(Y) and Y for each 8-bit L
  float y_of_l8[256];
  // 8-bit L straight from Y, exact: l8_thr[k] is the least Y whose rounded L*255/100
  // is >= k (found by bisection in double); l8_bin gives the answer at the start of
  // each of NB bins, which are finer than any gap between thresholds. CLAHE amplifies
  // one-level differences in L, so this must not be off at rounding ties.
  static constexpr int NB = 16384;
  float l8_thr[257];
  uint8_t l8_bin[NB];
};
const ColourTables& colour_tables();

inline float lerp_tab(const float* tab, float x) {
  x = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;  // also maps NaN to 0
  const float p = x * ColourTables::N;
  const int i = static_cast<int>(p);
  const float f = p - i;
  return tab[i] + f * (tab[i + 1] - tab[i]);
}

// OpenCV's RGB->XYZ (sRGB, D65) with the white point folded into X and Z rows.
inline void rgb8_to_lab(const ColourTables& t, uint8_t r8, uint8_t g8, uint8_t b8, float& L, float& a,
                        float& b) {
  const float r = t.to_linear[r8], g = t.to_linear[g8], bl = t.to_linear[b8];
  const float X = (0.412453f * r + 0.357580f * g + 0.180423f * bl) * (1.0f / 0.950456f);
  const float Y = 0.212671f * r + 0.715160f * g + 0.072169f * bl;
  const float Z = (0.019334f * r + 0.119193f * g + 0.950227f * bl) * (1.0f / 1.088754f);
  const float fx = lerp_tab(t.f_tab, X), fy = lerp_tab(t.f_tab, Y), fz = lerp_tab(t.f_tab, Z);
  L = Y > 0.008856f ? 116.0f * fy - 16.0f : 903.3f * Y;
  a = 500.0f * (fx - fy);
  b = 200.0f * (fy - fz);
}

inline uint8_t y_to_l8(const ColourTables& t, float Y) {
  Y = Y > 0.0f ? (Y < 1.0f ? Y : 1.0f) : 0.0f;
  int i = static_cast<int>(Y * ColourTables::NB);
  if (i >= ColourTables::NB) i = ColourTables::NB - 1;
  int k = t.l8_bin[i];
  if (Y >= t.l8_thr[k + 1]) ++k;
  return static_cast<uint8_t>(k);
}

// 8-bit L plus float a and b quantised as OpenCV's 8-bit Lab (a8 - 128, b8 - 128),
// returned as a/500 and b/200, the form Lab -> RGB consumes.
inline uint8_t rgb8_to_l8ab(const ColourTables& t, uint8_t r8, uint8_t g8, uint8_t b8, float& a500, float& b200) {
  const float r = t.to_linear[r8], g = t.to_linear[g8], bl = t.to_linear[b8];
  const float X = (0.412453f * r + 0.357580f * g + 0.180423f * bl) * (1.0f / 0.950456f);
  const float Y = 0.212671f * r + 0.715160f * g + 0.072169f * bl;
  const float Z = (0.019334f * r + 0.119193f * g + 0.950227f * bl) * (1.0f / 1.088754f);
  const float fx = lerp_tab(t.f_tab, X), fy = lerp_tab(t.f_tab, Y), fz = lerp_tab(t.f_tab, Z);
  a500 = (static_cast<float>(sat_u8(500.0f * (fx - fy) + 128.0f)) - 128.0f) * (1.0f / 500.0f);
  b200 = (static_cast<float>(sat_u8(200.0f * (fy - fz) + 128.0f)) - 128.0f) * (1.0f / 200.0f);
  return y_to_l8(t, Y);
}

inline void lab_l_to_fy(float L, float& fy, float& y) {
  if (L <= 7.9996248f) {
    y = L / 903.3f;
    fy = 7.787f * y + 16.0f / 116.0f;
  } else {
    fy = (L + 16.0f) / 116.0f;
    y = fy * fy * fy;
  }
}

inline float lab_finv(float f) {
  return f <= 0.206893f ? (f - 16.0f / 116.0f) * (1.0f / 7.787f) : f * f * f;
}

// fy/y from L, and a/500, b/200 -> 8-bit RGB (OpenCV Lab2RGB, clipped to gamut).
inline void fy_to_rgb8(const ColourTables& t, float fy, float y, float a500, float b200, uint8_t* out) {
  const float x = lab_finv(fy + a500) * 0.950456f;
  const float z = lab_finv(fy - b200) * 1.088754f;
  const float r = 3.240479f * x - 1.53715f * y - 0.498535f * z;
  const float g = -0.969256f * x + 1.875991f * y + 0.041556f * z;
  const float b = 0.055648f * x - 0.204043f * y + 1.057311f * z;
  out[0] = sat_u8(lerp_tab(t.gamma_tab, r));
  out[1] = sat_u8(lerp_tab(t.gamma_tab, g));
  out[2] = sat_u8(lerp_tab(t.gamma_tab, b));
}

}  // namespace hv
