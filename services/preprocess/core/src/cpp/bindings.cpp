// pybind11 surface of hemovision_pixels._core. Arrays are read in place (any row
// stride, packed pixels); the GIL is released around every pixel loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pixels.hpp"

namespace py = pybind11;

namespace {

// Borrow a uint8 HxWxC (or HxW when channels == 1) array as a View without copying.
hv::View borrow(const py::array& arr, int channels, const char* what) {
  if (arr.dtype().kind() != 'u' || arr.itemsize() != 1)
    throw py::type_error(std::string(what) + ": expected a uint8 array, got dtype " +
                         std::string(py::str(arr.dtype())));
  const bool flat_ok = channels == 1 && arr.ndim() == 2;
  if (!flat_ok && !(arr.ndim() == 3 && arr.shape(2) == channels))
    throw py::value_error(std::string(what) + ": expected shape (H, W" +
                          (channels == 1 ? ")" : ", " + std::to_string(channels) + ")"));
  const py::ssize_t h = arr.shape(0), w = arr.shape(1);
  if (h <= 0 || w <= 0) throw py::value_error(std::string(what) + ": empty image");
  // Keeps every pixel count (histograms, offsets) far from int overflow.
  if (h > (1 << 20) || w > (1 << 20) || h * w > (py::ssize_t(1) << 30))
    throw py::value_error(std::string(what) + ": image too large");
  // NumPy leaves the stride of a length-1 axis arbitrary, so only longer axes count.
  const bool px_ok = w == 1 || arr.strides(1) == channels;
  const bool ch_ok = arr.ndim() == 2 || channels == 1 || arr.strides(2) == 1;
  const py::ssize_t row_stride = h == 1 ? w * channels : arr.strides(0);
  if (!px_ok || !ch_ok || row_stride < w * channels)
    throw py::value_error(std::string(what) + ": pixels must be packed (rows may be strided); "
                          "pass np.ascontiguousarray(image)");
  return hv::View{static_cast<const uint8_t*>(arr.data()), static_cast<int>(h), static_cast<int>(w), channels,
                  row_stride};
}

py::array_t<uint8_t> to_numpy(const hv::Image& img, bool squeeze = false) {
  std::vector<py::ssize_t> shape = {img.h, img.w};
  if (!squeeze) shape.push_back(img.channels);
  py::array_t<uint8_t> out(shape);
  std::copy(img.buf.begin(), img.buf.end(), out.mutable_data());
  return out;
}

hv::Crop parse_crop(const std::string& s) {
  if (s == "center_square") return hv::Crop::CenterSquare;
  if (s == "pad_square") return hv::Crop::PadSquare;
  if (s == "none") return hv::Crop::None;
  throw py::value_error("unknown crop mode: " + s);
}

void copy3(const std::array<float, 3>& src, float* dst) { std::copy(src.begin(), src.end(), dst); }

hv::LocateParams make_locate_params(int work_size, float white_percentile, float min_od, int dilate, float min_area,
                                    float target_fraction, float min_zoom, float max_zoom) {
  if (work_size < 8 || work_size > 1024) throw py::value_error("locate work_size must be in [8, 1024]");
  if (!(white_percentile > 0.0f && white_percentile <= 1.0f)) throw py::value_error("white_percentile in (0, 1]");
  if (!(min_od >= 0.0f && min_od <= 2.5f)) throw py::value_error("min_od must be in [0, 2.5]");
  if (dilate < 0 || dilate > 16) throw py::value_error("dilate must be in [0, 16]");
  if (!(min_area >= 0.0f && min_area <= 1.0f)) throw py::value_error("min_area must be in [0, 1]");
  if (!(target_fraction > 0.0f && target_fraction <= 4.0f)) throw py::value_error("target_fraction in (0, 4]");
  if (!(min_zoom > 0.0f && min_zoom <= max_zoom && max_zoom <= 16.0f))
    throw py::value_error("need 0 < min_zoom <= max_zoom <= 16");
  hv::LocateParams p;
  p.work_size = work_size;
  p.white_percentile = white_percentile;
  p.min_od = min_od;
  p.dilate = dilate;
  p.min_area = min_area;
  p.target_fraction = target_fraction;
  p.min_zoom = min_zoom;
  p.max_zoom = max_zoom;
  return p;
}

py::dict info_dict(const hv::PipelineInfo& pi) {
  py::dict d;
  d["cell_found"] = pi.cell.found;
  d["cx"] = pi.cell.cx;
  d["cy"] = pi.cell.cy;
  d["size"] = pi.cell.size;
  d["area_fraction"] = pi.cell.area_fraction;
  d["threshold_od"] = pi.cell.threshold_od;
  d["white"] = py::make_tuple(pi.cell.white[0], pi.cell.white[1], pi.cell.white[2]);
  d["nucleus"] = py::make_tuple(pi.cell.nucleus[0], pi.cell.nucleus[1], pi.cell.nucleus[2]);
  d["zoom"] = pi.zoom;
  return d;
}

py::array_t<uint8_t> run_op(const py::array& image, int channels, const char* what,
                            const std::function<void(const hv::View&, hv::Image&)>& op) {
  const hv::View v = borrow(image, channels, what);
  hv::Image out;
  {
    py::gil_scoped_release nogil;
    op(v, out);
  }
  return to_numpy(out, channels == 1 && image.ndim() == 2);
}

// One image through the spec's chain, the GIL released; `info` (may be null) receives what
// the standardisation steps saw.
py::array_t<float> preprocess_one(const py::array& image, const hv::Spec& spec, hv::PipelineInfo* info) {
  const hv::View v = borrow(image, 3, "preprocess");
  const py::ssize_t S = spec.input_size;
  py::array_t<float> out({S, S, py::ssize_t(3)});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    hv::run_pipeline(v, spec, dst, info);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "HemoVision C++ pixel pipeline (private; use hemovision_pixels)";

  py::class_<hv::LocateParams>(m, "LocateParams")
      .def(py::init(&make_locate_params), py::kw_only(), py::arg("work_size"), py::arg("white_percentile"),
           py::arg("min_od"), py::arg("dilate"), py::arg("min_area"), py::arg("target_fraction"),
           py::arg("min_zoom"), py::arg("max_zoom"));

  py::class_<hv::Spec>(m, "Spec")
      .def(py::init([](int input_size, const std::string& crop, const std::string& stain,
                       std::array<float, 3> target_mean, std::array<float, 3> target_std, bool clahe,
                       double clip_limit, int tiles, float blur_sigma, std::array<float, 3> mean,
                       std::array<float, 3> std_, bool locate, const hv::LocateParams& locate_params,
                       bool white_balance, std::array<float, 3> white_target) {
             if (input_size < 1 || input_size > 4096) throw py::value_error("input_size out of range");
             if (tiles < 1 || tiles > 64) throw py::value_error("tiles out of range");
             for (int c = 0; c < 3; ++c)
               if (!(std_[c] != 0.0f) || !std::isfinite(std_[c])) throw py::value_error("std must be non-zero");
             hv::Spec s;
             s.input_size = input_size;
             s.crop = parse_crop(crop);
             if (stain == "none") s.stain = hv::Stain::None;
             else if (stain == "reinhard") s.stain = hv::Stain::Reinhard;
             else if (stain == "grey_world") s.stain = hv::Stain::GreyWorld;
             else throw py::value_error("unknown stain method: " + stain);
             copy3(target_mean, s.target_mean);
             copy3(target_std, s.target_std);
             s.clahe = clahe;
             s.clip_limit = clip_limit;
             s.tiles = tiles;
             s.blur_sigma = blur_sigma;
             copy3(mean, s.mean);
             copy3(std_, s.std);
             s.locate = locate;
             s.locate_params = locate_params;
             s.white_balance = white_balance;
             for (int c = 0; c < 3; ++c)
               if (!(white_target[c] >= 1.0f && white_target[c] <= 255.0f))
                 throw py::value_error("white_target values must be in [1, 255]");
             copy3(white_target, s.white_target);
             return s;
           }),
           py::kw_only(), py::arg("input_size"), py::arg("crop"), py::arg("stain"), py::arg("target_mean"),
           py::arg("target_std"), py::arg("clahe"), py::arg("clip_limit"), py::arg("tiles"),
           py::arg("blur_sigma"), py::arg("mean"), py::arg("std"), py::arg("locate") = false,
           py::arg("locate_params") = hv::LocateParams(), py::arg("white_balance") = false,
           py::arg("white_target") = std::array<float, 3>{255, 255, 255})
      .def_readonly("input_size", &hv::Spec::input_size);

  m.def(
      "preprocess",
      [](const py::array& image, const hv::Spec& spec) { return preprocess_one(image, spec, nullptr); },
      py::arg("image"), py::arg("spec"));
  m.def(
      "preprocess_with_info",
      [](const py::array& image, const hv::Spec& spec) {
        hv::PipelineInfo info;
        py::array_t<float> out = preprocess_one(image, spec, &info);
        return py::make_tuple(out, info_dict(info));
      },
      py::arg("image"), py::arg("spec"));
  m.def(
      "locate_cell",
      [](const py::array& image, const hv::LocateParams& params) {
        const hv::View v = borrow(image, 3, "locate_cell");
        hv::PipelineInfo info;
        {
          py::gil_scoped_release nogil;
          info.cell = hv::locate_cell(v, params);
        }
        return info_dict(info);
      },
      py::arg("image"), py::arg("params"));
  m.def(
      "reframe",
      [](const py::array& image, const hv::LocateParams& params, int size) {
        if (size < 1 || size > 16384) throw py::value_error("bad output size");
        const hv::View v = borrow(image, 3, "reframe");
        hv::Image out;
        hv::PipelineInfo info;
        {
          py::gil_scoped_release nogil;
          info.cell = hv::locate_cell(v, params);
          hv::reframe(v, info.cell, params, size, out, &info.zoom);
        }
        return py::make_tuple(to_numpy(out), info_dict(info));
      },
      py::arg("image"), py::arg("params"), py::arg("size"));

  m.def(
      "preprocess_batch",
      [](const py::sequence& images, const hv::Spec& spec, int threads) {
        // Views are taken while holding the GIL; the caller's sequence keeps the
        // arrays alive, and `keep` guards against a generator-like sequence.
        std::vector<py::array> keep;
        std::vector<hv::View> views;
        const std::size_t n = py::len(images);
        keep.reserve(n);
        views.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          py::object item = images[i];
          if (!py::isinstance<py::array>(item))
            throw py::type_error("preprocess_batch: item " + std::to_string(i) + " is not a numpy array");
          keep.push_back(py::reinterpret_borrow<py::array>(item));
          const std::string what = "preprocess_batch: image " + std::to_string(i);
          views.push_back(borrow(keep.back(), 3, what.c_str()));
        }
        const py::ssize_t S = spec.input_size;
        py::array_t<float> out({static_cast<py::ssize_t>(n), S, S, py::ssize_t(3)});
        float* dst = out.mutable_data();
        const std::size_t per = static_cast<std::size_t>(S) * S * 3;
        if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        const std::size_t workers = std::min<std::size_t>(static_cast<std::size_t>(threads), n);
        std::exception_ptr err;
        {
          py::gil_scoped_release nogil;
          std::atomic<std::size_t> next{0};
          std::mutex err_mu;
          auto work = [&] {
            for (;;) {
              const std::size_t i = next.fetch_add(1);
              if (i >= n) return;
              try {
                hv::run_pipeline(views[i], spec, dst + i * per);
              } catch (...) {
                std::lock_guard<std::mutex> lock(err_mu);
                if (!err) err = std::current_exception();
                next.store(n);
              }
            }
          };
          std::vector<std::thread> pool;
          for (std::size_t t = 1; t < workers; ++t) pool.emplace_back(work);
          work();  // the calling thread is worker 0
          for (auto& th : pool) th.join();
        }
        if (err) std::rethrow_exception(err);
        return out;
      },
      py::arg("images"), py::arg("spec"), py::arg("threads") = 0);

