// sRGB <-> CIE Lab (D65) with OpenCV's constants and 8-bit scaling
// (L*255/100, a+128, b+128), Reinhard stain normalisation and grey-world.
//
// cbrt and the sRGB gamma are the expensive parts, so both are tables with linear
// interpolation (error < 0.01 of a level); the inverse companding of 8-bit input is
// an exact 256-entry table.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "colour_math.hpp"
#include "lab_planar.hpp"
#include "pixels.hpp"

namespace hv {

const ColourTables& colour_tables() {
  static const ColourTables t = [] {
    ColourTables c;
    for (int v = 0; v < 256; ++v) {
      const double x = v / 255.0;
      c.to_linear[v] = static_cast<float>(x <= 0.04045 ? x / 12.92 : std::pow((x + 0.055) / 1.055, 2.4));
    }
    for (int i = 0; i <= ColourTables::N; ++i) {
      const double x = static_cast<double>(i) / ColourTables::N;
      c.f_tab[i] = static_cast<float>(x > 0.008856 ? std::cbrt(x) : 7.787 * x + 16.0 / 116.0);
      c.gamma_tab[i] = static_cast<float>(
          255.0 * (x <= 0.0031308 ? 12.92 * x : 1.055 * std::pow(x, 1.0 / 2.4) - 0.055));
    }
    c.f_tab[ColourTables::N + 1] = c.f_tab[ColourTables::N];
    c.gamma_tab[ColourTables::N + 1] = c.gamma_tab[ColourTables::N];
    auto l8_of = [](double Y) {
      const double L = Y > 0.008856 ? 116.0 * std::cbrt(Y) - 16.0 : 903.3 * Y;
      return std::clamp(std::nearbyint(L * 255.0 / 100.0), 0.0, 255.0);
    };
    c.l8_thr[0] = -1.0f;
    c.l8_thr[256] = 2.0f;  // never reached: Y is clamped to [0, 1]
    for (int k = 1; k < 256; ++k) {
      double lo = 0.0, hi = 1.0;
      for (int it = 0; it < 64; ++it) {
        const double mid = 0.5 * (lo + hi);
        (l8_of(mid) >= k ? hi : lo) = mid;
      }
      c.l8_thr[k] = static_cast<float>(hi);
    }
    for (int i = 0; i < ColourTables::NB; ++i) {
      const float Y = static_cast<float>(i) / ColourTables::NB;
      int k = 0;
      while (k < 255 && Y >= c.l8_thr[k + 1]) ++k;
      c.l8_bin[i] = static_cast<uint8_t>(k);
    }
    for (int v = 0; v < 256; ++v) {
      const float L = v * (100.0f / 255.0f);
      lab_l_to_fy(L, c.fy_of_l8[v], c.y_of_l8[v]);
    }
    return c;
  }();
  return t;
}

void rgb_to_lab8(const View& src, Image& dst) {
  thread_local LabPlanes p;
  rgb_to_l8ab(src, p);
  dst.reshape(src.h, src.w, 3);
  uint8_t* d = dst.data();
  for (std::size_t i = 0; i < p.l8.size(); ++i) {
    d[3 * i] = p.l8[i];
    d[3 * i + 1] = static_cast<uint8_t>(std::lrint(p.da[i] * 500.0f) + 128);
    d[3 * i + 2] = static_cast<uint8_t>(std::lrint(p.db[i] * 200.0f) + 128);
  }
}

void lab8_to_rgb(const View& src, Image& dst) {
  thread_local LabPlanes p;
  thread_local std::vector<uint8_t> l8;
  const std::size_t n = static_cast<std::size_t>(src.h) * src.w;
  p.resize(n);
  l8.resize(n);
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* s = src.row(y);
    const std::size_t o = static_cast<std::size_t>(y) * src.w;
    for (int x = 0; x < src.w; ++x) {
      l8[o + x] = s[3 * x];
      p.da[o + x] = (s[3 * x + 1] - 128) * (1.0f / 500.0f);
      p.db[o + x] = (s[3 * x + 2] - 128) * (1.0f / 200.0f);
    }
  }
  l8ab_to_rgb(l8.data(), p.da.data(), p.db.data(), src.h, src.w, p, dst);
}

void reinhard(const View& src, const float target_mean[3], const float target_std[3], Image& dst) {
  const ColourTables& t = colour_tables();
  const std::size_t n = static_cast<std::size_t>(src.h) * src.w;
  thread_local std::vector<float> lab;
  lab.resize(3 * n);
  double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* s = src.row(y);
    float* o = lab.data() + 3 * static_cast<std::size_t>(y) * src.w;
    for (int x = 0; x < src.w; ++x) {
      rgb8_to_lab(t, s[3 * x], s[3 * x + 1], s[3 * x + 2], o[3 * x], o[3 * x + 1], o[3 * x + 2]);
      for (int c = 0; c < 3; ++c) { sum[c] += o[3 * x + c]; sq[c] += double(o[3 * x + c]) * o[3 * x + c]; }
    }
  }
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    const double m = sum[c] / n;
    const double sd = std::sqrt(std::max(0.0, sq[c] / n - m * m));
    // A flat channel has no spread to rescale: only move its mean.
    const double k = sd > 1e-6 ? target_std[c] / sd : 1.0;
    scale[c] = static_cast<float>(k);
    shift[c] = static_cast<float>(target_mean[c] - k * m);
  }
  dst.reshape(src.h, src.w, 3);
  for (int y = 0; y < src.h; ++y) {
    const float* l = lab.data() + 3 * static_cast<std::size_t>(y) * src.w;
    uint8_t* d = dst.row(y);
    for (int x = 0; x < src.w; ++x) {
      const float L = l[3 * x] * scale[0] + shift[0];
      const float a = l[3 * x + 1] * scale[1] + shift[1];
      const float b = l[3 * x + 2] * scale[2] + shift[2];
      float fy, yy;
      lab_l_to_fy(L, fy, yy);
      fy_to_rgb8(t, fy, yy, a * (1.0f / 500.0f), b * (1.0f / 200.0f), d + 3 * x);
    }
  }
}

void grey_world(const View& src, Image& dst) {
  double sum[3] = {0, 0, 0};
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* s = src.row(y);
    uint64_t acc[3] = {0, 0, 0};
    for (int x = 0; x < src.w; ++x) { acc[0] += s[3 * x]; acc[1] += s[3 * x + 1]; acc[2] += s[3 * x + 2]; }
    for (int c = 0; c < 3; ++c) sum[c] += static_cast<double>(acc[c]);
  }
  const double grey = (sum[0] + sum[1] + sum[2]) / 3.0;
  uint8_t lut[3][256];
  for (int c = 0; c < 3; ++c) {
    // An all-black channel cannot be scaled to the grey mean: leave it alone.
    const double k = sum[c] > 0 ? grey / sum[c] : 1.0;
    for (int v = 0; v < 256; ++v) lut[c][v] = sat_u8(static_cast<float>(v * k));
  }
  dst.reshape(src.h, src.w, 3);
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* s = src.row(y);
    uint8_t* d = dst.row(y);
    for (int x = 0; x < src.w; ++x) {
      d[3 * x] = lut[0][s[3 * x]]; d[3 * x + 1] = lut[1][s[3 * x + 1]]; d[3 * x + 2] = lut[2][s[3 * x + 2]];
    }
  }
}

}  // namespace hv
