"""The files of a `t2l eval` output folder, and the resume store: every finished run (condition x task x
description) is saved in `<output_dir>/runs/<key>.json` and reused by `--resume` while its fingerprint matches."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..io_utils import atomic_file

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .conditions import RunSpec
    from .eval_config import EvalConfig
    from .runner import TaskEntry

RESULTS_FILE = "results.json"
EXAMPLES_FILE = "examples.jsonl"
REPORT_FILE = "results.md"
PLOT_FILE = "results.png"
RUNS_DIR = "runs"


def run_fingerprint(config: EvalConfig, entry: TaskEntry, spec: RunSpec, content: dict[str, str]) -> str:
    """What a saved run depends on: a saved run is reused only when this matches.

    `content` holds content hashes, not names or paths, of what the run's numbers come from: `"base_model"`
    (its weights as loaded), `"adapter"` (the hypernetwork for a T2L run, the adapter folder's files for a PEFT
    run; absent for the bare model). A hypernetwork or adapter retrained in place is never mistaken for the old one.
    """
    payload = {
        "spec": spec.to_dict(),
        "samples": entry.samples,
        "content": content,
        "chat_template": config.chat_template,
        "seed": config.seed,
        "max_gen_toks": config.max_gen_toks,
        "configs": sorted(entry.configs),
    }
    # Settings added later enter only when not at their default, so runs saved before them still resume.
    if config.protocol != "loglik":
        payload["protocol"] = config.protocol
    if config.dtype != "float32":
        payload["dtype"] = config.dtype
    if config.empty_system_message:
        payload["empty_system_message"] = True
    if config.chat_template_file is not None:
        payload["chat_template_file"] = hashlib.sha256(Path(config.chat_template_file).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunStore:
    """Saved runs under `output_dir` (none without one); `load` returns nothing unless `resume` is on."""

    def __init__(self, output_dir: str | Path | None, resume: bool) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.resume = resume

    def path(self, spec: RunSpec) -> Path | None:
        return None if self.output_dir is None else self.output_dir / RUNS_DIR / f"{spec.key}.json"

    def load(self, spec: RunSpec, fingerprint: str) -> tuple[dict, list[dict]] | None:
        path = self.path(spec)
        if not self.resume or path is None or not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data["record"].get("fingerprint") != fingerprint:
            logger.warning("%s was saved with other settings or from other weights; scoring %s again.", path, spec.key)
            return None
        return data["record"], data["examples"]

    def save(self, spec: RunSpec, record: dict, examples: list[dict]) -> None:
        path = self.path(spec)
        if path is None:
            return
        with atomic_file(path) as handle:
            json.dump({"record": record, "examples": examples}, handle, default=str)
