"""The adapter pipeline every entry point shares: requests in, adapters out, read from the cache or generated.

    from text2lora.pipeline import Mix, get_or_generate

    adapters = get_or_generate(["Solve math word problems.", Mix(("Be terse.", "Answer in French."), (0.5, 0.5))])

A request is a description (`str`), a `Mix` of several descriptions with weights, or a task embedding (`[E]`
tensor). `get_or_generate` keys each request (`adapter_key`), reads the hits from the `AdapterCache`, and only
for the misses loads the hypernetwork (a `LazyHypernetwork`: a saved folder is identified from its files, so a
run whose adapters are all cached never builds the model) and generates them in batched forward passes. The CLI,
the Space, vLLM serving, evaluation and `load_description_adapter` all go through here; loading the result into
a model is `loading.load_generated_adapter`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from .adapters import GeneratedLora, as_dtype, package_version
from .cache import AdapterCache, resolve_cache
from .checkpoints import HypernetworkLike, load_hypernetwork
from .fingerprints import HypernetworkIdentity, identify
from .packaged import default_hypernetwork_name, resolve_checkpoint

if TYPE_CHECKING:
    from .modeling_t2l import T2LModel

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: adapters record their nearest training tasks (entries of format 1 lack them)


@dataclass(frozen=True)
class Mix:
    """One adapter made from several descriptions mixed in task-embedding space with `weights` (one each)."""

    descriptions: tuple[str, ...]
    weights: tuple[float, ...]

    def __init__(self, descriptions: Sequence[str], weights: Sequence[float]) -> None:
        if isinstance(descriptions, str):
            raise TypeError("Mix takes several descriptions: a list of strings, and one weight each.")
        object.__setattr__(self, "descriptions", tuple(descriptions))
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        if len(self.descriptions) != len(self.weights):
            raise ValueError(
                f"Got {len(self.descriptions)} descriptions but {len(self.weights)} weights; give one weight each."
            )


AdapterRequest = Union[str, Mix, torch.Tensor]


def adapter_key(
    identity: HypernetworkIdentity, request: AdapterRequest, *, dtype: str | torch.dtype | None = None
) -> str:
    """The cache key of one adapter: the hypernetwork's content, its encoder's settings, the description text (as
    the encoder formats it), mix or embedding, the mixing weights, the dtype and the text2lora version."""
    weights = None
    if isinstance(request, torch.Tensor):
        if request.dim() != 1:
            raise ValueError("One adapter key is for one task embedding ([E]); pass the rows one by one.")
        tensor = request.detach().to("cpu", torch.float32).contiguous()
        what: Any = {"embedding": hashlib.sha256(tensor.numpy().tobytes()).hexdigest(), "shape": list(tensor.shape)}
    else:
        if isinstance(request, Mix):
            texts, weights = list(request.descriptions), list(request.weights)
        elif isinstance(request, str):
            texts = [request]
        else:
            raise TypeError(f"An adapter request is a description, a Mix or a task embedding, got {type(request).__name__}.")
        if not texts:
            raise ValueError("No descriptions given; pass a non-empty string or Mix.")
        fmt = getattr(identity.encoder, "format", None)
        what = {
            "texts": [fmt(t) if fmt else str(t).strip() for t in texts],
            "encoder": getattr(identity.encoder, "identity", repr(identity.encoder)),
        }
    payload = {
        "format": CACHE_FORMAT,
        "text2lora": package_version(),
        "hypernetwork": identity.fingerprint,
        "input": what,
        "weights": weights,
        "dtype": str(as_dtype(dtype) or torch.float32),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


class LazyHypernetwork:
    """A hypernetwork named by a `HypernetworkLike`, loaded (`load_hypernetwork`) only when an adapter must be
    generated. `identity()` needs no model for a saved folder (the shipped default included): its files are hashed.

    Args:
        t2l: a `T2LModel`, a local folder, a Hub name, or `None` for the shipped default.
        trust_remote_code: let the description encoder run code from its folder if the config needs it.
    """

    def __init__(self, t2l: HypernetworkLike = None, *, trust_remote_code: bool = False) -> None:
        from .modeling_t2l import T2LModel

        self.trust_remote_code = trust_remote_code
        self.model: T2LModel | None = None
        self.name: str | None
        if isinstance(t2l, T2LModel):
            self.model = load_hypernetwork(t2l, trust_remote_code=trust_remote_code)
            self.name = t2l.name_or_path or None
        else:
            self.name = default_hypernetwork_name() if t2l is None else str(t2l)
        self._identity: HypernetworkIdentity | None = None
        self.generated = 0  # adapters generated through this object (not read from a cache)

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> T2LModel:
        if self.model is None:
            self.model = load_hypernetwork(self.name, trust_remote_code=self.trust_remote_code)
        return self.model

    def folder(self) -> Path | None:
        """The saved folder this hypernetwork is read from, if it is a local (or packaged) one."""
        if self.name is None:
            return None
        try:
            folder = Path(resolve_checkpoint(self.name))
        except FileNotFoundError:
            return None
        return folder if (folder / "config.json").is_file() else None

    def config(self):
        """The hypernetwork's `T2LConfig`, read from its folder while it is not loaded (no model is built)."""
        folder = self.folder() if self.model is None else None
        if folder is not None:
            from .configuration_t2l import T2LConfig

            return T2LConfig.from_pretrained(folder)
        return self.load().config

    def identity(self) -> HypernetworkIdentity:
        if self._identity is None:
            # A model in memory is hashed as it is (it may differ from its folder); otherwise the folder's files.
            source: Any = self.model if self.model is not None else (self.folder() or self.load())
            self._identity = identify(source, name=self.name)
        return self._identity

    def generate(self, requests: Sequence[AdapterRequest], *, batch_size: int = 64, show_progress_bar: bool = False):
        """Adapters for `requests`, in order: descriptions in batched passes, each mix and embedding on its own."""
        model = self.load()
        out: list[GeneratedLora | None] = [None] * len(requests)
        texts = [i for i, r in enumerate(requests) if isinstance(r, str)]
        if texts:
            made = model.generate_lora(
                [requests[i] for i in texts], batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            for i, adapter in zip(texts, made):
                out[i] = adapter
        for i, request in enumerate(requests):
            if isinstance(request, Mix):
                out[i] = model.mix_lora(list(request.descriptions), list(request.weights))
            elif isinstance(request, torch.Tensor):
                out[i] = model.generate_lora(request)
        self.generated += len(requests)
        return out


def get_or_generate(
    requests: Sequence[AdapterRequest],
    t2l: HypernetworkLike | LazyHypernetwork = None,
    *,
    cache: AdapterCache | bool | str | os.PathLike | None = True,
    dtype: str | torch.dtype | None = None,
    batch_size: int = 64,
    show_progress_bar: bool = False,
    trust_remote_code: bool = False,
    write_cache: bool = True,
    on_cache_error: Callable[[OSError], None] | None = None,
) -> list[GeneratedLora]:
    """One adapter per request (a description, a `Mix` or a task embedding), in order, in `dtype` (default
    float32): read from the cache, or generated by the hypernetwork (loaded only if something is missing) and
    stored.

    Args:
        requests: what to make; repeated requests are made once.
        t2l: the hypernetwork (`HypernetworkLike`), or a `LazyHypernetwork` to see afterwards whether it was loaded.
        cache: `True`/`None` for the default `AdapterCache` (off with `$TEXT2LORA_DISABLE_ADAPTER_CACHE`), a folder,
            an `AdapterCache`, or `False` to always generate.
        write_cache: store new adapters (a cache that cannot be written costs a warning, or `on_cache_error`).
        trust_remote_code: see `LazyHypernetwork`.
    """
    from .inputs import check_generation_inputs

    if isinstance(requests, (str, Mix, torch.Tensor)):
        raise TypeError("get_or_generate takes a list of requests; wrap one in a list.")
    requests = list(requests)
    for request in requests:
        if isinstance(request, torch.Tensor) and request.dim() != 1:
            raise ValueError(f"A task-embedding request is one row [E], got shape {list(request.shape)}; pass rows.")
        check_generation_inputs(list(request.descriptions) if isinstance(request, Mix) else request)
    source = t2l if isinstance(t2l, LazyHypernetwork) else LazyHypernetwork(t2l, trust_remote_code=trust_remote_code)
    store = resolve_cache(cache)
    if store is None:
        made = source.generate(requests, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return [a.to(dtype) if dtype is not None else a for a in made]
    identity = source.identity()
    keys = [adapter_key(identity, r, dtype=dtype) for r in requests]
    found: dict[str, GeneratedLora | None] = {k: store.read(k, identity.name) for k in dict.fromkeys(keys)}
    missing = [k for k, v in found.items() if v is None]
    if missing:
        todo = [requests[keys.index(k)] for k in missing]
        for key, adapter in zip(missing, source.generate(todo, batch_size=batch_size, show_progress_bar=show_progress_bar)):
            adapter = adapter.to(dtype) if dtype is not None else adapter
            if write_cache:
                _put(store, key, adapter, on_cache_error)
            found[key] = adapter
    return [found[k] for k in keys]


def _put(store: AdapterCache, key: str, adapter: GeneratedLora, on_error: Callable[[OSError], None] | None) -> None:
    """`store.put`, but a cache that cannot be written (read-only, full disk) only costs a warning."""
    try:
        store.put(key, adapter)
    except OSError as err:
        if on_error is not None:
            on_error(err)
        else:
            logger.warning("Could not write to the adapter cache %s (%s); continuing without caching.", store.cache_dir, err)


def describe_request(request: AdapterRequest) -> str | list[str] | None:
    """What an adapter made for `request` records as its description."""
    if isinstance(request, Mix):
        return list(request.descriptions)
    return request if isinstance(request, str) else None


__all__ = ["AdapterRequest", "LazyHypernetwork", "Mix", "adapter_key", "describe_request", "get_or_generate"]
