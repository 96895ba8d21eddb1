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

struct Spec {
  int input_size = 64;
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

// pipeline.cpp
void run_pipeline(const View& src, const Spec& spec, float* out);

}  // namespace hv
