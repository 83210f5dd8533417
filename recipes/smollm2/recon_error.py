"""How closely the reconstruction T2L reproduces its oracle LoRAs: L1 error of the generated delta W.

For every adapter of the library, the hypernetwork generates an adapter from each of the task's descriptions;
the report gives the mean absolute error of `scale * B @ A` against the oracle's, per task and overall, and the
same error relative to the oracle's mean |delta W| (so 0 is a perfect copy and 1 is as far off as a zero
adapter). Written as JSON.

    python recipes/smollm2/recon_error.py T2L_DIR LIBRARY_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main(t2l_dir: str, library_dir: str, out: str) -> None:
    import torch

    from text2lora import T2LModel
    from text2lora.training.lora_library import LoraLibrary, read_peft_adapter

    model = T2LModel.from_pretrained(t2l_dir).eval()
    library = LoraLibrary.load(library_dir)
    per_task = {}
    for entry in library.entries:
        errors, norms = [], []
        with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
            for i, lora in enumerate(model.generate_lora(entry.descriptions)):
                lora.save_pretrained(Path(tmp) / str(i))
                generated = read_peft_adapter(Path(tmp) / str(i))
                abs_err = sum(
                    (generated.delta_weight(m) - entry.factors.delta_weight(m)).abs().sum().item() for m in generated.lora_A
                )
                abs_ref = sum(entry.factors.delta_weight(m).abs().sum().item() for m in generated.lora_A)
                count = sum(entry.factors.delta_weight(m).numel() for m in generated.lora_A)
                errors.append(abs_err / count)
                norms.append(abs_ref / count)
        mean_err, mean_ref = sum(errors) / len(errors), sum(norms) / len(norms)
        per_task[entry.name] = {"l1": mean_err, "oracle_mean_abs": mean_ref, "relative_l1": mean_err / mean_ref,
                                "descriptions": len(errors)}
    overall = {k: sum(t[k] for t in per_task.values()) / len(per_task) for k in ("l1", "oracle_mean_abs", "relative_l1")}
    Path(out).write_text(json.dumps({"overall": overall, "tasks": per_task}, indent=2))
    print(json.dumps(overall, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
