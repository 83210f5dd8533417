"""The package's shape: no import cycles, a light `import text2lora`, and a minimal remote-code copy in a saved
hypernetwork folder that loads where text2lora cannot be imported."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# What a saved hypernetwork's remote code is: the network, its config, and what `generate_lora` needs.
REMOTE_CODE = {
    "configuration_t2l.py",  # T2LConfig
    "modeling_t2l.py",  # T2LModel
    "encoder.py",  # descriptions -> task embeddings
    "packaged.py",  # the encoder's packaged offline copy (imported by encoder.py)
    "adapters.py",  # GeneratedLora, what generate_lora returns
    "io_utils.py",  # GeneratedLora.save_pretrained's atomic writes
    "inputs.py",  # checks of what generate_lora is given
}


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tests" / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles():
    """No module imports (at module level, or inside a function) a module that imports it back."""
    graph = _import_graph()
    for lazy in (False, True):
        edges = graph.graph(lazy=lazy)
        assert "text2lora.modeling_t2l" in edges and edges["text2lora.cli.generate"], "the walk found the package"
        found = graph.cycles(edges)
        assert not found, (
            f"import cycles ({'all' if lazy else 'module-level'} imports): "
            + "; ".join(" -> ".join(cycle) for cycle in found)
            + ". Import the name from the module that defines it (e.g. the checkpoint registry from packaged.py, "
            "not checkpoints.py), or move the shared part into a module both can import."
        )


def test_the_cycle_check_finds_a_cycle(tmp_path):
    package = tmp_path / "text2lora"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import x\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "c.py").write_text("from . import a\n")  # the package itself is not imported again: no edge to it
    graph = _import_graph()
    assert graph.cycles(graph.graph(lazy=False, src=package)) == []
    assert graph.cycles(graph.graph(lazy=True, src=package)) == [["text2lora.a", "text2lora.b", "text2lora.a"]]


def test_import_text2lora_is_light_and_lazy():
    """`import text2lora` imports no torch, transformers, PEFT, training or evaluation; exports load on first use."""
    script = textwrap.dedent(
        """
        import sys
        import text2lora
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "peft", "trl", "lm_eval"})
        mine = sorted(m for m in sys.modules if m.startswith("text2lora."))
        assert not heavy, heavy
        assert mine == ["text2lora._compat"], mine
        from text2lora import GeneratedLora, T2LModel
        assert "torch" in sys.modules and "text2lora.training" not in sys.modules
        assert GeneratedLora.__module__ == "text2lora.adapters" and T2LModel.__module__ == "text2lora.modeling_t2l"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_saved_folder_remote_code_is_minimal_and_loads_without_text2lora(tmp_path, tiny_t2l_nonzero):
    """A saved hypernetwork carries only the network's code, and `trust_remote_code=True` loads it in a process
    where text2lora cannot be imported at all (a meta-path blocker, and no path to the source tree)."""
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    assert {p.name for p in folder.glob("*.py")} == REMOTE_CODE
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_t2l.T2LConfig", "AutoModel": "modeling_t2l.T2LModel"}

    embedding = torch.randn(tiny_t2l_nonzero.config.task_embedding_size)
    torch.save(embedding, tmp_path / "embedding.pt")
    expected = tiny_t2l_nonzero.generate_lora(embedding)
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "text2lora" or name.startswith("text2lora."):
                    raise ImportError(f"{{name}} is blocked: remote code must not need it")
                return None

        sys.meta_path.insert(0, Blocker())
        sys.path = [p for p in sys.path if "text2lora" not in p and not p.endswith("/src")]
        try:
            import text2lora  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("text2lora could still be imported")

        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        adapter = model.generate_lora(torch.load({str(tmp_path / 'embedding.pt')!r}))
        assert type(adapter).__module__.startswith("transformers_modules"), type(adapter).__module__
        adapter.save_pretrained({str(tmp_path / 'adapter')!r})
        model.save_pretrained({str(tmp_path / 'again')!r})  # no card without text2lora, but weights and config
        assert not any(m == "text2lora" or m.startswith("text2lora.") for m in sys.modules)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    from text2lora.adapters import read_generated_lora

    written = read_generated_lora(tmp_path / "adapter")
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(written.state_dict[key], value)
    assert (tmp_path / "again" / "model.safetensors").is_file()
