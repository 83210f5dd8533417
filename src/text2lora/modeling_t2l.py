"""`T2LModel`: the Text-to-LoRA hypernetwork, as a transformers `PreTrainedModel`.

For every (description, target module, layer) triple the network sees
`concat(task_projection(f(z)), layer_embedding[l], module_embedding[m])`; all triples of a batch go through
the shared trunk in one batched pass and one matmul per module type produces the LoRA factors.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .adapters import GeneratedLora, factors_to_state_dict, lora_config_from_t2l
from .configuration_t2l import T2LConfig
from .encoder import DescriptionEncoder
from .inputs import check_generation_inputs

logger = logging.getLogger(__name__)


@dataclass
class T2LOutput(ModelOutput):
    """Generated LoRA factors per target module: `lora_A[m]` is `[batch, layers, r, in]`, `lora_B[m]` is
    `[batch, layers, out, r]` (PEFT's orientation)."""

    lora_A: dict[str, torch.Tensor] | None = None
    lora_B: dict[str, torch.Tensor] | None = None


class ResidualMLPBlock(nn.Module):
    """Pre-LayerNorm residual MLP: `x + SiLU(W2 · Dropout(SiLU(W1 · LN(x))))`."""

    def __init__(self, size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size, eps=eps)
        self.fc_in = nn.Linear(size, 4 * size)
        self.fc_out = nn.Linear(4 * size, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.silu(self.fc_out(self.dropout(F.silu(self.fc_in(self.norm(x))))))


class OutputBlock(nn.Module):
    """Last trunk block: `SiLU(W2 · Dropout(SiLU(W1 · LN(x))))`, widening D to the head input H."""

    def __init__(self, size: int, head_in_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size, eps=eps)
        self.fc_in = nn.Linear(size, 4 * size)
        self.fc_out = nn.Linear(4 * size, head_in_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.fc_out(self.dropout(F.silu(self.fc_in(self.norm(x))))))


class LoraFactorBuffers(nn.Module):
    """Per-layer tensors shaped like one module's LoRA factors: `A [L, r, in]`, `B [L, out, r]`."""

    def __init__(self, role: str, num_layers: int, rank: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.role = role  # "offset" (added to outputs), "mean" or "std" (z-score statistics)
        self.register_buffer("A", torch.zeros(num_layers, rank, d_in))
        self.register_buffer("B", torch.zeros(num_layers, d_out, rank))


def rotary_rank_code(x: torch.Tensor, base: float) -> torch.Tensor:
    """Parameter-free rotary code of the rank index, applied along dim -2 (rank) of `x [..., r, D]`."""
    rank, size = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, size, 2, device=x.device, dtype=torch.float32) / size))
    freqs = torch.arange(rank, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    half = size // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def per_description(fn, x: torch.Tensor, dim: int, out_dim: int | None = None) -> torch.Tensor:
    """`fn` on each description's slice of `x` (along `dim`) separately, results joined along `out_dim`.

    Batch invariance: a BLAS product's rounding can depend on how many rows share the call (measured: MKL's
    1-row vs n-row paths in float32, oneDNN's bfloat16 kernels for 60 vs 300 rows), so the small trunk runs per
    description and only the heads, whose rounding does not depend on the number of columns, see the whole batch.
    """
    if x.shape[dim] == 1:
        return fn(x.contiguous())
    # contiguous: a strided slice is another memory layout, and bfloat16 kernels round differently on it
    parts = [fn(part.contiguous()) for part in x.split(1, dim=dim)]
    return torch.cat(parts, dim=dim if out_dim is None else out_dim)


def apply_head(head: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """`head(features)`: the one place the output heads (the bulk of the hypernetwork) are applied.

    Computed as `x @ W^T` (`F.linear`), which writes every (description, layer) row of the output row-major, the
    layout PEFT and safetensors keep an adapter in, so no copy of the output is needed. (`W @ x^T` is up to ~10%
    faster for a single adapter, but its transposed output then needs a copy that costs ~2x the GEMM itself for a
    batch of 64 Mistral-shape adapters: `benchmarks/bench_generate.py --heads`.) Heads whose weights were packed
    for MKL with `T2LModel.pack_heads()` use the packed copy; MKL gives the same bits as `F.linear` either way.

    Batch invariance: every row's result is bit-identical whatever the number of rows in the call, except that a
    single row takes BLAS's matrix-vector path, which rounds differently; a lone row is therefore computed as a
    2-row product (tests/test_modeling.py checks adapters alone vs inside batches of 2-64).
    """
    rows = features.reshape(-1, features.shape[-1])
    lone = rows.shape[0] == 1
    if lone:
        rows = rows.expand(2, -1).contiguous()
    packed = getattr(head, "_t2l_packed", None)
    if packed is not None and packed[0] == _weight_token(head.weight) and rows.dtype == torch.float32:
        out = torch.ops.mkl._mkl_linear(rows, packed[1], head.weight, head.bias, packed[2])
    else:
        out = F.linear(rows, head.weight, head.bias)
    if lone:
        out = out[:1]
    return out.unflatten(0, features.shape[:-1])


def _weight_token(weight: torch.Tensor) -> tuple:
    """Identifies a weight's current values: storage, layout and in-place version (a packed copy is stale otherwise)."""
    return (weight.data_ptr(), weight.shape, weight.stride(), weight.dtype, weight._version)


class T2LPreTrainedModel(PreTrainedModel):
    config_class = T2LConfig
    base_model_prefix = "t2l"
    main_input_name = "task_embeddings"
    _no_split_modules: list[str] = []

    def _init_weights(self, module: nn.Module) -> None:
        """Trunk: PyTorch's defaults. Heads: bias-HyperInit, so an untrained model emits the standard LoRA init."""
        if isinstance(module, nn.Linear):
            head = next((name for name, h in getattr(self, "heads", {}).items() if h is module), None)
            if head is not None:
                init.zeros_(module.weight)
                if module.bias is not None:
                    init.copy_(module.bias, self._hyper_init_bias(head))
                return
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight)
        elif isinstance(module, nn.ParameterDict):
            for parameter in module.values():
                init.normal_(parameter)
        elif isinstance(module, LoraFactorBuffers):
            self._init_factor_buffers(module)

    def _hyper_init_bias(self, module_name: str) -> torch.Tensor:
        """L heads: bias = flattened [A as PEFT initialises it, B = 0]. M/S heads share one head for A and B, so
        their bias is zero and the LoRA init lives in the A offset instead (see `_init_factor_buffers`)."""
        config = self.config
        size = config.head_output_size(module_name)
        if config.variant != "L":
            return torch.zeros(size)
        d_in, _ = config.module_shapes[module_name]
        lora_a = torch.empty(config.lora_r, d_in)
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5))
        bias = torch.zeros(size)
        bias[: lora_a.numel()] = lora_a.flatten()
        return bias

    def _init_factor_buffers(self, module: "LoraFactorBuffers") -> None:
        if module.role == "std":
            init.ones_(module.A)
            init.ones_(module.B)
            return
        init.zeros_(module.A)
        init.zeros_(module.B)
        if module.role == "offset" and self.config.variant != "L":
            a = torch.empty(module.A.shape)
            for layer in range(a.shape[0]):
                nn.init.kaiming_uniform_(a[layer], a=math.sqrt(5))
            init.copy_(module.A, a)


