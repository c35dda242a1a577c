"""The one place that knows ONNX Runtime: providers with fallback, threads, graph optimisation.

Provider names are short and lower-case on the command line (``tensorrt cuda cpu``); this module
maps them to ONNX Runtime's names, keeps the user's order, skips the ones this onnxruntime build
does not have (one warning), and always ends with the CPU so a session can be made.

Provider options are built by pure functions (:func:`tensorrt_options`, :func:`cuda_options`,
:func:`profile_shapes`, ...) so they can be checked on a machine without the providers.
:class:`ProviderOptions` carries ``--fp16`` and the TensorRT / CUDA knobs; :class:`SessionPool`
keeps or releases sessions by the video-memory strategy.
"""

from __future__ import annotations

import logging
import os
import warnings
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..config import RuntimeConfig
from ..errors import ConfigError, ModelError
from ..models.manifest import Entry, Manifest, derived_problem, sha256_file
from .fp16 import convert_fp16, fp16_path
from .memory import GIB, MemoryConfig, arena_strategy, should_release
from .providers import PROVIDER_NAMES
from .rewrite import REWRITE_VERSION, cpu_rewritten

log = logging.getLogger(__name__)

# Recipe versions recorded in the manifest of the copies made here (bump when their output changes).
OPTIMIZE_RECIPE = "ort-optimize"
FP16_RECIPE = "fp16"
FP16_RECIPE_VERSION = "1"

# When the user names nothing: the fastest the build has, best first.
DEFAULT_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "rocm", "coreml", "directml", "cpu")


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers, e.g. ``["cpu"]``."""
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDER_NAMES.items() if full in have]


def resolve_providers(requested: tuple[str, ...] | list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """Keep the requested providers that exist, in the user's order; CPU always last.

    Returns ``(chosen, missing)`` in short names. An empty request means the best available
    order (``DEFAULT_ORDER`` filtered by what exists).
    """
    unknown = [p for p in requested if p not in PROVIDER_NAMES]
    if unknown:
        raise ModelError(
            f"unknown execution provider {unknown[0]!r}; choose from {', '.join(PROVIDER_NAMES)}"
        )
    wanted = list(requested) if requested else [p for p in DEFAULT_ORDER if p in available]
    chosen: list[str] = []
    missing: list[str] = []
    for p in wanted:
        if p in available and p not in chosen:
            chosen.append(p)
        elif p not in available:
            missing.append(p)
    if "cpu" not in chosen:
        chosen.append("cpu")
    return chosen, missing


def default_threads() -> int:
    """Intra-op threads that suit this machine: its usable cores (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)



CUDNN_SEARCHES: tuple[str, ...] = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_STRATEGIES: tuple[str, ...] = ("kNextPowerOfTwo", "kSameAsRequested")


