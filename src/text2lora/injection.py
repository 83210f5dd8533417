"""Writing generated LoRA weights into the LoRA layers PEFT has injected in a live model."""

from __future__ import annotations

import torch
from torch import nn

from .adapters import GeneratedLora
from .base_models import layout_of


def check_base_model_matches(model: nn.Module, config) -> None:
    """Raise a `ValueError` if `model`'s target modules differ in number of layers or shape from `config`."""
    layout = layout_of(model, list(config.target_modules))
    if layout["num_layers"] != config.num_layers:
        raise ValueError(
            f"The base model has {layout['num_layers']} layers but the hypernetwork makes adapters for "
            f"{config.num_layers} ({config.base_model_name_or_path}); use a hypernetwork trained for this base model."
        )
    for module, shape in config.module_shapes.items():
        if layout["shapes"][module] != list(shape):
            raise ValueError(
                f"Target module {module!r} is {layout['shapes'][module]} (in, out) in the base model but "
                f"{list(shape)} in the hypernetwork ({config.base_model_name_or_path}); use a matching hypernetwork."
            )


def _module_index(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def find_module(modules: dict[str, nn.Module], path: str) -> nn.Module:
    """The module at `path`, allowing `model` to be a wrapper (PeftModel) or an inner model (LlamaModel)."""
    if path in modules:
        return modules[path]
    matches = [n for n in modules if n.endswith("." + path) or path.endswith("." + n)]
    if len(matches) != 1:
        raise ValueError(f"Could not locate {path!r} in the model (candidates: {matches[:4]}).")
    return modules[matches[0]]


@torch.no_grad()
def write_lora_weights(model: nn.Module, adapter_name: str, adapter: GeneratedLora, config) -> None:
    """Copy `adapter`'s A and B into the LoRA layers named `adapter_name` (in place, keeping dtype/device)."""
    modules = _module_index(model)
    for layer in range(config.num_layers):
        for module_name in config.target_modules:
            path = config.module_paths[module_name].format(layer=layer)
            lora_layer = find_module(modules, path)
            if not hasattr(lora_layer, "lora_A") or adapter_name not in lora_layer.lora_A:
                raise ValueError(f"{path} has no LoRA adapter named {adapter_name!r} to write into.")
            for factor, container in (("A", lora_layer.lora_A), ("B", lora_layer.lora_B)):
                target = container[adapter_name].weight
                value = adapter.state_dict[f"base_model.model.{path}.lora_{factor}.weight"]
                if target.shape != value.shape:
                    raise ValueError(f"LoRA {factor} of {path} is {tuple(target.shape)}, generated {tuple(value.shape)}.")
                if target.is_meta:
                    device = lora_layer.get_base_layer().weight.device
                    device = device if device.type != "meta" else torch.device("cpu")
                    container[adapter_name].weight = nn.Parameter(
                        value.to(device, target.dtype), requires_grad=target.requires_grad
                    )
                else:
                    target.copy_(value)
