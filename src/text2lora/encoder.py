"""`DescriptionEncoder`: task description text -> task embedding f(z), the hypernetwork's input.

A thin layer over sentence-transformers that adds the T2L conventions (full-stop rule, optional prompt,
L2 normalisation times a scale), loads the model only when first needed, and caches embeddings by text.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .packaged import PACKAGED_ENCODERS


def resolve_encoder(name_or_path: str) -> str:
    """Local folder as is; a packaged encoder's installed copy; otherwise the Hub name unchanged."""
    if Path(name_or_path).is_dir():
        return name_or_path
    packaged = PACKAGED_ENCODERS.get(name_or_path)
    if packaged is not None and packaged.path() is not None:
        return str(packaged.path())
    return name_or_path


def format_description(text: str, add_period: bool = True) -> str:
    """Strip whitespace and, as the paper does, end a description that ends in a letter with a full stop."""
    if not isinstance(text, str):
        raise TypeError(f"A description must be a string, got {type(text).__name__}.")
    text = text.strip()
    if not text:
        raise ValueError("The description is empty or whitespace; describe the task in a sentence or more.")
    if add_period and text[-1].isalpha():
        text += "."
    return text


def _set_pooling(model, mode: str, name: str) -> None:
    """Make every pooling module of a `SentenceTransformer` pool with `mode` (e.g. "cls")."""
    poolings = [module for module in model if hasattr(module, "pooling_mode") and hasattr(module, "POOLING_MODES")]
    if not poolings:
        raise ValueError(f"The encoder {name!r} has no pooling module to set to {mode!r}; unset `encoder_pooling`.")
    for module in poolings:
        if mode not in module.POOLING_MODES:
            raise ValueError(f"Unknown encoder pooling {mode!r}; choose one of {module.POOLING_MODES}.")
        module.pooling_mode = mode


class DescriptionEncoder:
    """Embeds task descriptions with a sentence-transformers model, the T2L way.

    Args:
        name_or_path: sentence-transformers model name or folder.
        normalize: L2-normalise each embedding.
        scale: multiply the (normalised) embedding by this; `None` means `sqrt(dim)`.
        add_period: append "." to descriptions ending in a letter.
        prompt: text put before every description.
        max_length: the encoder's token limit (its own default when `None`).
        trust_remote_code: passed to `SentenceTransformer` (gte-large-en-v1.5 needs it).
        pooling: pooling mode of the token embeddings ("cls", "mean", ...), replacing the folder's own; `None`
            keeps it.
        device: where the encoder runs (default CPU).
        cache_size: number of embeddings kept in memory, least recently used dropped first.
    """

    def __init__(
        self,
        name_or_path: str,
        *,
        normalize: bool = True,
        scale: float | None = None,
        add_period: bool = True,
        prompt: str | None = None,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        pooling: str | None = None,
        device: str | torch.device | None = None,
        cache_size: int = 4096,
        model: Any = None,
    ) -> None:
        self.name_or_path = str(name_or_path)
        self.normalize = normalize
        self.scale = scale
        self.add_period = add_period
        self.prompt = prompt
        self.max_length = max_length
        self.trust_remote_code = trust_remote_code
        self.pooling = pooling
        self.device = str(device) if device is not None else "cpu"
        self.cache_size = cache_size
        self._model = model
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def from_config(cls, config, **kwargs: Any) -> "DescriptionEncoder":
        """The encoder a `T2LConfig` names, with its normalisation and formatting settings."""
        return cls(
            config.encoder_name_or_path,
            normalize=config.encoder_normalize,
            scale=config.encoder_scale,
            add_period=config.description_add_period,
            prompt=config.encoder_prompt,
            max_length=config.encoder_max_length,
            trust_remote_code=config.encoder_trust_remote_code,
            pooling=getattr(config, "encoder_pooling", None),
            **kwargs,
        )

    @property
    def identity(self) -> str:
        """A string that changes whenever the embedding of a given text could change."""
        return "|".join(
            str(v)
            for v in (
                self.name_or_path, self.normalize, self.scale, self.add_period, self.prompt, self.max_length, self.pooling
            )
        )

    @property
    def model(self):
        """The underlying `SentenceTransformer`, loaded on first use."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:  # pragma: no cover - it is a core dependency
            raise ImportError("Description encoding needs sentence-transformers: pip install sentence-transformers") from err
        location = resolve_encoder(self.name_or_path)
        try:
            model = SentenceTransformer(location, device=self.device, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as err:
            packaged = PACKAGED_ENCODERS.get(self.name_or_path)
            hint = (
                f"install its offline copy with `{packaged.pip_requirement}`"
                if packaged
                else "download it once with network access, or pass a local folder"
            )
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
            raise OSError(f"Could not load the description encoder {self.name_or_path!r}{offline}: {hint}.") from err
        if self.max_length is not None:
            model.max_seq_length = self.max_length
        if self.pooling is not None:
            _set_pooling(model, self.pooling, self.name_or_path)
        model.eval()
        return model

    @property
    def embedding_size(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def format(self, text: str) -> str:
        text = format_description(text, self.add_period)
        return f"{self.prompt}{text}" if self.prompt else text

    def encode(
        self,
        descriptions: str | Sequence[str],
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Embed one description (-> `[E]`) or a list (-> `[N, E]`), as float32 on CPU.

        `device` moves the encoder there first and keeps it there (trainers pass their GPU, so that embedding
        thousands of descriptions before training does not run on the CPU); `None` leaves it where it is.
        Raises `ValueError` for an empty or whitespace-only description.
        """
        single = isinstance(descriptions, str)
        texts = [self.format(d) for d in ([descriptions] if single else list(descriptions))]
        if not texts:
            raise ValueError("No descriptions given; pass at least one.")
        found = {t: self._lookup(t) for t in dict.fromkeys(texts) if t in self._cache}
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        if todo:
            if device is not None and str(device) != self.device:
                self.model.to(device)
                self.device = str(device)
            raw = self.model.encode(
                todo, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True
            )
            for text, vector in zip(todo, self._postprocess(raw.detach().to("cpu", torch.float32))):
                found[text] = self._remember(text, vector)
        out = torch.stack([found[t] for t in texts])
        return out[0] if single else out

    def _postprocess(self, raw: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            raw = torch.nn.functional.normalize(raw, p=2, dim=-1, eps=1e-12)
        scale = self.scale if self.scale is not None else raw.shape[-1] ** 0.5
        return raw * scale

    def _remember(self, text: str, vector: torch.Tensor) -> torch.Tensor:
        vector = vector.clone()
        self._cache[text] = vector
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vector

    def _lookup(self, text: str) -> torch.Tensor:
        self._cache.move_to_end(text)
        return self._cache[text]

    def clear_cache(self) -> None:
        self._cache.clear()

    def __repr__(self) -> str:
        return f"DescriptionEncoder({self.name_or_path!r}, normalize={self.normalize}, scale={self.scale})"
