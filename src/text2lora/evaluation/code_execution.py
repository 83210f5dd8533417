"""Running model-written Python in a sandboxed subprocess, for pass@1 on MBPP and HumanEval.

lm-eval's code tasks score with Hugging Face `evaluate`'s `code_eval`, which must be fetched from the Hub
(impossible offline) and runs candidates in a forked process guarded only by monkey-patching. This module is
our replacement; every program runs in a fresh interpreter with these layers:

- a private temporary working directory (also `HOME` and `TMPDIR`), deleted afterwards;
- a wall-clock timeout (the whole process group is killed) and resource limits: address space, CPU
  seconds, size of files written, open files, processes, no core dumps;
- an audit hook installed before the program runs (`sys.addaudithook`, which a program cannot remove)
  that refuses: writing, creating, renaming or deleting files outside the working directory; creating
  sockets (no network); starting processes (`subprocess`, `os.system`, `fork`, `exec*`, `spawn`);
  loading native libraries through `ctypes`; changing resource limits;
- when the platform allows it, a new network namespace with no interfaces (`unshare --net`) and, when the
  parent runs as root, an unprivileged user (`setpriv` to `nobody`).

This keeps ordinary model mistakes (infinite loops, huge allocations, `os.remove` of the wrong path,
`pip install` attempts) from doing harm. It is not a security boundary against code written to escape; run
untrusted code from unknown sources inside a container or VM as well.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Exit status the guard uses when the program attempted something the sandbox refuses.
SANDBOX_DENIED_EXIT = 86
_DENIED_MARKER = "SandboxDenied:"

# Runs inside the child before the candidate program. Kept free of imports that could be shadowed by the
# program's folder: `-I` (isolated mode) already drops the script folder and PYTHON* variables from sys.path.
_GUARD = r'''
import os, resource, sys

_ROOT = os.path.realpath(sys.argv[1])
_PROGRAM = sys.argv[2]
# Resource limits are set here, in the fresh single-threaded child, rather than in a preexec_fn of the parent
# (unsafe when the parent has threads, as torch does). The audit hook below then forbids changing them.
for _name, _value in zip(("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC"),
                         map(int, sys.argv[3].split(","))):
    resource.setrlimit(getattr(resource, _name), (_value, _value))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_BLOCKED_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn", "socket.", "subprocess.", "pty.", "os.fork",
                     "os.forkpty", "os.system", "os.kill", "os.killpg", "os.setuid", "os.setgid", "os.chroot",
                     "resource.setrlimit", "resource.prlimit", "http.client.", "urllib.", "ftplib.", "smtplib.",
                     "webbrowser.", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "sys.remote_exec")
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
                "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.move",
                "shutil.copyfile", "shutil.copytree", "shutil.chown", "os.chflags", "os.lchflags"}


class SandboxDenied(PermissionError):
    pass


def _inside(path):
    try:
        if isinstance(path, int):
            return True  # an already-open descriptor: its opening was checked
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == _ROOT or real.startswith(_ROOT + os.sep)


def _deny(event, detail=""):
    message = "SandboxDenied: " + event + " is not allowed in the sandbox " + detail
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except Exception:
        pass
    raise SandboxDenied(message)


def _hook(event, args):
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writing and path is not None and not _inside(path):
            _deny("writing", repr(path))
        return
    if event.startswith(_BLOCKED_PREFIXES):
        _deny(event)
    if event == "ctypes.dlopen" and args and args[0] is not None:
        _deny(event, repr(args[0]))
    if event in _PATH_EVENTS:
        for arg in args[:2]:
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                _deny(event, repr(arg))


sys.addaudithook(_hook)
sys.argv = [_PROGRAM]
with open(_PROGRAM, encoding="utf-8") as _file:
    _code = compile(_file.read(), _PROGRAM, "exec")
try:
    exec(_code, {"__name__": "__main__", "__file__": _PROGRAM, "__builtins__": __builtins__})
except SandboxDenied:
    sys.exit(__DENIED_EXIT__)
'''.replace("__DENIED_EXIT__", str(SANDBOX_DENIED_EXIT))


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one sandboxed run.

    Args:
        timeout_s: wall-clock limit; the process group is killed when it passes.
        memory_mb: address-space limit (`RLIMIT_AS`).
        cpu_s: CPU-time limit (`RLIMIT_CPU`); defaults to the timeout rounded up, plus one.
        max_file_mb: largest file the program may write (`RLIMIT_FSIZE`), stdout/stderr included.
        max_open_files: `RLIMIT_NOFILE`.
        network_namespace: run in an empty network namespace: `"auto"` (when `unshare --net` works here),
            `True` (required) or `False`.
        drop_privileges: when the parent runs as root, run the program as `nobody`: `"auto"`, `True`, `False`.
        output_chars: how much of stdout/stderr (the end) to keep in the result.
    """

    timeout_s: float = field(default=10.0, metadata={"help": "Wall-clock limit in seconds."})
    memory_mb: int = field(default=1024, metadata={"help": "Address-space limit in MiB."})
    cpu_s: int | None = field(default=None, metadata={"help": "CPU-time limit; default ceil(timeout_s) + 1."})
    max_file_mb: int = field(default=16, metadata={"help": "Largest file the program may write, in MiB."})
    max_open_files: int = field(default=64, metadata={"help": "Open file descriptors allowed."})
    network_namespace: bool | str = field(default="auto", metadata={"help": "auto | True | False."})
    drop_privileges: bool | str = field(default="auto", metadata={"help": "auto | True | False."})
    output_chars: int = field(default=2000, metadata={"help": "Characters of stdout/stderr kept."})

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}; e.g. 10.")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb={self.memory_mb} is too small for a Python interpreter; use at least 64.")
        for name in ("network_namespace", "drop_privileges"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}.")


