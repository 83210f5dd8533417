"""Serving generated adapters with vLLM: descriptions in, adapters a running vLLM server (or an offline
`vllm.LLM`) applies per request.

vLLM batches requests for many LoRA adapters on one base model. text2lora's part is to turn a description into
a standard PEFT adapter folder with a stable name, check it fits vLLM's limits, and hand it over:

- to a running OpenAI-compatible server started with runtime LoRA updating
  (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve BASE --enable-lora --max-lora-rank 8`), through its
  `/v1/load_lora_adapter` endpoint (`VLLMAdapterClient`); requests then name the adapter as their `model`;
- to an offline `vllm.LLM(..., enable_lora=True)` as a `LoRARequest` (`lora_request`).

Names are derived from the adapter cache key (hypernetwork content, description, mixing weights, dtype), so
the same description gives the same name in every process and a server never loads it twice.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..cache import AdapterCache
from ..checkpoints import HypernetworkLike
from ..io_utils import cache_home
from ..pipeline import LazyHypernetwork, adapter_key, describe_request, get_or_generate
from .transformers import as_request

VLLM_DEFAULT_MAX_LORA_RANK = 16
SERVED_ADAPTERS_DIR = "served_adapters"


@dataclass(frozen=True)
class ServedAdapter:
    """A generated adapter ready for vLLM: its stable `name`, the folder the server reads, and what it is for."""

    name: str
    path: Path
    description: str | list[str] | None
    weights: list[float] | None = None
    rank: int = 8
    base_model: str | None = None
    lora_int_id: int = field(default=1)


def check_vllm_compatible(adapter_config: Any, max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK) -> None:
    """Raise `ValueError` if vLLM would refuse an adapter with this PEFT `LoraConfig` (or its dict)."""
    get = (
        adapter_config.get
        if isinstance(adapter_config, dict)
        else (lambda k, d=None: getattr(adapter_config, k, d))
    )
    rank = int(get("r", 0))
    if rank > max_lora_rank:
        raise ValueError(
            f"The adapter has rank {rank} but the vLLM server allows at most {max_lora_rank}; start it with "
            f"--max-lora-rank {rank} or larger (vLLM accepts 8, 16, 32, 64, ...)."
        )
    if get("modules_to_save"):
        raise ValueError(f"vLLM cannot serve adapters with modules_to_save ({get('modules_to_save')}).")
    if get("use_dora", False):
        raise ValueError("vLLM cannot serve DoRA adapters (use_dora=True).")
    if (get("bias", "none") or "none") != "none":
        raise ValueError(f"vLLM cannot serve LoRA adapters that train biases (bias={get('bias')!r}).")


def _lora_int_id(name: str) -> int:
    """A positive 31-bit integer derived from the name (vLLM wants a unique id > 0 per adapter)."""
    return int(name.rsplit("-", 1)[-1][:8], 16) % (2**31 - 1) + 1


def prepare_adapter(
    t2l: HypernetworkLike,
    description: str | Sequence[str] | torch.Tensor,
    *,
    weights: Sequence[float] | None = None,
    cache: AdapterCache | bool | str | os.PathLike | None = True,
    adapter_dir: str | os.PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK,
    name_prefix: str = "t2l",
) -> ServedAdapter:
    """Generate (or read from the cache) the adapter for `description` and put it in `adapter_dir/<name>`.

    The name is `<name_prefix>-<adapter key>` (`pipeline.adapter_key`), the same in every process. The folder under
    `adapter_dir` (default `<text2lora cache>/served_adapters`) is not subject to the adapter cache's eviction,
    because a server may re-read it whenever it swaps the adapter back in.
    """
    request = as_request(description, weights)
    source = LazyHypernetwork(t2l)
    check_vllm_compatible({"r": source.config().lora_r}, max_lora_rank)
    root = Path(adapter_dir or cache_home() / SERVED_ADAPTERS_DIR)
    name = f"{name_prefix}-{adapter_key(source.identity(), request, dtype=dtype)[:16]}"
    target = root / name
    if not (target / "adapter_model.safetensors").is_file():
        (generated,) = get_or_generate([request], source, cache=cache, dtype=dtype)
        generated.save_pretrained(target, dtype=dtype)  # atomic
    config = json.loads((target / "adapter_config.json").read_text())
    check_vllm_compatible(config, max_lora_rank)
    return ServedAdapter(
        name=name,
        path=target,
        description=describe_request(request),
        weights=[float(w) for w in weights] if weights is not None else None,
        rank=int(config["r"]),
        base_model=config.get("base_model_name_or_path"),
        lora_int_id=_lora_int_id(name),
    )


def lora_request(
    t2l: HypernetworkLike,
    description: str | Sequence[str] | torch.Tensor,
    *,
    weights: Sequence[float] | None = None,
    max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK,
    **kwargs: Any,
):
    """A `vllm.lora.request.LoRARequest` for offline `vllm.LLM(..., enable_lora=True).generate(...,
    lora_request=...)`. `kwargs` go to `prepare_adapter` (cache, adapter_dir, dtype)."""
    try:
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        raise ImportError(
            "Offline vLLM serving needs vLLM: pip install vllm (on a machine with a supported GPU)."
        ) from err
    adapter = prepare_adapter(t2l, description, weights=weights, max_lora_rank=max_lora_rank, **kwargs)
    return LoRARequest(lora_name=adapter.name, lora_int_id=adapter.lora_int_id, lora_path=str(adapter.path))


class VLLMError(RuntimeError):
    """The vLLM server answered with an error."""


class VLLMAdapterClient:
    """Loads generated adapters into a running vLLM OpenAI-compatible server and sends requests to them.

    Args:
        t2l: the hypernetwork that generates the adapters (`T2LModel`, folder or Hub name; `None`: the default).
        base_url: the server, e.g. "http://localhost:8000" (the `/v1` routes are appended).
        api_key: sent as a bearer token when the server was started with `--api-key`.
        max_lora_rank: the server's `--max-lora-rank` (adapters above it are refused before the request).
        cache, adapter_dir, dtype: see `prepare_adapter`. The server must be able to read `adapter_dir`
            (same machine, or a shared volume).
        timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        t2l: HypernetworkLike,
        base_url: str = "http://localhost:8000",
        *,
        api_key: str | None = None,
        max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK,
        cache: AdapterCache | bool | str | os.PathLike | None = True,
        adapter_dir: str | os.PathLike | None = None,
        dtype: str | torch.dtype | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.t2l = t2l
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.max_lora_rank = max_lora_rank
        self.cache = cache
        self.adapter_dir = adapter_dir
        self.dtype = dtype
        self.timeout = timeout
        self.loaded: dict[str, ServedAdapter] = {}

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, route: str, payload: dict | None = None) -> tuple[int, str]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.base_url}{route}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")
        except urllib.error.URLError as err:
            raise ConnectionError(
                f"No vLLM server at {self.base_url} ({err.reason}). Start one with "
                "`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve <base model> --enable-lora "
                f"--max-lora-rank {self.max_lora_rank}`."
            ) from err

    # ------------------------------------------------------------------ adapters

    def load(
        self, description: str | Sequence[str] | torch.Tensor, *, weights: Sequence[float] | None = None
    ) -> ServedAdapter:
        """Make the adapter for `description` available on the server; returns it (use `.name` as `model`).

        Loading an adapter the server already has is not an error: names are stable, so it is the same one.
        """
        adapter = prepare_adapter(
            self.t2l,
            description,
            weights=weights,
            cache=self.cache,
            adapter_dir=self.adapter_dir,
            dtype=self.dtype,
            max_lora_rank=self.max_lora_rank,
        )
        if adapter.name in self.loaded:
            return adapter
        status, body = self._request(
            "POST", "/v1/load_lora_adapter", {"lora_name": adapter.name, "lora_path": str(adapter.path)}
        )
        if status == 404:
            raise VLLMError(
                f"{self.base_url} has no /v1/load_lora_adapter route: start vLLM with the environment variable "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora."
            )
        if status != 200 and "already been loaded" not in body:
            raise VLLMError(f"vLLM refused adapter {adapter.name} ({status}): {body.strip()[:500]}")
        self.loaded[adapter.name] = adapter
        return adapter

    def unload(self, adapter: ServedAdapter | str) -> None:
        """Remove an adapter from the server (its folder stays, for reloading later)."""
        name = adapter.name if isinstance(adapter, ServedAdapter) else str(adapter)
        status, body = self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if status != 200:
            raise VLLMError(f"vLLM could not unload {name} ({status}): {body.strip()[:500]}")
        self.loaded.pop(name, None)

    def models(self) -> list[str]:
        """Model ids the server lists: the base model and every loaded adapter."""
        status, body = self._request("GET", "/v1/models")
        if status != 200:
            raise VLLMError(f"GET /v1/models failed ({status}): {body.strip()[:500]}")
        return [entry["id"] for entry in json.loads(body).get("data", [])]

    def chat(
        self,
        description: str | Sequence[str],
        messages: list[dict[str, str]] | str,
        *,
        weights: Sequence[float] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Load the adapter for `description` if needed and send one chat completion request through it.

        `messages` is an OpenAI-style list or a single user message; `params` (max_tokens, temperature, ...)
        go into the request body. Returns the server's JSON response.
        """
        adapter = self.load(description, weights=weights)
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        status, body = self._request(
            "POST", "/v1/chat/completions", {"model": adapter.name, "messages": messages, **params}
        )
        if status != 200:
            raise VLLMError(f"Chat completion with {adapter.name} failed ({status}): {body.strip()[:500]}")
        return json.loads(body)


__all__ = [
    "ServedAdapter",
    "VLLMAdapterClient",
    "VLLMError",
    "check_vllm_compatible",
    "lora_request",
    "prepare_adapter",
]
