// Crop/pad to square, resize, and float normalisation.
//
// Resize is separable: a per-axis table of (source index, weight) taps, built with
// OpenCV's rules -- INTER_AREA coverage weights when shrinking an axis, INTER_LINEAR
// (half-pixel centres) when enlarging it. The vertical pass runs first over whole
// rows (contiguous, so the compiler vectorises it); the horizontal pass then gathers
// from one float row.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "colour_math.hpp"
#include "pixels.hpp"

namespace hv {
namespace {

struct Taps {
  std::vector<int> first;  // per output index: offset into idx/wt
  std::vector<int> count;
  std::vector<int> idx;    // source index (already clamped into the real image)
  std::vector<float> wt;
  bool identity = false;
};

// `virt_len` is the axis length after padding/cropping, `offset` where the real
// image starts on it (negative = crop, positive = pad); indices are clamped into
// [0, real_len) which makes padding replicate the edge -- or, with `fill`, set to -1
// (the caller samples its fill colour there).
void build_taps(int virt_len, int out_len, int offset, int real_len, Taps& t, bool fill = false) {
  t.first.assign(out_len, 0);
  t.count.assign(out_len, 0);
  t.idx.clear();
  t.wt.clear();
  t.identity = (virt_len == out_len && offset == 0 && real_len == virt_len);
  auto push = [&](int i, float w) {
    const int j = i - offset;
    t.idx.push_back(fill && (j < 0 || j >= real_len) ? -1 : std::clamp(j, 0, real_len - 1));
    t.wt.push_back(w);
  };
  const double scale = static_cast<double>(virt_len) / out_len;
  for (int o = 0; o < out_len; ++o) {
    t.first[o] = static_cast<int>(t.idx.size());
    if (virt_len == out_len) {
      push(o, 1.0f);
    } else if (virt_len > out_len) {
      // OpenCV computeResizeAreaTab: each output cell covers [o*scale, (o+1)*scale).
      const double fs1 = o * scale, fs2 = fs1 + scale;
      const double cell = std::min(scale, virt_len - fs1);
      int s1 = static_cast<int>(std::ceil(fs1)), s2 = static_cast<int>(std::floor(fs2));
      s2 = std::min(s2, virt_len);
      s1 = std::min(s1, s2);
      if (s1 - fs1 > 1e-3) push(s1 - 1, static_cast<float>((s1 - fs1) / cell));
      for (int s = s1; s < s2; ++s) push(s, static_cast<float>(1.0 / cell));
      if (fs2 - s2 > 1e-3 && s2 < virt_len)
        push(s2, static_cast<float>(std::min(std::min(fs2 - s2, 1.0), cell) / cell));
    } else {
      // Bilinear with half-pixel centres, clamped at the edges (INTER_LINEAR).
      double f = (o + 0.5) * scale - 0.5;
      int s = static_cast<int>(std::floor(f));
      f -= s;
      if (s < 0) { s = 0; f = 0; }
      if (s >= virt_len - 1) { s = virt_len - 1; f = 0; }
      push(s, static_cast<float>(1.0 - f));
      if (f > 0) push(s + 1, static_cast<float>(f));
    }
    t.count[o] = static_cast<int>(t.idx.size()) - t.first[o];
  }
}


// Taps padded to a fixed count K per output (zero weights on row/column 0) and
// stored tap-major, so the loops over outputs have no inner variable-length loop.
struct PaddedTaps {
  int K = 0;
  std::vector<int> idx;    // [K][out]
  std::vector<float> wt;   // [K][out]
};

void pad_taps(const Taps& t, int out_len, int stride, int fill_at, PaddedTaps& p) {
  p.K = 1;
  for (int o = 0; o < out_len; ++o) p.K = std::max(p.K, t.count[o]);
  p.idx.assign(static_cast<std::size_t>(p.K) * out_len, 0);
  p.wt.assign(static_cast<std::size_t>(p.K) * out_len, 0.0f);
  for (int o = 0; o < out_len; ++o)
    for (int k = 0; k < t.count[o]; ++k) {
      const int i = t.idx[t.first[o] + k];
      p.idx[static_cast<std::size_t>(k) * out_len + o] = i < 0 ? fill_at : i * stride;
      p.wt[static_cast<std::size_t>(k) * out_len + o] = t.wt[t.first[o] + k];
    }
}

// acc[i] (=|+=) sum of up to four weighted source rows; contiguous, so it vectorises.
HV_SIMD void vertical4(float* __restrict acc, const uint8_t* __restrict s0, const uint8_t* __restrict s1,
                       const uint8_t* __restrict s2, const uint8_t* __restrict s3, float w0, float w1, float w2,
                       float w3, int n, bool accumulate) {
  if (accumulate) {
    for (int i = 0; i < n; ++i) acc[i] += ((w0 * s0[i] + w1 * s1[i]) + (w2 * s2[i] + w3 * s3[i]));
  } else {
    for (int i = 0; i < n; ++i) acc[i] = ((w0 * s0[i] + w1 * s1[i]) + (w2 * s2[i] + w3 * s3[i]));
  }
}

// One output row from the vertically filtered float row; with AVX2 the per-tap
// source loads become gathers.
HV_SIMD void horizontal3(const float* __restrict row, const int* __restrict idx, const float* __restrict wt, int K,
                         int out_w, uint8_t* __restrict out) {
  for (int ox = 0; ox < out_w; ++ox) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int k = 0; k < K; ++k) {
      const int j = idx[k * out_w + ox];
      const float w = wt[k * out_w + ox];
      a0 += w * row[j];
      a1 += w * row[j + 1];
      a2 += w * row[j + 2];
    }
    out[3 * ox] = sat_u8(a0);
    out[3 * ox + 1] = sat_u8(a1);
    out[3 * ox + 2] = sat_u8(a2);
  }
}

