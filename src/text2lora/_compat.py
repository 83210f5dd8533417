"""Import-time check that the installed transformers and peft work together.

transformers refuses to load a PEFT adapter when peft is older than the minimum it states
(`MIN_PEFT_VERSION` in `transformers/integrations/peft.py`), but only deep inside `load_adapter`, after the
user has waited for a model to load. text2lora reads that minimum from the installed transformers' source
file (without importing transformers, so the check costs nothing) and refuses to import with one line that
names both versions and the fix.
"""

from __future__ import annotations

import importlib.metadata
import re

from packaging.version import Version

# Used only when the installed transformers does not state its minimum where we look (a future layout):
# (first transformers release, the peft it requires), newest first.
KNOWN_MINIMUM_PEFT = (("5.24.0", "0.22.0"), ("5.0.0", "0.18.0"))

_MIN_PEFT_PATTERN = re.compile(r"""^MIN_PEFT_VERSION\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def minimum_peft_version(transformers_version: str) -> str | None:
    """The oldest peft the installed transformers (at `transformers_version`) accepts, or None if unknown."""
    try:
        source = importlib.metadata.distribution("transformers").locate_file("transformers/integrations/peft.py")
        match = _MIN_PEFT_PATTERN.search(source.read_text(encoding="utf-8"))
    except (importlib.metadata.PackageNotFoundError, OSError):
        match = None
    if match:
        return match.group(1)
    for first_release, peft_version in KNOWN_MINIMUM_PEFT:
        if Version(transformers_version) >= Version(first_release):
            return peft_version
    return None


def incompatibility(transformers_version: str, peft_version: str, minimum_peft: str | None) -> str | None:
    """The one-line error for this transformers/peft pair, or None when they work together."""
    if minimum_peft is None or Version(peft_version) >= Version(minimum_peft):
        return None
    declared = _declared_range("transformers")
    downgrade = f"pip install 'transformers{declared}'" if declared else "install an older transformers"
    return (
        f"text2lora: transformers {transformers_version} requires peft >= {minimum_peft}, but peft {peft_version} "
        f"is installed. Fix: pip install 'peft>={minimum_peft}', or {downgrade} (the tested set of versions is "
        f"text2lora's requirements.lock)."
    )


def check_transformers_peft() -> None:
    """Raise ImportError when the installed transformers refuses the installed peft."""
    try:
        transformers_version = importlib.metadata.version("transformers")
        peft_version = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        return  # the import that follows names the missing package
    message = incompatibility(transformers_version, peft_version, minimum_peft_version(transformers_version))
    if message:
        raise ImportError(message)


def _declared_range(package: str) -> str | None:
    """text2lora's declared version range for `package` (e.g. '<5.24,>=5.23'), from its installed metadata."""
    try:
        requirements = importlib.metadata.requires("text2lora") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        match = re.match(rf"^{re.escape(package)}\s*([<>=!~][^;]*)", requirement)
        if match:
            return match.group(1).strip()
    return None
