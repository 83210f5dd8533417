"""Per-sample LoRA: run a frozen base LLM where every sample of the batch has its own LoRA factors.

For target module `m` of layer `l` and sample `b` the module's output becomes

    y_b = W x_b + scale * (dropout(x_b) @ A[b, l]^T) @ B[b, l]^T

computed with two batched matmuls over the sample dimension. A and B are never repeated per token, so the
extra memory is that of a rank-r activation (`batch x tokens x r`) per module, not `batch x tokens x d x r`.
The update is added by forward hooks on the target modules, found through the module-path templates of a
`T2LConfig`; the hooks exist only inside `PerSampleLora.apply(...)` and are removed on exit, also on errors.

Activation checkpointing: a non-reentrant checkpoint re-runs each decoder layer during backward, after the
`apply` block has ended. `PerSampleLora.checkpoint_context_fn` (passed to `torch.utils.checkpoint` as
`context_fn`, see `enable_activation_checkpointing`) re-attaches the same factors for exactly that recompute.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration_t2l import T2LConfig
from ..injection import find_module


def _add_per_sample_lora(
    module: nn.Module,
    args: tuple,
    output: torch.Tensor,
    *,
    lora_A: torch.Tensor,
    lora_B: torch.Tensor,
    scaling: float,
    dropout: float,
) -> torch.Tensor:
    """Forward hook: `output + scale * (x @ A_b^T) @ B_b^T` for every sample `b` (A `[B, r, in]`, B `[B, out, r]`)."""
    x = args[0]
    if x.shape[0] != lora_A.shape[0]:
        raise ValueError(
            f"The batch has {x.shape[0]} samples but {lora_A.shape[0]} per-sample adapters were given; "
            "generate one adapter per sample (index the per-task factors by sample)."
        )
    if dropout > 0.0:
        x = F.dropout(x, p=dropout, training=True)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, in] (any middle dims folded into T)
    a = lora_A.to(flat.dtype)
    b = lora_B.to(flat.dtype)
    delta = torch.matmul(torch.matmul(flat, a.transpose(-1, -2)), b.transpose(-1, -2))  # [B, T, out]
    return output + (delta * scaling).reshape(*output.shape[:-1], delta.shape[-1]).to(output.dtype)


class PerSampleLora:
    """Attach per-sample LoRA factors to the target modules of a (frozen) base model.

    Args:
        model: the base causal LM (or a wrapper around it, e.g. a `PeftModel`).
        config: the `T2LConfig` whose `target_modules`, `module_paths`, `num_layers`, `module_shapes` and LoRA
            scaling describe where the factors go and what shape they have.

    Example:
        >>> lora = PerSampleLora(base_model, t2l.config)
        >>> factors = t2l(task_embeddings)                      # A [B, L, r, in], B [B, L, out, r] per module
        >>> with lora.apply(factors.lora_A, factors.lora_B):
        ...     logits = base_model(input_ids).logits          # sample b uses adapter b
    """

    def __init__(self, model: nn.Module, config: T2LConfig) -> None:
        self.config = config
        self.scaling = config.lora_scaling
        modules = dict(model.named_modules())
        self.targets: dict[str, list[nn.Module]] = {}
        for name in config.target_modules:
            layers = []
            for layer in range(config.num_layers):
                path = config.module_paths[name].format(layer=layer)
                try:
                    module = find_module(modules, path)
                except ValueError as err:
                    raise ValueError(
                        f"The base model has no module at {path!r} (target {name!r}, layer {layer}); the "
                        "hypernetwork was made for another architecture. Use a hypernetwork built with "
                        "T2LConfig.for_base_model(<this base model>)."
                    ) from err
                shape = [int(getattr(module, "in_features", -1)), int(getattr(module, "out_features", -1))]
                if config.module_shapes is not None and shape != list(config.module_shapes[name]):
                    raise ValueError(
                        f"{path} is {shape} (in, out) but the hypernetwork makes {name!r} factors for "
                        f"{list(config.module_shapes[name])}; use a hypernetwork made for this base model."
                    )
                layers.append(module)
            self.targets[name] = layers
        self._active: tuple | None = None

    # ------------------------------------------------------------------ hooks

    def _check_factors(self, lora_A: Mapping[str, torch.Tensor], lora_B: Mapping[str, torch.Tensor]) -> None:
        config = self.config
        for name in config.target_modules:
            if name not in lora_A or name not in lora_B:
                raise ValueError(f"No factors given for target module {name!r}; pass lora_A/lora_B for every target.")
            a, b = lora_A[name], lora_B[name]
            d_in, d_out = config.module_shapes[name]
            r = config.lora_r
            if a.dim() != 4 or tuple(a.shape[1:]) != (config.num_layers, r, d_in):
                raise ValueError(
                    f"lora_A[{name!r}] must be [batch, {config.num_layers}, {r}, {d_in}], got {tuple(a.shape)}."
                )
            if b.dim() != 4 or tuple(b.shape[1:]) != (config.num_layers, d_out, r) or b.shape[0] != a.shape[0]:
                raise ValueError(
                    f"lora_B[{name!r}] must be [{a.shape[0]}, {config.num_layers}, {d_out}, {r}], got {tuple(b.shape)}."
                )

    def _register(self, lora_A, lora_B, scaling: float, dropout: float) -> list:
        handles = []
        try:
            for name, layers in self.targets.items():
                for layer, module in enumerate(layers):
                    hook = functools.partial(
                        _add_per_sample_lora,
                        lora_A=lora_A[name][:, layer],
                        lora_B=lora_B[name][:, layer],
                        scaling=scaling,
                        dropout=dropout,
                    )
                    handles.append(module.register_forward_hook(hook))
        except BaseException:
            for handle in handles:
                handle.remove()
            raise
        return handles

    @contextlib.contextmanager
    def apply(
        self,
        lora_A: Mapping[str, torch.Tensor],
        lora_B: Mapping[str, torch.Tensor],
        *,
        scaling: float | None = None,
        dropout: float = 0.0,
    ) -> Iterator[None]:
        """Inside the block, sample `b` of every forward pass gets `lora_A[m][b]`, `lora_B[m][b]` on module `m`.

        Args:
            lora_A: per target module, `[batch, layers, r, in]` (differentiable; gradients flow back).
            lora_B: per target module, `[batch, layers, out, r]`.
            scaling: the LoRA scale; defaults to the config's (`alpha/sqrt(r)` with rsLoRA).
            dropout: LoRA dropout on the module input (pass 0 outside training).
        """
        if self._active is not None:
            raise RuntimeError("Per-sample LoRA factors are already attached to this model; nested `apply` is not allowed.")
        self._check_factors(lora_A, lora_B)
        scale = self.scaling if scaling is None else float(scaling)
        handles = self._register(lora_A, lora_B, scale, float(dropout))
        self._active = (lora_A, lora_B, scale, float(dropout))
        try:
            yield
        finally:
            self._active = None
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def _reattached(self, active: tuple) -> Iterator[None]:
        handles = self._register(*active)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def checkpoint_context_fn(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """`context_fn` for `torch.utils.checkpoint` (non-reentrant): the recompute of a checkpointed layer during
        backward sees the same per-sample factors as its forward did."""
        if self._active is None:
            return contextlib.nullcontext(), contextlib.nullcontext()
        return contextlib.nullcontext(), self._reattached(self._active)

    @property
    def is_active(self) -> bool:
        return self._active is not None


def enable_activation_checkpointing(
    base_model: nn.Module, per_sample_lora: PerSampleLora, every_n_layers: int = 1, **checkpoint_kwargs
) -> None:
    """Turn on non-reentrant activation checkpointing in a transformers model so that it works with per-sample LoRA.

    Reentrant checkpointing cannot re-attach the factors in its recompute, so `use_reentrant=True` is refused.
    """
    if checkpoint_kwargs.pop("use_reentrant", False):
        raise ValueError(
            "Per-sample LoRA needs non-reentrant activation checkpointing; drop `use_reentrant=True` "
            "(e.g. gradient_checkpointing_kwargs={'use_reentrant': False})."
        )
    if "context_fn" in checkpoint_kwargs:
        raise ValueError("`context_fn` is set by per-sample LoRA itself; do not pass one.")
    kwargs = {"use_reentrant": False, "context_fn": per_sample_lora.checkpoint_context_fn, **checkpoint_kwargs}
    enable = getattr(base_model, "activation_checkpointing_enable", None)
    if enable is None:  # transformers < 5
        base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every_n_layers)


__all__ = ["PerSampleLora", "enable_activation_checkpointing"]
