"""The conditions compared in one evaluation, and the concrete runs each condition expands to.

A *condition* says what the model gets besides the test question: nothing, the task description in its
prompt, three solved examples, a multi-task LoRA, the task's own (oracle) LoRA, or a T2L adapter generated
from a description that is the task's (held out from training), another task's, or a random string.
A *run* is one condition applied to one task with one concrete description or adapter; conditions that
depend on a description are run several times (`num_descriptions`) so the report can give mean and spread, except
`t2l_mix`: one run with the adapter of the task's `num_descriptions` descriptions mixed with equal weights (what
`t2l generate --from-examples` does with its candidates). `t2l_mix` runs only when named: `all` leaves it out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .descriptions import pick, random_description


@dataclass(frozen=True)
class Condition:
    """One way of presenting a task to the model.

    Args:
        name: id used on the command line and in the results.
        label: what the table calls it.
        adapter: `None`, `"mt_lora"`, `"oracle"` or `"t2l"`.
        description_in_prompt: the task description is given as the system message.
        num_fewshot: solved examples in the prompt (`None`: the run's `num_fewshot` setting).
        description_source: where descriptions come from (`"matched"`, `"other"`, `"random"`), if any.
        mix: one run whose adapter mixes the condition's descriptions with equal weights, instead of one run each.
        in_all: part of `--conditions all`.
    """

    name: str
    label: str
    adapter: str | None = None
    description_in_prompt: bool = False
    num_fewshot: int | None = 0
    description_source: str | None = None
    mix: bool = False
    in_all: bool = True

    @property
    def uses_descriptions(self) -> bool:
        return self.description_source is not None


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("base", "base"),
        Condition("description", "base + description", description_in_prompt=True, description_source="matched"),
        Condition("fewshot", "base + 3-shot", num_fewshot=None),
        Condition("mt_lora", "multi-task LoRA", adapter="mt_lora"),
        Condition("oracle_lora", "oracle LoRA", adapter="oracle"),
        Condition("t2l", "T2L (held-out desc.)", adapter="t2l", description_source="matched"),
        Condition("t2l_other", "T2L (other task's desc.)", adapter="t2l", description_source="other"),
        Condition("t2l_random", "T2L (random string)", adapter="t2l", description_source="random"),
        Condition("t2l_mix", "T2L (held-out desc. mixed)", adapter="t2l", description_source="matched", mix=True,
                  in_all=False),  # fmt: skip
    )
}

# Tasks too close to count as "another task" for each other: their descriptions are near-paraphrases.
RELATED_TASKS: tuple[frozenset[str], ...] = (
    frozenset({"arc_easy", "arc_challenge"}),
    frozenset({"mbpp", "humaneval"}),
)


def parse_conditions(spec: str | list[str] | None, available: dict[str, bool] | None = None) -> list[Condition]:
    """`"base,description,t2l"` -> conditions. `None`/`"all"`: every condition whose inputs were given
    (`available` maps condition name -> whether it can run, e.g. `t2l` needs a hypernetwork)."""
    available = available or {name: True for name in CONDITIONS}
    if spec is None or spec == "all":
        return [c for name, c in CONDITIONS.items() if c.in_all and available.get(name, True)]
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen: list[Condition] = []
    for name in filter(None, names):
        if name not in CONDITIONS:
            raise ValueError(f"Unknown condition {name!r}; choose from {', '.join(CONDITIONS)} (comma-separated) or 'all'.")
        if not available.get(name, True):
            raise ValueError(f"Condition {name!r} needs an input that was not given: {_NEEDS.get(name, '')}.")
        if CONDITIONS[name] not in chosen:
            chosen.append(CONDITIONS[name])
    if not chosen:
        raise ValueError(f"No condition selected; choose from {', '.join(CONDITIONS)}.")
    return chosen


_NEEDS = {
    "mt_lora": "pass --mt-lora DIR (a PEFT adapter folder)",
    "oracle_lora": "pass --oracle-loras DIR (one PEFT adapter folder per task, named by task)",
    "t2l": "pass --t2l PATH (a hypernetwork folder or name)",
    "t2l_other": "pass --t2l PATH (a hypernetwork folder or name)",
    "t2l_random": "pass --t2l PATH (a hypernetwork folder or name)",
    "t2l_mix": "pass --t2l PATH (a hypernetwork folder or name)",
}


@dataclass(frozen=True)
class AdapterRef:
    """The adapter a run needs: a PEFT folder (`kind` "peft") or a T2L adapter from `description` ("t2l"; several
    descriptions with `weights`: their mix)."""

    kind: str
    name: str
    path: str | None = None
    description: str | tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class RunSpec:
    """One evaluation pass: a condition on a task with one concrete description / adapter.

    Attributes:
        condition: the condition's name.
        task: benchmark id or held-out task id.
        variant: index among the condition's runs for this task (0 for single-run conditions).
        num_fewshot: solved examples in the prompt.
        system_instruction: text given as the system message (the description, for `description`).
        description: the description behind this run (prompt or T2L input), if any; several for a mix.
        description_origin: `"<task>"` whose description it is, or `"random"`.
        adapter: the adapter to activate, or `None` for the bare base model.
    """

    condition: str
    task: str
    variant: int
    num_fewshot: int
    system_instruction: str | None = None
    description: str | tuple[str, ...] | None = None
    description_origin: str | None = None
    adapter: AdapterRef | None = None

    @property
    def key(self) -> str:
        return f"{self.condition}__{_safe(self.task)}__{self.variant}"

    def to_dict(self) -> dict:
        """As saved in results.json (a mix's descriptions and weights as lists, so a resumed run reads the same).
        Fields added since runs were first saved are left out while unset, so those runs' fingerprints still match."""
        return asdict(self, dict_factory=_saved_form)


_ADDED_LATER = ("weights",)  # AdapterRef.weights (mixes)


def _saved_form(items: list[tuple[str, object]]) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items if not (k in _ADDED_LATER and v is None)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def adapter_name_for(task: str) -> str:
    """A PEFT adapter name for a task's oracle LoRA (PEFT names cannot contain dots)."""
    return "oracle_" + _safe(task)


@dataclass
class RunPlanner:
    """Expands conditions into runs for each task, reproducibly from `seed`.

    Args:
        evaluation_descriptions: task -> descriptions it may be evaluated with (held out from training).
        seed: fixes which descriptions, other tasks and random strings are used.
        num_descriptions: runs per description-dependent condition.
        num_fewshot: solved examples for the few-shot condition.
        mt_lora: multi-task LoRA folder, if any.
        oracle_loras: folder with one adapter folder per task, if any.
    """

    evaluation_descriptions: dict[str, list[str]]
    seed: int = 0
    num_descriptions: int = 3
    num_fewshot: int = 3
    mt_lora: str | None = None
    oracle_loras: str | None = None
    missing_oracles: list[str] = field(default_factory=list)

    def oracle_path(self, task: str) -> Path | None:
        if self.oracle_loras is None:
            return None
        path = Path(self.oracle_loras) / task
        return path if (path / "adapter_config.json").is_file() else None

    def runs(self, condition: Condition, task: str) -> list[RunSpec]:
        fewshot = self.num_fewshot if condition.num_fewshot is None else condition.num_fewshot
        base = {"condition": condition.name, "task": task, "num_fewshot": fewshot}
        if condition.adapter == "mt_lora":
            return [RunSpec(variant=0, adapter=AdapterRef("peft", "mt_lora", str(self.mt_lora)), **base)]
        if condition.adapter == "oracle":
            path = self.oracle_path(task)
            if path is None:
                self.missing_oracles.append(task)
                return []  # no oracle LoRA for this task: the table shows a gap, not a number
            return [RunSpec(variant=0, adapter=AdapterRef("peft", adapter_name_for(task), str(path)), **base)]
        if not condition.uses_descriptions:
            return [RunSpec(variant=0, **base)]
        if condition.mix:
            texts = tuple(text for text, _ in self.descriptions(condition.description_source, task))
            weights = tuple(1.0 / len(texts) for _ in texts)
            adapter = AdapterRef("t2l", "t2l", description=texts, weights=weights)
            return [RunSpec(variant=0, description=texts, description_origin=task, adapter=adapter, **base)]
        runs = []
        for variant, (text, origin) in enumerate(self.descriptions(condition.description_source, task)):
            adapter = AdapterRef("t2l", "t2l", description=text) if condition.adapter == "t2l" else None
            instruction = text if condition.description_in_prompt else None
            runs.append(
                RunSpec(variant=variant, system_instruction=instruction, description=text,
                        description_origin=origin, adapter=adapter, **base)
            )
        return runs

    def descriptions(self, source: str, task: str) -> list[tuple[str, str]]:
        """`num_descriptions` (description, origin) pairs of the given source for `task`."""
        own = self.evaluation_descriptions.get(task)
        if not own:
            raise ValueError(f"No evaluation descriptions for task {task!r}; it cannot be run with descriptions.")
        if source == "matched":
            return [(text, task) for text in pick(own, self.num_descriptions, self.seed, f"matched:{task}")]
        if source == "other":
            related = set().union(*(group for group in RELATED_TASKS if task in group)) | {task}
            others = sorted(t for t, texts in self.evaluation_descriptions.items() if t not in related and texts)
            if not others:
                raise ValueError(f"No other task's descriptions are available to pair with {task!r}.")
            chosen = pick(others, self.num_descriptions, self.seed, f"other:{task}")
            while len(chosen) < self.num_descriptions:  # fewer other tasks than runs: reuse tasks
                chosen.append(others[len(chosen) % len(others)])
            return [
                (pick(self.evaluation_descriptions[other], 1, self.seed, f"other:{task}:{i}:{other}")[0], other)
                for i, other in enumerate(chosen)
            ]
        if source == "random":
            matched = self.descriptions("matched", task)
            return [
                (random_description(self.seed, f"{task}:{i}", len(text)), "random") for i, (text, _) in enumerate(matched)
            ]
        raise ValueError(f"Unknown description source {source!r}; use matched, other or random.")
