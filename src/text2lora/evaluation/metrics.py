"""Scoring helpers the lm-eval task configs call, and the paired statistics of the report.

Multiple-choice accuracy comes from lm-eval itself; what lives here is what lm-eval cannot do offline or
that we want to state exactly: the final number of a math answer, exact match, the code block of a reply,
and bootstrap confidence intervals for paired per-example differences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

# A number as people write it in an answer: optional sign, thousands separators, decimals, or a fraction.
_NUMBER = re.compile(r"(?<![\w.])-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![\w])|(?<![\w.])-?\.\d+")
_MARKERS = (
    re.compile(r"####\s*(?P<rest>.*)", re.DOTALL),
    re.compile(r"(?:final answer|the answer is|answer:)\s*(?P<rest>.*)", re.IGNORECASE | re.DOTALL),
    re.compile(r"\\boxed\{(?P<rest>[^}]*)\}"),
)


def _to_number(text: str) -> Fraction | None:
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_final_number(text: str) -> str | None:
    """The number a math answer ends on, as written but without `$`, spaces or thousands separators.

    If the text has a marker (`#### 42`, "The answer is 42", `\\boxed{42}`), the first number after the last
    marker wins; otherwise the last number in the text. `None` when there is no number at all.
    """
    if not text:
        return None
    for marker in _MARKERS:
        found = list(marker.finditer(text))
        if found:
            numbers = _NUMBER.findall(found[-1].group("rest"))
            if numbers:
                return _clean_number(numbers[0])
    numbers = _NUMBER.findall(text)
    return _clean_number(numbers[-1]) if numbers else None


def _clean_number(raw: str) -> str:
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "")
    if "." in cleaned and "/" not in cleaned:
        cleaned = cleaned.rstrip("0").rstrip(".") or "0"
    return cleaned


def numbers_equal(prediction: str | None, reference: str | None) -> bool:
    """Numeric equality of two extracted numbers (`"18"` == `"18.00"` == `"$18"`); False if either is missing."""
    if prediction is None or reference is None:
        return False
    a, b = _to_number(prediction), _to_number(reference)
    return a is not None and b is not None and a == b


def normalize_answer(text: str) -> str:
    """Case-folded, whitespace-collapsed, without surrounding quotes or a final full stop: the form exact
    match compares (so "Paris." matches "paris")."""
    text = " ".join(str(text).split()).strip().strip("\"'`").strip()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text.casefold()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


# ----------------------------------------------------------------------- option labels in generated replies
#
# The generative protocol asks for an option label ("B", "2", "true") and reads it from the reply in two ways:
# the Text-to-LoRA paper's rule (SakanaAI/text-to-lora, Apache-2.0), which only accepts a reply that *starts*
# with the label, and a lenient reading that also finds the label after a preamble ("The answer is B"),
# markdown ("**B**"), or as the only option the reply names. The difference between the two is format.

_PAPER_STRIP = " :`'\"(.)"  # the characters the paper strips from both ends of a reply
# The labels the paper tries, in its order: letters first, then 0-10 (so "10" is read as "1").
_PAPER_LABELS = tuple("abcdefghijklmnopqrstuvwxyz") + tuple(str(n) for n in range(11))
# The paper reads a boolean from the first of these found anywhere in the reply (as a substring, in this order).
_PAPER_BOOLEANS = (
    ("1", True), ("0", False), ("yes", True), ("no", False), ("true", True), ("false", False),
    ("positive", True), ("negative", False), ("valid", True), ("invalid", False),
)


def paper_choice(reply: str | None) -> str | None:
    """The option label a reply starts with under the paper's rule, lower-cased, or `None`.

    The reply is stripped of surrounding whitespace and of `` : ` ' " ( . ) `` at both ends and lower-cased; the
    label is the first of a-z, then 0-10, that it starts with. So "B", "B.", "(B)" and "b: text" give "b", while
    "**B**" and "The answer is B" give no label or a wrong one ("t")."""
    text = str(reply or "").strip().strip(_PAPER_STRIP).lower()
    return next((label for label in _PAPER_LABELS if text.startswith(label)), None)


def paper_choice_correct(reply: str | None, gold: str) -> float:
    """1.0 when the paper's rule reads the gold label from the reply (the gold label goes through the same rule)."""
    predicted = paper_choice(reply)
    return float(predicted is not None and predicted == paper_choice(gold))


def paper_bool(reply: str | None) -> bool | None:
    """The boolean the paper's BoolQ rule reads: the first of 1/0, yes/no, true/false, positive/negative,
    valid/invalid (in that order) found anywhere in the lower-cased reply; `None` when none is found.

    This is the paper's reading, quirks included: "no" inside "know" or "not" counts as no, and "invalid"
    contains "valid"."""
    text = str(reply or "").lower()
    return next((value for token, value in _PAPER_BOOLEANS if token in text), None)


def _label_alternation(labels) -> str:
    return "|".join(re.escape(str(label)) for label in sorted({str(l) for l in labels}, key=len, reverse=True))


_MARKUP = re.compile(r"[*_`#]+")
_ANSWER_PHRASE = (
    r"\b(?:answer|choice|option|ending|solution)\b(?:\s+(?:is|would\s+be|should\s+be|=))?\s*[:\-]?\s*"
    r"(?:(?:option|choice|ending)\s+)?[\"'(\[]*"
)


