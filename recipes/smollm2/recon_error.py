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
from pathlib import Path


def main(t2l_dir: str, library_dir: str, out: str) -> None:
    import torch

    from text2lora import T2LModel
    from text2lora.training.lora_library import LoraLibrary

    model = T2LModel.from_pretrained(t2l_dir).eval()
    library = LoraLibrary.load(library_dir)
    per_task = {}
    for entry in library.entries:
        oracle, errors, norms = entry.factors, [], []
        paths = [(m, layer, oracle.module_paths[m].format(layer=layer))
                 for m in oracle.target_modules for layer in range(oracle.num_layers)]
        reference = {m: oracle.delta_weight(m) for m in oracle.target_modules}
        with torch.no_grad():
            for lora in model.generate_lora(entry.descriptions):
                diffs = [(lora.delta_weight(path) - reference[m][layer]).abs() for m, layer, path in paths]
                count = sum(d.numel() for d in diffs)
                errors.append(sum(d.sum().item() for d in diffs) / count)
                norms.append(sum(reference[m][layer].abs().sum().item() for m, layer, _ in paths) / count)
        mean_err, mean_ref = sum(errors) / len(errors), sum(norms) / len(norms)
        per_task[entry.name] = {"l1": mean_err, "oracle_mean_abs": mean_ref, "relative_l1": mean_err / mean_ref,
                                "descriptions": len(errors)}
    overall = {k: sum(t[k] for t in per_task.values()) / len(per_task) for k in ("l1", "oracle_mean_abs", "relative_l1")}
    Path(out).write_text(json.dumps({"overall": overall, "tasks": per_task}, indent=2))
    print(json.dumps(overall, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
