"""The server under load: 1, 4 and 16 clients at once against one server on 127.0.0.1, each
sending its requests one after another; tokens/s over all of them and each request's latency.
1 client is one request at a time: the anchor the batched rows are compared with.

    python benchmarks/serve_load.py --ckpt lightning_logs/shakespeare_char_cpu/version_0/checkpoints/last.ckpt
    python benchmarks/serve_load.py --ckpt CKPT --clients 1 4 16 --requests 384 --max_tokens 48 --int8

Bounded: at most --requests requests a level, each with a timeout; the server is started here
(in a process of its own, listening on 127.0.0.1 only) and stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

try:  # the HTTP client the openai package brings: httpx2, or httpx before it
    import httpx2 as httpx
except ImportError:
    import httpx

PROMPTS = ["ROMEO:\n", "JULIET:\n", "First Citizen:\n", "KING HENRY:\n", "MENENIUS:\n", "All:\n"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], url: str) -> subprocess.Popen:
    """A server in a session of its own (its workers, if any, stopped with it), once /health answers."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(1200):  # up to 120 s
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    stop(process)
    raise SystemExit(f"error: the server at {url} did not start")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server and every process it started, by the group's id; SIGKILL after 60 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def measure(command: list[str], url: str, clients: list[int], requests: int, max_tokens: int) -> list[dict]:
    """Start the server, warm it up, run each level of clients, stop it."""
    process = start(command, url)
    try:
        level(url, 1, 2, max_tokens)  # warm up
        return [level(url, c, max(requests, c), max_tokens) for c in clients]
    finally:
        stop(process)


def level(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    """`requests` requests from `clients` threads at once; tokens/s, p50 and p99 latency."""
    latencies, tokens, lock = [], [0], threading.Lock()
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(i: int, n: int) -> None:
        with httpx.Client(timeout=120) as http:
            for j in range(n):
                body = {
                    "prompt": PROMPTS[(i + j) % len(PROMPTS)],
                    "max_tokens": max_tokens,
                    "temperature": 0.8,
                    "seed": 1000 * i + j,
                }
                start = time.perf_counter()
                response = http.post(url + "/v1/completions", json=body)
                response.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - start)
                    tokens[0] += response.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(per_client)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return {
        "clients": clients,
        "requests": len(latencies),
        "tokens_per_s": tokens[0] / wall,
        "p50": statistics.median(latencies),
        "p99": p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=384, help="requests a level (16 clients: 24 each)")
    parser.add_argument("--max_tokens", type=int, default=48)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--int8", action="store_true", help="serve int8 weights")
    parser.add_argument("--threads", type=int, default=None, help="the server's torch threads")
    args = parser.parse_args()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gpt.serve",
        str(Path(args.ckpt).resolve()),
        "--port",
        str(port),
        "--slots",
        str(args.slots),
    ]
    command += (["--int8", "true"] if args.int8 else []) + (["--threads", str(args.threads)] if args.threads else [])
    rows = measure(command, f"http://127.0.0.1:{port}", args.clients, args.requests, args.max_tokens)
    base = rows[0]["tokens_per_s"]
    setting = (", int8" if args.int8 else "") + (f", {args.threads} torch threads" if args.threads else "")
    print(f"{args.ckpt}, {args.max_tokens} new tokens a request, slots {args.slots}{setting}")
    print(f"{'clients':>8}{'requests':>10}{'tokens/s':>10}{'x one at a time':>17}{'p50 s':>8}{'p99 s':>8}")
    for r in rows:
        print(
            f"{r['clients']:>8}{r['requests']:>10}{r['tokens_per_s']:>10.0f}{r['tokens_per_s'] / base:>17.2f}"
            f"{r['p50']:>8.2f}{r['p99']:>8.2f}"
        )


if __name__ == "__main__":
    main()
