"""Screenshots of TensorBoard's tabs for a run, taken by headless Chromium: look at what a
learner sees without opening a browser by hand.

    python main.py fit --config configs/shakespeare_char_cpu.yaml
    python scripts/tensorboard_screenshots.py lightning_logs/shakespeare_char_cpu --out screenshots

Needs `chromium` (or `chromium-browser`, `google-chrome`) on PATH (`apt-get install -y
chromium`). Starts TensorBoard on a free port, saves one PNG a tab into --out, and stops it.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TABS = ("timeseries", "scalars", "custom_scalars", "images", "text", "projector", "hparams")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not answer at {url} within {seconds:.0f} s")


def screenshot(browser: str, url: str, path: Path, wait_ms: int) -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # running as root in a container
            "--use-angle=swiftshader",  # WebGL in software: Time Series draws its charts with it
            "--enable-unsafe-swiftshader",
            "--hide-scrollbars",
            "--window-size=1600,1200",
            f"--virtual-time-budget={wait_ms}",  # let the page's scripts load the data first
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", help="the folder TensorBoard reads: a run, or a folder of runs")
    parser.add_argument("--out", default="screenshots", help="where the PNG files go")
    parser.add_argument("--tabs", nargs="*", default=list(TABS), help=f"which tabs (default: {' '.join(TABS)})")
    parser.add_argument("--wait_ms", type=int, default=20000, help="how long each page may load")
    args = parser.parse_args()
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        sys.exit("error: no chromium on PATH; install it (apt-get install -y chromium)")
    if not Path(args.logdir).is_dir():
        sys.exit(f"error: {args.logdir!r} is not a folder")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_until_up(base)
        for tab in args.tabs:
            path = out / f"{tab}.png"
            screenshot(browser, f"{base}#{tab}", path.resolve(), args.wait_ms)
            print(f"{tab}: {path}")
    finally:
        board.terminate()
        board.wait()


if __name__ == "__main__":
    main()
