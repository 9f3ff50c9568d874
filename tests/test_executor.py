"""gpt/eval/executor.py: HumanEval's canonical solutions pass, and code that misbehaves fails
and leaves nothing behind (no process, no file outside its folder, no folder), with the
namespaces and without them (the fallback where the kernel refuses them)."""

import gzip
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from gpt.eval import executor
from gpt.eval.checkers import humaneval_program
from gpt.eval.executor import run_program, run_programs
from helpers import eval_data


def problems() -> list[dict]:
    with gzip.open(eval_data() / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def processes_in(folder: Path) -> list[int]:
    """The processes whose working folder is inside `folder`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(folder)):
                found.append(int(pid))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail(tmp_path):
    items = problems()
    right = [humaneval_program(item["canonical_solution"], item) for item in items]
    outcomes = run_programs(right, timeout=10.0, parent=str(tmp_path))
    assert [o.result for o in outcomes if not o.passed] == []
    assert sum(o.passed for o in outcomes) == len(items) == 164
    wrong = [humaneval_program("    return None\n", item) for item in items[:20]]
    assert not any(o.passed for o in run_programs(wrong, parent=str(tmp_path)))
    assert list(tmp_path.iterdir()) == [] and processes_in(tmp_path) == []


def test_a_program_may_write_in_its_own_folder_and_read_the_standard_library(tmp_path):
    program = "import json, tempfile\nopen('out.txt', 'w').write('x')\ntempfile.TemporaryFile().write(b'y')\n"
    assert run_program(program + "assert open('out.txt').read() == 'x'", parent=str(tmp_path)).passed
    assert run_program("assert 1 == 2", parent=str(tmp_path)).result == "failed: AssertionError: "
    with pytest.raises(ValueError, match="a program needs a timeout > 0"):
        run_program("pass", timeout=0)


def test_a_sandbox_that_cannot_start_is_an_error_not_a_failing_program(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "SANDBOX", tmp_path / "missing.py")
    with pytest.raises(OSError, match="the sandbox could not run a program here: .*missing.py"):
        run_program("pass", parent=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "process-group"])
def test_hostile_programs_fail_and_leave_nothing_behind(tmp_path, monkeypatch, namespaces):
    sandboxes, outside = tmp_path / "sandboxes", tmp_path / "outside"
    sandboxes.mkdir()
    outside.mkdir()
    victim = outside / "keep.txt"
    victim.write_text("mine")
    monkeypatch.setenv("GPT_TEST_SECRET", "swordfish")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    signalled = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: signalled.append(args))
    hostile = {
        "loops forever": "while True:\n    pass",
        "forks without end": "import os\nwhile True:\n    os.fork()",
        "allocates a terabyte": "x = bytearray(1 << 40)",
        "allocates without bound": "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 24))",
        "writes outside its folder": f"open({str(outside / 'written.txt')!r}, 'w').write('x')",
        "deletes outside its folder": f"import os\nos.remove({str(victim)!r})",
        "renames outside its folder": f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        "reads the secret variable": "import os\nassert os.environ['GPT_TEST_SECRET'] == 'swordfish'",
        "reads our environment": f"assert b'PATH=' in open('/proc/{os.getpid()}/environ', 'rb').read()",
        "lists the processes": "import os\nassert os.listdir('/proc')",
        "reads a file elsewhere": f"assert open({str(victim)!r}).read() == 'mine'",
        "opens a socket": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')",
        "signals its caller": f"import os, signal\nos.kill({os.getpid()}, signal.SIGUSR1)",
        "kills its parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "leaves a process running": "import subprocess\nsubprocess.Popen(['sleep', '30'])",
        "forks a background child": "import os, time\nif os.fork() == 0:\n    time.sleep(30)",
        "calls C": "import ctypes\nctypes.CDLL(None).fork()",
        "exits early, with success": "import os\nos._exit(0)",
        "exits early through SystemExit": "raise SystemExit(0)",
        "writes a huge file": "open('big', 'wb').write(b'x' * (20 << 20))",
        "changes the environment": "import os\nos.environ['PATH'] = '/nowhere'",
    }
    try:
        outcomes = run_programs(
            list(hostile.values()), timeout=1.0, memory_mb=256, namespaces=namespaces, parent=str(sandboxes)
        )
        with pytest.raises(TimeoutError):
            listener.accept()  # no connection came
    finally:
        listener.close()
        signal.signal(signal.SIGUSR1, previous)
    assert {name: o.result for name, o in zip(hostile, outcomes) if o.passed} == {}
    assert outcomes[0].result == "timed out"
    isolations = {o.isolation for o in outcomes}
    assert isolations == {"process group"} if not namespaces else len(isolations) == 1  # where the kernel allows
    assert signalled == []
    assert list(sandboxes.iterdir()) == []  # every temporary folder removed
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and victim.read_text() == "mine"
    assert processes_in(tmp_path) == []
