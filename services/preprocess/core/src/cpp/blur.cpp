// Gaussian blur with OpenCV's kernel size rule for 8-bit images
// (ksize = round(6 sigma + 1) | 1) and BORDER_REFLECT_101 edges. Separable float
// passes: horizontal into a padded float row, vertical over whole rows.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "colour_math.hpp"
#include "pixels.hpp"

namespace hv {

int gaussian_ksize(float sigma) {
  if (!(sigma > 0.0f)) return 1;
  return static_cast<int>(std::lrint(sigma * 6.0 + 1.0)) | 1;
}

void gaussian_blur(const View& src, float sigma, Image& dst) {
  if (src.h <= 0 || src.w <= 0) throw std::invalid_argument("gaussian_blur: empty image");
  if (!(sigma >= 0.0f) || sigma > 1000.0f) throw std::invalid_argument("gaussian_blur: sigma out of range");
  const int C = src.channels, h = src.h, w = src.w;
  dst.reshape(h, w, C);
  const int ksize = gaussian_ksize(sigma);
  if (ksize == 1) {
    for (int y = 0; y < h; ++y) std::copy_n(src.row(y), static_cast<std::size_t>(w) * C, dst.row(y));
    return;
  }
  const int r = ksize / 2;
  thread_local std::vector<float> kernel, padded, tmp;
  kernel.resize(ksize);
  double ksum = 0;
  for (int i = 0; i < ksize; ++i) {
    const double d = i - r;
    kernel[i] = static_cast<float>(std::exp(-d * d / (2.0 * sigma * sigma)));
    ksum += kernel[i];
  }
  for (int i = 0; i < ksize; ++i) kernel[i] = static_cast<float>(kernel[i] / ksum);

  const std::size_t rowlen = static_cast<std::size_t>(w) * C;
  padded.resize((static_cast<std::size_t>(w) + 2 * r) * C);
  tmp.resize(static_cast<std::size_t>(h) * rowlen);
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = src.row(y);
    for (int x = -r; x < w + r; ++x) {
      const int sx = (x >= 0 && x < w) ? x : reflect101(x, w);
      for (int c = 0; c < C; ++c) padded[static_cast<std::size_t>(x + r) * C + c] = s[sx * C + c];
    }
    float* t = tmp.data() + y * rowlen;
    for (std::size_t i = 0; i < rowlen; ++i) t[i] = kernel[0] * padded[i];
    for (int k = 1; k < ksize; ++k) {
      const float kk = kernel[k];
      const float* p = padded.data() + static_cast<std::size_t>(k) * C;
      for (std::size_t i = 0; i < rowlen; ++i) t[i] += kk * p[i];
    }
  }
  padded.resize(rowlen);
  float* acc = padded.data();
  for (int y = 0; y < h; ++y) {
    const float* t0 = tmp.data() + reflect101(y - r, h) * rowlen;
    for (std::size_t i = 0; i < rowlen; ++i) acc[i] = kernel[0] * t0[i];
    for (int k = 1; k < ksize; ++k) {
      const float* tk = tmp.data() + reflect101(y - r + k, h) * rowlen;
      const float kk = kernel[k];
      for (std::size_t i = 0; i < rowlen; ++i) acc[i] += kk * tk[i];
    }
    uint8_t* d = dst.row(y);
    for (std::size_t i = 0; i < rowlen; ++i) d[i] = sat_u8(acc[i]);
  }
}

}  // namespace hv