@dataclass(frozen=True)
class ProviderOptions:
    """How sessions run beyond the provider order (defaults: today's behaviour).

    ``fp16``: load a float16 copy of each model (converted once, float32 inputs and outputs).
    ``trt_fp16``: let TensorRT build float16 engines. ``trt_max_batch``: the largest batch the
    TensorRT optimisation profile covers for models with a dynamic batch dimension.
    ``trt_workspace_gb``: TensorRT's build workspace (None: its default). ``cuda_arena``:
    ``kNextPowerOfTwo`` or ``kSameAsRequested``. ``cuda_mem_limit_gb``: cap of ONNX Runtime's CUDA
    arena (None: no cap). ``cudnn_search``: ``EXHAUSTIVE``, ``HEURISTIC`` or ``DEFAULT``.
    """

    fp16: bool = False
    trt_fp16: bool = True
    trt_max_batch: int = 8
    trt_workspace_gb: float | None = None
    cuda_arena: str = "kNextPowerOfTwo"
    cuda_mem_limit_gb: float | None = None
    cudnn_search: str = "HEURISTIC"

    def __post_init__(self) -> None:
        if self.cudnn_search not in CUDNN_SEARCHES:
            raise ConfigError(f"cudnn search: {self.cudnn_search!r} is not one of {', '.join(CUDNN_SEARCHES)}")
        if self.cuda_arena not in ARENA_STRATEGIES:
            raise ConfigError(f"cuda arena: {self.cuda_arena!r} is not one of {', '.join(ARENA_STRATEGIES)}")
        if int(self.trt_max_batch) < 1:
            raise ConfigError(f"TensorRT max batch must be >= 1 (got {self.trt_max_batch})")
        for name in ("trt_workspace_gb", "cuda_mem_limit_gb"):
            v = getattr(self, name)
            if v is not None and not float(v) > 0:
                raise ConfigError(f"{name} must be > 0 (got {v:g})")

    def with_memory(self, memory: MemoryConfig | None) -> "ProviderOptions":
        """These options adjusted to a video-memory strategy: ``strict`` grows the CUDA arena
        only by what is asked; ``--max-video-memory`` caps the arena unless a cap is set."""
        if memory is None:
            return self
        arena = arena_strategy(memory.strategy) if memory.strategy == "strict" else self.cuda_arena
        limit = self.cuda_mem_limit_gb if self.cuda_mem_limit_gb is not None else memory.max_video_memory_gb
        return ProviderOptions(fp16=self.fp16, trt_fp16=self.trt_fp16, trt_max_batch=self.trt_max_batch,
                               trt_workspace_gb=self.trt_workspace_gb, cuda_arena=arena,
                               cuda_mem_limit_gb=limit, cudnn_search=self.cudnn_search)


def _flag(value: bool) -> str:
    return "True" if value else "False"


def tensorrt_options(device_id: int, *, fp16: bool = True, cache_dir: Path | None = None,
                     profile: tuple[str, str, str] | None = None,
                     workspace_bytes: int | None = None) -> dict[str, str]:
    """TensorRT provider options: device, float16, engine and timing caches under
    ``cache_dir / "trt"``, and an optimisation profile ``(min, opt, max)`` (see
    :func:`profile_shapes`) for models with dynamic dimensions."""
    opts: dict[str, str] = {"device_id": str(int(device_id)), "trt_fp16_enable": _flag(fp16)}
    if cache_dir is not None:
        trt_dir = str(Path(cache_dir) / "trt")
        opts.update(
            trt_engine_cache_enable="True",
            trt_engine_cache_path=trt_dir,
            trt_timing_cache_enable="True",
            trt_timing_cache_path=trt_dir,
        )
    if profile is not None:
        opts.update(trt_profile_min_shapes=profile[0], trt_profile_opt_shapes=profile[1],
                    trt_profile_max_shapes=profile[2])
    if workspace_bytes is not None:
        opts["trt_max_workspace_size"] = str(int(workspace_bytes))
    return opts


def cuda_options(device_id: int, *, cudnn_search: str = "HEURISTIC", arena: str = "kNextPowerOfTwo",
                 mem_limit_bytes: int | None = None) -> dict[str, str]:
    """CUDA provider options: device, cuDNN convolution algorithm search, arena growth and cap."""
    opts = {"device_id": str(int(device_id)), "cudnn_conv_algo_search": cudnn_search,
            "arena_extend_strategy": arena}
    if mem_limit_bytes is not None:
        opts["gpu_mem_limit"] = str(int(mem_limit_bytes))
    return opts


def rocm_options(device_id: int, *, arena: str = "kNextPowerOfTwo",
                 mem_limit_bytes: int | None = None, exhaustive: bool = False) -> dict[str, str]:
    """ROCm provider options: device, arena growth and cap, MIOpen search."""
    opts = {"device_id": str(int(device_id)), "arena_extend_strategy": arena,
            "miopen_conv_exhaustive_search": "1" if exhaustive else "0"}
    if mem_limit_bytes is not None:
        opts["gpu_mem_limit"] = str(int(mem_limit_bytes))
    return opts


