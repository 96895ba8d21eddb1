// The spec-driven chain: square crop/pad + resize -> stain -> CLAHE on L -> blur ->
// float normalisation. Two per-thread ping-pong buffers, so a batch worker allocates
// only on its first image.
#include <stdexcept>
#include <utility>

#include "pixels.hpp"

namespace hv {

void run_pipeline(const View& src, const Spec& spec, float* out) {
  if (src.h <= 0 || src.w <= 0) throw std::invalid_argument("empty image");
  if (src.channels != 3) throw std::invalid_argument("expected an RGB image");
  thread_local Image a, b;
  Image* cur = &a;
  Image* nxt = &b;
  square_resize(src, spec.crop, spec.input_size, *cur);
  switch (spec.stain) {
    case Stain::Reinhard:
      reinhard(cur->view(), spec.target_mean, spec.target_std, *nxt);
      std::swap(cur, nxt);
      break;
    case Stain::GreyWorld:
      grey_world(cur->view(), *nxt);
      std::swap(cur, nxt);
      break;
    case Stain::None:
      break;
  }
  if (spec.clahe) {
    clahe_l(cur->view(), spec.clip_limit, spec.tiles, *nxt);
    std::swap(cur, nxt);
  }
  if (spec.blur_sigma > 0.0f && gaussian_ksize(spec.blur_sigma) > 1) {
    gaussian_blur(cur->view(), spec.blur_sigma, *nxt);
    std::swap(cur, nxt);
  }
  normalize(cur->view(), spec.mean, spec.std, out);
}

}  // namespace hv
