"""What a model file must look like to stand in for a catalogue entry, as data, and the check.

``swapline models trust PATH --as NAME`` accepts a file whose SHA-256 is not the published one
(FaceFusion's re-export of inswapper, Deep-Live-Cam's fp16 copy) only when its graph has the
interface the code that runs NAME relies on: :data:`INTERFACES` holds one :class:`Interface` per
neural catalogue entry (swappers, recognizers, embedding converters, enhancers, mask models),
derived from their catalogue rows, and :func:`check_interface` compares an ONNX file with it:
input and output names, ranks, the sizes the entry fixes, element types, and for inswapper the
512 × 512 ``emap`` that must be the graph's last initializer. The first mismatch is a
:class:`~swapline.errors.ModelError` naming it, in one line.

The default models (YuNet, SFace, FaceMesh, ...) ship inside installed packages and are converted
from int8 or TFLite originals: there is nothing of the user's to trust, so they have no interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .enhance_catalog import ENHANCERS, MASKERS, EnhancerSpec, MaskerSpec
from .neural_catalog import CONVERTERS, RECOGNIZERS, SWAPPERS, SwapperSpec

#: element types a floating-point tensor may have (fp16 exports are run with fp16 feeds)
FLOATS: tuple[str, ...] = ("float32", "float16")
Dim = int | None


@dataclass(frozen=True)
class TensorRule:
    """One input or output the running code relies on.

    ``names``: the names it may have (the first the file has wins); ``()``: any name, matched to
    the first tensor of the same rank left over once named rules took theirs. ``shape``: its rank
    is the tensor's rank; an int is a size the file must have on that axis where it fixes one
    (a symbolic axis is fine), None any size. Axis 0 is the batch and always free. ``dtypes``:
    numpy names of the element types accepted. ``optional``: a missing tensor is no mismatch.
    ``position``: the index the tensor must have (the runners read a swapper's, recognizer's or
    mask model's *first* output), None for any.
    """

    role: str
    names: tuple[str, ...]
    shape: tuple[Dim, ...]
    dtypes: tuple[str, ...] = FLOATS
    optional: bool = False
    position: int | None = None


@dataclass(frozen=True)
class Interface:
    """A catalogue entry's graph interface: its ``inputs`` (every input of the file must match
    one), the ``outputs`` it needs (others may exist), and ``last_initializer``: the shape the
    graph's last initializer must have (inswapper's ``emap``), None when it does not matter."""

    inputs: tuple[TensorRule, ...]
    outputs: tuple[TensorRule, ...]
    last_initializer: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GraphTensor:
    """An input or output of an ONNX file: name, dims (int or None when symbolic), numpy type name."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str


@dataclass(frozen=True)
class GraphInterface:
    """What :func:`read_interface` finds in a file."""

    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]
    last_initializer: tuple[int, ...] | None


# -- the catalogue's interfaces --------------------------------------------------------------------

def _image(role: str, names: Sequence[str], channels: Dim, size: Dim, position: int | None = None) -> TensorRule:
    return TensorRule(role, tuple(names), (None, channels, size, size), position=position)


def swapper_interface(spec: SwapperSpec) -> Interface:
    """A swapper: its target crop and source inputs by name; an RGB image out at the model size
    (inswapper's is called ``output``); inswapper's 512 × 512 ``emap`` as last initializer."""
    size = spec.size
    source = TensorRule("source " + ("image" if spec.source_kind == "image" else "embedding"),
                        (spec.source_input,), (None, *spec.source_shape()))
    out_names = ("output",) if spec.family == "inswapper" else ()
    emap = (spec.embedding_size, spec.embedding_size) if spec.source_kind == "embedding_emap" else None
    return Interface(inputs=(_image("target crop", (spec.target_input,), 3, size), source),
                     outputs=(_image("swapped face", out_names, 3, size, position=0),), last_initializer=emap)


def recognizer_interface() -> Interface:
    """ArcFace: one 112 px RGB crop in (any name), a 512-d embedding out."""
    return Interface(inputs=(_image("face crop", (), 3, 112),),
                     outputs=(TensorRule("embedding", (), (None, 512), position=0),))


def converter_interface() -> Interface:
    """An embedding converter (crossface): ArcFace-512 in, 512 out."""
    return Interface(inputs=(TensorRule("embedding", (), (None, 512)),),
                     outputs=(TensorRule("converted embedding", (), (None, 512), position=0),))


def enhancer_interface(spec: EnhancerSpec) -> Interface:
    """An enhancer: an RGB crop at the model size (the 4-D input, whatever its name), CodeFormer's
    optional fidelity weight; a restored RGB image out (the named output when the file has it,
    else the first 4-D one, as :class:`~swapline.enhance.face_enhancer.FaceEnhancer` reads it;
    resized when not the model size)."""
    inputs = [_image("face crop", (), 3, spec.size)]
    if spec.weight_inputs:
        inputs.append(TensorRule("fidelity weight", spec.weight_inputs, (None,),
                                 ("float64", *FLOATS), optional=True))
    return Interface(inputs=tuple(inputs), outputs=(_image("restored face", (), 3, None),))


def masker_interface(spec: MaskerSpec) -> Interface:
    """A mask model: one 4-D image input (NCHW or NHWC, read from the file), a 4-D map out."""
    return Interface(inputs=(TensorRule("face crop", (), (None, None, None, None)),),
                     outputs=(TensorRule("mask", (), (None, None, None, None), position=0),))