@dataclass
class ExecutionResult:
    """How a sandboxed program ended.

    `status` is `passed` (exit 0), `failed` (an exception, e.g. a failed assert), `timeout`, or `denied` (it
    tried something the sandbox refuses). `layers` lists the isolation layers that were active.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    layers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


@functools.cache
def _prefix_works(prefix: tuple[str, ...]) -> bool:
    """Whether `prefix + [python, -c, pass]` runs here (e.g. `unshare --net` needs privileges)."""
    try:
        done = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _isolation_prefix(config: SandboxConfig) -> tuple[list[str], list[str]]:
    prefix: list[str] = []
    layers = ["tempdir", "rlimits", "audit-hook", "timeout"]
    unshare = shutil.which("unshare")
    if config.network_namespace:
        candidate = [unshare, "--net", "--"] if unshare else None
        if candidate and _prefix_works(tuple(candidate)):
            prefix += candidate
            layers.append("network-namespace")
        elif config.network_namespace is True:
            raise RuntimeError(
                "network_namespace=True but `unshare --net` does not work here; use network_namespace='auto' "
                "(sockets are still refused by the audit hook) or run with the needed privileges."
            )
    setpriv = shutil.which("setpriv")
    if config.drop_privileges and hasattr(os, "geteuid") and os.geteuid() == 0:
        candidate = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"] if setpriv else None
        if candidate and _prefix_works(tuple(prefix + candidate)):
            prefix += candidate
            layers.append("unprivileged-user")
        elif config.drop_privileges is True:
            raise RuntimeError("drop_privileges=True but `setpriv` is not usable here; use drop_privileges='auto'.")
    return prefix, layers


def _limits(config: SandboxConfig) -> str:
    """RLIMIT_AS, CPU, FSIZE, NOFILE, CORE, NPROC for the guard, comma-separated."""
    cpu = config.cpu_s if config.cpu_s is not None else int(config.timeout_s) + 2
    values = (config.memory_mb * 1024 * 1024, cpu, config.max_file_mb * 1024 * 1024, config.max_open_files, 0, 64)
    return ",".join(str(v) for v in values)


def run_python(program: str, config: SandboxConfig | None = None) -> ExecutionResult:
    """Run `program` (Python source) in the sandbox and report how it ended."""
    config = config or SandboxConfig()
    prefix, layers = _isolation_prefix(config)
    workdir = Path(tempfile.mkdtemp(prefix="t2l-sandbox-"))
    try:
        if "unprivileged-user" in layers:
            os.chown(workdir, 65534, 65534)
        program_path = workdir / "program.py"
        program_path.write_text(program, encoding="utf-8")
        stdout_path, stderr_path = workdir / ".stdout", workdir / ".stderr"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        command = [*prefix, sys.executable, "-I", "-c", _GUARD, str(workdir), str(program_path), _limits(config)]
        start = time.perf_counter()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            try:
                returncode = process.wait(timeout=config.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                with _suppress_lookup():
                    os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
        duration = time.perf_counter() - start
        stdout = _tail(stdout_path, config.output_chars)
        stderr = _tail(stderr_path, config.output_chars)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # RLIMIT_CPU ends a busy loop with SIGXCPU (or SIGKILL at the hard limit): also a timeout.
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        status = "timeout"
    elif returncode == SANDBOX_DENIED_EXIT or _DENIED_MARKER in stderr:
        status = "denied"  # even if the program caught the refusal and went on
    elif returncode == 0:
        status = "passed"
    else:
        status = "failed"
    return ExecutionResult(status, returncode, stdout, stderr, round(duration, 4), layers)


class _suppress_lookup:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, ProcessLookupError)


def _tail(path: Path, chars: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-chars * 4 :].decode("utf-8", errors="replace")[-chars:]


def check_solution(solution: str, tests: str, config: SandboxConfig | None = None) -> ExecutionResult:
    """Run `solution` followed by `tests` (asserts, or a `check(...)` call): passed means every test passed."""
    return run_python(f"{solution.rstrip()}\n\n\n{tests.strip()}\n", config)