struct ResizeScratch {
  Taps ty, tx;
  PaddedTaps px;
  std::vector<float> row;
  std::vector<uint8_t> fill_row;
};

// `fill` (C bytes) colours the part of the virtual window outside the image; nullptr
// replicates the edge instead.
void resize_impl(const View& src, int virt_h, int virt_w, int off_y, int off_x, int out_h, int out_w,
                 Image& dst, const uint8_t* fill = nullptr) {
  if (src.h <= 0 || src.w <= 0) throw std::invalid_argument("resize: empty image");
  if (out_h <= 0 || out_w <= 0) throw std::invalid_argument("resize: output size must be positive");
  thread_local ResizeScratch s;
  build_taps(virt_h, out_h, off_y, src.h, s.ty, fill != nullptr);
  build_taps(virt_w, out_w, off_x, src.w, s.tx, fill != nullptr);
  const int C = src.channels;
  if (fill) {
    s.fill_row.resize(static_cast<std::size_t>(src.w) * C);
    for (int x = 0; x < src.w; ++x)
      for (int c = 0; c < C; ++c) s.fill_row[static_cast<std::size_t>(x) * C + c] = fill[c];
  }
  dst.reshape(out_h, out_w, C);
  if (s.ty.identity && s.tx.identity) {  // same size, no crop or pad: a copy
    for (int y = 0; y < out_h; ++y) std::copy_n(src.row(y), static_cast<std::size_t>(out_w) * C, dst.row(y));
    return;
  }
  const int rowlen = src.w * C;
  pad_taps(s.tx, out_w, C, rowlen, s.px);
  // One spare pixel after the row holds the fill colour for out-of-image columns.
  s.row.resize(static_cast<std::size_t>(rowlen) + C);
  float* row = s.row.data();
  for (int c = 0; c < C; ++c) row[rowlen + c] = fill ? fill[c] : 0.0f;
  for (int oy = 0; oy < out_h; ++oy) {
    // Vertical pass into one float row of the source width, four taps at a time.
    const int f = s.ty.first[oy], n = s.ty.count[oy];
    for (int k0 = 0; k0 < n; k0 += 4) {
      const uint8_t* r[4];
      float w[4];
      for (int k = 0; k < 4; ++k) {
        const bool real = k0 + k < n;
        const int sy = real ? s.ty.idx[f + k0 + k] : s.ty.idx[f];
        r[k] = sy < 0 ? s.fill_row.data() : src.row(sy);
        w[k] = real ? s.ty.wt[f + k0 + k] : 0.0f;
      }
      vertical4(row, r[0], r[1], r[2], r[3], w[0], w[1], w[2], w[3], rowlen, k0 > 0);
    }
    uint8_t* out = dst.row(oy);
    if (C == 3) {
      horizontal3(row, s.px.idx.data(), s.px.wt.data(), s.px.K, out_w, out);
    } else {
      for (int ox = 0; ox < out_w; ++ox) {
        const int fx = s.tx.first[ox], nx = s.tx.count[ox];
        for (int c = 0; c < C; ++c) {
          float a = 0;
          for (int k = 0; k < nx; ++k) {
            const int sx = s.tx.idx[fx + k];
            a += s.tx.wt[fx + k] * (sx < 0 ? row[rowlen + c] : row[C * sx + c]);
          }
          out[C * ox + c] = sat_u8(a);
        }
      }
    }
  }
}

}  // namespace

void resize(const View& src, int out_h, int out_w, Image& dst) {
  resize_impl(src, src.h, src.w, 0, 0, out_h, out_w, dst);
}

void square_window_resize(const View& src, int side, int x0, int y0, int out_size, Image& dst,
                          const uint8_t* fill) {
  if (side < 1) throw std::invalid_argument("square_window_resize: side must be positive");
  resize_impl(src, side, side, -y0, -x0, out_size, out_size, dst, fill);
}

void square_resize(const View& src, Crop crop, int out_size, Image& dst) {
  const int h = src.h, w = src.w;
  switch (crop) {
    case Crop::None:
      resize_impl(src, h, w, 0, 0, out_size, out_size, dst);
      return;
    case Crop::CenterSquare: {
      const int side = std::min(h, w);
      resize_impl(src, side, side, -((h - side) / 2), -((w - side) / 2), out_size, out_size, dst);
      return;
    }
    case Crop::PadSquare: {
      const int side = std::max(h, w);
      resize_impl(src, side, side, (side - h) / 2, (side - w) / 2, out_size, out_size, dst);
      return;
    }
  }
  throw std::invalid_argument("unknown crop mode");
}

void normalize(const View& src, const float mean[3], const float std_[3], float* out) {
  // 3x256 table: the per-pixel work is one load per channel.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v)
      lut[c][v] = static_cast<float>((v / 255.0 - mean[c]) / std_[c]);
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* r = src.row(y);
    float* o = out + static_cast<std::size_t>(y) * src.w * 3;
    for (int x = 0; x < src.w; ++x) {
      o[3 * x] = lut[0][r[3 * x]];
      o[3 * x + 1] = lut[1][r[3 * x + 1]];
      o[3 * x + 2] = lut[2][r[3 * x + 2]];
    }
  }
}

}  // namespace hv
