// Planar scratch for the vectorised 8-bit Lab round trip (lab_planar.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "pixels.hpp"

namespace hv {

struct LabPlanes {
  std::vector<float> r, g, b, y, da, db;  // linear RGB planes; Y; a/500 and b/200 (a, b quantised)
  std::vector<uint8_t> l8, tie, o0, o1, o2;
  void resize(std::size_t n) {
    for (auto* v : {&r, &g, &b, &y, &da, &db}) v->resize(n);
    for (auto* v : {&l8, &tie, &o0, &o1, &o2}) v->resize(n);
  }
};

// 8-bit RGB -> planes: l8 (OpenCV 8-bit L scale, exact), da = a/500, db = b/200.
void rgb_to_l8ab(const View& src, LabPlanes& p);
// Planes (l8, a/500, b/200) -> interleaved 8-bit RGB.
void l8ab_to_rgb(const uint8_t* l8, const float* da, const float* db, int h, int w, LabPlanes& p, Image& dst);

}  // namespace hv
