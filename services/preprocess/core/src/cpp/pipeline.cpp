// The spec-driven chain: [locate + re-frame | square crop/pad] + resize -> [white balance] -> stain -> CLAHE on L -> blur ->
// float normalisation. Two per-thread ping-pong buffers, so a batch worker allocates
// only on its first image.
#include <stdexcept>
#include <utility>

#include "pixels.hpp"

namespace hv {

void run_pipeline(const View& src, const Spec& spec, float* out, PipelineInfo* info) {
  if (src.h <= 0 || src.w <= 0) throw std::invalid_argument("empty image");
  if (src.channels != 3) throw std::invalid_argument("expected an RGB image");
  thread_local Image a, b;
  Image* cur = &a;
  Image* nxt = &b;
  if (spec.locate || spec.white_balance) {
    PipelineInfo local;
    PipelineInfo& pi = info ? *info : local;
    pi.cell = locate_cell(src, spec.locate_params);
    if (spec.locate) {
      reframe(src, pi.cell, spec.locate_params, spec.input_size, *cur, &pi.zoom);
    } else {
      square_resize(src, spec.crop, spec.input_size, *cur);
    }
    if (spec.white_balance) {
      white_balance(cur->view(), pi.cell.white, spec.white_target, *nxt);
      std::swap(cur, nxt);
    }
  } else {
    square_resize(src, spec.crop, spec.input_size, *cur);
  }
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
