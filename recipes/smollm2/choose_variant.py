"""Pick the T2L variant by its completion NLL on the collection's held-out validation tasks (matched descriptions).

Reads `select-<variant>/results.json` under RUN_DIR, writes `variant_choice.json` (every variant's NLL with
matched, other-task and random descriptions) and prints the chosen variant. The benchmarks play no part.

    python recipes/smollm2/choose_variant.py RUN_DIR L M S
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CONDITIONS = ("t2l", "t2l_other", "t2l_random")


def main(run_dir: str, *variants: str) -> None:
    out = Path(run_dir)
    scores = {}
    for variant in variants:
        path = out / f"select-{variant}" / "results.json"
        if path.is_file():
            summary = json.loads(path.read_text())["summary"]["held-out tasks (completion NLL)"]
            scores[variant] = {c: summary[c]["mean"] for c in CONDITIONS if c in summary}
    if not scores:
        raise SystemExit(f"No select-<variant>/results.json under {out}: the selection runs did not finish.")
    chosen = min(scores, key=lambda v: scores[v]["t2l"])
    (out / "variant_choice.json").write_text(json.dumps({"chosen": chosen, "nll": scores}, indent=2))
    print(chosen)


if __name__ == "__main__":
    main(*sys.argv[1:])
