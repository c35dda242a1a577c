"""`swapline serve` figures: preview latency, a job's overhead through the API, server memory.

Run: ``python benchmarks/bench_server.py [--repeat 15] [--clip NAME]`` (prints, never asserts).

- Preview latency: ``POST /preview`` of a 720p and a 1080p photo target on a warm server (the
  first request, which prepares the source, is shown apart), median / p95 / fastest.
- API overhead: the same video job run by the job core in this process (``Runner.run``, what
  ``swapline swap`` does once its models are loaded) and through the API (``POST /jobs`` sent to
  the job's ``finished`` time on a warm server; the client polls every 0.5 s), rounds
  interleaved; also the whole ``swapline swap`` process.
- Memory: the server process's resident memory idle (started, nothing loaded), after previews,
  and its peak during the job (VmRSS / VmHWM from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _upload(client: httpx.Client, path: Path) -> str:
    with open(path, "rb") as fh:
        r = client.post("/uploads", files={"file": (path.name, fh)})
    r.raise_for_status()
    return str(r.json()["id"])


def _wait_done(client: httpx.Client, job_id: str) -> dict:
    while True:
        record = client.get(f"/jobs/{job_id}").json()
        if record["state"] in ("done", "failed", "cancelled"):
            return record
        time.sleep(0.5)  # a patient client: polling steals CPU from the job on a small machine


def _stats(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):6.0f} ms  p95 {p95:6.0f} ms  fastest {ms[0]:6.0f} ms  (n={len(ms)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="job rounds (CLI core and API interleaved)")
    parser.add_argument("--clip", default="vid_lp_s18_scene_720p.mp4")
    parser.add_argument("--frames", type=int, default=150, help="frames of the clip to swap per job")
    parser.add_argument("--source", default="src_biden.jpg")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    source, clip = MEDIA / args.source, MEDIA / args.clip
    targets = {"720p": MEDIA / "bench_obama_720p.jpg", "1080p": MEDIA / "bench_obama_1080p.jpg"}
    for p in [source, clip, *targets.values()]:
        if not p.exists():
            print(f"test media not found: {p}", file=sys.stderr)
            return 1
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "swapline", "serve", "--port", str(port),
                                   "--data-dir", str(Path(tmp) / "server")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            for _ in range(600):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)  # a patient client: polling steals CPU from the job on a small machine
            time.sleep(1.0)
            figures["memory_idle_mb"] = _memory(server.pid)["VmRSS"]
            src = _upload(client, source)
            print(f"server idle: {figures['memory_idle_mb']:.0f} MiB resident")
            for name, path in targets.items():
                tgt = _upload(client, path)
                body = {"sources": [src], "target": tgt, "options": {}}
                t0 = time.perf_counter()
                client.post("/preview", json=body).raise_for_status()
                first = (time.perf_counter() - t0) * 1000
                ms = []
                for i in range(args.repeat):
                    body["options"] = {"relight": round(0.2 + 0.05 * (i % 5), 2)}  # as a page changing a slider
                    t0 = time.perf_counter()
                    r = client.post("/preview", json=body)
                    r.raise_for_status()
                    ms.append((time.perf_counter() - t0) * 1000)
                figures[f"preview_{name}_ms"] = {"first": first, "median": statistics.median(ms), "all": ms}
                print(f"preview {name:>5}: {_stats(ms)}; first (source prepared) {first:.0f} ms")
            figures["memory_after_preview_mb"] = _memory(server.pid)["VmRSS"]
            print(f"server after previews: {figures['memory_after_preview_mb']:.0f} MiB resident")

            from swapline.config import VideoConfig
            from swapline.jobs import Job, Runner

            clip_id = _upload(client, clip)
            options = {"trim_end": args.frames}
            core_s, api_s, cli_s, waits, runs = [], [], [], [], []
            with Runner() as runner:
                runner.run(Job(sources=(source,), target=clip, output=Path(tmp) / "warm.mp4",
                               video=VideoConfig(trim_end=10), force=True))  # models loaded, as in a warm server
                for r in range(args.rounds):
                    t0 = time.perf_counter()
                    runner.run(Job(sources=(source,), target=clip, output=Path(tmp) / f"core{r}.mp4",
                                   video=VideoConfig(trim_end=args.frames)))
                    core_s.append(time.perf_counter() - t0)
                    t0 = time.time()
                    rec = client.post("/jobs", json={"sources": [src], "target": clip_id, "options": options}).json()
                    done = _wait_done(client, rec["id"])
                    api_s.append(done["finished"] - t0)  # POST sent → job finished (server clock = this clock)
                    assert done["state"] == "done", done
                    waits.append(done["started"] - done["created"])
                    runs.append(done["finished"] - done["started"])
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "swapline", "swap", "-s", str(source), "-t", str(clip),
                                    "-o", str(Path(tmp) / f"cli{r}.mp4"), "--trim-frame-end", str(args.frames),
                                    "--quiet"], check=True)
                    cli_s.append(time.perf_counter() - t0)
            mem = _memory(server.pid)
            figures["memory_peak_mb"] = mem["VmHWM"]
            core, api = statistics.median(core_s), statistics.median(api_s)
            figures.update(job_core_s=core_s, job_api_s=api_s, cli_process_s=cli_s,
                           api_overhead=(api - core) / core)
            print(f"job, {args.frames} frames of {clip.name}: job core {core:.2f} s, API {api:.2f} s "
                  f"(overhead {100 * (api - core) / core:+.1f} %), whole `swapline swap` process "
                  f"{statistics.median(cli_s):.2f} s (medians of {args.rounds}); in the server: queued "
                  f"{1000 * statistics.median(waits):.0f} ms, run {statistics.median(runs):.2f} s")
            print(f"server peak during the jobs: {mem['VmHWM']:.0f} MiB resident (now {mem['VmRSS']:.0f})")
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
