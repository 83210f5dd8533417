"""Sentence-transformers model folders, read with plain transformers when they hold the common pipeline.

Most sentence encoders, the packaged all-MiniLM-L6-v2 among them, are a transformers model followed by mean or CLS
pooling and, optionally, L2 normalisation (`modules.json`: Transformer -> Pooling -> Normalize), saved in the
classic folder format (`sentence_bert_config.json` holding at most `max_seq_length` and `do_lower_case`; folders
saved by sentence-transformers 6 describe their inputs with modality settings instead). For such a folder
`PlainSentenceEncoder` computes exactly what `SentenceTransformer.encode` computes for one text at a time, without
importing sentence-transformers (whose import pulls in scikit-learn and SciPy: ~3 s of a cold `t2l generate` on a
2-core CPU). It also encodes **one text at a time**: `SentenceTransformer.encode` pads each batch to its longest
text, which changes other texts' embeddings in the last bits, so a description's adapter would depend on the other
descriptions generated with it. Any other folder (other modules, other pooling, remote code) returns `None` from
`PlainSentenceEncoder.from_folder`, and the caller uses sentence-transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

POOLING_MODES = ("mean", "cls")
_LEGACY_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _read_json(path: Path) -> dict[str, Any] | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pooling_mode(config: dict[str, Any]) -> str | None:
    """The folder's pooling mode, or None when it is anything but one plain mode."""
    if config.get("include_prompt", True) is not True:
        return None
    if isinstance(config.get("pooling_mode"), str):
        return config["pooling_mode"]
    modes = [mode for flag, mode in _LEGACY_FLAGS.items() if config.get(flag)]
    return modes[0] if len(modes) == 1 else None


class PlainSentenceEncoder:
    """A Transformer -> Pooling (mean or CLS) -> optional Normalize sentence-transformers folder, in transformers.

    The interface is the part of `SentenceTransformer` that `DescriptionEncoder` uses: `encode`, `tokenizer`,
    `max_seq_length`, `get_embedding_dimension`, `to`, `eval`.
    """

    def __init__(self, model, tokenizer, *, pooling: str, normalize: bool, max_seq_length: int | None,
                 do_lower_case: bool = False) -> None:  # fmt: skip
        self.auto_model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, pooling: str | None = None, device: str | None = None
    ) -> PlainSentenceEncoder | None:
        """The encoder in `folder`, or None when the folder is not the plain pipeline (or not a local folder).

        Args:
            pooling: replaces the folder's pooling mode (None keeps it); a mode other than mean or CLS gives None.
        """
        folder = Path(folder)
        modules = _read_json(folder / "modules.json") if folder.is_dir() else None
        if not isinstance(modules, list) or len(modules) not in (2, 3):
            return None
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
            return None
        transformer_dir = folder / modules[0].get("path", "")
        settings = _read_json(transformer_dir / "sentence_bert_config.json") or {}
        pooling_config = _read_json(folder / modules[1].get("path", "") / "config.json")
        if not isinstance(settings, dict) or not isinstance(pooling_config, dict):
            return None
        mode = pooling or _pooling_mode(pooling_config)
        if mode not in POOLING_MODES or set(settings) - {"max_seq_length", "do_lower_case"}:
            # model_args, tokenizer_args, or sentence-transformers 6's modality settings: it knows what they mean
            return None
        if "auto_map" in (_read_json(transformer_dir / "config.json") or {}):
            return None  # remote code: sentence-transformers handles the consent
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(str(transformer_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
        encoder = cls(
            model.eval(),
            tokenizer,
            pooling=mode,
            normalize=len(modules) == 3,
            max_seq_length=settings.get("max_seq_length"),
            do_lower_case=bool(settings.get("do_lower_case", False)),
        )
        return encoder.to(device) if device else encoder

    def to(self, device) -> PlainSentenceEncoder:
        self.auto_model.to(device)
        return self

    def eval(self) -> PlainSentenceEncoder:
        self.auto_model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.auto_model.parameters()).device

    def get_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_tensor: bool = True) -> torch.Tensor:  # fmt: skip
        """`[N, E]` embeddings, one text at a time (`batch_size` is accepted for compatibility and not used)."""
        from tqdm.auto import tqdm

        rows = [self._encode_one(text) for text in tqdm(texts, disable=not show_progress_bar, desc="Encoding")]
        return torch.stack(rows)

    def _encode_one(self, text: str) -> torch.Tensor:
        text = text.strip()
        if self.do_lower_case:
            text = text.lower()
        kwargs = {"truncation": "longest_first", "max_length": self.max_seq_length} if self.max_seq_length else {}
        features = self.tokenizer([text], padding=True, return_tensors="pt", **kwargs).to(self.device)
        tokens = self.auto_model(**features, return_dict=True).last_hidden_state
        if self.pooling == "cls":
            embedding = tokens[:, 0]
        else:
            mask = features["attention_mask"].unsqueeze(-1).expand(tokens.size()).to(tokens.dtype)
            embedding = torch.sum(tokens * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, p=2, dim=1)
        return embedding[0]
