"""Neural swappers, their identity models and embedding converters, as data.

Each :class:`SwapperSpec` says how a swapper is fed: the warp template and size of the target
crop, the mean / standard deviation of its input (and of its output, for models that return a
normalised image), and what identity input it takes:

* ``"embedding_emap"`` - an ArcFace-512 embedding (``arcface_w600k_r50``), unit length, times the
  model's ``emap`` matrix (the graph's last initializer), made unit length again (inswapper).
* ``"embedding"`` - the unit ArcFace-512 embedding itself (hyperswap).
* ``"embedding_converted"`` - the raw ArcFace-512 embedding passed through an *embedding
  converter* model (``crossface_*``) into the swapper's own identity space; unit length after
  conversion when ``normalise_converted`` (simswap), as it comes for ghost.
* ``"image"`` - an aligned RGB crop of the source face at ``source_template`` / ``source_size``,
  scaled to 0..1 (blendswap, uniface).

Checksums: ``ModelSpec`` (and so the model store) requires a SHA-256. Only files whose SHA-256 is
published by the same party that serves the URL are *verified* here (InsightFace's
``inswapper_128.onnx`` and ``w600k_r50.onnx``, pinned by many projects; VisoMaster's
``inswapper_128.fp16.onnx``). FaceFusion publishes CRC32 ``.hash`` files, not SHA-256, for its
assets, so hyperswap, simswap, ghost, blendswap, uniface and the crossface converters are
``verified=False``: :func:`catalog_entries` leaves them out and they are used from a file the user
trusts (``--model-dir``, loaded by path, see :func:`swapline.swap.onnx_swapper.NeuralSwapper.from_file`).
Their upstream addresses are kept so the user knows where the file comes from.

Licences differ; InsightFace's pretrained models (inswapper, w600k_r50) are for non-commercial
research only, and so are SimSwap and BlendSwap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .catalog import CATALOG, ModelSpec, Normalisation, UrlSource

# FaceFusion-style five-point templates the swappers were trained with (fractions of the crop).
# align.TEMPLATES has arcface_112_v2, arcface_128 and ffhq_512; SimSwap and Ghost use v1.
EXTRA_TEMPLATES: dict[str, np.ndarray] = {
    "arcface_112_v1": np.array(
        [[0.35473214, 0.45658929], [0.64526786, 0.45658929], [0.50000000, 0.61154464],
         [0.37913393, 0.77687500], [0.62086607, 0.77687500]], dtype=np.float32),
}

_FF = "https://github.com/facefusion/facefusion-assets/releases/download"
_VISO = "https://github.com/visomaster/visomaster-assets/releases/download/v1.0.0"
_INSIGHT = "https://github.com/deepinsight/insightface/releases/download/v0.7"

NON_COMMERCIAL_INSIGHTFACE = "InsightFace pretrained model: non-commercial research use only"
SOURCE_KINDS = ("embedding_emap", "embedding", "embedding_converted", "image")


@dataclass(frozen=True)
class NeuralFile:
    """A model file: where it is published, its SHA-256 if one is published, its licence."""

    name: str
    role: str                      # "swapper" | "recognizer" | "embedding-converter"
    file_name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int = 0                  # bytes; 0 = not published
    licence: str = "unknown"
    vendor: str = ""
    dynamic_batch: bool = True     # re-export once with a symbolic batch axis
    description: str = ""
    aliases: tuple[str, ...] = ()  # the names other tools give the same model (see ALIASES)

    @property
    def verified(self) -> bool:
        """Whether the store can fetch and check it (a published SHA-256)."""
        return self.sha256 is not None

    @property
    def converted_name(self) -> str | None:
        if not self.dynamic_batch:
            return None
        stem = self.file_name.rsplit(".onnx", 1)[0]
        return f"{stem}.dynbatch.onnx"


@dataclass(frozen=True)
class SwapperSpec:
    """How one neural swapper is fed and read (see the module docstring for source kinds).

    ``mean`` / ``std`` normalise the target crop (RGB in 0..1): ``x = (rgb - mean) / std``.
    The first output is an RGB image read back as ``rgb = y * output_std + output_mean``
    (``(0, 0, 0)`` / ``(1, 1, 1)`` for models that return 0..1 directly), clipped to 0..1.
    """

    name: str
    family: str
    file: NeuralFile
    template: str
    size: int
    source_kind: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    output_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    recognizer: str | None = "arcface_w600k_r50"
    converter: str | None = None
    normalise_converted: bool = True
    source_template: str | None = None
    source_size: int = 0
    target_input: str = "target"
    source_input: str = "source"
    embedding_size: int = 512
    max_pixel_boost: int = 4

    def __post_init__(self) -> None:
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"{self.name}: source kind {self.source_kind!r} not in {SOURCE_KINDS}")
        if self.source_kind == "embedding_converted" and not self.converter:
            raise ValueError(f"{self.name}: a converted embedding needs a converter")
        if self.source_kind == "image" and not (self.source_template and self.source_size):
            raise ValueError(f"{self.name}: an image source needs source_template and source_size")

    @property
    def verified(self) -> bool:
        return self.file.verified

    @property
    def pixel_boost_sizes(self) -> tuple[int, ...]:
        """Crop sizes pixel boost can run at: the model size times 1 .. ``max_pixel_boost``."""
        return tuple(self.size * k for k in range(1, self.max_pixel_boost + 1))

    def source_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the source input (without the batch axis)."""
        if self.source_kind == "image":
            return (3, self.source_size, self.source_size)
        return (self.embedding_size,)


