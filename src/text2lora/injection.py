"""Writing generated LoRA weights into the LoRA layers PEFT has injected in a live model (the low-level half of
`loading.load_generated_adapter`; layers are found from the adapter's own state-dict keys)."""

from __future__ import annotations

import torch
from torch import nn

from .adapters import PEFT_PREFIX, GeneratedLora
from .base_models import layout_of
from .configuration_t2l import lora_scaling


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


def adapter_module_paths(adapter: GeneratedLora) -> list[str]:
    """The module paths (e.g. `model.layers.0.self_attn.q_proj`) that `adapter` has factors for, in order."""
    paths = dict.fromkeys(
        key[len(PEFT_PREFIX) :].rsplit(".lora_", 1)[0] for key in adapter.state_dict if key.startswith(PEFT_PREFIX)
    )
    return list(paths)


def check_fits(model: nn.Module, adapter: GeneratedLora) -> None:
    """Raise a `ValueError`, before anything is changed, unless `adapter` has factors of the right shapes for every
    target module of `model` (same modules, same number of layers, same in/out sizes)."""
    modules = _module_index(model)
    paths = adapter_module_paths(adapter)
    targets = set(adapter.config.target_modules or [])
    present = [n for n in modules if n.rsplit(".", 1)[-1] in targets]
    if len(present) != len(paths):
        raise ValueError(
            f"The adapter has factors for {len(paths)} modules but the model has {len(present)} modules named "
            f"{sorted(targets)}; it was generated for another base model ({adapter.config.base_model_name_or_path}). "
            "Use a hypernetwork trained for this base model."
        )
    for path in paths:
        module = find_module(modules, path)
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        weight = getattr(base, "weight", None)
        a = adapter.state_dict[f"{PEFT_PREFIX}{path}.lora_A.weight"]
        b = adapter.state_dict[f"{PEFT_PREFIX}{path}.lora_B.weight"]
        if weight is not None and tuple(weight.shape) != (b.shape[0], a.shape[1]):
            raise ValueError(
                f"{path} is {list(weight.shape[::-1])} (in, out) in the base model but the adapter is for "
                f"[{a.shape[1]}, {b.shape[0]}] ({adapter.config.base_model_name_or_path}); use a matching hypernetwork."
            )


def _target_layers(model: nn.Module, adapter_name: str, paths: list[str]) -> dict[str, nn.Module]:
    """Path -> LoRA layer holding `adapter_name`, for every module path in `paths`."""
    modules = _module_index(model)
    layers = {}
    for path in paths:
        lora_layer = find_module(modules, path)
        if not hasattr(lora_layer, "lora_A") or adapter_name not in lora_layer.lora_A:
            raise ValueError(f"{path} has no LoRA adapter named {adapter_name!r} to write into.")
        layers[path] = lora_layer
    return layers


def adapter_parts(model: nn.Module, adapter_name: str) -> dict[nn.Module, list[str]]:
    """Every module holding a part of the adapter `adapter_name` -> the names of those parts ("lora_A", ...).

    Found through PEFT's own `adapter_layer_names` containers, keyed by the exact adapter name: an adapter called
    "0" or "layers" is not confused with the layer index or module name in a parameter's dotted path.
    """
    found: dict[nn.Module, list[str]] = {}
    for module in model.modules():
        for attr in getattr(module, "adapter_layer_names", ()):
            container = getattr(module, attr, None)
            if isinstance(container, (nn.ModuleDict, nn.ParameterDict)) and adapter_name in container:
                found.setdefault(module, []).append(attr)
    return found


def set_adapter_trainable(model: nn.Module, adapter_name: str, trainable: bool) -> None:
    """`requires_grad` of every parameter of the adapter `adapter_name`, and of no other adapter's."""
    for module, attrs in adapter_parts(model, adapter_name).items():
        for attr in attrs:
            part = getattr(module, attr)[adapter_name]
            for parameter in [part] if isinstance(part, nn.Parameter) else part.parameters():
                parameter.requires_grad_(trainable)


