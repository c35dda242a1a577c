"""The BiSeNet face parser (ResNet-18 context path, 19 CelebAMask-HQ classes) as an ONNX graph
built from its state dict, without torch.

The network: a ResNet-18 gives features at 1/8, 1/16 and 1/32 of the input; attention
refinement on the last two, with the 1/32 features' global average added, nearest-neighbour
upsampling by 2 and a 3×3 head at each step; a fusion of the 1/8 features with the refined 1/16
path (concatenation, 1×1 block, channel attention, residual); a 3×3 + 1×1 head to the class
logits, bilinearly upsampled (corners aligned) to the input size. Batch norms are folded into the
convolution before them.

Input ``input`` ``(N, 3, S, S) float32`` (RGB, /255, ImageNet mean/std); output ``logits``
``(N, 19, S, S) float32``. ``S`` must be a multiple of 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelError
from .torch_checkpoint import state_dict

CLASSES = 19
BN_EPS = 1e-5
OPSET = 17


class _Graph:
    """Nodes and initializers of the graph being built, with fresh names."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str, **attrs: object) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def weight(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise ModelError(f"the face parser's checkpoint has no {key}")
        return self.state[key].astype(np.float32)

    def conv(self, x: str, conv: str, bn: str | None, *, stride: int = 1, relu: bool = False) -> str:
        """``conv`` (a state-dict prefix, no bias) with the batch norm ``bn`` folded in."""
        w = self.weight(f"{conv}.weight")
        k = w.shape[-1]
        if bn is not None:
            scale = self.weight(f"{bn}.weight") / np.sqrt(self.weight(f"{bn}.running_var") + BN_EPS)
            bias = self.weight(f"{bn}.bias") - self.weight(f"{bn}.running_mean") * scale
            w = w * scale[:, None, None, None]
            inputs = [x, self.const(f"{conv}.w", w), self.const(f"{conv}.b", bias.astype(np.float32))]
        else:
            inputs = [x, self.const(f"{conv}.w", w)]
        pad = k // 2
        y = self.op("Conv", inputs, conv, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        return self.op("Relu", [y], f"{conv}.relu") if relu else y

    def conv_bn_relu(self, x: str, prefix: str, *, stride: int = 1) -> str:
        """A ``conv`` + ``bn`` + ReLU block whose modules are ``prefix.conv`` and ``prefix.bn``."""
        return self.conv(x, f"{prefix}.conv", f"{prefix}.bn", stride=stride, relu=True)

    def upsample(self, x: str, factor: int) -> str:
        """Nearest-neighbour upsampling by an integer ``factor``."""
        scales = self.const("scales", np.array([1, 1, factor, factor], np.float32))
        return self.op("Resize", [x, "", scales], "up", mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _basic_block(g: _Graph, x: str, prefix: str, stride: int) -> str:
    y = g.conv(x, f"{prefix}.conv1", f"{prefix}.bn1", stride=stride, relu=True)
    y = g.conv(y, f"{prefix}.conv2", f"{prefix}.bn2")
    short = x
    if f"{prefix}.downsample.0.weight" in g.state:
        short = g.conv(x, f"{prefix}.downsample.0", f"{prefix}.downsample.1", stride=stride)
    return g.op("Relu", [g.op("Add", [short, y], f"{prefix}.add")], f"{prefix}.relu")


def _resnet18(g: _Graph, x: str) -> tuple[str, str, str]:
    """The backbone's features at 1/8, 1/16 and 1/32 of the input."""
    y = g.conv(x, "cp.resnet.conv1", "cp.resnet.bn1", stride=2, relu=True)
    y = g.op("MaxPool", [y], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    feats = []
    for layer, stride in ((1, 1), (2, 2), (3, 2), (4, 2)):
        y = _basic_block(g, y, f"cp.resnet.layer{layer}.0", stride)
        y = _basic_block(g, y, f"cp.resnet.layer{layer}.1", 1)
        feats.append(y)
    return feats[1], feats[2], feats[3]


def _attention_refine(g: _Graph, x: str, prefix: str) -> str:
    feat = g.conv_bn_relu(x, f"{prefix}.conv")
    att = g.op("GlobalAveragePool", [feat], f"{prefix}.gap")
    att = g.op("Sigmoid", [g.conv(att, f"{prefix}.conv_atten", f"{prefix}.bn_atten")], f"{prefix}.sigmoid")
    return g.op("Mul", [feat, att], f"{prefix}.mul")


def _context_path(g: _Graph, x: str) -> tuple[str, str, str]:
    feat8, feat16, feat32 = _resnet18(g, x)
    avg = g.conv_bn_relu(g.op("GlobalAveragePool", [feat32], "cp.gap"), "cp.conv_avg")
    sum32 = g.op("Add", [_attention_refine(g, feat32, "cp.arm32"), avg], "cp.sum32")  # broadcast = nearest up
    up32 = g.conv_bn_relu(g.upsample(sum32, 2), "cp.conv_head32")
    sum16 = g.op("Add", [_attention_refine(g, feat16, "cp.arm16"), up32], "cp.sum16")
    up16 = g.conv_bn_relu(g.upsample(sum16, 2), "cp.conv_head16")
    return feat8, up16, up32


def _fuse(g: _Graph, spatial: str, context: str) -> str:
    cat = g.op("Concat", [spatial, context], "ffm.cat", axis=1)
    feat = g.conv_bn_relu(cat, "ffm.convblk")
    att = g.op("GlobalAveragePool", [feat], "ffm.gap")
    att = g.op("Relu", [g.conv(att, "ffm.conv1", None)], "ffm.relu")
    att = g.op("Sigmoid", [g.conv(att, "ffm.conv2", None)], "ffm.sigmoid")
    return g.op("Add", [g.op("Mul", [feat, att], "ffm.mul"), feat], "ffm.add")


def bisenet_onnx(state: dict[str, np.ndarray], size: int = 512) -> onnx.ModelProto:
    """The parser's graph for ``size`` × ``size`` inputs (dynamic batch) from its state dict.

    Raises:
        ModelError: a tensor the network needs is missing, or ``size`` is not a multiple of 32.
    """
    if size <= 0 or size % 32:
        raise ModelError(f"the face parser's input size must be a multiple of 32, not {size}")
    g = _Graph(state)
    spatial, context, _ = _context_path(g, "input")
    head = g.conv_bn_relu(_fuse(g, spatial, context), "conv_out.conv")
    logits = g.conv(head, "conv_out.conv_out", None)
    g.nodes.append(helper.make_node("Resize", [logits, "", g.const("scales", np.array([1, 1, 8, 8], np.float32))],
                                    ["logits"], name="logits", mode="linear",
                                    coordinate_transformation_mode="align_corners"))
    graph = helper.make_graph(
        g.nodes, "bisenet_face_parser",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES, size, size])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="swapline")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def checkpoint_to_onnx(src: Path | str, dst: Path | str) -> None:
    """The conversion step ``bisenet_to_onnx``: a face-parsing checkpoint (``torch.save`` of the
    state dict) to the ONNX graph of :func:`bisenet_onnx` at 512 px, written to ``dst``."""
    Path(dst).write_bytes(bisenet_onnx(state_dict(src)).SerializeToString())
