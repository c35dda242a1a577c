"""The session interface over PyTorch, for GPU-resident runs without onnxruntime-gpu.

``TorchSession(path, device="cuda", fp16=True)`` converts an ONNX model with onnx2torch once and
offers ``run(output_names, feeds)`` like an ``ort.InferenceSession`` (numpy in, numpy out), plus
``run_torch(feeds)`` (tensors in, tensors out, nothing leaves the device). With ``fp16`` the
weights run in float16 and inputs/outputs stay float32; with ``cuda_graph`` (CUDA only) each input
shape is captured once as a CUDA graph and replayed.

torch is never imported when swapline is imported: only when a TorchSession is made or
:func:`cuda_available` is asked.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError


def torch_available() -> bool:
    """Whether torch can be imported (checked without importing it)."""
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def onnx2torch_available() -> bool:
    return importlib.util.find_spec("onnx2torch") is not None


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch when it is installed; False otherwise)."""
    if not torch_available():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken install reads as "no device"
        return False


def _import_onnx2torch() -> Any:
    """``onnx2torch.convert``. onnx2torch imports torchvision for two ops face models do not use
    (RoiAlign, NonMaxSuppression); where torchvision is absent or does not match torch (PyPI's
    CPU torch with its CUDA torchvision), a stand-in lets the rest convert, and those two ops
    fail clearly if a model has them."""
    if not onnx2torch_available():
        raise ModelError("the torch backend needs onnx2torch (pip install onnx2torch)")
    try:
        from onnx2torch import convert

        return convert
    except (ImportError, RuntimeError, OSError):
        for name in [m for m in sys.modules if m == "onnx2torch" or m.startswith("onnx2torch.")]:
            del sys.modules[name]
    saved = {k: sys.modules[k] for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    for k in saved:
        del sys.modules[k]
    stub = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def _missing(*_a: Any, **_k: Any) -> Any:
        raise ModelError("this model needs torchvision ops (RoiAlign / NonMaxSuppression), which are not usable here")

    ops.roi_align = ops.nms = ops.box_convert = _missing  # type: ignore[attr-defined]
    stub.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    try:
        from onnx2torch import convert
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"onnx2torch cannot be imported: {exc}") from exc
    finally:
        for k in ("torchvision", "torchvision.ops"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)
    return convert


@dataclass(frozen=True)
class NodeArg:
    """What ``ort.InferenceSession.get_inputs()`` items offer: name, shape, type."""

    name: str
    shape: list[int | str | None]
    type: str = "tensor(float)"


