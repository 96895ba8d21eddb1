// CLAHE with OpenCV's semantics (imgproc/src/clahe.cpp): the image is padded with
// BORDER_REFLECT_101 up to a multiple of the tile grid for the histograms only; the
// clip limit is max(1, int(clip * tile_area / 256)); the clipped excess is spread
// evenly with the remainder stepped across the bins; LUT = round(cdf * 255 / area);
// pixels blend the four nearest tile LUTs bilinearly.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "colour_math.hpp"
#include "lab_planar.hpp"
#include "pixels.hpp"

namespace hv {
namespace {

struct ClaheScratch {
  std::vector<uint8_t> luts;  // tiles_y * tiles_x * 256
  std::vector<float> lutf;
  std::vector<int> ind1, ind2;
  std::vector<float> xa, xa1;
  std::vector<uint8_t> plane_in, plane_out;
};

HV_SIMD void interpolate_row(const uint8_t* __restrict src, const float* __restrict l1, const float* __restrict l2,
                             const int* __restrict ind1, const int* __restrict ind2, const float* __restrict xa,
                             const float* __restrict xa1, float ya, float ya1, int w, uint8_t* __restrict dst) {
  for (int x = 0; x < w; ++x) {
    const int v = src[x];
    const float top = l1[ind1[x] + v] * xa1[x] + l1[ind2[x] + v] * xa[x];
    const float bot = l2[ind1[x] + v] * xa1[x] + l2[ind2[x] + v] * xa[x];
    dst[x] = sat_u8(top * ya1 + bot * ya);
  }
}

// `plane` is h x w, one byte per pixel, tightly packed.
void clahe_plane(const uint8_t* plane, int h, int w, double clip_limit, int tiles_x, int tiles_y,
                 uint8_t* out, ClaheScratch& s) {
  if (tiles_x < 1 || tiles_y < 1) throw std::invalid_argument("clahe: tiles must be >= 1");
  // OpenCV pads both axes as soon as either is not a multiple of the grid (an axis
  // that divides evenly then gains a whole extra tile width); mirror that quirk.
  const bool divisible = h % tiles_y == 0 && w % tiles_x == 0;
  const int ext_h = divisible ? h : h + tiles_y - h % tiles_y;
  const int ext_w = divisible ? w : w + tiles_x - w % tiles_x;
  const int tw = ext_w / tiles_x, th = ext_h / tiles_y;
  const int area = tw * th;
  const float lut_scale = 255.0f / area;
  int clip = 0;
  if (clip_limit > 0.0) clip = std::max(static_cast<int>(std::min(clip_limit * area / 256, 1e9)), 1);

  s.luts.resize(static_cast<std::size_t>(tiles_x) * tiles_y * 256);
  const bool padded = ext_h != h || ext_w != w;
  // Column index map into the real image (identity unless padded).
  std::vector<int>& xmap = s.ind1;
  xmap.resize(ext_w);
  for (int x = 0; x < ext_w; ++x) xmap[x] = reflect101(x, w);
  for (int ty = 0; ty < tiles_y; ++ty) {
    for (int tx = 0; tx < tiles_x; ++tx) {
      int hist[256] = {0};
      for (int y = ty * th; y < (ty + 1) * th; ++y) {
        const uint8_t* r = plane + static_cast<std::size_t>(padded ? reflect101(y, h) : y) * w;
        if (padded) {
          for (int x = tx * tw; x < (tx + 1) * tw; ++x) ++hist[r[xmap[x]]];
        } else {
          for (int x = tx * tw; x < (tx + 1) * tw; ++x) ++hist[r[x]];
        }
      }
      if (clip > 0) {
        int clipped = 0;
        for (int i = 0; i < 256; ++i)
          if (hist[i] > clip) { clipped += hist[i] - clip; hist[i] = clip; }
        const int batch = clipped / 256;
        int residual = clipped - batch * 256;
        for (int i = 0; i < 256; ++i) hist[i] += batch;
        if (residual != 0) {
          const int step = std::max(256 / residual, 1);
          for (int i = 0; i < 256 && residual > 0; i += step, --residual) ++hist[i];
        }
      }
      uint8_t* lut = s.luts.data() + (static_cast<std::size_t>(ty) * tiles_x + tx) * 256;
      int sum = 0;
      for (int i = 0; i < 256; ++i) {
        sum += hist[i];
        lut[i] = sat_u8(static_cast<float>(sum) * lut_scale);
      }
    }
  }

  // Bilinear blend of the four surrounding tile LUTs; x weights are per column.
  const float inv_tw = 1.0f / tw, inv_th = 1.0f / th;
  s.ind1.resize(w); s.ind2.resize(w); s.xa.resize(w); s.xa1.resize(w);
  for (int x = 0; x < w; ++x) {
    const float txf = x * inv_tw - 0.5f;
    int tx1 = static_cast<int>(std::floor(txf));
    int tx2 = tx1 + 1;
    s.xa[x] = txf - tx1;
    s.xa1[x] = 1.0f - s.xa[x];
    tx1 = std::max(tx1, 0);
    tx2 = std::min(tx2, tiles_x - 1);
    s.ind1[x] = tx1 * 256;
    s.ind2[x] = tx2 * 256;
  }
  // Float copies of the LUTs let the AVX2 clone gather them eight pixels at a time.
  s.lutf.resize(s.luts.size());
  for (std::size_t i = 0; i < s.luts.size(); ++i) s.lutf[i] = s.luts[i];
  for (int y = 0; y < h; ++y) {
    const float tyf = y * inv_th - 0.5f;
    int ty1 = static_cast<int>(std::floor(tyf));
    int ty2 = ty1 + 1;
    const float ya = tyf - ty1, ya1 = 1.0f - ya;
    ty1 = std::max(ty1, 0);
    ty2 = std::min(ty2, tiles_y - 1);
    interpolate_row(plane + static_cast<std::size_t>(y) * w, s.lutf.data() + static_cast<std::size_t>(ty1) * tiles_x * 256,
                    s.lutf.data() + static_cast<std::size_t>(ty2) * tiles_x * 256, s.ind1.data(), s.ind2.data(),
                    s.xa.data(), s.xa1.data(), ya, ya1, w, out + static_cast<std::size_t>(y) * w);
  }
}

void check(const View& src, int channels, const char* op) {
  if (src.h <= 0 || src.w <= 0) throw std::invalid_argument(std::string(op) + ": empty image");
  if (src.channels != channels) throw std::invalid_argument(std::string(op) + ": wrong channel count");
}

}  // namespace

void clahe_gray(const View& src, double clip_limit, int tiles_x, int tiles_y, Image& dst) {
  check(src, 1, "clahe");
  thread_local ClaheScratch s;
  const std::size_t n = static_cast<std::size_t>(src.h) * src.w;
  s.plane_in.resize(n);
  for (int y = 0; y < src.h; ++y) std::copy_n(src.row(y), src.w, s.plane_in.data() + y * static_cast<std::size_t>(src.w));
  dst.reshape(src.h, src.w, 1);
  clahe_plane(s.plane_in.data(), src.h, src.w, clip_limit, tiles_x, tiles_y, dst.data(), s);
}

// RGB -> Lab planes (8-bit L; a and b quantised to integers as in OpenCV's 8-bit Lab
// but kept as a/500, b/200), CLAHE on L, -> RGB.
void clahe_l(const View& src, double clip_limit, int tiles, Image& dst) {
  check(src, 3, "clahe_l");
  thread_local ClaheScratch s;
  thread_local LabPlanes lab;
  rgb_to_l8ab(src, lab);
  s.plane_out.resize(lab.l8.size());
  clahe_plane(lab.l8.data(), src.h, src.w, clip_limit, tiles, tiles, s.plane_out.data(), s);
  l8ab_to_rgb(s.plane_out.data(), lab.da.data(), lab.db.data(), src.h, src.w, lab, dst);
}

}  // namespace hv
