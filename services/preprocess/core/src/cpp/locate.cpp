// Input standardisation (spec v2): find the white cell, re-frame it to a canonical
// centre and scale, and white-balance against the slide's own background.
//
// The cell is found on a small working copy (area-resized so its longer side is
// `work_size`). Per channel, the background "white" is the `white_percentile` of the
// histogram: plasma and glass are the brightest large area on any smear, whatever
// their tint, so absorbance (optical density) relative to it does not depend on the
// background colour. Romanowsky-stained nuclei absorb red light strongly (purple),
// while red cells, eosinophil granules and glass hardly do, so the red-channel optical
// density separates nucleus from everything else on MGG, Wright and Giemsa slides.
// Threshold: Otsu on that density, never below `min_od`; a 3x3 dilation (`dilate`
// times) joins the lobes of one nucleus; the component with the largest
// area x centre-weight (Gaussian, sigma = 0.35 x the longer side) is the cell.
#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "colour_math.hpp"
#include "pixels.hpp"

namespace hv {
namespace {

// The value at fraction q of a 256-bin histogram (lowest v with cdf >= q * total).
int histogram_quantile(const uint32_t* hist, uint64_t total, float q) {
  const double want = static_cast<double>(q) * static_cast<double>(total);
  uint64_t acc = 0;
  for (int v = 0; v < 256; ++v) {
    acc += hist[v];
    if (static_cast<double>(acc) >= want && acc > 0) return v;
  }
  return 255;
}

// Otsu's threshold on a 256-bin histogram (OpenCV's THRESH_OTSU rule: the first
// maximum of the between-class variance); bins <= t are "below".
int otsu(const uint32_t* hist, uint64_t total) {
  double sum = 0;
  for (int v = 0; v < 256; ++v) sum += static_cast<double>(v) * hist[v];
  double w0 = 0, sum0 = 0, best = -1;
  int t = 0;
  for (int v = 0; v < 256; ++v) {
    w0 += hist[v];
    sum0 += static_cast<double>(v) * hist[v];
    const double w1 = static_cast<double>(total) - w0;
    if (w0 <= 0 || w1 <= 0) continue;
    const double m0 = sum0 / w0, m1 = (sum - sum0) / w1;
    const double between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > best) {
      best = between;
      t = v;
    }
  }
  return t;
}

// 3x3 binary dilation (zero outside), separable: a row max, then a column max.
void dilate3(std::vector<uint8_t>& m, int h, int w, std::vector<uint8_t>& tmp) {
  tmp.resize(m.size());
  for (int y = 0; y < h; ++y) {
    const uint8_t* r = m.data() + static_cast<std::size_t>(y) * w;
    uint8_t* o = tmp.data() + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      const uint8_t l = x > 0 ? r[x - 1] : 0, c = r[x], rr = x + 1 < w ? r[x + 1] : 0;
      o[x] = static_cast<uint8_t>(l | c | rr);
    }
  }
  for (int y = 0; y < h; ++y) {
    const uint8_t* up = y > 0 ? tmp.data() + static_cast<std::size_t>(y - 1) * w : nullptr;
    const uint8_t* mid = tmp.data() + static_cast<std::size_t>(y) * w;
    const uint8_t* dn = y + 1 < h ? tmp.data() + static_cast<std::size_t>(y + 1) * w : nullptr;
    uint8_t* o = m.data() + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) o[x] = static_cast<uint8_t>(mid[x] | (up ? up[x] : 0) | (dn ? dn[x] : 0));
  }
}

struct Component {
  int area = 0;
  double sx = 0, sy = 0;  // sums of x and y (centroid)
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
};

}  // namespace

