"""Every option as a frozen dataclass, validated once; no global state.

``SwapConfig`` says *how* faces are chosen, swapped and blended; ``RuntimeConfig`` says *where*
models come from and run. Both are passed down explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError
from .models.enhance_catalog import DEFAULT_REGIONS, REGIONS

SelectorMode = Literal["reference", "one", "many"]
FaceOrder = Literal[
    "large-small", "small-large", "left-right", "right-left",
    "top-bottom", "bottom-top", "best-worst", "worst-best",
]
ColorMatch = Literal["lab", "histogram", "yuv-luma", "none"]
BlendMode = Literal["alpha", "multiband", "poisson"]
Expression = Literal["target", "source"]

SELECTOR_MODES: tuple[str, ...] = ("reference", "one", "many")
FACE_ORDERS: tuple[str, ...] = (
    "large-small", "small-large", "left-right", "right-left",
    "top-bottom", "bottom-top", "best-worst", "worst-best",
)
MASK_TYPES: tuple[str, ...] = ("box", "oval", "area", "occlusion", "region")
MASK_AREAS: tuple[str, ...] = ("face", "upper-face", "lower-face", "eyes", "brows", "nose", "mouth")
COLOR_MATCHES: tuple[str, ...] = ("lab", "histogram", "yuv-luma", "none")
BLEND_MODES: tuple[str, ...] = ("alpha", "multiband", "poisson")
EXPRESSIONS: tuple[str, ...] = ("target", "source")

@dataclass(frozen=True)
class SwapConfig:
    """How faces are selected, swapped and blended.

    Fractions (``mask_blur``, ``mask_erode``, ``mask_padding``) are relative to the face width so
    that the same settings suit a 60 px and a 600 px face.
    """

    # selection
    face_selector_mode: SelectorMode = "reference"
    face_selector_order: FaceOrder = "large-small"
    reference_face_position: int = 0
    reference_face_distance: float = 0.6
    face_detector_score: float = 0.5
    face_detector_size: int = 640
    # built-in mesh swapper
    face_shape_weight: float = 0.75
    expression: Expression = "target"
    swap_resolution: int = 192
    # masks
    face_mask_types: tuple[str, ...] = ("oval",)
    face_mask_areas: tuple[str, ...] = ("face",)
    face_mask_blur: float = 0.035
    face_mask_erode: float = 0.01
    face_mask_padding: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # realism: per-texel validity of the source texture (visibility, outline and hairline
    # distance, the source's own skin model; mirrored completion), the target's occluders kept
    source_validity: bool = True
    keep_occluders: bool = False  # costs ≈ 0.05 of identity margin on the quality benchmark (+0.287 vs +0.336)
    # colour and blend
    color_match: ColorMatch = "lab"
    detail_match: bool = True
    relight: float = 0.3  # chosen by measurement: lighting agreement up, identity kept
    # with the face parser: how much of the target's low-frequency light (15 % of the face width,
    # measured on its parsed skin) the face takes; 0.7 by the quality benchmark: lighting
    # agreement 0.90, identity margin 0.24 (1.0: 0.95 / 0.20)
    light_match: float = 0.7
    blend: BlendMode = "alpha"  # multiband seams measure a little better but cost ≈ 9 ms a face
    # neural models (names from the model catalogue; "builtin" is the weight-free mesh swapper)
    face_swapper_model: str = "builtin"
    face_swapper_weight: float = 1.0
    face_swapper_pixel_boost: int = 1
    face_enhancer_model: str | None = None
    face_enhancer_blend: float = 0.8
    face_enhancer_weight: float = 0.5
    face_occluder_model: str = "xseg"
    # the face parser (a BiSeNet fetched from the package index): which source texels are face,
    # and the target's hair, hat and glasses frames in front; without it (off, or not to be
    # had) the colour skin model judges instead
    face_parsing: bool = True
    face_parser_model: str = "bisenet_resnet_18"
    face_mask_regions: tuple[str, ...] = DEFAULT_REGIONS

    def __post_init__(self) -> None:
        _choice("face_selector_mode", self.face_selector_mode, SELECTOR_MODES)
        _choice("face_selector_order", self.face_selector_order, FACE_ORDERS)
        _choice("color_match", self.color_match, COLOR_MATCHES)
        _choice("blend", self.blend, BLEND_MODES)
        _choice("expression", self.expression, EXPRESSIONS)
        if not self.face_mask_types:
            raise ConfigError("face_mask_types: give at least one of " + ", ".join(MASK_TYPES))
        for t in self.face_mask_types:
            _choice("face_mask_types", t, MASK_TYPES)
        for a in self.face_mask_areas:
            _choice("face_mask_areas", a, MASK_AREAS)
        if not self.face_mask_regions:
            raise ConfigError("face_mask_regions: give at least one of " + ", ".join(REGIONS))
        for r in self.face_mask_regions:
            _choice("face_mask_regions", r, tuple(REGIONS))
        _range("face_shape_weight", self.face_shape_weight, 0.0, 1.0)
        _range("reference_face_distance", self.reference_face_distance, 0.0, 2.0)
        _range("face_detector_score", self.face_detector_score, 0.0, 1.0)
        _range("face_mask_blur", self.face_mask_blur, 0.0, 0.5)
        _range("face_mask_erode", self.face_mask_erode, 0.0, 0.5)
        _range("relight", self.relight, 0.0, 1.0)
        _range("light_match", self.light_match, 0.0, 1.0)
        if len(self.face_mask_padding) != 4:
            raise ConfigError("face_mask_padding: give four fractions: top right bottom left")
        for p in self.face_mask_padding:
            _range("face_mask_padding", p, 0.0, 1.0)
        if not (160 <= self.face_detector_size <= 1920 and self.face_detector_size % 32 == 0):
            raise ConfigError("face_detector_size must be a multiple of 32 between 160 and 1920")
        _range("face_swapper_weight", self.face_swapper_weight, 0.0, 1.0)
        _range("face_enhancer_blend", self.face_enhancer_blend, 0.0, 1.0)
        _range("face_enhancer_weight", self.face_enhancer_weight, 0.0, 1.0)
        if self.face_swapper_pixel_boost not in (1, 2, 3, 4):
            raise ConfigError("face_swapper_pixel_boost must be 1, 2, 3 or 4 (tiles per side)")
        if self.reference_face_position < 0:
            raise ConfigError("reference_face_position must be 0 or more")
        if not 64 <= self.swap_resolution <= 1024:
            raise ConfigError("swap_resolution must be between 64 and 1024 pixels")

ENCODERS: tuple[str, ...] = ("auto", "libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libvpx-vp9")
PRESETS: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class VideoConfig:
    """How a video is read, processed in stages and written.

    ``detect_interval``: run the detector every this many frames and follow faces with the mesh
    in between (a lost face triggers a detection at once). ``batch_size``: frames per batch in
    the detect stage. ``queue_size``: frames each stage may hold waiting (memory bound).
    ``swap_workers``: frames a neural swapper works on at once (0: a quarter of the usable cores,
    1 to 4); the built-in swapper smooths colour from frame to frame, in order, with one.
    ``trim_end`` is exclusive (None = to the end).
    """

    detect_interval: int = 5
    batch_size: int = 4
    queue_size: int = 8
    swap_workers: int = 0
    encoder: str = "auto"
    quality: int = 18
    preset: str = "veryfast"
    trim_start: int = 0
    trim_end: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.detect_interval <= 1000:
            raise ConfigError("detect_interval must be between 1 and 1000 frames")
        if not 1 <= self.batch_size <= 256:
            raise ConfigError("batch_size must be between 1 and 256")
        if not 1 <= self.queue_size <= 1024:
            raise ConfigError("queue_size must be between 1 and 1024")
        if not 0 <= self.swap_workers <= 64:
            raise ConfigError("swap_workers must be between 0 (automatic) and 64")
        _choice("encoder", self.encoder, ENCODERS)
        _choice("preset", self.preset, PRESETS)
        if not 0 <= self.quality <= 51:
            raise ConfigError("output video quality (CRF) must be between 0 and 51")
        if self.trim_start < 0 or (self.trim_end is not None and self.trim_end <= self.trim_start):
            raise ConfigError("trim: need 0 <= trim_frame_start < trim_frame_end")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where models come from and how they run.

    ``execution_providers`` is the user's order of preference (``("cuda", "cpu")``); empty means
    the best the installed onnxruntime offers. ``home`` overrides the cache root
    (``SWAPLINE_HOME``), ``model_dir`` is a folder of model files the user already has.
    """

    execution_providers: tuple[str, ...] = ()
    execution_device_id: int = 0
    intra_op_threads: int = 0
    home: Path | None = None
    model_dir: Path | None = None
    offline: bool = False
    fp16: bool = False
    video_memory_strategy: str = "moderate"
    max_video_memory: float | None = None  # GiB

def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")

def _range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= float(value) <= hi:
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g} (got {value:g})")