def _ff(release: str, file_name: str) -> str:
    return f"{_FF}/{release}/{file_name}"


#: File names other tools' model folders use for the same models, so that ``--model-dir`` pointed
#: at FaceFusion's ``.assets/models`` or Deep-Live-Cam's ``models`` finds them: FaceFusion calls
#: InsightFace's recognizer ``arcface_w600k_r50.onnx`` and its half-precision inswapper
#: ``inswapper_128_fp16.onnx`` (Deep-Live-Cam ships the same name); both keep ``inswapper_128.onnx``.
#: Their copies are often re-exports with another SHA-256: ``swapline models trust`` takes them.
ALIASES: dict[str, tuple[str, ...]] = {
    "inswapper_128_fp16": ("inswapper_128_fp16.onnx",),
    "arcface_w600k_r50": ("arcface_w600k_r50.onnx",),
}


RECOGNIZERS: dict[str, NeuralFile] = {
    "arcface_w600k_r50": NeuralFile(
        name="arcface_w600k_r50", role="recognizer", file_name="w600k_r50.onnx",
        urls=(f"{_VISO}/w600k_r50.onnx",
              "https://huggingface.co/deepghs/insightface/resolve/main/buffalo_l/w600k_r50.onnx"),
        sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43", size=174_383_860,
        licence=NON_COMMERCIAL_INSIGHTFACE, vendor="InsightFace",
        description="ArcFace ResNet-50 (WebFace600K) 512-d identity, arcface_112_v2 at 112, (x-127.5)/127.5 RGB",
        aliases=ALIASES["arcface_w600k_r50"],
    ),
}

CONVERTERS: dict[str, NeuralFile] = {
    name: NeuralFile(
        name=name, role="embedding-converter", file_name=f"{name}.onnx",
        urls=(_ff("models-3.4.0", f"{name}.onnx"),), licence="unknown (FaceFusion asset)",
        vendor="FaceFusion", description=f"ArcFace-512 -> {target} identity space ('input' [N, 512] -> [N, 512])",
    )
    for name, target in (("crossface_simswap", "SimSwap"), ("crossface_ghost", "Ghost"))
}


def _swapper_file(name: str, release: str, licence: str, vendor: str, description: str) -> NeuralFile:
    return NeuralFile(name=name, role="swapper", file_name=f"{name}.onnx", urls=(_ff(release, f"{name}.onnx"),),
                      licence=licence, vendor=vendor, description=description)


_HALF = (0.5, 0.5, 0.5)