def _first_label(pattern: str, text: str, flags: int = 0) -> str | None:
    """The label (group 1) of the first match of `pattern` that stands alone: not followed by a letter or
    digit, and not the article "a" before a lower-case word ("A man is..." / "the answer is a plant")."""
    for match in re.finditer(pattern, text, flags):
        label, rest = match.group(1), text[match.end(1):]
        if rest[:1].isalnum():
            continue
        if label.lower() == "a" and re.match(r"\s+[a-z]", rest):
            continue
        return label
    return None


def lenient_choice(reply: str | None, labels, options=()) -> str | None:
    """The option a reply names, read leniently; returns one of `labels` (as given) or `None`.

    In order: (1) the reply, without markdown, quotes and brackets, starts with a label ("**B**", "(B) text");
    (2) the first "answer is X" / "Answer: X" / "Option X" / "the correct choice is (X)"; (3) exactly one label
    starts a line ("...\nB: text"); (4) exactly one option's text appears in the reply. The article "a" before
    a lower-case word ("A man is...") is not read as the label A."""
    text = _MARKUP.sub("", str(reply or "")).strip()
    if not text:
        return None
    by_key = {str(label).lower(): label for label in labels}
    alternation = _label_alternation(labels)
    found = _first_label(rf"^[\s\"'(\[{{<]*({alternation})", text, re.IGNORECASE)
    if found is None:
        found = _first_label(rf"{_ANSWER_PHRASE}({alternation})", text, re.IGNORECASE)
    if found is not None:
        return by_key[found.lower()]
    line_starts = {
        by_key[m.group(1).lower()]
        for m in re.finditer(rf"^[\s\-\"'(\[]*({alternation})\s*[:.)\]]", text, re.IGNORECASE | re.MULTILINE)
    }
    if len(line_starts) == 1:
        return line_starts.pop()
    lowered = " ".join(text.lower().split())
    named = {
        label for label, option in zip(labels, options)
        if len(str(option).strip()) >= 3 and str(option).strip().lower() != "n/a"
        and " ".join(str(option).lower().strip().rstrip(".").split()) in lowered
    }
    return named.pop() if len(named) == 1 else None


_BOOLEAN_WORD = re.compile(r"\b(yes|no|true|false|1|0)\b", re.IGNORECASE)


def lenient_bool(reply: str | None) -> bool | None:
    """The first whole word yes/no/true/false/1/0 in the reply (any case), or `None`: "True.", "**Yes**",
    "The answer is false"; unlike the paper's rule, "I know" and "not" do not read as no."""
    match = _BOOLEAN_WORD.search(str(reply or ""))
    return None if match is None else match.group(1).lower() in ("yes", "true", "1")


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(?P<code>.*?)(?:\n?```|\Z)", re.DOTALL)


def extract_code(reply: str, prefix: str = "") -> str:
    """The Python code of a model reply.

    `prefix` is what the prompt already put at the start of the reply (e.g. "```python\\n"): the reply then
    continues inside a code block and ends at the closing fence. Otherwise the first fenced block is taken,
    and a reply without fences is taken as code as it is.
    """
    text = prefix + reply
    match = _FENCE.search(text)
    if match:
        return match.group("code").rstrip() + "\n"
    return reply.rstrip() + "\n"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    iterations: int = 2000,
    seed: int = 0,
    strata: Sequence[object] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (e.g. per-example paired differences).

    With `strata` (one label per value, e.g. the benchmark), examples are resampled within each stratum and the
    statistic is the mean of the strata means, so every benchmark keeps its weight.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [values]
    else:
        labels = np.asarray([str(s) for s in strata])
        groups = [values[labels == label] for label in dict.fromkeys(labels)]
    stats = np.zeros(iterations)
    for group in groups:
        idx = rng.integers(0, group.size, size=(iterations, group.size))
        stats += group[idx].mean(axis=1)
    stats /= len(groups)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(low), float(high))