def model_inputs(model_path: Path) -> list[tuple[str, list[int | str | None]]]:
    """The graph inputs of an ONNX file (initializers excluded) with their dimensions: an int
    for a fixed size, the symbolic name (or None) for a dynamic one. Weights are not read."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out: list[tuple[str, list[int | str | None]]] = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims: list[int | str | None] = []
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out.append((value.name, dims))
    return out


def profile_shapes(inputs: Sequence[tuple[str, Sequence[int | str | None]]], max_batch: int,
                   dims: dict[str, int] | None = None,
                   opt_batch: int | None = None) -> tuple[str, str, str] | None:
    """TensorRT ``trt_profile_{min,opt,max}_shapes`` strings (``"x:1x3x112x112,y:..."``).

    The first dimension, when dynamic, is the batch: 1 / ``opt_batch`` (default ``max_batch``) /
    ``max_batch``. Other dynamic dimensions take their size from ``dims`` (by symbolic name);
    when one is unknown there is no profile (None) and TensorRT builds for the shapes it sees.
    None too when every dimension is fixed (no profile needed).
    """
    dims = dims or {}
    opt_b = max(1, min(int(opt_batch or max_batch), int(max_batch)))
    lo, mid, hi = [], [], []
    dynamic = False
    for name, shape in inputs:
        s_lo, s_mid, s_hi = [], [], []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                s_lo.append(d), s_mid.append(d), s_hi.append(d)
                continue
            dynamic = True
            if isinstance(d, str) and d in dims:
                v = int(dims[d])
                s_lo.append(v), s_mid.append(v), s_hi.append(v)
            elif i == 0:
                s_lo.append(1), s_mid.append(opt_b), s_hi.append(int(max_batch))
            else:
                return None
        lo.append(f"{name}:{'x'.join(map(str, s_lo))}")
        mid.append(f"{name}:{'x'.join(map(str, s_mid))}")
        hi.append(f"{name}:{'x'.join(map(str, s_hi))}")
    if not dynamic:
        return None
    return ",".join(lo), ",".join(mid), ",".join(hi)


def build_provider_list(providers: Sequence[str], device_id: int, options: "ProviderOptions",
                        cache_dir: Path | None = None,
                        profile: tuple[str, str, str] | None = None) -> list[Any]:
    """ONNX Runtime's ``providers`` argument for short names ``providers`` (in that order)."""
    out: list[Any] = []
    mem_limit = None if options.cuda_mem_limit_gb is None else int(float(options.cuda_mem_limit_gb) * GIB)
    for p in providers:
        full = PROVIDER_NAMES[p]
        if p == "tensorrt":
            ws = None if options.trt_workspace_gb is None else int(float(options.trt_workspace_gb) * GIB)
            out.append((full, tensorrt_options(device_id, fp16=options.trt_fp16, cache_dir=cache_dir,
                                               profile=profile, workspace_bytes=ws)))
        elif p == "cuda":
            out.append((full, cuda_options(device_id, cudnn_search=options.cudnn_search,
                                           arena=options.cuda_arena, mem_limit_bytes=mem_limit)))
        elif p == "rocm":
            out.append((full, rocm_options(device_id, arena=options.cuda_arena, mem_limit_bytes=mem_limit,
                                           exhaustive=options.cudnn_search == "EXHAUSTIVE")))
        elif p in ("migraphx", "directml"):
            out.append((full, {"device_id": str(int(device_id))}))
        else:  # cpu, openvino, coreml: their defaults pick the device
            out.append(full)
    return out


