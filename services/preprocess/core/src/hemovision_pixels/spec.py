"""The preprocessing spec stored with each model (assets.extra/hemovision.json).

Training and serving both build a PreprocessSpec from that dict, so the same C++
chain runs with the same parameters on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping

from . import _core

CropMode = Literal["center_square", "pad_square", "none"]
CROP_MODES: tuple[str, ...] = ("center_square", "pad_square", "none")
SPEC_VERSION = 1
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
    """What the pixel pipeline does, in order: crop/pad to square -> resize to
    input_size -> stain normalisation -> CLAHE on L -> Gaussian blur ->
    out = (x / 255 - mean) / std as float32."""

    version: int = SPEC_VERSION
    input_size: int = 64
    crop: CropMode = "center_square"
    stain_normalization: StainNormalization | None = None
    clahe: ClaheSpec | None = None
    blur_sigma: float = 0.0
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        # Validate direct construction too, not only from_dict.
        _integer(self.version, "version", SPEC_VERSION, SPEC_VERSION)
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
            {"version", "input_size", "crop", "stain_normalization", "clahe", "blur_sigma", "mean", "std"},
            "preprocessing spec",
        )
        if "version" not in d:
            raise ValueError("preprocessing spec needs 'version' (currently 1)")
        if "input_size" not in d:
            raise ValueError("preprocessing spec needs 'input_size'")
        crop = d.get("crop", "center_square")
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {list(CROP_MODES)}, got {crop!r}")
        return cls(
            version=_integer(d["version"], "version", SPEC_VERSION, SPEC_VERSION),
            input_size=_integer(d["input_size"], "input_size", 1, MAX_INPUT_SIZE),
            crop=crop,
            stain_normalization=_parse_stain(d.get("stain_normalization")),
            clahe=_parse_clahe(d.get("clahe")),
            blur_sigma=_number(d.get("blur_sigma", 0.0), "blur_sigma", 0.0, MAX_BLUR_SIGMA),
            mean=_triple(d.get("mean", (0.0, 0.0, 0.0)), "mean"),
            std=_triple(d.get("std", (1.0, 1.0, 1.0)), "std", positive=True),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; PreprocessSpec.from_dict(spec.to_dict()) == spec."""
        return {
            "version": self.version,
            "input_size": self.input_size,
            "crop": self.crop,
            "stain_normalization": self.stain_normalization.to_dict() if self.stain_normalization else None,
            "clahe": self.clahe.to_dict() if self.clahe else None,
            "blur_sigma": self.blur_sigma,
            "mean": list(self.mean),
            "std": list(self.std),
        }
