"""Print the faster dtype for this machine's CPU, `bfloat16` or `float32`, by text2lora's own rule
(`text2lora.modeling_t2l.runs_fast_in`: bfloat16 only with AVX512-BF16 or AMX, where it is native; elsewhere PyTorch
emulates it, slower than float32). Used by the background recipes (`continue.sh`, `eval_protocols.sh`)."""

import torch

from text2lora.modeling_t2l import runs_fast_in

print("bfloat16" if runs_fast_in(torch.bfloat16, torch.device("cpu")) else "float32")