Located locate_cell(const View& src, const LocateParams& p) {
  Located out;
  const int H = src.h, W = src.w;
  const double s = static_cast<double>(p.work_size) / std::max(H, W);
  const int wh = std::max(1, std::min(H, static_cast<int>(std::lround(H * s))));
  const int ww = std::max(1, std::min(W, static_cast<int>(std::lround(W * s))));
  thread_local Image work;
  resize(src, wh, ww, work);
  const std::size_t n = static_cast<std::size_t>(wh) * ww;

  // Background white per channel.
  uint32_t hist[3][256] = {};
  for (std::size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) ++hist[c][work.buf[3 * i + c]];
  for (int c = 0; c < 3; ++c)
    out.white[c] = static_cast<float>(std::max(1, histogram_quantile(hist[c], n, p.white_percentile)));

  // Red optical density, quantised to 0.01 OD per level (0..2.55).
  uint8_t q_of[256];
  const double wr = out.white[0];
  for (int v = 0; v < 256; ++v) {
    const double od = std::log(wr / std::max(v, 1));
    q_of[v] = static_cast<uint8_t>(std::clamp(std::lround(od * 100.0), 0L, 255L));
  }
  uint32_t qh[256] = {};
  thread_local std::vector<uint8_t> q, mask, tmp;
  q.resize(n);
  for (std::size_t i = 0; i < n; ++i) ++qh[q[i] = q_of[work.buf[3 * i]]];
  const int t = std::max(otsu(qh, n), static_cast<int>(std::lround(p.min_od * 100.0f)));
  out.threshold_od = t / 100.0f;
  mask.resize(n);
  for (std::size_t i = 0; i < n; ++i) mask[i] = q[i] > t;
  for (int k = 0; k < p.dilate; ++k) dilate3(mask, wh, ww, tmp);

  // 8-connected components (iterative flood fill; labels in `lab`).
  thread_local std::vector<int> lab, stack;
  lab.assign(n, 0);
  std::vector<Component> comps(1);
  for (std::size_t start = 0; start < n; ++start) {
    if (!mask[start] || lab[start]) continue;
    const int id = static_cast<int>(comps.size());
    comps.emplace_back();
    Component& c = comps.back();
    stack.clear();
    stack.push_back(static_cast<int>(start));
    lab[start] = id;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      const int y = i / ww, x = i % ww;
      ++c.area;
      c.sx += x;
      c.sy += y;
      c.x0 = std::min(c.x0, x); c.x1 = std::max(c.x1, x);
      c.y0 = std::min(c.y0, y); c.y1 = std::max(c.y1, y);
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= wh || xx < 0 || xx >= ww) continue;
          const std::size_t j = static_cast<std::size_t>(yy) * ww + xx;
          if (mask[j] && !lab[j]) { lab[j] = id; stack.push_back(static_cast<int>(j)); }
        }
    }
  }
  const double sigma = 0.35 * std::max(wh, ww);
  double best_score = 0;
  int best = 0;
  for (std::size_t i = 1; i < comps.size(); ++i) {
    const Component& c = comps[i];
    const double cx = c.sx / c.area + 0.5, cy = c.sy / c.area + 0.5;
    const double d2 = ((cx - ww / 2.0) * (cx - ww / 2.0) + (cy - wh / 2.0) * (cy - wh / 2.0)) / (sigma * sigma);
    const double score = c.area * std::exp(-0.5 * d2);
    if (score > best_score) { best_score = score; best = static_cast<int>(i); }
  }
  if (best == 0 || comps[best].area < p.min_area * static_cast<double>(n)) return out;
  const Component& c = comps[best];
  // Back to source pixels (work pixel k covers [k/sx, (k+1)/sx) of the source).
  const double fx = static_cast<double>(W) / ww, fy = static_cast<double>(H) / wh;
  out.found = true;
  out.cx = static_cast<float>((c.sx / c.area + 0.5) * fx);
  out.cy = static_cast<float>((c.sy / c.area + 0.5) * fy);
  out.size = static_cast<float>(std::max((c.x1 - c.x0 + 1) * fx, (c.y1 - c.y0 + 1) * fy));
  out.area_fraction = static_cast<float>(c.area) / static_cast<float>(n);
  // Mean colour of the nucleus itself (above threshold, before dilation) in the chosen
  // component: how this lab's stain renders a nucleus, for the stain check.
  double sum[3] = {0, 0, 0};
  std::size_t count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (lab[i] != best || q[i] <= t) continue;
    ++count;
    for (int ch = 0; ch < 3; ++ch) sum[ch] += work.buf[3 * i + ch];
  }
  for (int ch = 0; ch < 3; ++ch) out.nucleus[ch] = count ? static_cast<float>(sum[ch] / count) : 0.0f;
  return out;
}

void reframe(const View& src, const Located& cell, const LocateParams& p, int out_size, Image& dst,
             float* zoom_out) {
  const int H = src.h, W = src.w;
  const int base = std::min(H, W);  // the default framing: the centre square
  double side = base, cx = W / 2.0, cy = H / 2.0;
  double zoom = 1.0;
  if (cell.found) {
    zoom = base * p.target_fraction / std::max(cell.size, 1.0f);
    const double clamped = std::clamp(zoom, static_cast<double>(p.min_zoom), static_cast<double>(p.max_zoom));
    side = base / clamped;
    cx = cell.cx;
    cy = cell.cy;
  }
  if (zoom_out) *zoom_out = static_cast<float>(zoom);
  const int iside = std::max(1, static_cast<int>(std::lround(side)));
  const int x0 = static_cast<int>(std::lround(cx - iside / 2.0));
  const int y0 = static_cast<int>(std::lround(cy - iside / 2.0));
  // Outside the slide is background: fill with its white, not smeared edge pixels.
  const uint8_t fill[3] = {static_cast<uint8_t>(cell.white[0]), static_cast<uint8_t>(cell.white[1]),
                           static_cast<uint8_t>(cell.white[2])};
  square_window_resize(src, iside, x0, y0, out_size, dst, fill);
}

void white_balance(const View& src, const float white[3], const float target[3], Image& dst) {
  uint8_t lut[3][256];
  for (int c = 0; c < 3; ++c) {
    const float gain = std::clamp(target[c] / std::max(white[c], 1.0f), 0.25f, 4.0f);
    for (int v = 0; v < 256; ++v) lut[c][v] = sat_u8(v * gain);
  }
  dst.reshape(src.h, src.w, 3);
  for (int y = 0; y < src.h; ++y) {
    const uint8_t* r = src.row(y);
    uint8_t* o = dst.row(y);
    for (int x = 0; x < src.w; ++x) {
      o[3 * x] = lut[0][r[3 * x]];
      o[3 * x + 1] = lut[1][r[3 * x + 1]];
      o[3 * x + 2] = lut[2][r[3 * x + 2]];
    }
  }
}

}  // namespace hv
