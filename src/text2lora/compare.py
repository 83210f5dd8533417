"""Answer one prompt with a base model and with a saved adapter on it, greedily, for a side-by-side look.

Used by `t2l generate --prompt`; the Space and the examples can call it too:

    from text2lora import load_base_model
    from text2lora.compare import compare_answers

    model, tokenizer = load_base_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    base, adapted = compare_answers(model, tokenizer, "adapters/french", "Good morning!")   # or a GeneratedLora
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch

from .adapters import GeneratedLora, read_generated_lora
from .loading import load_generated_adapter

COMPARE_ADAPTER_NAME = "t2l_compare"


class ComparedAnswers(NamedTuple):
    """The bare base model's answer and the adapted model's answer to the same prompt."""

    base: str
    adapted: str


def check_prompt(prompt: str | None) -> str:
    """Return `prompt` if it has text; raise a `ValueError` that says so otherwise."""
    if prompt is None or not str(prompt).strip():
        raise ValueError('The prompt is empty: give some text to answer, e.g. --prompt "What is 12 * 7?".')
    return str(prompt)


def answer(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 64, *, streamer: Any = None) -> str:
    """Greedy answer of `model` to `prompt` as one user message in the tokenizer's chat template.

    Decoding is greedy (`do_sample=False`); everything else comes from the model's own generation config.
    `streamer` (e.g. a `transformers.TextStreamer`) is passed to `generate` to show the answer as it grows.
    """
    check_prompt(prompt)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "The base model's tokenizer has no chat template, so the prompt cannot be formatted as a user message."
        )
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    device = getattr(model, "device", None) or torch.device("cpu")
    inputs = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    extra = {}
    if getattr(model.generation_config, "pad_token_id", None) is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is not None:
            extra["pad_token_id"] = pad
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer, **extra
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def compare_answers(
    base_model: Any,
    tokenizer: Any,
    adapter: GeneratedLora | str | os.PathLike,
    prompt: str,
    max_new_tokens: int = 64,
    *,
    base_answer: str | None = None,
) -> ComparedAnswers:
    """Answer `prompt` with `base_model` as it is, then with `adapter` (a `GeneratedLora`, or a folder it was saved
    in) active.

    `base_model` is a transformers `PreTrainedModel` without adapters (loaded adapters, if any, are disabled for
    the base answer and stay loaded but inactive for the adapted one). The adapter is loaded with
    `load_generated_adapter` under a temporary name and removed again afterwards, so the model is left as it was given: with no adapter
    layers at all if it had none. Pass `base_answer` to reuse a base answer already computed for this prompt
    (e.g. when comparing several adapters); it is returned unchanged.

    Returns `ComparedAnswers(base, adapted)`, two strings.
    """
    from peft import PeftModel

    if isinstance(base_model, PeftModel):
        raise TypeError("compare_answers takes a transformers model, not a PeftModel: pass peft_model.get_base_model().")
    check_prompt(prompt)
    had_adapters = bool(getattr(base_model, "_hf_peft_config_loaded", False))
    previous = list(base_model.active_adapters()) if had_adapters else []
    name = COMPARE_ADAPTER_NAME
    while had_adapters and name in base_model.peft_config:
        name += "_"
    was_training = base_model.training
    base_model.eval()
    try:
        if base_answer is None:
            if had_adapters:
                base_model.disable_adapters()
            try:
                base_answer = answer(base_model, tokenizer, prompt, max_new_tokens)
            finally:
                if had_adapters:
                    base_model.enable_adapters()
        if not isinstance(adapter, GeneratedLora):
            adapter = read_generated_lora(adapter)
        load_generated_adapter(base_model, adapter, name)
        try:
            base_model.set_adapter(name)
            base_model.eval()
            adapted = answer(base_model, tokenizer, prompt, max_new_tokens)
        finally:
            base_model.delete_adapter(name)
            if had_adapters:
                base_model.set_adapter(previous if len(previous) > 1 else previous[0])
            else:
                _remove_adapter_layers(base_model)
    finally:
        base_model.train(was_training)
    return ComparedAnswers(base_answer, adapted)


def _remove_adapter_layers(model: torch.nn.Module) -> None:
    """Put back the original layers where PEFT left empty adapter wrappers (after its last adapter was deleted)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in wrapped:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, module.get_base_layer())
