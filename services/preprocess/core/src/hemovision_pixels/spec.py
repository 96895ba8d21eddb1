"""The preprocessing spec stored with each model (assets.extra/hemovision.json).

Training and serving both build a PreprocessSpec from that dict, so the same C++
chain runs with the same parameters on both sides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping

from . import _core

CropMode = Literal["center_square", "pad_square", "none"]
CROP_MODES: tuple[str, ...] = ("center_square", "pad_square", "none")
SPEC_VERSION = 2  # the newest; every older version still parses and runs bit-identically
SPEC_VERSIONS = (1, 2)
MAX_INPUT_SIZE = 4096
MAX_BLUR_SIGMA = 50.0
MAX_TILES = 64

Triple = tuple[float, float, float]


def _triple(value: Any, name: str, *, positive: bool = False) -> Triple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{name} must be a list of 3 numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must hold 3 finite numbers, got {value!r}")
        if positive and v <= 0:
            raise ValueError(f"{name} values must be > 0, got {value!r}")
        out.append(float(v))
    return (out[0], out[1], out[2])


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def _integer(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return int(value)


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {sorted(unknown)}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class ReinhardStain:
    """Reinhard colour transfer in CIE Lab (L 0..100, a/b signed) to a reference mean/std."""

    target_mean: Triple
    target_std: Triple

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_mean", _triple(self.target_mean, "stain_normalization.target_mean"))
        object.__setattr__(
            self, "target_std", _triple(self.target_std, "stain_normalization.target_std", positive=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"method": "reinhard", "target_mean": list(self.target_mean), "target_std": list(self.target_std)}


@dataclass(frozen=True)
class GreyWorldStain:
    """Scale each channel so its mean equals the mean over all three channels."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": "grey_world"}


StainNormalization = ReinhardStain | GreyWorldStain


@dataclass(frozen=True)
class ClaheSpec:
    """CLAHE on Lab L with OpenCV semantics: tiles x tiles grid, clip limit per 256 bins."""

    clip_limit: float = 2.0
    tiles: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_limit", _number(self.clip_limit, "clahe.clip_limit", 0.0, 1000.0))
        _integer(self.tiles, "clahe.tiles", 1, MAX_TILES)

    def to_dict(self) -> dict[str, Any]:
        return {"clip_limit": self.clip_limit, "tiles": self.tiles}