class TorchSession:
    """An ONNX model run by PyTorch with the ``run(None, feeds)`` surface of an ORT session."""

    def __init__(self, model_path: Path, *, device: str = "cpu", fp16: bool = False,
                 cuda_graph: bool = False) -> None:
        if not torch_available():
            raise ModelError("the torch backend needs PyTorch (pip install torch)")
        import onnx
        import torch

        convert = _import_onnx2torch()
        try:
            model = onnx.load(str(model_path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load model {Path(model_path).name}: {exc}") from exc
        inits = {i.name for i in model.graph.initializer}
        self._inputs = [NodeArg(v.name, _dims(v)) for v in model.graph.input if v.name not in inits]
        self._outputs = [NodeArg(v.name, _dims(v)) for v in model.graph.output]
        try:
            module = convert(model)
        except Exception as exc:  # noqa: BLE001 - onnx2torch raises NotImplementedError and others
            raise ModelError(f"onnx2torch cannot convert {Path(model_path).name}: {exc}") from exc
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError("the torch backend was asked for CUDA, but torch sees no CUDA device")
        self.dtype = torch.float16 if fp16 else torch.float32
        self.module = module.to(self.device).to(self.dtype).eval() if fp16 else module.to(self.device).eval()
        self.cuda_graph = bool(cuda_graph) and self.device.type == "cuda"
        self._graphs: dict[tuple[Any, ...], tuple[Any, dict[str, Any], list[Any]]] = {}
        self._lock = threading.Lock()  # several swap workers may share this session
        # Shapes, axes, sizes and scales stay on the host: onnx2torch reads them in Python
        # (Reshape checks its shape for zeros, Resize lists its scales), which from device memory
        # is a sync per op and makes the model impossible to capture as a CUDA graph. They go
        # back to the device if an op needs them there (checked on the first run).
        self._host_ints = _host_constants(self.module) if self.device.type == "cuda" else []
        for owner, attr in self._host_ints:
            owner._buffers[attr] = owner._buffers[attr].cpu()
        self._checked = not self._host_ints

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def run_torch(self, feeds: Mapping[str, Any]) -> list[Any]:
        """Tensors in (any device; moved to this session's), tensors out on the device.
        Floating inputs are cast to the session's dtype; floating outputs come back float32."""
        import torch

        args = []
        for arg in self._inputs:
            t = torch.as_tensor(feeds[arg.name]).to(self.device, non_blocking=True)
            if t.is_floating_point():
                t = t.to(self.dtype)
            args.append(t)
        with torch.inference_mode():
            out = None
            if not self._checked or self.cuda_graph:
                with self._lock:  # first run, capture and replay touch shared state: one at a time
                    if not self._checked:
                        out = self._first_run(args)
                    elif self.cuda_graph:
                        out = self._graph_run(args)
            if out is None:  # eager (also when the graph could not be captured)
                out = self.module(*args)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [o.float() if o.is_floating_point() else o for o in outs]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        outs = self.run_torch(feeds)
        names = [o.name for o in self._outputs]
        if output_names is not None:
            outs = [outs[names.index(n)] for n in output_names]
        return [o.detach().cpu().numpy() for o in outs]

    def _first_run(self, args: list[Any]) -> Any:
        """The first (eager) run, which checks that the ops take their integer constants from
        the host; if one wants them on the device, they go back there."""
        try:
            out = self.module(*args)
        except RuntimeError as exc:
            if "device" not in str(exc):
                raise
            for owner, attr in self._host_ints:
                owner._buffers[attr] = owner._buffers[attr].to(self.device)
            self._host_ints = []
            out = self.module(*args)
        self._checked = True
        return out

    def _graph_run(self, args: list[Any]) -> Any:
        """CUDA graphs: capture once per input signature, then copy inputs in and replay.
        Returns None (and turns graphs off) when the model cannot be captured."""
        import torch

        key = tuple((tuple(a.shape), str(a.dtype)) for a in args)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = [a.clone() for a in args]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm up (allocations, cuDNN autotune) outside the capture
                    self.module(*static_in)
                # an op that reads a device value on the host (onnx2torch's Reshape checks its
                # shape tensor) cannot be captured; find it before trying, since a failed capture
                # leaves the CUDA generators unusable
                mode = torch.cuda.get_sync_debug_mode()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    self.module(*static_in)
                    syncs = None
                except RuntimeError as exc:
                    syncs = str(exc).splitlines()[0]
                finally:
                    torch.cuda.set_sync_debug_mode(mode)
            torch.cuda.current_stream().wait_stream(stream)
            if syncs is not None:
                warnings.warn(f"this model cannot run as a CUDA graph ({syncs}); running it without",
                              RuntimeWarning, stacklevel=3)
                self.cuda_graph = False
                return None
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    static_out = self.module(*static_in)
            except Exception as exc:  # noqa: BLE001 - torch.AcceleratorError and kin
                warnings.warn(f"CUDA graph capture failed ({str(exc).splitlines()[0]}); running the model "
                              "without CUDA graphs", RuntimeWarning, stacklevel=3)
                self.cuda_graph = False
                torch.cuda.synchronize()
                return None
            entry = (graph, {"inputs": static_in}, static_out)
            self._graphs[key] = entry
        graph, static, static_out = entry
        for dst, src in zip(static["inputs"], args):
            dst.copy_(src)
        graph.replay()
        if isinstance(static_out, (tuple, list)):
            return [o.clone() for o in static_out]
        return static_out.clone()


# onnx2torch modules that read some of their inputs (shapes, sizes, scales, axes) in Python
HOST_READERS = frozenset({
    "OnnxReshape", "OnnxResize", "OnnxResizeV10", "OnnxSplit", "OnnxSplit13", "OnnxSlice", "OnnxSliceV9",
    "OnnxExpand", "OnnxTile", "OnnxPadDynamic", "OnnxSqueezeDynamicAxes", "OnnxUnsqueezeDynamicAxes",
    "OnnxConstantOfShape", "OnnxTopK", "OnnxRange",
})
SMALL = 16  # elements: a shape, a scale vector, axes


def _host_constants(module: Any) -> list[tuple[Any, str]]:
    """``(owner module, buffer name)`` of the constants better kept on the host: every integer
    buffer (shapes, axes, indices), and small float buffers that only ops in
    :data:`HOST_READERS` take, and never as their data input (e.g. Resize scales)."""
    import torch

    graph = getattr(module, "graph", None)
    users: dict[str, list[Any]] = {}
    if graph is not None:
        for node in graph.nodes:
            if node.op == "get_attr":
                users[str(node.target)] = [(u, node) for u in node.users]
    found = []
    for name, buf in module.named_buffers():
        if buf is None:
            continue
        keep = buf.dtype in (torch.int64, torch.int32)
        if not keep and buf.is_floating_point() and buf.numel() <= SMALL and users.get(name):
            keep = all(u.op == "call_module" and u.args and u.args[0] is not node
                       and type(module.get_submodule(u.target)).__name__ in HOST_READERS
                       for u, node in users[name])
        if keep:
            prefix, _, attr = name.rpartition(".")
            found.append((module.get_submodule(prefix) if prefix else module, attr))
    return found


def _dims(value: Any) -> list[int | str | None]:
    out: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        out.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None))
    return out
