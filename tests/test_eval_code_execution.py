"""The pass@1 sandbox: correct and wrong solutions, timeouts, memory, and refusals (files, network, processes)."""

from __future__ import annotations

import os
import uuid

import pytest

from text2lora.evaluation.code_execution import SandboxConfig, check_solution, run_python

FAST = SandboxConfig(timeout_s=5.0)


def test_correct_solution_passes_and_wrong_one_fails():
    solution = "def add(a, b):\n    return a + b\n"
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
    assert check_solution(solution, tests, FAST).status == "passed"
    wrong = check_solution("def add(a, b):\n    return a * b\n", tests, FAST)
    assert wrong.status == "failed" and not wrong.passed
    assert "AssertionError" in wrong.stderr
    assert check_solution("def add(a, b) return", tests, FAST).status == "failed"  # syntax error


def test_infinite_loop_times_out_and_is_killed():
    result = run_python("while True:\n    pass\n", SandboxConfig(timeout_s=1.0))
    assert result.status == "timeout"
    assert result.duration_s < 10


def test_sleeping_program_times_out():
    result = run_python("import time\ntime.sleep(60)\n", SandboxConfig(timeout_s=1.0))
    assert result.status == "timeout"


def test_memory_limit_stops_huge_allocations():
    result = run_python("x = bytearray(8 * 1024 ** 3)\n", SandboxConfig(timeout_s=5.0, memory_mb=512))
    assert result.status == "failed"
    assert "MemoryError" in result.stderr


def test_writing_outside_the_temporary_directory_is_refused(tmp_path):
    target = tmp_path / f"escape-{uuid.uuid4().hex}.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert result.status == "denied"
    assert not target.exists()


def test_writing_inside_the_temporary_directory_is_allowed():
    program = "import os, tempfile\nopen('scratch.txt', 'w').write('ok')\nwith tempfile.TemporaryFile() as f:\n    f.write(b'1')\nassert open('scratch.txt').read() == 'ok'\n"
    assert run_python(program, FAST).status == "passed"


def test_deleting_files_outside_is_refused(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    os.chmod(tmp_path, 0o777)
    result = run_python(f"import os\nos.remove({str(victim)!r})\n", FAST)
    assert result.status == "denied"
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    "program",
    [
        "import socket\nsocket.socket()\n",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')\n",
        "import subprocess\nsubprocess.run(['true'])\n",
        "import os\nos.system('true')\n",
        "import ctypes\nctypes.CDLL('libc.so.6')\n",
    ],
    ids=["socket", "urllib", "subprocess", "os.system", "ctypes"],
)
def test_network_processes_and_native_code_are_refused(program):
    assert run_python(program, FAST).status == "denied"


def test_a_caught_refusal_still_counts_as_denied(tmp_path):
    program = f"try:\n    open({str(tmp_path / 'x')!r}, 'w')\nexcept PermissionError:\n    pass\n"
    assert run_python(program, FAST).status == "denied"


def test_ordinary_standard_library_and_numpy_work():
    program = "import math, re, collections, itertools, heapq\nimport numpy as np\nassert np.arange(4).sum() == 6\nassert math.gcd(12, 18) == 6\n"
    result = run_python(program, FAST)
    assert result.status == "passed", result.stderr
    assert {"tempdir", "rlimits", "audit-hook", "timeout"} <= set(result.layers)


def test_resource_limits_are_in_force_and_cannot_be_raised():
    program = (
        "import resource\n"
        "assert resource.getrlimit(resource.RLIMIT_AS) == (300 * 1024 ** 2, 300 * 1024 ** 2)\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 64\n"
        "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
    )
    result = run_python(program, SandboxConfig(timeout_s=5.0, memory_mb=300))
    assert result.status == "denied", result.stderr  # the asserts held, then raising a limit was refused


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxConfig(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxConfig(memory_mb=1)
