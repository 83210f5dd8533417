"""Two CPU processes under `accelerate launch` (DDP over gloo) train the tiny hypernetwork: the loss falls and both
ranks end with identical hypernetwork weights.

Accelerate 1.x starts several CPU processes itself only through MPI (`--cpu` + `--mpirun_hostfile`); without MPI,
`--multi_gpu` starts them with torchrun and `use_cpu=True` in the training arguments selects the CPU (gloo) backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "ddp_sft.py"


def _accelerate() -> list[str]:
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if exe is None:
        pytest.fail("the `accelerate` command is not installed next to this Python")
    return [exe]


def test_two_cpu_processes_train_and_stay_in_sync(tmp_path, tiny_base_dir, tiny_encoder_dir):
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TEXT2LORA_HOME": str(tmp_path / "home"), "MASTER_PORT": "0"}
    command = _accelerate() + [
        "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(29500 + os.getpid() % 2000),
        str(SCRIPT), "--base", str(tiny_base_dir), "--encoder", str(tiny_encoder_dir), "--out", str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for info in ranks:
        assert info["world_size"] == 2 and info["distributed_type"] == "DistributedType.MULTI_CPU"
        assert info["backend"] == "gloo"
        assert info["eval_after"] < info["eval_before"] - 0.1, info
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the all-rank mean

    weights = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    initial_bias = next(k for k in weights[0] if k.startswith("heads.") and k.endswith("weight"))
    assert weights[0][initial_bias].abs().sum() > 0  # the zero-initialised head weights were trained