@dataclass(frozen=True)
class LocateSpec:
    """Spec v2: find the white cell and re-frame it (locate.cpp says how).

    The nucleus region's larger bounding-box side becomes ``target_fraction`` of the
    frame; the zoom that asks for is clamped to [min_zoom, max_zoom] (outside it the
    answer carries review reason cell_size_unusual). No cell found: the ``crop`` framing.
    """

    work_size: int = 96
    white_percentile: float = 0.9
    min_od: float = 0.4
    dilate: int = 2
    min_area: float = 0.003
    target_fraction: float = 0.4
    min_zoom: float = 0.5
    max_zoom: float = 2.5

    def __post_init__(self) -> None:
        _integer(self.work_size, "locate.work_size", 8, 1024)
        _integer(self.dilate, "locate.dilate", 0, 16)
        for name, lo, hi in (("white_percentile", 0.01, 1.0), ("min_od", 0.0, 2.5), ("min_area", 0.0, 1.0),
                             ("target_fraction", 0.01, 4.0), ("min_zoom", 0.01, 16.0),
                             ("max_zoom", 0.01, 16.0)):
            object.__setattr__(self, name, _number(getattr(self, name), f"locate.{name}", lo, hi))
        if self.min_zoom > self.max_zoom:
            raise ValueError(f"locate.min_zoom ({self.min_zoom}) must be <= locate.max_zoom ({self.max_zoom})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def native(self) -> _core.LocateParams:
        return _core.LocateParams(**self.to_dict())


@dataclass(frozen=True)
class WhiteBalanceSpec:
    """Spec v2: scale each channel so the slide's background white (found by locate's
    white_percentile) becomes ``target`` (RGB, 0..255) -- a tinted background no longer
    tints the cell."""

    target: Triple = (255.0, 255.0, 255.0)

    def __post_init__(self) -> None:
        t = _triple(self.target, "white_balance.target", positive=True)
        if any(v > 255 or v < 1 for v in t):
            raise ValueError(f"white_balance.target values must be in [1, 255], got {list(t)}")
        object.__setattr__(self, "target", t)

    def to_dict(self) -> dict[str, Any]:
        return {"target": list(self.target)}


@dataclass(frozen=True)
class StainCheckSpec:
    """Spec v2, needs `locate`: flag a cell whose nucleus stain is far from the training
    data's. The nucleus' optical density per channel (relative to the slide's own white) is
    compared with ``reference_od`` (the training split's median); over ``max_distance``
    (Euclidean, OD units) the answer carries review reason stain_unusual. It only flags: the
    tensor is the same with or without it."""

    reference_od: Triple
    max_distance: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference_od", _triple(self.reference_od, "stain_check.reference_od"))
        object.__setattr__(self, "max_distance", _number(self.max_distance, "stain_check.max_distance", 0.0, 10.0))

    def distance(self, od: Triple) -> float:
        return math.dist(od, self.reference_od)

    def to_dict(self) -> dict[str, Any]:
        return {"reference_od": list(self.reference_od), "max_distance": self.max_distance}


def _parse_stain_check(d: Any) -> StainCheckSpec | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError(f"stain_check must be null or an object, got {d!r}")
    _check_keys(d, {"reference_od", "max_distance"}, "stain_check")
    if "reference_od" not in d or "max_distance" not in d:
        raise ValueError("stain_check needs reference_od ([R, G, B] optical densities) and max_distance")
    return StainCheckSpec(d["reference_od"], d["max_distance"])


def _parse_locate(d: Any) -> LocateSpec | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError(f"locate must be null or an object, got {d!r}")
    _check_keys(d, {f.name for f in dataclasses.fields(LocateSpec)}, "locate")
    return LocateSpec(**d)


def _parse_white_balance(d: Any) -> WhiteBalanceSpec | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError(f"white_balance must be null or an object, got {d!r}")
    _check_keys(d, {"target"}, "white_balance")
    if "target" not in d:
        raise ValueError("white_balance needs 'target' ([R, G, B])")
    return WhiteBalanceSpec(d["target"])


def _parse_stain(d: Any) -> StainNormalization | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError(f"stain_normalization must be null or an object, got {d!r}")
    method = d.get("method")
    if method == "reinhard":
        _check_keys(d, {"method", "target_mean", "target_std"}, "stain_normalization")
        if "target_mean" not in d or "target_std" not in d:
            raise ValueError("reinhard stain normalization needs target_mean and target_std ([L, a, b])")
        return ReinhardStain(d["target_mean"], d["target_std"])
    if method == "grey_world":
        _check_keys(d, {"method"}, "stain_normalization")
        return GreyWorldStain()
    raise ValueError(f"stain_normalization.method must be 'reinhard' or 'grey_world', got {method!r}")


def _parse_clahe(d: Any) -> ClaheSpec | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ValueError(f"clahe must be null or an object, got {d!r}")
    _check_keys(d, {"clip_limit", "tiles"}, "clahe")
    return ClaheSpec(clip_limit=d.get("clip_limit", 2.0), tiles=d.get("tiles", 8))


@dataclass(frozen=True)
class PreprocessSpec:
    """What the pixel pipeline does, in order: [v2: locate the cell and re-frame it,
    else] crop/pad to square -> resize to input_size -> [v2: white balance] -> stain
    normalisation -> CLAHE on L -> Gaussian blur -> out = (x / 255 - mean) / std as float32.

    Version 1 has no locate / white_balance keys, so a v1 version's spec (and its
    output) stays exactly what it was."""

    version: int = SPEC_VERSION
    input_size: int = 64
    crop: CropMode = "center_square"
    locate: LocateSpec | None = None
    white_balance: WhiteBalanceSpec | None = None
    stain_check: StainCheckSpec | None = None
    stain_normalization: StainNormalization | None = None
    clahe: ClaheSpec | None = None
    blur_sigma: float = 0.0
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        # Validate direct construction too, not only from_dict.
        _integer(self.version, "version", SPEC_VERSIONS[0], SPEC_VERSIONS[-1])
        if self.version < 2 and (self.locate is not None or self.white_balance is not None
                                 or self.stain_check is not None):
            raise ValueError("locate, white_balance and stain_check need preprocessing spec version 2")
        if self.stain_check is not None and self.locate is None:
            raise ValueError("stain_check needs locate (it measures the located nucleus)")
        if self.stain_check is not None and not isinstance(self.stain_check, StainCheckSpec):
            raise ValueError("stain_check must be a StainCheckSpec or None")
        if self.locate is not None and not isinstance(self.locate, LocateSpec):
            raise ValueError("locate must be a LocateSpec or None")
        if self.white_balance is not None and not isinstance(self.white_balance, WhiteBalanceSpec):
            raise ValueError("white_balance must be a WhiteBalanceSpec or None")
        _integer(self.input_size, "input_size", 1, MAX_INPUT_SIZE)
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {list(CROP_MODES)}, got {self.crop!r}")
        if self.stain_normalization is not None and not isinstance(
            self.stain_normalization, (ReinhardStain, GreyWorldStain)
        ):
            raise ValueError("stain_normalization must be ReinhardStain, GreyWorldStain or None")
        if self.clahe is not None and not isinstance(self.clahe, ClaheSpec):
            raise ValueError("clahe must be a ClaheSpec or None")
        _number(self.blur_sigma, "blur_sigma", 0.0, MAX_BLUR_SIGMA)
        object.__setattr__(self, "blur_sigma", float(self.blur_sigma))
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std", positive=True))
        stain = self.stain_normalization
        object.__setattr__(
            self,
            "_native",
            _core.Spec(
                input_size=self.input_size,
                crop=self.crop,
                stain="reinhard" if isinstance(stain, ReinhardStain)
                else "grey_world" if isinstance(stain, GreyWorldStain) else "none",
                target_mean=stain.target_mean if isinstance(stain, ReinhardStain) else (0.0, 0.0, 0.0),
                target_std=stain.target_std if isinstance(stain, ReinhardStain) else (1.0, 1.0, 1.0),
                clahe=self.clahe is not None,
                clip_limit=self.clahe.clip_limit if self.clahe else 0.0,
                tiles=self.clahe.tiles if self.clahe else 8,
                blur_sigma=self.blur_sigma,
                mean=self.mean,
                std=self.std,
                # white balance needs the background white, which locate's pass measures
                locate=self.locate is not None,
                locate_params=(self.locate or LocateSpec()).native(),
                white_balance=self.white_balance is not None,
                white_target=self.white_balance.target if self.white_balance else (255.0, 255.0, 255.0),
            ),
        )

    # The native twin (_core.Spec) is set in __post_init__ as a plain attribute, not a
    # field, so asdict()/replace()/== ignore it; pickling goes through the dict form
    # (training hands specs to worker processes).
    if TYPE_CHECKING:  # declared for type checkers only; not a dataclass field
        _native: ClassVar[_core.Spec]

    def __reduce__(self) -> tuple[Any, ...]:
        return (PreprocessSpec.from_dict, (self.to_dict(),))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessSpec:
        """Parse and validate; raises ValueError naming the offending key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"preprocessing spec must be an object, got {type(d).__name__}")
        _check_keys(
            d,
            {"version", "input_size", "crop", "locate", "white_balance", "stain_check", "stain_normalization",
             "clahe", "blur_sigma", "mean", "std"},
            "preprocessing spec",
        )
        if "version" not in d:
            raise ValueError(f"preprocessing spec needs 'version' (one of {list(SPEC_VERSIONS)})")
        if "input_size" not in d:
            raise ValueError("preprocessing spec needs 'input_size'")
        crop = d.get("crop", "center_square")
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {list(CROP_MODES)}, got {crop!r}")
        return cls(
            version=_integer(d["version"], "version", SPEC_VERSIONS[0], SPEC_VERSIONS[-1]),
            input_size=_integer(d["input_size"], "input_size", 1, MAX_INPUT_SIZE),
            crop=crop,
            locate=_parse_locate(d.get("locate")),
            white_balance=_parse_white_balance(d.get("white_balance")),
            stain_check=_parse_stain_check(d.get("stain_check")),
            stain_normalization=_parse_stain(d.get("stain_normalization")),
            clahe=_parse_clahe(d.get("clahe")),
            blur_sigma=_number(d.get("blur_sigma", 0.0), "blur_sigma", 0.0, MAX_BLUR_SIGMA),
            mean=_triple(d.get("mean", (0.0, 0.0, 0.0)), "mean"),
            std=_triple(d.get("std", (1.0, 1.0, 1.0)), "std", positive=True),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; PreprocessSpec.from_dict(spec.to_dict()) == spec. A version 1
        spec has exactly its version 1 keys."""
        d: dict[str, Any] = {"version": self.version, "input_size": self.input_size, "crop": self.crop}
        if self.version >= 2:
            d["locate"] = self.locate.to_dict() if self.locate else None
            d["white_balance"] = self.white_balance.to_dict() if self.white_balance else None
            if self.stain_check is not None:  # optional: a spec without it keeps its exact dict
                d["stain_check"] = self.stain_check.to_dict()
        d.update({
            "stain_normalization": self.stain_normalization.to_dict() if self.stain_normalization else None,
            "clahe": self.clahe.to_dict() if self.clahe else None,
            "blur_sigma": self.blur_sigma,
            "mean": list(self.mean),
            "std": list(self.std),
        })
        return d
