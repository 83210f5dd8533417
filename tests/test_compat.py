"""The import-time check of the transformers/peft pair (requirements.lock pins a pair that works)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from text2lora._compat import incompatibility, minimum_peft_version

INSTALLED_TRANSFORMERS = importlib.metadata.version("transformers")


def test_minimum_is_read_from_the_installed_transformers():
    source = importlib.metadata.distribution("transformers").locate_file("transformers/integrations/peft.py")
    from transformers.integrations import peft as transformers_peft

    assert minimum_peft_version(INSTALLED_TRANSFORMERS) == transformers_peft.MIN_PEFT_VERSION
    assert str(source).endswith("peft.py")


def test_the_broken_pair_of_2026_12_gets_one_line_naming_both_versions_and_the_fix():
    message = incompatibility("5.25.0", "0.21.2", "0.22.0")
    assert message is not None and "\n" not in message
    assert "transformers 5.25.0" in message and "peft 0.21.2" in message and ">= 0.22.0" in message
    assert "pip install 'peft>=0.22.0'" in message and "pip install 'transformers<5.24" in message.replace(",>=5.23", "")


def test_compatible_pairs_pass():
    assert incompatibility("5.23.0", "0.21.2", "0.20.0") is None
    assert incompatibility("5.25.0", "0.22.0", "0.22.0") is None
    assert incompatibility("9.0.0", "0.1.0", None) is None  # unknown minimum: no false alarm


def test_import_text2lora_refuses_a_peft_older_than_transformers_requires():
    """Through the real import: peft reported one release below the installed transformers' own minimum."""
    minimum = minimum_peft_version(INSTALLED_TRANSFORMERS)
    major, minor = (int(part) for part in minimum.split(".")[:2])
    too_old = f"{major}.{minor - 1}.0"
    script = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        f"m.version = lambda name: {too_old!r} if name == 'peft' else real(name)\n"
        "import text2lora\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: text2lora: transformers")
    assert f"transformers {INSTALLED_TRANSFORMERS} requires peft >= {minimum}" in last_line
    assert f"peft {too_old} is installed" in last_line
