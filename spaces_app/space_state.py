"""The state behind the Text-to-LoRA Space, without Gradio: hypernetworks, the adapters this app made, and one base
model with adapter slots. `app.py` wires it to the UI.

A thin shell over text2lora's pipeline: `get_or_generate` makes an adapter (or reads it from the on-disk adapter
cache), and `load_generated_adapter` puts the very adapter the app holds into a slot of the base model;
`set_adapter` / `disable_adapters` switch between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from text2lora.adapters import PEFT_PREFIX, GeneratedLora
from text2lora.base_models import load_base_model
from text2lora.cache import resolve_cache
from text2lora.cards import hypernetwork_is_untrained
from text2lora.checkpoints import HypernetworkLike, load_hypernetwork
from text2lora.configuration_t2l import T2LConfig
from text2lora.loading import load_generated_adapter
from text2lora.modeling_t2l import T2LModel
from text2lora.nearest_tasks import adapter_far_warning
from text2lora.packaged import default_hypernetwork_name
from text2lora.pipeline import AdapterRequest, LazyHypernetwork, Mix, get_or_generate

EXAMPLE_DESCRIPTIONS = [
    "Solve grade-school math word problems step by step and end with the final number.",
    "Answer multiple-choice science questions by giving the letter of the correct option.",
    "Classify the sentiment of a movie review as positive or negative.",
    "Translate English sentences into French.",
    "Write a short Python function that solves the described programming problem.",
]
EXAMPLE_PROMPTS = [
    "A baker has 24 muffins and sells 9 of them. How many muffins are left?",
    "Which gas do plants absorb from the air? (A) oxygen (B) carbon dioxide (C) nitrogen",
    "Review: The plot was thin but the acting was wonderful. Sentiment?",
]
MAX_DESCRIPTION_CHARS = 2000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpaceRequest:
    """What an adapter is made from: hypernetwork, description(s) and (for a mix) weights. Its key names the
    adapter in this app's memory and in the base model's adapter slots."""

    hypernetwork: str
    descriptions: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        payload = json.dumps([self.hypernetwork, self.descriptions, self.weights])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def pipeline_request(self) -> AdapterRequest:
        """What `get_or_generate` makes: the description, or the mix."""
        return self.descriptions[0] if self.weights is None else Mix(self.descriptions, self.weights)


@dataclass
class AdapterResult:
    """A generated adapter with what the UI shows about it."""

    request: SpaceRequest
    adapter: GeneratedLora
    seconds: float
    zip_path: Path
    norms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    source: str = "hypernetwork"  # or "adapter cache" (read from the on-disk cache)


class SpaceError(ValueError):
    """A problem with the user's input, shown to them as is."""


def adapter_norms(adapter: GeneratedLora, config: T2LConfig) -> dict[str, dict[str, list[float]]]:
    """Per target module, per layer: ||scale * B A||_F (the weight update), ||A||_F and ||B||_F."""
    norms: dict[str, dict[str, list[float]]] = {}
    for module in config.target_modules:
        rows: dict[str, list[float]] = {"delta": [], "A": [], "B": []}
        for layer in range(config.num_layers):
            path = config.module_paths[module].format(layer=layer)
            a = adapter.state_dict[f"{PEFT_PREFIX}{path}.lora_A.weight"].float()
            b = adapter.state_dict[f"{PEFT_PREFIX}{path}.lora_B.weight"].float()
            rows["delta"].append(float(adapter.scaling * torch.linalg.matrix_norm(b @ a)))
            rows["A"].append(float(torch.linalg.matrix_norm(a)))
            rows["B"].append(float(torch.linalg.matrix_norm(b)))
        norms[module] = rows
    return norms


