// HemoVision pixel ops on interleaved 8-bit RGB images.
// Every op reads through a View (any row stride, so NumPy slices are not copied)
// and writes into a caller-owned Image, so the batch path can reuse buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

// Hot loops get an AVX2 clone picked at load time (GCC ifunc) besides the baseline
// SSE2 one. With -ffp-contract=off (CMakeLists.txt) both clones do the same IEEE
// operations, so results are bit-identical on every x86-64 machine: no train/serve
// skew from CPU differences.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(HV_NO_CLONES)
#define HV_SIMD __attribute__((target_clones("avx2", "default")))
#else
#define HV_SIMD
#endif

namespace hv {

// Read-only interleaved image: `channels` bytes per pixel, rows `stride` bytes apart.
struct View {
  const uint8_t* data = nullptr;
  int h = 0, w = 0, channels = 3;
  std::ptrdiff_t stride = 0;
  const uint8_t* row(int y) const { return data + static_cast<std::ptrdiff_t>(y) * stride; }
};

// Owned, tightly packed image; resizing keeps capacity so per-thread scratch is reused.
struct Image {
  std::vector<uint8_t> buf;
  int h = 0, w = 0, channels = 3;
  void reshape(int h_, int w_, int c_ = 3) {
    h = h_; w = w_; channels = c_;
    buf.resize(static_cast<std::size_t>(h) * w * c_);
  }
  uint8_t* data() { return buf.data(); }
  uint8_t* row(int y) { return buf.data() + static_cast<std::size_t>(y) * w * channels; }
  View view() const { return View{buf.data(), h, w, channels, static_cast<std::ptrdiff_t>(w) * channels}; }
};

enum class Crop { CenterSquare = 0, PadSquare = 1, None = 2 };
enum class Stain { None = 0, Reinhard = 1, GreyWorld = 2 };

// Cell localisation (locate.cpp); the fields of the spec's "locate" object.
struct LocateParams {
  int work_size = 96;             // longer side of the working copy the cell is found on
  float white_percentile = 0.9f;  // background white = this quantile per channel
  float min_od = 0.4f;            // red optical density floor for nucleus pixels
  int dilate = 2;                 // 3x3 dilations joining nucleus lobes
  float min_area = 0.003f;        // smallest cell, as a fraction of the working copy
  float target_fraction = 0.4f;   // the cell's size / the frame side after re-framing
  float min_zoom = 0.5f;          // re-framing zoom is clamped to [min_zoom, max_zoom]
  float max_zoom = 2.5f;
};

// What locate_cell found (source pixel units).
struct Located {
  bool found = false;
  float cx = 0, cy = 0, size = 0;  // centre and larger bounding-box side of the nucleus region
  float area_fraction = 0;         // its area / the working copy's
  float threshold_od = 0;          // the density threshold used
  float white[3] = {255, 255, 255};
  float nucleus[3] = {0, 0, 0};    // mean RGB of the cell's nucleus pixels (stain check)
};

struct Spec {
  int input_size = 64;
  bool locate = false;            // spec v2: find the cell and re-frame it (else `crop`)
  LocateParams locate_params;
  bool white_balance = false;     // spec v2: scale channels so the background white -> white_target
  float white_target[3] = {255, 255, 255};
  Crop crop = Crop::CenterSquare;
  Stain stain = Stain::None;
  float target_mean[3] = {0, 0, 0};  // Reinhard target, CIE Lab units
  float target_std[3] = {1, 1, 1};
  bool clahe = false;
  double clip_limit = 2.0;
  int tiles = 8;
  float blur_sigma = 0.0f;
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
};

// OpenCV borderInterpolate(BORDER_REFLECT_101), including the len == 1 case.
inline int reflect101(int p, int len) {
  if (len == 1) return 0;
  while (static_cast<unsigned>(p) >= static_cast<unsigned>(len)) {
    p = p < 0 ? -p : 2 * (len - 1) - p;
  }
  return p;
}

// geometry.cpp
// Square crop/pad + resize in one pass: padding is folded into the sampling
// tables (edge replicate), cropping is an offset, so neither copies pixels.
void square_resize(const View& src, Crop crop, int out_size, Image& dst);
void resize(const View& src, int out_h, int out_w, Image& dst);
// The side x side window at (x0, y0) -> out x out; where it reaches outside the image
// it is `fill` (3 bytes), or the replicated edge when fill is nullptr.
void square_window_resize(const View& src, int side, int x0, int y0, int out_size, Image& dst,
                          const uint8_t* fill = nullptr);
void normalize(const View& src, const float mean[3], const float std[3], float* out);

// colour.cpp
void rgb_to_lab8(const View& src, Image& dst);   // OpenCV COLOR_RGB2Lab 8-bit scaling
void lab8_to_rgb(const View& src, Image& dst);   // OpenCV COLOR_Lab2RGB 8-bit scaling
void reinhard(const View& src, const float target_mean[3], const float target_std[3], Image& dst);
void grey_world(const View& src, Image& dst);

// clahe.cpp
void clahe_gray(const View& src, double clip_limit, int tiles_x, int tiles_y, Image& dst);
void clahe_l(const View& src, double clip_limit, int tiles, Image& dst);

// blur.cpp
int gaussian_ksize(float sigma);
void gaussian_blur(const View& src, float sigma, Image& dst);

// locate.cpp
Located locate_cell(const View& src, const LocateParams& p);
// Re-frame around the located cell (the centre square when not found); `zoom_out`
// receives the unclamped zoom the cell's size asked for (1 when not found).
void reframe(const View& src, const Located& cell, const LocateParams& p, int out_size, Image& dst,
             float* zoom_out);
void white_balance(const View& src, const float white[3], const float target[3], Image& dst);

// pipeline.cpp
// What the standardisation steps saw, for review reasons (zoom 1 / found false without locate).
struct PipelineInfo {
  Located cell;
  float zoom = 1.0f;
};
void run_pipeline(const View& src, const Spec& spec, float* out, PipelineInfo* info = nullptr);

}  // namespace hv
