"""Load on `python -m pipeline serve`: concurrent clients against one client's sequential requests, on loopback.

    PYTHONPATH=. python benchmarks/serve_load.py [--project DIR] [--architectures] [--requests 1000] [--clients 8]
                                                 [--rounds 3]

DIR (default: the current directory) is served when it holds every backbone's models/<b>/model.keras;
otherwise a throwaway project with tiny models of the same names (tests/web_project.py) is, or with
--architectures the backbones' real architectures with random weights and a random head, at params.yaml's
image_size (what `weights: none` starts from; as costly to run as trained models). Each request
posts one demo-sized scan (a 176x208 grayscale JPEG). After a warm-up, each round runs one client's
sequential requests and then the concurrent load, back to back on the same server, so that both see
the same machine (other work on it moves the figures between rounds). Prints a markdown table for
BENCHMARKS.md: errors, p50 and p95 latency, images per second, the server's CPU time per image and the
load average per round and phase, each round's concurrent/sequential ratio and their median, and the
server's resident memory before and after the rounds.
"""

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml

from pipeline.core import paths
from pipeline.core.params import load_params
from pipeline.core.registry import BACKBONES
from tests.web_project import write_project, write_scan

WARMUP = 100  # requests, from as many clients as the load: every batch size the load will see is traced first
SEQUENTIAL = 200
DEADLINE_S = 600  # the whole load must finish within this


def has_models(project: Path) -> bool:
    backbones = yaml.safe_load((project / paths.PARAMS).read_text())["backbones"]
    return all((project / paths.model_files(backbone).model).is_file() for backbone in backbones)


def random_architectures(project: Path, image_size: int) -> None:
    """Replace the project's tiny models by each backbone's architecture with random weights and head."""
    from pipeline.networks.backbones import build_extractor, build_model
    from pipeline.networks.head import build_head

    raw = yaml.safe_load((project / paths.PARAMS).read_text())
    (project / paths.PARAMS).write_text(yaml.safe_dump({**raw, "image_size": image_size}, sort_keys=False))
    params = load_params(project / paths.PARAMS)
    for name in params.backbones:
        backbone = BACKBONES[name]
        width = build_extractor(backbone, "none", image_size).output_shape[-1]
        head = build_head(np.random.default_rng(0).normal(size=(8, width)), len(params.data.classes), params.head)
        build_model(backbone, "none", image_size, head).save(project / paths.model_files(name).model)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(project: Path, port: int) -> subprocess.Popen:
    """`python -m pipeline serve` in the project, once it answers."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=1).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    sys.exit("the server did not start")


def timed_posts(url: str, scan: bytes, count: int) -> tuple[list[float], int]:
    """Latencies in seconds of `count` sequential requests on one connection, and how many failed."""
    latencies, errors = [], 0
    with httpx.Client(timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            answer = client.post(url, files={"file": ("scan.jpg", scan, "image/jpeg")})
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code != 200 or "probabilities" not in answer.json()["files"][0]
    return latencies, errors


def load(url: str, scan: bytes, requests: int, clients: int) -> tuple[list[float], int, float]:
    """`requests` requests from `clients` concurrent clients: latencies, errors, wall seconds."""
    shares = [requests // clients + (index < requests % clients) for index in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda count: timed_posts(url, scan, count), shares, timeout=DEADLINE_S))
    return [value for latencies, _ in results for value in latencies], sum(e for _, e in results), \
        time.perf_counter() - start


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def row(name: str, latencies: list[float], errors: int, seconds: float, cpu: float) -> str:
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    return (f"{name} | {len(latencies)} | {errors} | {p50:.1f} | {p95:.1f} | {len(latencies) / seconds:.1f} "
            f"| {1000 * cpu / len(latencies):.1f} | {os.getloadavg()[0]:.1f} |")


def round_trip(url: str, scan: bytes, server: psutil.Process, requests: int, clients: int) -> tuple[list[str], float]:
    """One client's sequential requests, then `clients` concurrent ones: two table rows, and the throughput ratio."""
    cpu = cpu_seconds(server)
    sequential, errors = timed_posts(url, scan, SEQUENTIAL)
    cpu, used = cpu_seconds(server), cpu_seconds(server) - cpu
    one = row("1 client, sequential", sequential, errors, sum(sequential), used)
    concurrent, errors, seconds = load(url, scan, requests, clients)
    many = row(f"{clients} clients, concurrent", concurrent, errors, seconds, cpu_seconds(server) - cpu)
    return [one, many], (len(concurrent) / seconds) / (len(sequential) / sum(sequential))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--architectures", action="store_true", help="random-weight real architectures, not tiny models")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="sequential-then-concurrent rounds, back to back")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = args.project if has_models(args.project) else write_project(Path(folder) / "repo")
        kind = "trained" if project == args.project else "tiny (tests/web_project.py)"
        if args.architectures and project != args.project:
            image_size = load_params(args.project / paths.PARAMS).image_size
            random_architectures(project, image_size)
            kind = f"the backbones' architectures, random weights, {image_size} px"
        scan = write_scan(Path(folder) / "scan.jpg").read_bytes()
        port = free_port()
        url = f"http://127.0.0.1:{port}/api/predict"
        server = start_server(project, port)
        try:
            memory = psutil.Process(server.pid)
            started_mb = memory.memory_info().rss / 2**20
            timed_posts(url, scan, 1)  # one image's trace alone: the warm-up's first batch waits for no other
            load(url, scan, WARMUP, args.clients)
            before_mb = memory.memory_info().rss / 2**20
            rounds = [round_trip(url, scan, memory, args.requests, args.clients) for _ in range(args.rounds)]
            after_mb = memory.memory_info().rss / 2**20
        finally:
            server.terminate()
            server.wait()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; models: {kind}\n")
    print("| round | clients | requests | errors | p50 (ms) | p95 (ms) | images/s | server CPU ms/image | load avg |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for number, (rows, _) in enumerate(rounds, 1):
        print("\n".join(f"| {number} | {line}" for line in rows))
    ratios = [ratio for _, ratio in rounds]
    print(f"\nconcurrent / sequential throughput per round: {', '.join(f'{ratio:.2f}x' for ratio in ratios)}; "
          f"median {np.median(ratios):.2f}x")
    print(f"server memory (RSS): {started_mb:.0f} MiB started, {before_mb:.0f} MiB after {WARMUP} warm-up requests, "
          f"{after_mb:.0f} MiB after the rounds ({100 * (after_mb / before_mb - 1):+.1f}%)")


if __name__ == "__main__":
    main()