  m.def(
      "resize",
      [](const py::array& image, int out_h, int out_w) {
        if (out_h < 1 || out_w < 1 || out_h > 16384 || out_w > 16384) throw py::value_error("bad output size");
        const int c = image.ndim() == 3 ? static_cast<int>(image.shape(2)) : 1;
        if (c < 1 || c > 4) throw py::value_error("resize: 1 to 4 channels");
        return run_op(image, c, "resize", [=](const hv::View& v, hv::Image& o) { hv::resize(v, out_h, out_w, o); });
      },
      py::arg("image"), py::arg("out_h"), py::arg("out_w"));
  m.def(
      "square_resize",
      [](const py::array& image, int size, const std::string& crop) {
        if (size < 1 || size > 16384) throw py::value_error("bad output size");
        const hv::Crop mode = parse_crop(crop);
        return run_op(image, 3, "square_resize",
                      [=](const hv::View& v, hv::Image& o) { hv::square_resize(v, mode, size, o); });
      },
      py::arg("image"), py::arg("size"), py::arg("crop"));
  m.def("rgb_to_lab", [](const py::array& image) { return run_op(image, 3, "rgb_to_lab", hv::rgb_to_lab8); },
        py::arg("image"));
  m.def("lab_to_rgb", [](const py::array& image) { return run_op(image, 3, "lab_to_rgb", hv::lab8_to_rgb); },
        py::arg("image"));
  m.def(
      "clahe",
      [](const py::array& image, double clip_limit, int tiles_x, int tiles_y) {
        if (tiles_x < 1 || tiles_y < 1 || tiles_x > 64 || tiles_y > 64) throw py::value_error("tiles out of range");
        return run_op(image, 1, "clahe", [=](const hv::View& v, hv::Image& o) {
          hv::clahe_gray(v, clip_limit, tiles_x, tiles_y, o);
        });
      },
      py::arg("image"), py::arg("clip_limit"), py::arg("tiles_x"), py::arg("tiles_y"));
  m.def(
      "clahe_l",
      [](const py::array& image, double clip_limit, int tiles) {
        if (tiles < 1 || tiles > 64) throw py::value_error("tiles out of range");
        return run_op(image, 3, "clahe_l",
                      [=](const hv::View& v, hv::Image& o) { hv::clahe_l(v, clip_limit, tiles, o); });
      },
      py::arg("image"), py::arg("clip_limit"), py::arg("tiles"));
  m.def(
      "gaussian_blur",
      [](const py::array& image, float sigma) {
        if (!(sigma >= 0.0f) || sigma > 100.0f) throw py::value_error("sigma must be in [0, 100]");
        return run_op(image, 3, "gaussian_blur",
                      [=](const hv::View& v, hv::Image& o) { hv::gaussian_blur(v, sigma, o); });
      },
      py::arg("image"), py::arg("sigma"));
  m.def("gaussian_ksize", &hv::gaussian_ksize, py::arg("sigma"));
  m.def(
      "reinhard",
      [](const py::array& image, std::array<float, 3> target_mean, std::array<float, 3> target_std) {
        return run_op(image, 3, "reinhard", [=](const hv::View& v, hv::Image& o) {
          hv::reinhard(v, target_mean.data(), target_std.data(), o);
        });
      },
      py::arg("image"), py::arg("target_mean"), py::arg("target_std"));
  m.def("grey_world", [](const py::array& image) { return run_op(image, 3, "grey_world", hv::grey_world); },
        py::arg("image"));
  m.def(
      "normalize",
      [](const py::array& image, std::array<float, 3> mean, std::array<float, 3> std_) {
        const hv::View v = borrow(image, 3, "normalize");
        py::array_t<float> out({py::ssize_t(v.h), py::ssize_t(v.w), py::ssize_t(3)});
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          hv::normalize(v, mean.data(), std_.data(), dst);
        }
        return out;
      },
      py::arg("image"), py::arg("mean"), py::arg("std"));
}
