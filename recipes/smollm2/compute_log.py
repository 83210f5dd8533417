"""Run a training command and append its compute to `<output_dir>/compute_log.tsv` when it ends (or is killed).

    python recipes/smollm2/compute_log.py OUTPUT_DIR COMMAND ...

One row per run: start and end time, the global step before and after (from the checkpoints in OUTPUT_DIR),
wall seconds and CPU seconds of the command (user + system, of the command's processes), threads, CPU, and the
precision (`bf16-autocast` when the command sets `training.bf16=true`, else `float32`; rows written before this
column existed were float32). Each session's run is one
row, so the file adds up to the whole compute of a job that spans sessions. The row is rewritten every minute while
the command runs, so a run killed with the session (SIGKILL included) still leaves its compute up to that minute.
"""

from __future__ import annotations

import datetime
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ("start", "end", "step_from", "step_to", "wall_s", "cpu_s", "threads", "host_cpu", "precision")


def last_step(output_dir: Path) -> int:
    steps = [int(m.group(1)) for p in output_dir.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(steps, default=0)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and its waited-for children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def write_row(log: Path, start: str, row: tuple) -> None:
    """Replace this run's row (keyed by its start time) in the log, atomically."""
    lines = log.read_text().splitlines() if log.exists() else ["\t".join(COLUMNS)]
    if lines[0] != "\t".join(COLUMNS):  # a log from before the precision column: its runs were float32
        lines = ["\t".join(COLUMNS)] + [line + "\tfloat32" * (len(COLUMNS) - len(line.split("\t"))) for line in lines[1:]]
    lines = [line for line in lines if not line.startswith(start + "\t")] + ["\t".join(map(str, row))]
    tmp = log.with_name(f".{log.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, log)


def main() -> int:
    output_dir, command = Path(sys.argv[1]), sys.argv[2:]
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir / "compute_log.tsv"
    start = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    step_from, t0, cpu = last_step(output_dir), time.monotonic(), 0.0
    precision = "bf16-autocast" if "training.bf16=true" in command else "float32"
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    while True:
        try:
            code = child.wait(timeout=60)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = max(cpu, usage.ru_utime + usage.ru_stime)
        except subprocess.TimeoutExpired:
            code = None
            try:
                cpu = max(cpu, cpu_seconds(child.pid))
            except OSError:
                pass
        row = (start, datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), step_from,
               last_step(output_dir), f"{time.monotonic() - t0:.0f}", f"{cpu:.0f}",
               os.environ.get("OMP_NUM_THREADS", "?"), cpu_model(), precision)
        write_row(log, start, row)
        if code is not None:
            return code


if __name__ == "__main__":
    sys.exit(main())
