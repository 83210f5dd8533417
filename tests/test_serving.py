"""vLLM serving helper, against a local HTTP server that implements vLLM's runtime-LoRA endpoints and records
every call, and against a fake `vllm` package for the offline `LoRARequest` path."""

from __future__ import annotations

import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from text2lora.cache import AdapterCache
from text2lora.integrations.vllm import (
    VLLMAdapterClient,
    VLLMError,
    check_vllm_compatible,
    lora_request,
    prepare_adapter,
)

MATH = "Solve grade-school math word problems step by step"


class FakeVLLM:
    """Enough of vLLM's OpenAI-compatible server (runtime LoRA updating on) to test the client."""

    def __init__(self, base_model: str, max_lora_rank: int = 16) -> None:
        self.base_model = base_model
        self.max_lora_rank = max_lora_rank
        self.adapters: dict[str, str] = {}
        self.calls: list[tuple[str, str, dict | None, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status, body):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.calls.append(("GET", self.path, None, self.headers.get("Authorization")))
                if self.path == "/v1/models":
                    ids = [fake.base_model, *fake.adapters]
                    return self._reply(
                        200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
                    )
                self._reply(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                fake.calls.append(("POST", self.path, body, self.headers.get("Authorization")))
                if self.path == "/v1/load_lora_adapter":
                    return self._reply(*fake.load(body))
                if self.path == "/v1/unload_lora_adapter":
                    if body["lora_name"] not in fake.adapters:
                        return self._reply(
                            400,
                            {
                                "error": {
                                    "message": f"The lora adapter '{body['lora_name']}' cannot be found."
                                }
                            },
                        )
                    del fake.adapters[body["lora_name"]]
                    return self._reply(
                        200, f"Success: LoRA adapter '{body['lora_name']}' removed successfully."
                    )
                if self.path == "/v1/chat/completions":
                    if body["model"] not in (fake.base_model, *fake.adapters):
                        return self._reply(
                            404, {"error": {"message": f"The model `{body['model']}` does not exist."}}
                        )
                    text = f"answer from {body['model']}"
                    return self._reply(
                        200, {"choices": [{"message": {"role": "assistant", "content": text}}]}
                    )
                self._reply(404, {"detail": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def load(self, body):
        name, path = body["lora_name"], Path(body["lora_path"])
        if name in self.adapters:
            return 400, {"error": {"message": f"The lora adapter '{name}' has already been loaded."}}
        config_file = path / "adapter_config.json"
        if not config_file.is_file() or not (path / "adapter_model.safetensors").is_file():
            return 400, {"error": {"message": f"No adapter found at {path}."}}
        config = json.loads(config_file.read_text())
        if config["r"] > self.max_lora_rank or config.get("modules_to_save"):
            return 400, {"error": {"message": "LoRA rank is greater than max_lora_rank."}}
        load_file(str(path / "adapter_model.safetensors"))  # the weights must be readable
        self.adapters[name] = str(path)
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_vllm(tiny_config):
    with FakeVLLM(tiny_config.base_model_name_or_path) as server:
        yield server


def test_load_and_chat_through_a_running_server(tmp_path, tiny_t2l_nonzero, fake_vllm):
    client = VLLMAdapterClient(
        tiny_t2l_nonzero,
        fake_vllm.url + "/v1",
        api_key="secret",
        cache=AdapterCache(tmp_path / "cache"),
        adapter_dir=tmp_path / "served",
    )
    adapter = client.load(MATH)
    assert adapter.name.startswith("t2l-") and len(adapter.name) == 20
    assert (
        adapter.path == tmp_path / "served" / adapter.name and adapter.rank == tiny_t2l_nonzero.config.lora_r
    )
    method, route, body, auth = fake_vllm.calls[-1]
    assert (method, route, auth) == ("POST", "/v1/load_lora_adapter", "Bearer secret")
    assert body == {"lora_name": adapter.name, "lora_path": str(adapter.path)}
    # The folder the server read holds exactly the generated adapter.
    expected = tiny_t2l_nonzero.generate_lora(MATH)
    saved = load_file(str(adapter.path / "adapter_model.safetensors"))
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    assert adapter.name in client.models()

    reply = client.chat(MATH, "What is 12 * 7?", max_tokens=8)
    assert reply["choices"][0]["message"]["content"] == f"answer from {adapter.name}"
    method, route, body, _ = fake_vllm.calls[-1]
    assert route == "/v1/chat/completions" and body["model"] == adapter.name and body["max_tokens"] == 8
    assert body["messages"] == [{"role": "user", "content": "What is 12 * 7?"}]
    assert sum(1 for c in fake_vllm.calls if c[1] == "/v1/load_lora_adapter") == 1  # loaded once

    client.unload(adapter)
    assert adapter.name not in client.models()


def test_names_are_stable_across_processes_and_servers(tmp_path, tiny_t2l_nonzero, fake_vllm):
    """A second client (another process, same description) reuses the name; the server's 'already loaded'
    answer is not an error."""
    kwargs = dict(cache=AdapterCache(tmp_path / "cache"), adapter_dir=tmp_path / "served")
    first = VLLMAdapterClient(tiny_t2l_nonzero, fake_vllm.url, **kwargs).load(MATH)
    second_client = VLLMAdapterClient(tiny_t2l_nonzero, fake_vllm.url, **kwargs)
    second = second_client.load(MATH + ".")
    assert second.name == first.name and list(fake_vllm.adapters) == [first.name]
    assert (
        fake_vllm.calls[-1][1] == "/v1/load_lora_adapter"
    )  # it asked, and accepted the 400 "already loaded"
    other = second_client.load("Translate English to French")
    mixed = second_client.load([MATH, "Translate English to French"], weights=[0.7, 0.3])
    assert len({first.name, other.name, mixed.name}) == 3 and mixed.weights == [0.7, 0.3]
    assert first.lora_int_id != other.lora_int_id and first.lora_int_id > 0


def test_server_errors_are_explained(tmp_path, tiny_t2l_nonzero, fake_vllm, tiny_config):
    client = VLLMAdapterClient(tiny_t2l_nonzero, fake_vllm.url, cache=False, adapter_dir=tmp_path / "served")
    with pytest.raises(VLLMError, match="could not unload"):
        client.unload("t2l-0000000000000000")
    # A server without runtime LoRA updating has no such route.
    client.base_url = fake_vllm.url + "/nothing-here"
    with pytest.raises(VLLMError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        client.load(MATH)
    dead = VLLMAdapterClient(
        tiny_t2l_nonzero, "http://127.0.0.1:9", cache=False, adapter_dir=tmp_path / "served"
    )
    with pytest.raises(ConnectionError, match="vllm serve"):
        dead.models()
    # The server refuses what it cannot serve: our own check catches it before any request.
    fake_vllm.max_lora_rank = 4
    strict = VLLMAdapterClient(
        tiny_t2l_nonzero, fake_vllm.url, max_lora_rank=4, cache=False, adapter_dir=tmp_path / "s"
    )
    calls = len(fake_vllm.calls)
    with pytest.raises(ValueError, match="--max-lora-rank 8"):
        strict.load(MATH)
    assert len(fake_vllm.calls) == calls


def test_vllm_limits():
    check_vllm_compatible({"r": 8, "bias": "none"}, max_lora_rank=8)
    with pytest.raises(ValueError, match="max-lora-rank 32"):
        check_vllm_compatible({"r": 32}, max_lora_rank=16)
    with pytest.raises(ValueError, match="modules_to_save"):
        check_vllm_compatible({"r": 8, "modules_to_save": ["lm_head"]})
    with pytest.raises(ValueError, match="DoRA"):
        check_vllm_compatible({"r": 8, "use_dora": True})
    with pytest.raises(ValueError, match="bias"):
        check_vllm_compatible({"r": 8, "bias": "all"})


def test_generated_adapter_config_is_servable(tmp_path, tiny_t2l_nonzero):
    adapter = prepare_adapter(tiny_t2l_nonzero, MATH, cache=False, adapter_dir=tmp_path)
    config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert not config.get("modules_to_save") and config["bias"] == "none" and not config.get("use_dora")
    assert config["use_rslora"] is True and config["r"] == tiny_t2l_nonzero.config.lora_r
    assert sorted(config["target_modules"]) == sorted(tiny_t2l_nonzero.config.target_modules)


def test_offline_lora_request(tmp_path, tiny_t2l_nonzero, monkeypatch):
    """With vLLM importable, `lora_request` builds LoRARequest(lora_name, lora_int_id, lora_path)."""
    made = []

    class LoRARequest:
        def __init__(self, lora_name, lora_int_id, lora_path="", **kwargs):
            assert lora_int_id > 0
            made.append(dict(lora_name=lora_name, lora_int_id=lora_int_id, lora_path=lora_path, **kwargs))

    for name in ("vllm", "vllm.lora"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    request_module = types.ModuleType("vllm.lora.request")
    request_module.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request_module)

    lora_request(tiny_t2l_nonzero, MATH, cache=False, adapter_dir=tmp_path)
    lora_request(tiny_t2l_nonzero, MATH, cache=False, adapter_dir=tmp_path)
    (first, again) = made
    assert first == again and first["lora_name"].startswith("t2l-")
    assert (
        Path(first["lora_path"]).parent == tmp_path
        and (Path(first["lora_path"]) / "adapter_config.json").is_file()
    )


def test_offline_lora_request_without_vllm(tiny_t2l_nonzero, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="pip install vllm"):
        lora_request(tiny_t2l_nonzero, MATH, cache=False)
