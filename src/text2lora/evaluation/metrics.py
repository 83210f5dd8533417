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