def check_replaceable(model: nn.Module, adapter_name: str, paths: list[str]) -> None:
    """Raise a `ValueError` unless the existing adapter `adapter_name` is a plain LoRA (A and B only, unmerged) on
    exactly the modules `paths`, so writing a generated adapter over it leaves nothing of the old one."""
    layers = _target_layers(model, adapter_name, paths)
    targets = {id(layer) for layer in layers.values()}
    problems = []
    for path, layer in layers.items():
        if adapter_name in getattr(layer, "merged_adapters", ()):
            problems.append(f"it is merged into the base weights of {path} (call unmerge_adapter() first)")
        elif getattr(layer, "lora_variant", {}).get(adapter_name) is not None:
            problems.append(f"it is a {type(layer.lora_variant[adapter_name]).__name__} (e.g. DoRA) at {path}")
        elif getattr(layer.lora_B[adapter_name], "bias", None) is not None:
            problems.append(f"it has a LoRA bias at {path}")
    for module, attrs in adapter_parts(model, adapter_name).items():
        extra = [a for a in attrs if id(module) not in targets or a not in ("lora_A", "lora_B")]
        if extra:
            problems.append(f"it has {extra} on a {type(module).__name__} outside the generated adapter's layers")
    if problems:
        raise ValueError(
            f"Adapter {adapter_name!r} cannot be replaced in place: {problems[0]}"
            + (f" (and {len(problems) - 1} more such place(s))" if len(problems) > 1 else "")
            + f". Delete it first (model.delete_adapter({adapter_name!r})) or use another adapter_name."
        )


def set_lora_settings(model: nn.Module, adapter_name: str, lora_config, paths: list[str]) -> None:
    """Give the LoRA layers of `adapter_name` the alpha, rsLoRA switch, scaling and dropout of `lora_config` (a
    `LoraConfig` of the same rank), as a fresh load of an adapter with that config would have."""
    r, alpha = lora_config.r, lora_config.lora_alpha
    scaling = lora_scaling(r, alpha, lora_config.use_rslora)
    for layer in _target_layers(model, adapter_name, paths).values():
        if layer.r[adapter_name] != r:
            raise ValueError(f"Adapter {adapter_name!r} has rank {layer.r[adapter_name]}, the new settings rank {r}.")
        layer.lora_alpha[adapter_name] = alpha
        layer.scaling[adapter_name] = scaling
        if hasattr(layer, "use_rslora"):
            layer.use_rslora[adapter_name] = lora_config.use_rslora
        dropout = nn.Dropout(p=lora_config.lora_dropout) if lora_config.lora_dropout > 0 else nn.Identity()
        layer.lora_dropout[adapter_name] = dropout.train(layer.training)


@torch.no_grad()
def write_lora_weights(model: nn.Module, adapter_name: str, adapter: GeneratedLora) -> None:
    """Copy `adapter`'s A and B into the LoRA layers named `adapter_name` (in place, keeping dtype/device).

    Every layer is checked before any is written, so a mismatch leaves the model as it was."""
    writes = []
    for path, lora_layer in _target_layers(model, adapter_name, adapter_module_paths(adapter)).items():
        for factor, container in (("A", lora_layer.lora_A), ("B", lora_layer.lora_B)):
            target = container[adapter_name].weight
            value = adapter.state_dict[f"{PEFT_PREFIX}{path}.lora_{factor}.weight"]
            if target.shape != value.shape:
                raise ValueError(f"LoRA {factor} of {path} is {tuple(target.shape)}, generated {tuple(value.shape)}.")
            writes.append((lora_layer, container, target, value))
    for lora_layer, container, target, value in writes:
        if target.is_meta:
            device = lora_layer.get_base_layer().weight.device
            device = device if device.type != "meta" else torch.device("cpu")
            container[adapter_name].weight = nn.Parameter(
                value.to(device, target.dtype), requires_grad=target.requires_grad
            )
        else:
            target.copy_(value)
