"""Write the multi-task LoRA baseline of the shipped default as a plain PEFT adapter folder (packaged with text2lora).

The shipped hypernetwork was warm-started from that LoRA: its A and B were copied into the hypernetwork's
`ab_offsets` buffers, which training never changes. So the buffers *are* the multi-task LoRA the README compares
T2L with, as stored in the checkpoint (bfloat16; the LoRA trained in float32 is rounded to bfloat16 here).

    .venv/bin/python recipes/smollm2/extract_mt_lora.py src/text2lora/default_checkpoint/mt_lora
"""

from __future__ import annotations

import sys

import torch

from text2lora import T2LModel
from text2lora.adapters import GeneratedLora, factors_to_state_dict, lora_config_from_t2l

DEFAULT = "text2lora/t2l-smollm2-135m-instruct"


def main(out: str) -> None:
    t2l = T2LModel.from_pretrained(DEFAULT)
    if t2l.ab_offsets is None:
        raise SystemExit(f"{DEFAULT} has no ab_offsets: it was not warm-started from a LoRA.")
    config = t2l.config
    lora_A = {m: t2l.ab_offsets[m].A.detach().to(torch.float32) for m in config.target_modules}
    lora_B = {m: t2l.ab_offsets[m].B.detach().to(torch.float32) for m in config.target_modules}
    adapter = GeneratedLora(
        lora_config_from_t2l(config),
        factors_to_state_dict(config, lora_A, lora_B),
        description=None,
        hypernetwork=DEFAULT,
        extra_metadata={"kind": "multi-task LoRA baseline (the hypernetwork's warm start, from its ab_offsets)"},
    )
    adapter.save_pretrained(out, dtype=torch.bfloat16, overwrite=False)
    print(f"wrote {out}: {adapter.num_parameters:,} parameters")


if __name__ == "__main__":
    main(sys.argv[1])
