"""Type stubs for the private C++ extension (src/cpp/bindings.cpp)."""

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Triple = tuple[float, float, float]

class LocateParams:
    def __init__(
        self,
        *,
        work_size: int,
        white_percentile: float,
        min_od: float,
        dilate: int,
        min_area: float,
        target_fraction: float,
        min_zoom: float,
        max_zoom: float,
    ) -> None: ...

class Spec:
    input_size: int
    def __init__(
        self,
        *,
        input_size: int,
        crop: str,
        stain: str,
        target_mean: Triple,
        target_std: Triple,
        clahe: bool,
        clip_limit: float,
        tiles: int,
        blur_sigma: float,
        mean: Triple,
        std: Triple,
        locate: bool = False,
        locate_params: LocateParams = ...,
        white_balance: bool = False,
        white_target: Triple = (255.0, 255.0, 255.0),
    ) -> None: ...

def preprocess(image: U8, spec: Spec) -> F32: ...
def preprocess_with_info(image: U8, spec: Spec) -> tuple[F32, dict[str, Any]]: ...
def locate_cell(image: U8, params: LocateParams) -> dict[str, Any]: ...
def reframe(image: U8, params: LocateParams, size: int) -> tuple[U8, dict[str, Any]]: ...
def preprocess_batch(images: Sequence[U8], spec: Spec, threads: int = 0) -> F32: ...
def resize(image: U8, out_h: int, out_w: int) -> U8: ...
def square_resize(image: U8, size: int, crop: str) -> U8: ...
def rgb_to_lab(image: U8) -> U8: ...
def lab_to_rgb(image: U8) -> U8: ...
def clahe(image: U8, clip_limit: float, tiles_x: int, tiles_y: int) -> U8: ...
def clahe_l(image: U8, clip_limit: float, tiles: int) -> U8: ...
def gaussian_blur(image: U8, sigma: float) -> U8: ...
def gaussian_ksize(sigma: float) -> int: ...
def reinhard(image: U8, target_mean: Triple, target_std: Triple) -> U8: ...
def grey_world(image: U8) -> U8: ...
def normalize(image: U8, mean: Triple, std: Triple) -> F32: ...
