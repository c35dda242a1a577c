"""The neural swapper's device path (swapline.gpu.neural) on CPU tensors against the CPU path,
with a stand-in model that has inswapper_128's interface and runs in torch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from swapline.config import SwapConfig  # noqa: E402
from swapline.models.neural_catalog import SWAPPERS  # noqa: E402
from swapline.pipeline.frame import Processors, frame_path, swap_faces  # noqa: E402
from swapline.runtime.torch_backend import NodeArg  # noqa: E402
from swapline.swap.onnx_swapper import NeuralSwapper  # noqa: E402

from .conftest import read  # noqa: E402

SPEC = SWAPPERS["inswapper_128"]


class TorchNegative:
    """inswapper_128's inputs and outputs; returns ``1 - target`` (so the face visibly changes)
    plus a little of the source, computed in torch: ``run_torch`` like the torch backend,
    ``run`` like an ONNX Runtime session."""

    def __init__(self) -> None:
        self.calls = 0

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg("target", ["N", 3, 128, 128]), NodeArg("source", ["N", 512])]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg("output", ["N", 3, 128, 128])]

    def run_torch(self, feeds: dict) -> list:
        self.calls += 1
        t = torch.as_tensor(feeds["target"]).float()
        s = torch.as_tensor(feeds["source"]).float().to(t.device)
        return [(1.0 - t + 0.05 * s[:, :3, None, None]).clamp(0, 1)]

    def run(self, names: object, feeds: dict) -> list[np.ndarray]:
        return [o.cpu().numpy() for o in self.run_torch(feeds)]


@pytest.fixture(scope="module")
def swapper() -> NeuralSwapper:
    emap = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32) / np.sqrt(512)
    return NeuralSwapper(TorchNegative(), SPEC, emap=emap)


@pytest.fixture(scope="module")
def scene(session):  # noqa: ANN001, ANN201
    image = read("multi_two_people_obama_biden.jpg")
    return image, session.analyse(image)


def _both(image: np.ndarray, faces, swapper: NeuralSwapper, config: SwapConfig):  # noqa: ANN001, ANN202
    source = swapper.source_input(np.random.default_rng(1).standard_normal(512).astype(np.float32))
    cpu = Processors(swapper=swapper, source_input=source)
    dev = Processors(swapper=swapper, source_input=source, device="cpu")
    assert frame_path(config, cpu) == "numpy" and frame_path(config, dev) == "torch-neural"
    return swap_faces(image, faces, None, config, processors=cpu), swap_faces(image, faces, None, config, processors=dev)


@pytest.mark.parametrize("config", [SwapConfig(face_swapper_model="inswapper_128"),
                                    SwapConfig(face_swapper_model="inswapper_128", face_swapper_weight=0.6,
                                               face_mask_types=("box", "area"), face_mask_areas=("mouth",))])
def test_device_path_matches_the_cpu_path(scene, swapper: NeuralSwapper, config: SwapConfig) -> None:  # noqa: ANN001
    image, faces = scene
    assert len(faces) == 2
    (ref, ref_changed), (out, changed) = _both(image, faces, swapper, config)
    assert np.array_equal(out[~changed], image[~changed])  # nothing else moves, bit for bit
    assert np.count_nonzero(changed ^ ref_changed) <= 2e-3 * np.count_nonzero(ref_changed) + 16
    union = changed | ref_changed
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(-1)[union]
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3, (diff.mean(), np.percentile(diff, 99))
    # both faces really changed (the model returns the negative; the second config keeps the mouth only)
    for f in faces if config.face_mask_types == ("oval",) else []:
        x0, y0, x1, y1 = np.round(f.box).astype(int)
        assert np.abs(out[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1]).mean() > 20


def test_weight_zero_and_no_faces_leave_the_frame(scene, swapper: NeuralSwapper) -> None:  # noqa: ANN001
    image, faces = scene
    (_, _), (out, changed) = _both(image, faces, swapper, SwapConfig(face_swapper_model="inswapper_128",
                                                                       face_swapper_weight=0.0))
    assert np.array_equal(out, image) and not changed.any()
    dev = Processors(swapper=swapper, source_input=swapper.source_input(np.ones(512, np.float32)), device="cpu")
    out, changed = swap_faces(image, [], None, SwapConfig(face_swapper_model="inswapper_128"), processors=dev)
    assert np.array_equal(out, image) and not changed.any()


def test_one_model_call_for_all_faces(scene, swapper: NeuralSwapper) -> None:  # noqa: ANN001
    image, faces = scene
    dev = Processors(swapper=swapper, source_input=swapper.source_input(np.ones(512, np.float32)), device="cpu")
    before = swapper.calls
    swap_faces(image, faces, None, SwapConfig(face_swapper_model="inswapper_128"), processors=dev)
    assert swapper.calls == before + 1


def test_what_keeps_a_neural_swap_on_the_cpu(swapper: NeuralSwapper) -> None:
    source = swapper.source_input(np.ones(512, np.float32))
    cfg = SwapConfig(face_swapper_model="inswapper_128")
    dev = Processors(swapper=swapper, source_input=source, device="cuda:0")
    assert frame_path(cfg, dev) == "torch-neural"
    assert frame_path(dataclasses.replace(cfg, face_swapper_pixel_boost=2), dev) == "numpy"
    assert frame_path(cfg, dataclasses.replace(dev, models={"enhancer": object()})) == "numpy"
    assert frame_path(cfg, dataclasses.replace(dev, models={"occluder": object()})) == "numpy"
    assert frame_path(cfg, dataclasses.replace(dev, source_input=None)) == "numpy"

    class OrtOnly:  # an ONNX Runtime session: no run_torch
        def get_inputs(self) -> list[NodeArg]:
            return TorchNegative().get_inputs()

    ort_swapper = NeuralSwapper(OrtOnly(), SPEC, emap=swapper.emap)
    assert frame_path(cfg, dataclasses.replace(dev, swapper=ort_swapper)) == "numpy"