@dataclass(frozen=True)
class SessionFactory:
    """Makes ``ort.InferenceSession`` objects the same way everywhere.

    The provider fallback warning is given once per factory, not once per model.
    """

    config: RuntimeConfig
    providers: tuple[str, ...]
    missing: tuple[str, ...]
    options: ProviderOptions = field(default_factory=ProviderOptions)

    @classmethod
    def from_config(cls, config: RuntimeConfig, options: ProviderOptions | None = None,
                    memory: MemoryConfig | None = None) -> "SessionFactory":
        """Resolve the providers (one warning for the missing ones); ``options`` and ``memory``
        default to today's behaviour."""
        options = (options or ProviderOptions()).with_memory(memory)
        chosen, missing = resolve_providers(config.execution_providers, available_providers())
        if missing:
            warnings.warn(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"build; using {', '.join(chosen)}",
                RuntimeWarning,
                stacklevel=2,
            )
        return cls(config=config, providers=tuple(chosen), missing=tuple(missing), options=options)

    def provider_list(self, cache_dir: Path | None = None, model_path: Path | None = None,
                      dims: dict[str, int] | None = None) -> list[Any]:
        """ONNX Runtime's provider argument: names with their options, in order.

        ``model_path`` lets TensorRT get an optimisation profile for the model's dynamic batch
        (``dims`` sizes its other dynamic dimensions by name)."""
        profile = None
        if model_path is not None and "tensorrt" in self.providers:
            try:
                profile = profile_shapes(model_inputs(model_path), self.options.trt_max_batch, dims)
            except Exception:  # noqa: BLE001 - unreadable here means unloadable later, with a clear error
                profile = None
        return build_provider_list(self.providers, self.config.execution_device_id, self.options,
                                   cache_dir, profile)

    def optimized_path(self, model_path: Path, cache_dir: Path) -> Path | None:
        """Where the graph-optimised copy of ``model_path`` is cached in ``cache_dir``, or None
        when it is not cached (only CPU-only sessions: other providers fuse nodes of their own,
        and TensorRT keeps its own engine cache). The name pins the model file's size and time,
        the onnxruntime version, the providers and the graph rewrites' version
        (:mod:`.rewrite`), so any change makes a new copy."""
        if self.providers != ("cpu",):
            return None
        st = model_path.stat()
        tag = f"{st.st_size}-{st.st_mtime_ns}-ort{ort.__version__}-{'-'.join(self.providers)}-r{REWRITE_VERSION}"
        return cache_dir / f"{model_path.stem}.{tag}.onnx"

    def fp16_model(self, model_path: Path, optimized_dir: Path | None = None) -> Path:
        """The float16 copy of ``model_path`` (float32 I/O), converted on first use and cached in
        ``optimized_dir`` (or a folder under the temporary directory).

        The copy is listed in the folder's manifest (:mod:`swapline.models.manifest`) with its
        sha256 and the sha256 of ``model_path``; a copy that does not match its record is
        converted again, and one that does not read back as written is a :class:`ModelError`."""
        cache = optimized_dir if optimized_dir is not None else Path(tempfile.gettempdir()) / "swapline-fp16"
        dst = fp16_path(model_path, cache)
        book = Manifest(cache)
        problem = self._cached_problem(book, dst, model_path)
        if problem is None:
            return dst
        if dst.exists():
            log.info("%s %s; converting %s to float16 again", dst, problem, model_path.name)
        book.forget(dst)
        source_sha = _source_sha256(model_path)
        convert_fp16(model_path, dst)
        self._record(book, dst, kind="fp16", sha256=None, source=model_path, source_sha=source_sha,
                     recipe=FP16_RECIPE, version=FP16_RECIPE_VERSION, steps=("convert_float_to_float16",))
        return dst

    def create(self, model_path: Path, *, threads: int | None = None,
               optimized_dir: Path | None = None) -> ort.InferenceSession:
        """An inference session for ``model_path`` with this factory's providers and threads.

        With ``optimized_dir`` (the model store's cache), CPU sessions keep the optimised graph
        there (see :meth:`optimized_path`) and load it directly next time; TensorRT keeps its
        engine and timing caches under ``optimized_dir / "trt"``. With ``options.fp16`` the model
        is first converted to float16 once (see :meth:`fp16_model`) and that copy is loaded.

        Every copy made here is listed in its folder's manifest with its sha256 and checked
        before it is loaded (size and mtime against a record signed when the file was written and
        hashed); a copy that fails is made again once, and a copy that is still bad after that is
        a :class:`ModelError` naming the file.
        """
        model_path = Path(model_path)
        if self.options.fp16:
            if not model_path.exists():
                raise ModelError(f"cannot load model {model_path.name}: file not found")
            src = model_path
            model_path = self.fp16_model(src, optimized_dir)
            try:
                return self._create(model_path, threads, optimized_dir)
            except ModelError:
                # a copy that does not load: convert again, once (a second failure names the file)
                Manifest(model_path.parent).forget(model_path)
                return self._create(self.fp16_model(src, optimized_dir), threads, optimized_dir)
        return self._create(model_path, threads, optimized_dir)

    def _create(self, model_path: Path, threads: int | None, optimized_dir: Path | None) -> ort.InferenceSession:
        cached = self.optimized_path(model_path, optimized_dir) if optimized_dir is not None else None
        if cached is None:
            return self._session(model_path, threads, optimize=True, cache_dir=optimized_dir)
        book = Manifest(cached.parent)
        problem = self._cached_problem(book, cached, model_path)
        if problem is None:
            try:
                return self._session(cached, threads, optimize=False, cache_dir=optimized_dir)
            except ModelError as exc:
                problem = f"does not load ({exc})"
        if cached.exists():
            log.info("%s %s; optimising %s again", cached, problem, model_path.name)
        book.forget(cached)  # damaged, stale or unlisted: optimise again
        return self._session(model_path, threads, optimize=True, save_to=cached, cache_dir=optimized_dir,
                             book=book)

    @staticmethod
    def _cached_problem(book: Manifest, cached: Path, source: Path) -> str | None:
        """None when the cached copy ``cached`` of ``source`` may be loaded: it exists, holds
        the bytes its record says, and its record ties it to ``source`` (see
        :func:`_tie_problem`); else the problem, in words (the copy is then made again)."""
        if not cached.exists():
            return "is missing"
        entry = book.entry(cached)
        signed = entry is not None and book.signed(entry)  # before check() signs a record it can vouch for
        problem = book.check(cached)
        if problem is not None:
            return problem
        return _tie_problem(entry, signed, source)

    def _record(self, book: Manifest, path: Path, *, kind: str, sha256: str | None, source: Path,
                source_sha: str | None, recipe: str, version: str, steps: Sequence[str]) -> None:
        """List the new copy ``path`` of ``source`` in ``book``, then prove the file on disk holds
        the bytes recorded (``sha256``: the writer's hash; None hashes the file). A copy that
        cannot be recorded is deleted (it would not be trusted); one that does not read back as
        written is deleted and is a :class:`ModelError` naming it."""
        try:
            written = book.record(path, kind=kind, sha256=sha256, original=source.name,
                                  original_sha256=source_sha, recipe=recipe, recipe_version=version,
                                  steps=tuple(steps))
        except OSError as exc:
            log.info("cannot record %s in the manifest (%s); not keeping it", path, exc)
            book.forget(path)
            return
        problem = book.confirm(path, written)
        if problem is not None:
            book.forget(path)
            raise ModelError(
                f"model file {path} {problem} right after it was written: check the disk holding {path.parent}"
            )

    def _session(self, model_path: Path, threads: int | None, *, optimize: bool,
                 save_to: Path | None = None, cache_dir: Path | None = None,
                 book: Manifest | None = None) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        tmp: Path | None = None
        if save_to is not None:
            try:
                save_to.parent.mkdir(parents=True, exist_ok=True)
                tmp = save_to.with_name(f".{save_to.name}.{os.getpid()}.part")
                so.optimized_model_filepath = str(tmp)
            except OSError:
                tmp = None  # a read-only cache only costs the optimisation time
        n = threads or self.config.intra_op_threads or default_threads()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # Several sessions run one after another on the same cores: a finished session's
        # threads must not spin-wait and steal the next one's CPU (2x slower on 2 cores).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # CPU only: exact rewrites ONNX Runtime runs faster (kept in the optimised copy)
        rewritten = cpu_rewritten(model_path) if optimize and self.providers == ("cpu",) else None
        try:
            session = ort.InferenceSession(
                rewritten if rewritten is not None else str(model_path), sess_options=so,
                providers=self.provider_list(cache_dir if cache_dir is not None else model_path.parent, model_path),
            )
        except Exception as exc:  # onnxruntime raises many unrelated types
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise ModelError(f"cannot load model {model_path.name}: {str(exc).splitlines()[0]}") from exc
        if tmp is not None and save_to is not None and tmp.exists():
            try:
                digest = sha256_file(tmp)  # the bytes onnxruntime wrote, before they move
                source_sha = _source_sha256(model_path)
                os.replace(tmp, save_to)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                log.info("cannot keep the optimised copy of %s: %s", model_path.name, exc)
                return session
            self._record(book or Manifest(save_to.parent), save_to, kind="optimized", sha256=digest,
                         source=model_path, source_sha=source_sha, recipe=OPTIMIZE_RECIPE,
                         version=f"onnxruntime {ort.__version__}",
                         steps=(*(() if rewritten is None else (f"rewrite {REWRITE_VERSION}",)), "ORT_ENABLE_ALL",
                                *(PROVIDER_NAMES[p] for p in self.providers)))
        return session