def norms_figure(norms: dict[str, dict[str, list[float]]], title: str) -> Figure:
    """Two panels: the weight update per layer, and the norms of A and B per layer, one line per module."""
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    for index, (module, rows) in enumerate(norms.items()):
        color = f"C{index}"
        layers = range(len(rows["delta"]))
        left.plot(layers, rows["delta"], marker="o", markersize=3, color=color, label=module)
        right.plot(layers, rows["A"], color=color, label=f"{module} A")
        right.plot(layers, rows["B"], color=color, linestyle="--", label=f"{module} B")
    left.set(title="update ||scale · B A||", xlabel="layer", ylabel="Frobenius norm")
    right.set(title="factors ||A||, ||B||", xlabel="layer")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8)
    right.legend(fontsize=8, ncol=2)
    figure.suptitle(title, fontsize=9)
    return figure


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} kB"


class _StopWhenSet:
    """A generation stopping criterion that fires when the request is abandoned (e.g. the user left)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class Text2LoraSpace:
    """The state behind the demo: hypernetworks, the adapter cache and one base model with adapter slots.

    Args:
        t2l: the hypernetwork shown first (`T2LModel`, Hub name or folder). `None`: text2lora's shipped default.
        base_model: base model for that hypernetwork (name or folder); defaults to the one in its config.
        max_prompt_tokens: longest prompt accepted (after the chat template).
        max_new_tokens: upper limit of the answer-length slider.
        adapter_cache: on-disk adapter cache: `True` for text2lora's default `AdapterCache`, a folder, an
            `AdapterCache`, or `False` to keep adapters in memory only.
        adapter_cache_size: generated adapters kept in memory (with their zips and plots).
        adapter_slots: adapters kept loaded in the base model at once.
    """

    def __init__(
        self,
        t2l: HypernetworkLike = None,
        base_model: str | os.PathLike | None = None,
        *,
        max_prompt_tokens: int = 512,
        max_new_tokens: int = 256,
        adapter_cache: Any = True,
        adapter_cache_size: int = 64,
        adapter_slots: int = 4,
    ) -> None:
        self.max_prompt_tokens = max_prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.adapter_cache = resolve_cache(adapter_cache)
        self.cache_warning: str | None = None  # set when the on-disk cache turned out to be unwritable
        self.adapter_cache_size = adapter_cache_size
        self.adapter_slots = adapter_slots
        self._hypernetworks: OrderedDict[str, T2LModel] = OrderedDict()
        self.default_hypernetwork: str | None = None
        self._base_models: dict[str, str] = {}
        self._adapters: OrderedDict[str, AdapterResult] = OrderedDict()
        self._adapter_lock = threading.Lock()
        self._chat_lock = threading.Lock()
        self._chat: tuple[str, Any, Any] | None = None  # (base model name, model, tokenizer)
        self._slots: OrderedDict[str, str] = OrderedDict()  # adapter key -> adapter name in the base model
        self.work_dir = Path(tempfile.mkdtemp(prefix="text2lora-space-"))
        weakref.finalize(self, shutil.rmtree, self.work_dir, True)

        self.default_hypernetwork = self.add_hypernetwork(default_hypernetwork_name() if t2l is None else t2l)
        if base_model is not None:
            self._base_models[self.default_hypernetwork] = str(base_model)
        self.hypernetwork(self.default_hypernetwork).encode_descriptions("Load the encoder now.")  # not on a request

    # ------------------------------------------------------------------ hypernetworks

    def add_hypernetwork(self, t2l: HypernetworkLike) -> str:
        """Register a hypernetwork (instance, Hub name or folder); returns the name sessions refer to it by."""
        if isinstance(t2l, T2LModel):
            name = t2l.name_or_path or f"in-memory hypernetwork {id(t2l):x}"
            model = t2l.eval()
        else:
            name = str(t2l).strip()
            if not name:
                raise SpaceError("Enter a Hub name (owner/name) or a local folder of a Text-to-LoRA hypernetwork.")
            try:
                model = load_hypernetwork(name)
            except Exception as err:  # not found, offline, wrong architecture...: tell the user why
                raise SpaceError(f"Could not load the hypernetwork {name!r}: {err}") from err
        self._refuse_remote_code(name, model)
        self._hypernetworks[name] = model
        self._hypernetworks.move_to_end(name)
        while len(self._hypernetworks) > 4:  # keep memory bounded; the default always stays
            evicted = next(n for n in self._hypernetworks if n != self.default_hypernetwork)
            del self._hypernetworks[evicted]
        return name

    @staticmethod
    def _refuse_remote_code(name: str, model: T2LModel) -> None:
        """This app never lets a description encoder run code from its folder: a hypernetwork whose config asks for
        it is refused (unless the instance passed in already carries its owner's consent)."""
        if model.config.encoder_trust_remote_code and not model.description_encoder.trust_remote_code:
            raise SpaceError(
                f"The hypernetwork {name!r} needs its description encoder {model.config.encoder_name_or_path!r} to "
                "run Python code from its model folder (encoder_trust_remote_code), and this demo never runs such "
                "code. Use a hypernetwork whose encoder needs none, or, if you trust it, run it on your own machine "
                f"with `t2l generate --t2l {name} --trust-remote-code`."
            )

    def hypernetwork(self, name: str) -> T2LModel:
        if name not in self._hypernetworks:
            self.add_hypernetwork(name)
        return self._hypernetworks[name]

    def base_model_name(self, hypernetwork: str) -> str:
        return self._base_models.get(hypernetwork) or self.hypernetwork(hypernetwork).config.base_model_name_or_path

    def describe_hypernetwork(self, name: str) -> str:
        t2l = self.hypernetwork(name)
        config = t2l.config
        lines = [
            (
                f"**Hypernetwork** `{name}` — variant {config.variant}, {t2l.num_parameters():,} parameters; "
                f"base model `{self.base_model_name(name)}`; rank {config.lora_r} on "
                f"{', '.join(config.target_modules)} × {config.num_layers} layers; "
                f"encoder `{config.encoder_name_or_path}`."
            )
        ]
        if hypernetwork_is_untrained(t2l):
            lines.append(
                "⚠️ **This hypernetwork is untrained**: its adapters are the LoRA initialisation (B = 0, so ΔW = 0), "
                "whatever the description, and the adapted model answers exactly like the base model. "
                "Load a trained hypernetwork below to see descriptions change the model."
            )
        return "\n\n".join(lines)

    # ------------------------------------------------------------------ adapters

    def check_description(self, t2l: T2LModel, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise SpaceError("The description is empty: describe the task in a sentence or two.")
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise SpaceError(
                f"The description is too long ({len(text):,} characters; at most {MAX_DESCRIPTION_CHARS:,}). "
                "Describe the task in a few sentences."
            )
        cut = t2l.description_encoder.truncation(text)  # the check every description gets (a warning elsewhere)
        if cut is not None:
            raise SpaceError(cut.message())
        return text

    def adapter_request(
        self, hypernetwork: str, description: str, mix_description: str = "", mix_weight: float = 0.0
    ) -> SpaceRequest:
        """Validate the inputs; a second description with a weight > 0 makes a mix `(1-w)·first + w·second`."""
        t2l = self.hypernetwork(hypernetwork)
        first = self.check_description(t2l, description)
        if mix_description and mix_description.strip() and mix_weight > 0:
            if not 0 < mix_weight <= 1:
                raise SpaceError(f"The mixing weight must be between 0 and 1, got {mix_weight}.")
            second = self.check_description(t2l, mix_description)
            return SpaceRequest(hypernetwork, (first, second), (round(1 - mix_weight, 4), round(mix_weight, 4)))
        return SpaceRequest(hypernetwork, (first,))

    def generate(self, request: SpaceRequest) -> tuple[AdapterResult, bool]:
        """The adapter for `request`, and whether this app had made it before (then it is returned at once).

        New requests go through the on-disk `AdapterCache` (when enabled), so a description generated in an
        earlier run, or with `t2l generate`, is read back instead of generated again.
        """
        with self._adapter_lock:
            known = self._adapters.get(request.key)
            if known is not None:
                self._adapters.move_to_end(request.key)
                return known, True
            t2l = self.hypernetwork(request.hypernetwork)
            source = LazyHypernetwork(t2l)
            start = time.perf_counter()
            (adapter,) = get_or_generate(
                [request.pipeline_request],
                source,
                cache=self.adapter_cache if self.adapter_cache is not None else False,
                write_cache=self.cache_warning is None,  # an unwritable cache is not offered for writing again
                on_cache_error=self._cache_unwritable,
            )
            seconds = time.perf_counter() - start
            source_name = "hypernetwork" if source.generated else "adapter cache"
            result = AdapterResult(
                request=request,
                adapter=adapter,
                seconds=seconds,
                zip_path=self._zip(adapter, request),
                norms=adapter_norms(adapter, t2l.config),
                source=source_name,
            )
            self._adapters[request.key] = result
            while len(self._adapters) > self.adapter_cache_size:
                _, evicted = self._adapters.popitem(last=False)
                shutil.rmtree(evicted.zip_path.parent, ignore_errors=True)
            return result, False

    def _cache_unwritable(self, err: OSError) -> None:
        """A cache that cannot be written (read-only, full) costs one warning, as in `t2l generate`: the app goes
        on without writing to it (its entries are still read)."""
        self.cache_warning = (
            f"The adapter cache {self.adapter_cache.cache_dir} cannot be written ({err}); continuing without "
            "writing to it: new adapters are kept in memory only."
        )
        logger.warning(self.cache_warning)

    def _zip(self, adapter: GeneratedLora, request: SpaceRequest) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "-", request.descriptions[0].lower()).strip("-")[:40].strip("-") or "adapter"
        folder = self.work_dir / request.key
        name = f"t2l-adapter-{slug}"
        adapter.save_pretrained(folder / name)
        return Path(shutil.make_archive(str(folder / name), "zip", root_dir=folder, base_dir=name))

    def summary(self, result: AdapterResult, cached: bool) -> str:
        adapter, request = result.adapter, result.request
        config = adapter.config
        if request.weights:
            described = " + ".join(f"{w:g} × “{d}”" for d, w in zip(request.descriptions, request.weights))
        else:
            described = f"“{request.descriptions[0]}”"
        timing = f"{result.seconds * 1000:.1f} ms"
        made = "read from the adapter cache" if result.source == "adapter cache" else "generated"
        when = f"made earlier in this session ({made} in {timing})" if cached else f"{made} in {timing}"
        update = [v for rows in result.norms.values() for v in rows["delta"]]
        dtype = str(next(iter(adapter.state_dict.values())).dtype).removeprefix("torch.")
        lines = [
            f"### Adapter ready — {when}",
            f"- description: {described}",
            f"- size: {adapter.num_parameters:,} parameters, {_size(adapter.nbytes)} ({dtype})",
            (
                f"- rank {config.r}, alpha {config.lora_alpha:g} on {', '.join(sorted(config.target_modules))}; "
                f"mean update norm {sum(update) / max(len(update), 1):.4g}"
            ),
        ]
        if all(v == 0 for v in update):
            lines.append("- ΔW = 0 everywhere: this is the LoRA initialisation, so the adapted model equals the base.")
        if adapter.nearest_tasks:  # hypernetworks with task centroids (the shipped default) record them
            nearest = ", ".join(f"`{name}` {similarity:.2f}" for name, similarity in adapter.nearest_tasks)
            lines.append(f"- nearest training tasks (cosine similarity): {nearest}")
            warning = adapter_far_warning(adapter)
            if warning:
                lines.append(f"\n**⚠ {warning}**")
        return "\n".join(lines)

    # ------------------------------------------------------------------ answers

    def _chat_model(self, hypernetwork: str):
        """The base model for this hypernetwork (one in memory; replaced when another base is needed)."""
        base = self.base_model_name(hypernetwork)
        if self._chat is None or self._chat[0] != base:
            self._chat = None
            self._slots.clear()
            model, tokenizer = load_base_model(base)
            self._chat = (base, model.eval(), tokenizer)
        return self._chat[1], self._chat[2]

    def _activate(self, model: Any, request: SpaceRequest) -> str:
        """Load the adapter this app holds for `request` into a slot of the base model (kept for reuse) and make it
        the active one."""
        slot = self._slots.get(request.key)
        if slot is None:
            slot = f"t2l_{request.key}"
            result, _ = self.generate(request)  # the adapter made for the UI (made again only if evicted since)
            load_generated_adapter(model, result.adapter, slot)
            self._slots[request.key] = slot
            while len(self._slots) > self.adapter_slots:
                _, evicted = self._slots.popitem(last=False)
                model.delete_adapter(evicted)
        self._slots.move_to_end(request.key)
        model.set_adapter(slot)
        return slot

    def encode_prompt(self, tokenizer: Any, model: Any, prompt: str, max_new_tokens: int) -> dict[str, torch.Tensor]:
        prompt = (prompt or "").strip()
        if not prompt:
            raise SpaceError("The prompt is empty: ask the models something.")
        if not 1 <= int(max_new_tokens) <= self.max_new_tokens:
            raise SpaceError(f"Answer length must be between 1 and {self.max_new_tokens} tokens, got {max_new_tokens}.")
        if getattr(tokenizer, "chat_template", None):
            inputs = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            inputs = tokenizer(prompt, return_tensors="pt")
        length = int(inputs["input_ids"].shape[-1])
        if length > self.max_prompt_tokens:
            raise SpaceError(
                f"The prompt is too long: {length} tokens (with the chat template); this demo accepts at most "
                f"{self.max_prompt_tokens}. Shorten it."
            )
        context = getattr(model.config, "max_position_embeddings", None)
        if context and length + int(max_new_tokens) > context:
            raise SpaceError(
                f"Prompt ({length} tokens) plus answer ({max_new_tokens}) exceed the model's context of {context} "
                "tokens; shorten the prompt or the answer length."
            )
        return {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}

    def stream_answers(self, request: SpaceRequest, prompt: str, max_new_tokens: int) -> Iterator[tuple[str, str]]:
        """Stream `(base answer, adapted answer)`: the base model first (adapters disabled), then the adapted one.

        The base model is shared by all users, so a request holds it from the first token to the last.
        """
        with self._chat_lock:
            model, tokenizer = self._chat_model(request.hypernetwork)
            inputs = self.encode_prompt(tokenizer, model, prompt, max_new_tokens)
            try:
                self._activate(model, request)
            except ValueError as err:  # e.g. a hypernetwork made for another base model
                raise SpaceError(str(err)) from err
            base = adapted = ""
            model.disable_adapters()
            try:
                for piece in self._stream(model, tokenizer, inputs, max_new_tokens):
                    base += piece
                    yield base, adapted
            finally:
                model.enable_adapters()
            yield base, adapted
            for piece in self._stream(model, tokenizer, inputs, max_new_tokens):
                adapted += piece
                yield base, adapted
            yield base, adapted

    @staticmethod
    def _stream(model: Any, tokenizer: Any, inputs: dict, max_new_tokens: int) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        errors: list[Exception] = []
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        def run() -> None:
            try:
                model.generate(
                    **inputs,
                    streamer=streamer,
                    max_new_tokens=int(max_new_tokens),
                    do_sample=False,
                    pad_token_id=pad,
                    stopping_criteria=StoppingCriteriaList([_StopWhenSet(stop)]),
                )
            except Exception as err:  # noqa: BLE001 (any failure must end the stream; it is re-raised below)
                errors.append(err)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:
            stop.set()  # the user may have left: stop generating before the next request uses the model
            worker.join()
        if errors:
            raise errors[0]
