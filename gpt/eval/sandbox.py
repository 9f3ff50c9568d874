"""The child's side of gpt/eval/executor.py: runs the program.py of its working folder, once.

    python -I -S -B gpt/eval/sandbox.py SECONDS MEGABYTES [--no-namespaces]

run as a script by the executor, in a fresh temporary folder, with a scrubbed environment, in a
process group of its own. It prints one JSON line: {"passed": bool, "result": "passed" | "timed
out" | "failed: why", "isolation": "namespaces" | "process group"}.

Two processes. This one (the keeper) enters new user, network and pid namespaces where the
kernel allows it, then forks the program's process, the first of the new pid namespace: it has
no network interface but a loopback that is down, sees no process outside, and when it ends the
kernel kills whatever it left behind. The program's process limits its address space, CPU time
and file sizes, sends its output to /dev/null, and installs an audit hook (PEP 578) that refuses
what a test program has no business doing: starting processes, sending signals, sockets,
ctypes, changing the environment, writing or deleting outside its folder, reading outside its
folder and Python's own files. It then runs the program and writes to the keeper "passed", or
the exception that ended it. The keeper kills it when SECONDS are up.

NOT A SECURITY BOUNDARY. The audit hook stops what model-written code does by accident or
naivety; code written to escape can (through a C extension, say), and the namespaces are only
as good as the kernel's. Run code you have reason to distrust in a container or a VM.

Standard library only: it runs with -I -S, without the project or site-packages on its path.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_CHILD_SUBREAPER = 36
FILE_LIMIT = 16 << 20  # bytes a program may write to one file
# Audit events refused outright: new processes, signals, the environment, links out of the
# folder, raising limits, and any socket or ctypes call at all.
REFUSED = {
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "os.kill", "os.killpg", "signal.pthread_kill", "os.putenv", "os.unsetenv", "os.symlink", "os.link",
    "os.chroot", "resource.setrlimit", "resource.prlimit",
}  # fmt: skip
REFUSED_PREFIXES = ("socket.", "ctypes.")
REFUSED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing"}
PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime", "os.truncate"}
PATH_EVENTS |= {"shutil.rmtree", "os.mkfifo", "os.mknod", "os.setxattr", "os.removexattr"}
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def enter_namespaces() -> bool:
    """New user (no privilege outside it), network and pid namespaces; False where the kernel
    refuses (no unprivileged user namespaces: a container's seccomp profile, a sysctl)."""
    try:
        import ctypes

        uid, gid = os.getuid(), os.getgid()
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) != 0:
            return False
    except (OSError, AttributeError):
        return False
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:  # keep our own ids inside (unmapped, they read as nobody)
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except OSError:
            pass
    return True


def become_subreaper() -> None:
    """Without a pid namespace: the processes the program's children orphan become its own,
    so that it can tell it left one behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def audit_hook(folder: str):
    """The hook that refuses what a test program has no business doing."""
    readable = [folder, *{os.path.realpath(p) for p in sys.path}]  # the standard library (-I -S: nothing else)
    readable += ["/dev/null", "/dev/urandom", os.path.realpath("/proc/self")]

    def within(path, roots: list[str]) -> bool:
        path = os.path.realpath(os.fsdecode(path))
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def hook(event: str, args: tuple) -> None:
        if event in REFUSED or event.startswith(REFUSED_PREFIXES):
            raise PermissionError(f"{event} is not allowed in the sandbox")
        if event == "import" and args[0] in REFUSED_IMPORTS:
            raise ImportError(f"{args[0]} is not allowed in the sandbox")
        if event == "open" and not isinstance(args[0], int):
            writing = bool((args[2] or 0) & WRITING)
            if not within(args[0], [folder] if writing else readable):
                raise PermissionError(f"{'writing' if writing else 'reading'} {args[0]} is not allowed in the sandbox")
        elif event in ("os.listdir", "os.scandir") and args[0] is not None and not isinstance(args[0], int):
            if not within(args[0], readable):
                raise PermissionError(f"listing {args[0]} is not allowed in the sandbox")
        elif event in PATH_EVENTS:
            for path in args:
                if isinstance(path, (str, bytes, os.PathLike)) and not within(path, [folder]):
                    raise PermissionError(f"{event} on {path} is not allowed in the sandbox")

    return hook


def run(source: str, folder: str, result: int, megabytes: int, seconds: float, namespaces: bool) -> None:
    """The program's process: limits, the audit hook, the program; its outcome to `result`."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    memory = megabytes << 20
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_DATA, memory), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    cpu = int(seconds) + 1  # a backstop: the keeper kills it at `seconds` of wall time
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
    if not namespaces:
        become_subreaper()
    for name in [m for m in sys.modules if m.split(".")[0] in REFUSED_IMPORTS]:
        del sys.modules[name]  # imported here to enter the namespaces: the program must import them again
    sys.addaudithook(audit_hook(folder))
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
        message = "passed"
        try:
            os.waitpid(-1, os.WNOHANG)  # a child, or an orphan it adopted, still there?
            message = "failed: it left a process running"
        except ChildProcessError:
            pass
    except BaseException as e:  # noqa: BLE001 - whatever ended the program is its failure
        try:
            message = f"failed: {type(e).__name__}: {e}"
        except BaseException:  # noqa: BLE001 - an exception whose str() fails
            message = f"failed: {type(e).__name__}"
    os.write(result, message.encode("utf-8", "replace")[:2000])
    os._exit(0)


def main() -> None:
    seconds, megabytes = float(sys.argv[1]), int(sys.argv[2])
    folder = os.path.realpath(os.getcwd())
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    namespaces = "--no-namespaces" not in sys.argv and enter_namespaces()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            run(source, folder, write, megabytes, seconds, namespaces)
        finally:
            os._exit(1)
    os.close(write)

    def time_up(signum, frame):
        raise TimeoutError

    signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        _, status = os.waitpid(pid, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.set_blocking(read, False)  # a process it left may hold the pipe open: take what is there
        try:
            message = os.read(read, 4096).decode("utf-8", "replace")
        except BlockingIOError:
            message = ""
        if not message:  # it ended before it could say: killed (memory, CPU), or os._exit
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            message = f"failed: it ended without a result ({how})"
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)  # in a pid namespace: it, and with it every process it left
        os.waitpid(pid, 0)
        message = "timed out"
    isolation = "namespaces" if namespaces else "process group"
    print(json.dumps({"passed": message == "passed", "result": message, "isolation": isolation}), flush=True)


if __name__ == "__main__":
    main()