class T2LModel(T2LPreTrainedModel):
    """The Text-to-LoRA hypernetwork: task embedding in, LoRA factors for every target module and layer out.

    Use `generate_lora` / `mix_lora` to go from descriptions to PEFT adapters (`GeneratedLora`); call the model directly
    (`model(task_embeddings)`) for differentiable factors in training.
    """

    _auto_class = "AutoModel"  # save_pretrained copies this file and its config into the folder (remote code)

    def __init__(self, config: T2LConfig) -> None:
        super().__init__(config)
        if config.module_shapes is None:
            raise ValueError(
                "T2LConfig.module_shapes is not set: build the config with "
                "T2LConfig.for_base_model('<base model>') so the target modules' shapes are known."
            )
        d, eps, p = config.latent_size, config.layer_norm_eps, config.dropout
        self.task_projection = nn.Linear(config.task_embedding_size, d // 2)
        self.task_norm = nn.LayerNorm(d // 2, eps=eps)
        self.layer_embedding = nn.Embedding(config.num_layers, d // 4)
        self.layer_embedding_norm = nn.LayerNorm(d // 4, eps=eps)
        self.module_embedding = nn.Embedding(len(config.target_modules), d // 4)
        self.module_embedding_norm = nn.LayerNorm(d // 4, eps=eps)
        self.mixer = nn.Sequential(
            nn.Dropout(p), nn.Linear(d, 4 * d), nn.SiLU(), nn.Dropout(p), nn.Linear(4 * d, d), nn.SiLU(), nn.Dropout(p)
        )
        self.residual_block_1 = ResidualMLPBlock(d, p, eps)
        self.residual_block_2 = ResidualMLPBlock(d, p, eps)
        self.output_block = OutputBlock(d, config.head_in_size, p, eps)
        self.heads = nn.ModuleDict(
            {
                m: nn.Linear(config.head_in_size, config.head_output_size(m), bias=config.head_bias)
                for m in config.target_modules
            }
        )
        # M and S: a learned embedding per (module, A-or-B), added to the latent before the second block.
        self.ab_embeddings = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(2, d)) for m in config.target_modules} if config.variant != "L" else {}
        )
        self.ab_embedding_norm = nn.LayerNorm(d, eps=eps) if config.variant != "L" else None
        # S with a learned rank code: an embedding per rank row instead of the parameter-free rotary code.
        learned_rank = config.variant == "S" and config.rank_embedding == "learned"
        self.rank_embedding = nn.Embedding(config.lora_r, d) if learned_rank else None
        self.rank_embedding_norm = nn.LayerNorm(d, eps=eps) if learned_rank else None
        self.ab_offsets = self._factor_buffers("offset") if config.ab_offset else None
        self.output_mean = self._factor_buffers("mean") if config.output_zscore else None
        self.output_std = self._factor_buffers("std") if config.output_zscore else None
        self._description_encoder: DescriptionEncoder | None = None
        self._task_centroids: Any = None
        self._task_centroids_read = True  # a new network has no training tasks; from_pretrained reads its folder's
        self.post_init()

    def _factor_buffers(self, role: str) -> nn.ModuleDict:
        c = self.config
        return nn.ModuleDict(
            {m: LoraFactorBuffers(role, c.num_layers, c.lora_r, *c.module_shapes[m]) for m in c.target_modules}
        )

    # ------------------------------------------------------------------ forward

    def forward(self, task_embeddings: torch.Tensor, return_dict: bool = True, **kwargs: Any) -> T2LOutput:
        """Task embeddings `[B, E]` -> LoRA factors for every target module and layer (see `T2LOutput`)."""
        config = self.config
        if task_embeddings.dim() == 1:
            task_embeddings = task_embeddings[None]
        if task_embeddings.shape[-1] != config.task_embedding_size:
            raise ValueError(
                f"Task embeddings have size {task_embeddings.shape[-1]} but this hypernetwork expects "
                f"{config.task_embedding_size} (encoder {config.encoder_name_or_path!r})."
            )
        task_embeddings = task_embeddings.to(self.task_projection.weight.dtype)
        hidden = self._trunk(task_embeddings)  # [M, B, L, D]
        if config.variant == "L":
            lora_A, lora_B = self._heads_joint(hidden)
        else:
            lora_A, lora_B = self._heads_per_factor(hidden)
        lora_A, lora_B = self._postprocess(lora_A, lora_B)
        output = T2LOutput(lora_A=lora_A, lora_B=lora_B)
        return output if return_dict else output.to_tuple()

    def _trunk(self, task_embeddings: torch.Tensor) -> torch.Tensor:
        """Conditioning vectors for all (module, description, layer) triples through mixer and first block."""
        config = self.config
        n_modules, batch, n_layers = len(config.target_modules), task_embeddings.shape[0], config.num_layers
        # One description at a time (see `per_description`): a 1-row product takes another BLAS path than an n-row
        # one, so projecting the batch at once made an adapter depend (to ~1e-7) on its batch-mates.
        task = self.task_norm(torch.stack([self.task_projection(row) for row in task_embeddings]))
        layer = self.layer_embedding_norm(self.layer_embedding.weight)
        module = self.module_embedding_norm(self.module_embedding.weight)
        x = torch.cat(
            [
                task[None, :, None, :].expand(n_modules, batch, n_layers, -1),
                layer[None, None, :, :].expand(n_modules, batch, n_layers, -1),
                module[:, None, None, :].expand(n_modules, batch, n_layers, -1),
            ],
            dim=-1,
        )
        return per_description(lambda part: self.residual_block_1(self.mixer(part)), x, dim=1)

    def _heads_joint(self, hidden: torch.Tensor):
        """L: one head output per (description, layer) holds A then B (B stored rank-major)."""
        config, r = self.config, self.config.lora_r
        features = per_description(lambda part: self.output_block(self.residual_block_2(part)), hidden, dim=1)  # [M, B, L, H]
        lora_A, lora_B = {}, {}
        for index, name in enumerate(config.target_modules):
            d_in, d_out = config.module_shapes[name]
            flat = self._apply_head(name, features[index], description_dim=0)  # [B, L, r*(in+out)]
            lora_A[name] = flat[..., : r * d_in].unflatten(-1, (r, d_in))
            lora_B[name] = flat[..., r * d_in :].unflatten(-1, (r, d_out)).transpose(-1, -2)
        return lora_A, lora_B

    def _apply_head(self, name: str, features: torch.Tensor, description_dim: int) -> torch.Tensor:
        """The head of module `name` on the whole batch in float32 (bit-identical per row whatever the batch,
        tested for 1-64 descriptions); in half precision one description at a time, because bfloat16 kernels
        pick their blocking by the number of rows (an S adapter changed inside a batch of 4)."""
        head = self.heads[name]
        if features.dtype == torch.float32:
            return apply_head(head, features)
        return per_description(lambda part: apply_head(head, part), features, dim=description_dim)

    def pack_heads(self, rows: int | None = None) -> "T2LModel":
        """Keep an MKL-packed copy of each float32 head weight, for servers that generate many adapters.

        `F.linear` re-packs the large head weights on every call; packing them once makes one Mistral-shape L
        adapter ~25% faster on a CPU (`benchmarks/bench_generate.py --floor --packed`) at the cost of a second
        copy of the heads in memory (+281 MB for a Mistral-shape L). The adapters are bit-identical with or
        without packing. A head whose weight changes afterwards (training, `load_state_dict`, `.to()`) silently
        falls back to `F.linear` until packed again; `unpack_heads()` frees the copies. Needs PyTorch's MKL (x86
        CPUs) and float32 weights; elsewhere this raises a RuntimeError naming what is missing.

        Args:
            rows: the number of rows MKL tunes the packing for (default: one adapter's, `num_layers` times the
                passes of the variant); any number of rows is computed correctly with it.
        """
        if not torch.backends.mkl.is_available() or not hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight"):
            raise RuntimeError("pack_heads needs a PyTorch build with MKL (x86 CPU); generate without packing.")
        passes = {"L": 1, "M": 2, "S": 2 * self.config.lora_r}[self.config.variant]
        rows = rows or self.config.num_layers * passes
        for name, head in self.heads.items():
            if head.weight.dtype != torch.float32 or head.weight.device.type != "cpu":
                raise RuntimeError(
                    f"pack_heads needs float32 heads on the CPU, but head {name!r} is {head.weight.dtype} on "
                    f"{head.weight.device}; call model.float().cpu() first."
                )
            with torch.no_grad():
                packed = torch.ops.mkl._mkl_reorder_linear_weight(head.weight.detach(), rows)
            head._t2l_packed = (_weight_token(head.weight), packed, rows)
        return self

    def unpack_heads(self) -> "T2LModel":
        """Free the packed head copies made by `pack_heads()`."""
        for head in self.heads.values():
            head.__dict__.pop("_t2l_packed", None)
        return self

    def _heads_per_factor(self, hidden: torch.Tensor):
        """M and S: a second pass per factor (A, B), told apart by the (module, factor) embedding."""
        config, r = self.config, self.config.lora_r
        ab = torch.stack([self.ab_embeddings[m] for m in config.target_modules])  # [M, 2, D]
        ab = self.ab_embedding_norm(ab)[:, :, None, None, :]

        def features_of(part: torch.Tensor) -> torch.Tensor:  # [M, 1, L, D] -> [M, 2, 1, L, (r,) H]
            g = self.residual_block_2(part[:, None] + ab)  # [M, 2, 1, L, D]
            if config.variant == "S":
                g = g[..., None, :].expand(*g.shape[:-1], r, g.shape[-1])
                if self.rank_embedding is None:
                    g = self.residual_block_2(rotary_rank_code(g, config.rope_base))  # [M, 2, 1, L, r, D]
                else:
                    g = g + self.residual_block_2(self.rank_embedding_norm(self.rank_embedding.weight))
            return self.output_block(g)

        features = per_description(features_of, hidden, dim=1, out_dim=2)
        lora_A, lora_B = {}, {}
        for index, name in enumerate(config.target_modules):
            d_in, d_out = config.module_shapes[name]
            out = self._apply_head(name, features[index], description_dim=1)
            if config.variant == "M":
                out = out.unflatten(-1, (r, max(d_in, d_out)))
            lora_A[name] = out[0, ..., :d_in]
            lora_B[name] = out[1, ..., :d_out].transpose(-1, -2)
        return lora_A, lora_B

    def _postprocess(self, lora_A: dict, lora_B: dict):
        config = self.config
        for name in config.target_modules:
            a, b = lora_A[name], lora_B[name]
            if self.output_mean is not None:
                a = a * (self.output_std[name].A + 1e-10) + self.output_mean[name].A
                b = b * (self.output_std[name].B + 1e-10) + self.output_mean[name].B
            if config.output_divisor != 1.0:
                a, b = a / config.output_divisor, b / config.output_divisor
            if self.ab_offsets is not None:
                a, b = a + self.ab_offsets[name].A, b + self.ab_offsets[name].B
            lora_A[name], lora_B[name] = a, b
        return lora_A, lora_B

    # ------------------------------------------------------------------ descriptions

    @property
    def description_encoder(self) -> DescriptionEncoder:
        """The encoder named in the config, created on first use (settable, e.g. to share one)."""
        if self._description_encoder is None:
            self._description_encoder = DescriptionEncoder.from_config(self.config)
        return self._description_encoder

    @description_encoder.setter
    def description_encoder(self, encoder: DescriptionEncoder) -> None:
        self._description_encoder = encoder

    @property
    def task_centroids(self):
        """The training tasks' description centroids stored with this checkpoint (`text2lora.nearest_tasks.
        TaskCentroids`), read on first use; `None` for a checkpoint without them (older ones, an untrained model) or
        without the text2lora package (remote code). Settable. Every adapter records its nearest tasks from them."""
        if not self._task_centroids_read:
            self._task_centroids_read = True
            try:
                from text2lora.nearest_tasks import load_task_centroids
            except ImportError:  # remote code without the package: adapters carry no nearest tasks
                return None
            try:
                centroids = load_task_centroids(self) if self.name_or_path else None
            except OSError as err:  # a corrupt centroid file costs the nearest tasks, not the adapters
                logger.warning("%s; adapters will not record their nearest training tasks.", err)
                centroids = None
            if centroids is not None and centroids.embedding_size == self.config.task_embedding_size:
                self._task_centroids = centroids
        return self._task_centroids

    @task_centroids.setter
    def task_centroids(self, centroids) -> None:
        self._task_centroids, self._task_centroids_read = centroids, True

    def encode_descriptions(self, descriptions: str | Sequence[str] | torch.Tensor) -> torch.Tensor:
        """Descriptions (or precomputed embeddings, passed through) -> `[B, E]` on the model's device."""
        if isinstance(descriptions, torch.Tensor):
            embeddings = descriptions if descriptions.dim() == 2 else descriptions[None]
        else:
            embeddings = self.description_encoder.encode(descriptions)
            if embeddings.dim() == 1:
                embeddings = embeddings[None]
        if embeddings.shape[-1] != self.config.task_embedding_size:
            raise ValueError(
                f"The description encoder gives {embeddings.shape[-1]}-d embeddings but this hypernetwork expects "
                f"{self.config.task_embedding_size}-d ones; use the encoder named in its config "
                f"({self.config.encoder_name_or_path!r})."
            )
        return embeddings.to(self.device, self.task_projection.weight.dtype)

    # ------------------------------------------------------------------ adapters

    @overload
    def generate_lora(self, descriptions: str, *, batch_size: int = 64, show_progress_bar: bool = False) -> GeneratedLora: ...

    @overload
    def generate_lora(
        self, descriptions: Sequence[str] | torch.Tensor, *, batch_size: int = 64, show_progress_bar: bool = False
    ) -> list[GeneratedLora]: ...

    @torch.no_grad()
    def generate_lora(self, descriptions, *, batch_size: int = 64, show_progress_bar: bool = False):
        """Generate PEFT LoRA adapters from descriptions (or precomputed task embeddings).

        A string (or one embedding `[E]`) gives one `GeneratedLora`; a list of strings (or `[N, E]` embeddings)
        gives a list with one adapter per item, made `batch_size` at a time in batched forward passes. To mix
        several descriptions into one adapter, use `mix_lora`.
        """
        check_generation_inputs(descriptions, self.config, batch_size=batch_size)
        single = isinstance(descriptions, str) or (isinstance(descriptions, torch.Tensor) and descriptions.dim() == 1)
        if isinstance(descriptions, torch.Tensor):
            labels: list[Any] = [None] * (1 if descriptions.dim() == 1 else descriptions.shape[0])
        else:
            labels = [descriptions] if isinstance(descriptions, str) else list(descriptions)
            if not labels:
                raise ValueError("No descriptions given; pass a string or a non-empty list of strings.")
        embeddings = self.encode_descriptions(descriptions if isinstance(descriptions, torch.Tensor) else labels)
        adapters = self._generate(embeddings, labels, None, batch_size, show_progress_bar)
        return adapters[0] if single else adapters

    @torch.no_grad()
    def mix_lora(self, descriptions: Sequence[str] | torch.Tensor, weights: Sequence[float]) -> GeneratedLora:
        """One adapter from several descriptions (or task embeddings `[N, E]`) mixed in task-embedding space:
        `sum_i w_i f(z_i)`. Weight 1 on one description equals that description alone."""
        check_generation_inputs(descriptions, self.config)
        if isinstance(descriptions, str):
            raise TypeError("mix_lora mixes several descriptions: pass a list of strings (and one weight each).")
        texts = None if isinstance(descriptions, torch.Tensor) else list(descriptions)
        if texts is not None and not texts:
            raise ValueError("No descriptions given; pass a non-empty list of strings.")
        embeddings = self._mix(self.encode_descriptions(descriptions if texts is None else texts), weights)
        return self._generate(embeddings, [texts], weights, 1, False)[0]

    def _generate(self, embeddings, labels: list[Any], weights, batch_size: int, show_progress_bar: bool):
        """Adapters for the rows of `embeddings` (`labels[i]` names row i in errors and in the adapter)."""
        was_training = self.training
        self.eval()
        centroids = self.task_centroids
        try:
            adapters = []
            starts = range(0, embeddings.shape[0], batch_size)
            if show_progress_bar:
                from tqdm.auto import tqdm

                starts = tqdm(starts, desc="Generating adapters", unit="batch")
            for start in starts:
                out = self(embeddings[start : start + batch_size])
                finite = self._finite_per_description(out)
                # The training tasks nearest to each row's task embedding (the mixed one for a mix): one matmul.
                nearest = centroids.nearest(embeddings[start : start + batch_size]) if centroids is not None else None
                for offset in range(out.lora_A[self.config.target_modules[0]].shape[0]):
                    label = labels[start + offset]
                    if not finite[offset]:
                        what = repr(label) if label is not None else "a task embedding"
                        raise ValueError(
                            f"The generated adapter for {what} has non-finite values (NaN or inf). The hypernetwork's "
                            "weights are probably corrupt or diverged in training; use another checkpoint."
                        )
                    adapter = self._to_adapter(out, offset, label, weights)
                    if nearest is not None:
                        adapter.nearest_tasks = [tuple(n) for n in nearest[offset]]
                        adapter.far_threshold = centroids.threshold
                    adapters.append(adapter)
        finally:
            self.train(was_training)
        return adapters

    def _mix(self, embeddings: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
        weights_t = torch.as_tensor(list(weights), dtype=embeddings.dtype, device=embeddings.device)
        if weights_t.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"Got {embeddings.shape[0]} descriptions but {weights_t.shape[0]} weights; give one weight each."
            )
        if not torch.isfinite(weights_t).all() or weights_t.sum() == 0:
            raise ValueError(f"Mixing weights must be finite and not sum to zero, got {list(weights)}.")
        return (weights_t[:, None] * embeddings).sum(0, keepdim=True)

    def _finite_per_description(self, out: T2LOutput) -> list[bool]:
        """Whether each description's factors are all finite: one pass per factor stack for the whole batch (a
        per-tensor check of each adapter cost ~15 ms per Mistral-shape adapter, a quarter of generating it)."""
        flags = None
        for factors in (out.lora_A, out.lora_B):
            for m in self.config.target_modules:
                # A sum is NaN/inf when any element is (or when finite values overflow float range, which only a
                # garbage adapter reaches); one strided reduction, no bool copy of the factors.
                sums = factors[m].sum(dim=tuple(range(1, factors[m].dim())))
                ok = torch.isfinite(sums)
                flags = ok if flags is None else flags & ok
        return flags.tolist()

    def _to_adapter(self, out: T2LOutput, index: int, description: Any, weights) -> GeneratedLora:
        lora_A = {m: out.lora_A[m][index] for m in self.config.target_modules}
        lora_B = {m: out.lora_B[m][index] for m in self.config.target_modules}
        state = factors_to_state_dict(self.config, lora_A, lora_B)
        return GeneratedLora(
            config=lora_config_from_t2l(self.config),
            state_dict=state,
            description=description,
            hypernetwork=self.name_or_path or None,
            mix_weights=[float(w) for w in weights] if weights is not None else None,
        )

    # ------------------------------------------------------------------ saving and loading

    # The product around the network (model cards, the Hub, the packaged checkpoints) lives in the text2lora package,
    # imported absolutely and only when used: a saved folder's remote code is this file, its config and what
    # `generate_lora` needs, and it loads (without cards or packaged names) where text2lora is not installed.

    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any):
        """`PreTrainedModel.save_pretrained`, plus a README.md model card (`text2lora.hub.save_with_card`:
        extra keywords `eval_results`, `datasets`, `tags`, `license`, `model_card=False` to skip it) and, when the
        hypernetwork has them, its training tasks' centroids (`task_centroids.safetensors`, for nearest tasks)."""
        try:
            from text2lora.hub import save_with_card
        except ImportError:  # remote code without the package: weights and config only
            for key in ("eval_results", "datasets", "tags", "license", "model_card", "card_repo_id"):
                kwargs.pop(key, None)
            return super().save_pretrained(save_directory, *args, **kwargs)
        result = save_with_card(self, super().save_pretrained, save_directory, *args, **kwargs)
        centroids = self.task_centroids  # the training tasks' centroids travel with the weights
        if centroids is not None and kwargs.get("is_main_process", True):
            centroids.save(save_directory)
        return result

    def push_to_hub(self, repo_id: str, **kwargs: Any):
        """Upload weights, config, modelling code and our model card in one commit (transformers' own
        `push_to_hub` would replace the card with a generic one); see `text2lora.hub.push_hypernetwork_to_hub`."""
        try:
            from text2lora.hub import push_hypernetwork_to_hub
        except ImportError as err:
            raise ImportError("T2LModel.push_to_hub needs the text2lora package: pip install text2lora") from err
        return push_hypernetwork_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args: Any, **kwargs: Any):
        """`PreTrainedModel.from_pretrained`, but strict: a checkpoint with missing, unexpected or mis-shaped
        weights is an error (a partial checkpoint would silently generate initialisation adapters)."""
        try:
            from text2lora.packaged import resolve_checkpoint  # names of the checkpoints shipped in the package
        except ImportError:
            resolve_checkpoint = None
        want_info = kwargs.pop("output_loading_info", False)
        location = str(pretrained_model_name_or_path)
        if resolve_checkpoint is not None:
            location = resolve_checkpoint(pretrained_model_name_or_path)
        if Path(location).is_dir() and kwargs.get("config") is None:  # from_pretrained(folder, config=...) reads none
            check_hypernetwork_folder(Path(location) / (kwargs.get("subfolder") or ""))
        try:
            model, info = super().from_pretrained(location, *args, output_loading_info=True, **kwargs)
        except Exception as err:
            if "safetensor" in type(err).__name__.lower() or "header" in str(err).lower():
                raise OSError(
                    f"The hypernetwork checkpoint at {pretrained_model_name_or_path!r} is corrupt or truncated "
                    f"({err}). Download or save it again."
                ) from err
            raise
        problems = {k: sorted(v) for k, v in _as_dict(info).items() if k in _STRICT_KEYS and v}
        if problems:
            raise OSError(
                f"The hypernetwork checkpoint at {pretrained_model_name_or_path!r} does not match its config: "
                f"{problems}. It is partial or from another architecture; save it again with save_pretrained."
            )
        model._task_centroids_read = False  # the checkpoint's task centroids, read on first use
        if location != str(pretrained_model_name_or_path):
            model.config._name_or_path = model.name_or_path = str(pretrained_model_name_or_path)
        if "dtype" not in kwargs and "torch_dtype" not in kwargs and not runs_fast_in(model.dtype, model.device):
            # Stored in half precision (the shipped default is bfloat16) but this CPU has no instructions for it,
            # where it is ~4x slower than float32: compute in float32 (exact upcast). Pass `dtype=` to choose.
            model = model.float()
        return (model, info) if want_info else model


_STRICT_KEYS = ("missing_keys", "unexpected_keys", "mismatched_keys")


def runs_fast_in(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `device` computes in `dtype` natively: float32 always; on a CPU, bfloat16 only with AVX512-BF16 or
    AMX (elsewhere PyTorch emulates it, slower than float32) and float16 never; accelerators: as they report."""
    if dtype == torch.float32 or device.type != "cpu":
        return True
    if dtype == torch.bfloat16:
        cpu = getattr(torch, "cpu", None)
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def check_hypernetwork_folder(folder: str | os.PathLike) -> None:
    """Raise if the local `folder` is not a loadable saved hypernetwork: no `config.json` (FileNotFoundError),
    or weights whose shapes differ from what its `config.json` describes (ValueError, before transformers
    re-initialises them and prints a report)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json, so it is not a saved hypernetwork; pass the folder that "
            "T2LModel.save_pretrained or `t2l init` wrote."
        )
    config_file = folder / "config.json"
    try:
        data = json.loads(config_file.read_text())
        model_type = data.get("model_type") if isinstance(data, dict) else None
        if model_type != T2LConfig.model_type:
            raise ValueError(f"its model_type is {model_type!r}, not {T2LConfig.model_type!r}")
        with torch.device("meta"):
            expected = {k: list(v.shape) for k, v in T2LModel(T2LConfig.from_pretrained(folder)).state_dict().items()}
    except ValueError as err:
        raise ValueError(
            f"{str(config_file)!r} is not a usable hypernetwork config ({err}); pass a folder saved by "
            "T2LModel.save_pretrained or `t2l init`."
        ) from None
    shapes = _saved_shapes(folder)  # empty without safetensors weights: transformers then says what is missing
    wrong = [f"{k} {shapes[k]} (config: {expected[k]})" for k in expected if k in shapes and shapes[k] != expected[k]]
    if wrong:
        raise ValueError(
            f"The weights in {str(folder)!r} do not fit its config.json: {len(wrong)} tensor(s) have other shapes: "
            f"{'; '.join(wrong)}. The config was edited or belongs to another checkpoint; restore the config.json "
            "saved with these weights."
        )


def _saved_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the safetensors headers (no tensor data is read)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):  # a broken index: loading it reports that
            return {}
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return {}
    shapes: dict[str, list[int]] = {}
    try:
        for name in files:
            with safe_open(str(folder / name), framework="pt") as handle:
                for key in handle.keys():
                    shapes[key] = list(handle.get_slice(key).get_shape())
    except Exception:  # a corrupt or truncated file: loading it reports that (T2LModel.from_pretrained)
        return {}
    return shapes



def _as_dict(info: Any) -> dict:
    if isinstance(info, dict):
        return info
    return {k: getattr(info, k, None) for k in _STRICT_KEYS}


__all__ = ["T2LModel", "T2LOutput", "T2LPreTrainedModel"]
