"""`DescriptionEncoder`: task description text -> task embedding f(z), the hypernetwork's input.

A thin layer over sentence-transformers that adds the T2L conventions (full-stop rule, optional prompt,
L2 normalisation times a scale), loads the model only when first needed, and caches embeddings by text.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
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


class DescriptionTruncatedWarning(UserWarning):
    """A description is longer than the description encoder reads: its end is ignored."""


@dataclass(frozen=True)
class Truncation:
    """A description (as the encoder sees it, prompt included) longer than the encoder's token limit."""

    text: str
    tokens: int
    limit: int
    encoder: str

    @property
    def dropped(self) -> int:
        return self.tokens - self.limit

    def message(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:59] + "…"
        return (
            f"The description is too long: {self.tokens} tokens, but the description encoder reads at most "
            f"{self.limit} ({self.encoder!r}), so its last {self.dropped} tokens are ignored and descriptions that "
            f"differ only there give the same adapter ({preview!r}). Shorten it to at most {self.limit} tokens."
        )


def remote_code_refused_message(name: str) -> str:
    """The one error for an encoder whose hypernetwork asks for remote code that the caller did not allow."""
    return (
        f"The description encoder {name!r} runs Python code from its model folder (this hypernetwork's config sets "
        "encoder_trust_remote_code), and text2lora runs such code only when you allow it. If you trust "
        f"{name!r}, pass trust_remote_code=True (load_hypernetwork, load_description_adapter, TextLoraConfig, "
        "DescriptionEncoder.from_config) or --trust-remote-code (t2l generate)."
    )


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

    A classic Transformer -> Pooling -> Normalize folder (the packaged encoder is one) is read with plain
    transformers and encodes one description at a time, exactly as `SentenceTransformer.encode` does for a text
    alone, so an embedding never depends on the other descriptions encoded with it
    (`integrations/sentence_transformers.py`); any other folder goes through sentence-transformers.

    Args:
        name_or_path: sentence-transformers model name or folder.
        normalize: L2-normalise each embedding.
        scale: multiply the (normalised) embedding by this; `None` means `sqrt(dim)`.
        add_period: append "." to descriptions ending in a letter.
        prompt: text put before every description.
        max_length: the encoder's token limit (its own default when `None`).
        trust_remote_code: allow `SentenceTransformer` to run Python code from the encoder's folder
            (gte-large-en-v1.5 needs it). Only the caller grants this; a config can only ask (`needs_remote_code`).
        needs_remote_code: the hypernetwork's config says this encoder needs remote code
            (`encoder_trust_remote_code`); loading it without `trust_remote_code=True` is then an error that says
            so, before any of its code is run.
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
        needs_remote_code: bool = False,
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
        self.needs_remote_code = needs_remote_code
        self.pooling = pooling
        self.device = str(device) if device is not None else "cpu"
        self.cache_size = cache_size
        self._model = model
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def from_config(cls, config, *, trust_remote_code: bool = False, **kwargs: Any) -> "DescriptionEncoder":
        """The encoder a `T2LConfig` names, with its normalisation and formatting settings.

        The config's `encoder_trust_remote_code` only says the encoder needs remote code; it runs only with
        `trust_remote_code=True` from the caller (as in transformers).
        """
        return cls(
            config.encoder_name_or_path,
            normalize=config.encoder_normalize,
            scale=config.encoder_scale,
            add_period=config.description_add_period,
            prompt=config.encoder_prompt,
            max_length=config.encoder_max_length,
            trust_remote_code=trust_remote_code,
            needs_remote_code=bool(config.encoder_trust_remote_code),
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
        """The underlying encoder (a `PlainSentenceEncoder` or a `SentenceTransformer`), loaded on first use."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        if self.needs_remote_code and not self.trust_remote_code:
            raise ValueError(remote_code_refused_message(self.name_or_path))
        location = resolve_encoder(self.name_or_path)
        if not self.needs_remote_code:
            # The common Transformer -> Pooling -> Normalize folder (the packaged encoder is one) in plain
            # transformers, one text at a time: embeddings independent of the batch, no sentence-transformers import.
            # Imported absolutely inside try: a saved hypernetwork's remote-code copy of this file has no text2lora
            # package, and transformers' remote-code copier skips imports in try blocks.
            try:
                from text2lora.integrations.sentence_transformers import PlainSentenceEncoder
            except ImportError:
                PlainSentenceEncoder = None
            plain = None
            if PlainSentenceEncoder is not None:
                plain = PlainSentenceEncoder.from_folder(location, pooling=self.pooling, device=self.device)
            if plain is not None:
                if self.max_length is not None:
                    plain.max_seq_length = self.max_length
                return plain.eval()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:  # pragma: no cover - it is a core dependency
            raise ImportError("Description encoding needs sentence-transformers: pip install sentence-transformers") from err
        try:
            model = SentenceTransformer(location, device=self.device, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as err:
            if not self.trust_remote_code and "trust_remote_code" in str(err):
                raise ValueError(
                    f"The description encoder {self.name_or_path!r} needs to run Python code from its model folder; "
                    f"if you trust it, pass trust_remote_code=True (t2l generate: --trust-remote-code) and set "
                    "encoder_trust_remote_code in the hypernetwork's config."
                ) from err
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

    def truncation(self, description: str) -> Truncation | None:
        """How `description` would be cut by the encoder's token limit, or `None` if it fits."""
        return self._truncations([self.format(description)])[0]

    def _truncations(self, texts: Sequence[str]) -> list[Truncation | None]:
        """For formatted texts: each one's `Truncation` (special tokens counted, as the encoder counts them)."""
        model = self.model
        limit = getattr(model, "max_seq_length", None)
        tokenizer = getattr(model, "tokenizer", None)
        if not limit or tokenizer is None or not callable(tokenizer):
            return [None] * len(texts)
        try:
            ids = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
        except TypeError:  # a tokenizer without transformers' `verbose` switch
            ids = tokenizer(list(texts))["input_ids"]
        lengths = [len(row) for row in ids]
        return [
            Truncation(text, n, int(limit), self.name_or_path) if n > limit else None for text, n in zip(texts, lengths)
        ]

    def _warn_truncated(self, texts: Sequence[str]) -> None:
        cut = [t for t in self._truncations(texts) if t is not None]
        if not cut:
            return
        if len(cut) == 1:
            message = cut[0].message()
        else:
            shown = "; ".join(f"{t.text[:40]!r}: {t.dropped} of {t.tokens} tokens dropped" for t in cut[:5])
            rest = cut[5:]
            more = f"; and {len(rest)} more (up to {max(t.dropped for t in rest)} tokens dropped)" if rest else ""
            message = (
                f"{len(cut)} descriptions are longer than the {cut[0].limit} tokens the description encoder "
                f"{self.name_or_path!r} reads, so their ends are ignored (descriptions that differ only there give "
                f"the same adapter): {shown}{more}. Shorten them."
            )
        warnings.warn(message, DescriptionTruncatedWarning, stacklevel=3)

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
            self._warn_truncated(todo)
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