def _build_swappers() -> dict[str, SwapperSpec]:
    specs = [
        SwapperSpec(
            name="inswapper_128", family="inswapper", template="arcface_128", size=128,
            source_kind="embedding_emap",
            file=NeuralFile(
                name="inswapper_128", role="swapper", file_name="inswapper_128.onnx",
                urls=(f"{_INSIGHT}/inswapper_128.onnx",
                      "https://huggingface.co/ezioruan/inswapper_128.onnx/resolve/main/inswapper_128.onnx"),
                sha256="e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af", size=554_253_681,
                licence=NON_COMMERCIAL_INSIGHTFACE, vendor="InsightFace",
                description="InsightFace inswapper 128 (original release; FaceFusion's re-export has another hash)"),
        ),
        SwapperSpec(
            name="inswapper_128_fp16", family="inswapper", template="arcface_128", size=128,
            source_kind="embedding_emap",
            file=NeuralFile(
                name="inswapper_128_fp16", role="swapper", file_name="inswapper_128.fp16.onnx",
                urls=(f"{_VISO}/inswapper_128.fp16.onnx",),
                sha256="6d51a9278a1f650cffefc18ba53f38bf2769bf4bbff89267822cf72945f8a38b", size=0,
                licence=NON_COMMERCIAL_INSIGHTFACE, vendor="InsightFace (fp16 copy hosted by VisoMaster)",
                description="inswapper 128 with fp16 weights (VisoMaster's copy; size not published)"),
        ),
    ]
    for v in ("1a", "1b", "1c"):
        name = f"hyperswap_{v}_256"
        specs.append(SwapperSpec(
            name=name, family="hyperswap", template="arcface_128", size=256, source_kind="embedding",
            mean=_HALF, std=_HALF, output_mean=_HALF, output_std=_HALF,
            file=_swapper_file(name, "models-3.3.0", "ResearchRAIL-MS", "FaceFusion", f"HyperSwap {v} 256"),
        ))
    specs += [
        SwapperSpec(
            name="simswap_256", family="simswap", template="arcface_112_v1", size=256,
            source_kind="embedding_converted", converter="crossface_simswap",
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
            file=_swapper_file("simswap_256", "models-3.0.0", "Non-Commercial", "neuralchen", "SimSwap 256"),
        ),
        SwapperSpec(
            name="simswap_unofficial_512", family="simswap", template="arcface_112_v1", size=512,
            source_kind="embedding_converted", converter="crossface_simswap", max_pixel_boost=2,
            file=_swapper_file("simswap_unofficial_512", "models-3.0.0", "Non-Commercial", "neuralchen",
                               "SimSwap 512 (unofficial weights)"),
        ),
    ]
    for k in (1, 2, 3):
        name = f"ghost_{k}_256"
        specs.append(SwapperSpec(
            name=name, family="ghost", template="arcface_112_v1", size=256,
            source_kind="embedding_converted", converter="crossface_ghost", normalise_converted=False,
            mean=_HALF, std=_HALF, output_mean=_HALF, output_std=_HALF,
            file=_swapper_file(name, "models-3.0.0", "Apache-2.0", "ai-forever", f"GHOST {k}-block U-Net 256"),
        ))
    specs += [
        SwapperSpec(
            name="blendswap_256", family="blendswap", template="ffhq_512", size=256, source_kind="image",
            recognizer=None, source_template="arcface_112_v2", source_size=112,
            file=_swapper_file("blendswap_256", "models-3.0.0", "Non-Commercial", "mapooon", "BlendFace swap 256"),
        ),
        SwapperSpec(
            name="uniface_256", family="uniface", template="ffhq_512", size=256, source_kind="image",
            recognizer=None, source_template="ffhq_512", source_size=256,
            mean=_HALF, std=_HALF, output_mean=_HALF, output_std=_HALF,
            file=_swapper_file("uniface_256", "models-3.0.0", "unknown", "xc-csc101", "UniFace 256"),
        ),
    ]
    return {s.name: _with_aliases(s) for s in specs}


def _with_aliases(spec: SwapperSpec) -> SwapperSpec:
    names = ALIASES.get(spec.name, ())
    return replace(spec, file=replace(spec.file, aliases=names)) if names else spec


SWAPPERS: dict[str, SwapperSpec] = _build_swappers()


def all_files() -> dict[str, NeuralFile]:
    """Every neural file by name: swappers, recognizers, converters."""
    out: dict[str, NeuralFile] = {s.name: s.file for s in SWAPPERS.values()}
    out.update(RECOGNIZERS)
    out.update(CONVERTERS)
    return out


def _scaled(v: tuple[float, float, float]) -> tuple[float, float, float]:
    return (255.0 * v[0], 255.0 * v[1], 255.0 * v[2])


def _normalisation(f: NeuralFile) -> tuple[tuple[int, int], str | None, Normalisation]:
    spec = SWAPPERS.get(f.name)
    if spec is not None:
        note = f"source: {spec.source_kind}" + (f" via {spec.converter}" if spec.converter else "")
        return ((spec.size, spec.size), spec.template, Normalisation(
            channels="rgb", mean=_scaled(spec.mean), std=_scaled(spec.std),
            note=note))
    if f.role == "recognizer":
        return ((112, 112), "arcface_112_v2", Normalisation(
            channels="rgb", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), note="-> [N, 512]"))
    return ((0, 0), None, Normalisation(note="input 'input' [N, 512]"))


def to_model_spec(f: NeuralFile) -> ModelSpec:
    """The store's :class:`ModelSpec` for a *verified* file (``ValueError`` otherwise)."""
    if f.sha256 is None:
        raise ValueError(f"{f.name} has no published SHA-256: use a file you trust from --model-dir")
    input_size, template, norm = _normalisation(f)
    return ModelSpec(
        name=f.name, role=f.role, file_name=f.file_name, sha256=f.sha256, size=f.size,
        sources=tuple(UrlSource(u) for u in f.urls),
        convert=("dynamic_batch",) if f.dynamic_batch else (), converted_name=f.converted_name,
        input_size=input_size, template=template, normalisation=norm, licence=f.licence,
        description=f.description, aliases=f.aliases,
    )


def catalog_entries() -> dict[str, ModelSpec]:
    """ModelSpecs of the neural files with a published SHA-256 (the others: :func:`unverified`)."""
    return {name: to_model_spec(f) for name, f in all_files().items() if f.verified}


def unverified() -> dict[str, NeuralFile]:
    """Files with no published SHA-256: usable only from a file the user trusts (``--model-dir``)."""
    return {name: f for name, f in all_files().items() if not f.verified}


def merged_catalog() -> dict[str, ModelSpec]:
    """The default catalogue plus the verified neural entries, for ``ModelStore(catalog=...)``."""
    merged = dict(CATALOG)
    for name, spec in catalog_entries().items():
        if name in merged:
            raise ValueError(f"neural model {name} clashes with a catalogue entry")
        merged[name] = spec
    return merged