def _build() -> dict[str, Interface]:
    table: dict[str, Interface] = {name: swapper_interface(s) for name, s in SWAPPERS.items()}
    table.update({name: recognizer_interface() for name in RECOGNIZERS})
    table.update({name: converter_interface() for name in CONVERTERS})
    table.update({name: enhancer_interface(e) for name, e in ENHANCERS.items()})
    table.update({name: masker_interface(m) for name, m in MASKERS.items()})
    return table


#: every model a user may bring a file of, by catalogue name
INTERFACES: dict[str, Interface] = _build()


# -- reading and checking a file -------------------------------------------------------------------

def read_interface(path: Path) -> GraphInterface:
    """The inputs (initializers excluded), outputs and last initializer's shape of an ONNX file.

    Raises:
        ModelError: the file is not an ONNX model.
    """
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError ...
        raise ModelError(f"{path} is not an ONNX model ({type(exc).__name__})") from exc
    graph = model.graph
    inits = {t.name for t in graph.initializer}

    def tensor(value: onnx.ValueInfoProto) -> GraphTensor:
        tt = value.type.tensor_type
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in tt.shape.dim)
        try:
            dtype = str(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else "unknown"
        except (KeyError, ValueError, TypeError):
            dtype = "unknown"
        return GraphTensor(value.name, dims, dtype)

    last = tuple(int(d) for d in graph.initializer[-1].dims) if graph.initializer else None
    return GraphInterface(inputs=tuple(tensor(v) for v in graph.input if v.name not in inits),
                          outputs=tuple(tensor(v) for v in graph.output), last_initializer=last)


def interface_mismatch(found: GraphInterface, want: Interface) -> str | None:
    """The first way ``found`` differs from ``want``, in words (None: it fits)."""
    problem, used = _match(found.inputs, want.inputs, "input")
    if problem is not None:
        return problem
    extra = [t.name for t in found.inputs if t.name not in used]
    if extra:
        return f"has an input swapline does not feed: {extra[0]!r}"
    problem, _ = _match(found.outputs, want.outputs, "output")
    if problem is not None:
        return problem
    if want.last_initializer is not None and found.last_initializer != want.last_initializer:
        got = "none" if found.last_initializer is None else _dims(found.last_initializer)
        return (f"its last initializer (the emap) is {got}, expected {_dims(want.last_initializer)}")
    return None


def check_interface(path: Path, name: str) -> None:
    """Raise :class:`ModelError` (one line naming the mismatch) unless ``path`` has the interface
    of catalogue model ``name``; also when swapline has no interface for ``name``."""
    want = INTERFACES.get(name)
    if want is None:
        raise ModelError(f"model {name} cannot be replaced by a file of yours: swapline takes it from its "
                         f"own package and checks it by sha256; trust works for the neural models "
                         f"(e.g. {', '.join(sorted(SWAPPERS)[:2])})")
    problem = interface_mismatch(read_interface(path), want)
    if problem is not None:
        raise ModelError(f"{path} does not have the interface of model {name}: it {problem}")


def _match(tensors: Sequence[GraphTensor], rules: Sequence[TensorRule],
           kind: str) -> tuple[str | None, set[str]]:
    """Pair ``rules`` with ``tensors`` (named rules first) and check each pair; returns the first
    problem (None) and the names of the tensors taken."""
    used: set[str] = set()
    by_name = {t.name: t for t in tensors}
    ordered = sorted(rules, key=lambda r: not r.names)
    for rule in ordered:
        found = _find(rule, tensors, by_name, used)
        if found is None:
            if rule.optional:
                continue
            if rule.names:
                have = ", ".join(repr(t.name) for t in tensors) or "none"
                first = " first" if rule.position == 0 else ""
                return f"has no {kind} {rule.names[0]!r}{first} ({rule.role}; its {kind}s: {have})", used
            return f"has no {len(rule.shape)}-D {kind} for the {rule.role}", used
        used.add(found.name)
        problem = _tensor_mismatch(found, rule, kind)
        if problem is not None:
            return problem, used
    return None, used


def _find(rule: TensorRule, tensors: Sequence[GraphTensor], by_name: dict[str, GraphTensor],
          used: set[str]) -> GraphTensor | None:
    if rule.position is not None:
        at = tensors[rule.position] if rule.position < len(tensors) else None
        ok = at is not None and at.name not in used and (not rule.names or at.name in rule.names)
        return at if ok else None
    if rule.names:
        return next((by_name[n] for n in rule.names if n in by_name and n not in used), None)
    same_rank = [t for t in tensors if t.name not in used and len(t.dims) == len(rule.shape)]
    fitting = [t for t in same_rank if _tensor_mismatch(t, rule, "") is None]  # e.g. the image, not a mask
    chosen = fitting or same_rank
    return chosen[0] if chosen else None


def _tensor_mismatch(found: GraphTensor, rule: TensorRule, kind: str) -> str | None:
    what = f"{kind} {found.name!r} ({rule.role})"
    if len(found.dims) != len(rule.shape):
        return f"has {what} of rank {len(found.dims)} {_dims(found.dims)}, expected rank {len(rule.shape)} {_dims(rule.shape)}"
    for axis, (got, need) in enumerate(zip(found.dims, rule.shape, strict=True)):
        if axis == 0 or need is None or got is None:
            continue
        if got != need:
            return f"has {what} of shape {_dims(found.dims)}, expected {_dims(rule.shape)}"
    if found.dtype not in rule.dtypes and found.dtype != "unknown":
        return f"has {what} of type {found.dtype}, expected {' or '.join(rule.dtypes)}"
    return None


def _dims(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join("N" if i == 0 and d is None else "?" if d is None else str(d)
                           for i, d in enumerate(dims)) + "]"