def _tie_problem(entry: Entry | None, signed: bool, source: Path) -> str | None:
    """Whether a derived copy's record ties it to ``source``: it must name an original sha256,
    and that must be the source's -- known cheaply when the source's folder vouches for it (a
    signed record), taken on the word of a record swapline signed when it made the copy (the
    copy's name pins the source's size and mtime), and hashed otherwise. A record that names no
    original, or another one, means the copy is made again (a hand-written record is not enough)."""
    if entry is None or not entry.original_sha256:
        return derived_problem(entry, ())  # no record, or one that names no original
    source_sha = _vouched_sha256(source)
    if source_sha is None and signed:
        return None
    if source_sha is None:
        try:
            source_sha = sha256_file(source)
        except OSError:
            return f"cannot be tied to {source.name}: it cannot be read"
    if entry.original_sha256 != source_sha:
        return f"was made from another {source.name} (sha256 {str(entry.original_sha256)[:12]}…)"
    return None


def _vouched_sha256(path: Path) -> str | None:
    """The sha256 of ``path`` from a signed, current manifest record in its folder (the model
    store's files have one), without hashing; None when there is no such record."""
    book = Manifest(path.parent, writable=False)
    entry = book.entry(path)
    if entry is None or not book.signed(entry):
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return entry.sha256 if (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns) else None


