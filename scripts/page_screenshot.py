"""Drive the server's page in headless Chromium and save a screenshot: start the server on
127.0.0.1, type a message, send it, wait for the streamed reply, check it arrived, screenshot.

    pip install playwright && apt-get install -y chromium     # the browser: Debian's Chromium
    python scripts/page_screenshot.py CKPT --out page.png
    python scripts/page_screenshot.py CKPT --mode completion --message "ROMEO:"

Playwright drives the browser (its own browser download is not needed: --chromium names one).
The server is started here and stopped by its pid; the page fetches nothing but the server.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt", help="the checkpoint to serve")
    parser.add_argument("--out", default="page.png", help="where the screenshot goes")
    parser.add_argument("--mode", choices=["chat", "completion"], default=None, help="default: the page's own")
    parser.add_argument("--message", default="What is the capital of France?")
    parser.add_argument("--second", default="Name three colors.", help="a second turn (chat), after the first")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gpt.serve", str(Path(args.ckpt).resolve()), "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    requests_seen: list[str] = []
    try:
        with sync_playwright() as p:
            flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
            browser = p.chromium.launch(executable_path=args.chromium, args=flags)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.on("request", lambda r: requests_seen.append(r.url))
            for _ in range(300):  # up to 30 s for the server to start
                if server.poll() is not None:
                    sys.exit(f"error: the server stopped (exit {server.returncode}); its message is above")
                try:
                    if page.goto(url, timeout=2000).ok:
                        break
                except Exception:  # not listening yet
                    pass
                time.sleep(0.1)
            page.wait_for_selector("#send")
            if args.mode:
                page.select_option("#mode", args.mode)
            for message in [args.message] + (
                [args.second] if args.second and page.eval_on_selector("#mode", "e => e.value") == "chat" else []
            ):
                before = page.locator(".meta").count()
                page.fill("#input", message)
                page.click("#send")
                page.wait_for_function(f"document.querySelectorAll('.meta').length > {before}", timeout=60000)
            replies = page.locator(".assistant").all_inner_texts()
            page.screenshot(path=args.out, full_page=False)
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    outside = [u for u in requests_seen if not u.startswith(url.rstrip("/"))]
    print(f"saved {args.out}; {len(replies)} replies streamed; requests outside the server: {outside or 'none'}")
    for reply in replies:
        print("reply:", reply.replace("\n", " ")[:160])
    if outside or not all(r.strip() for r in replies):
        sys.exit(1)


if __name__ == "__main__":
    main()