def _source_sha256(path: Path) -> str | None:
    """The sha256 of a file a copy is made from: from its folder's manifest when that vouches for
    it, else hashed (once per copy made); None when it cannot be read."""
    vouched = _vouched_sha256(path)
    if vouched is not None:
        return vouched
    try:
        return sha256_file(path)
    except OSError:
        return None


def run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``session`` on ``feeds`` and return every output as a numpy array."""
    return session.run(None, feeds)


class SessionPool:
    """Sessions by model path, kept or released by the video-memory strategy.

    ``get(path)`` makes (once) and returns the session; ``done(path, used_later=...)`` tells the
    pool a stage has finished with it, and the session is dropped when
    :func:`~swapline.runtime.memory.should_release` says so (``strict``: at once; ``moderate``:
    unless a later stage uses it; ``tolerant``: never). ``clear()`` drops everything.
    """

    def __init__(self, factory: SessionFactory, memory: MemoryConfig | None = None, *,
                 optimized_dir: Path | None = None) -> None:
        self.factory = factory
        self.memory = memory or MemoryConfig()
        self.optimized_dir = optimized_dir
        self._sessions: dict[Path, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def get(self, model_path: Path, *, threads: int | None = None) -> ort.InferenceSession:
        key = Path(model_path)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self.factory.create(key, threads=threads, optimized_dir=self.optimized_dir)
                self._sessions[key] = session
            return session

    def done(self, model_path: Path, *, used_later: bool = False) -> bool:
        """A stage is done with ``model_path``; returns whether its session was released."""
        if not should_release(self.memory.strategy, True, used_later=used_later):
            return False
        with self._lock:
            return self._sessions.pop(Path(model_path), None) is not None

    def __contains__(self, model_path: object) -> bool:
        return isinstance(model_path, (str, Path)) and Path(model_path) in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
