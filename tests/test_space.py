"""The Gradio Space (spaces_app/app.py): its logic on tiny models, and the real app in a headless browser.

The browser is Debian's Chromium driven by Playwright (`.ci/install.d/browser` installs it); no browser is ever
downloaded. The app is launched in-process on a free local port.
"""

from __future__ import annotations

import os

# Read when gradio / the Hub client are imported or connect: set before importing them.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
for _proxy_var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_proxy_var, "").split(",") if h]
    os.environ[_proxy_var] = ",".join(dict.fromkeys(_hosts + ["127.0.0.1", "localhost"]))

import importlib.util
import re
import socket
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors

from text2lora import T2LModel

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--disable-gpu", "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
DESCRIPTION = "Answer questions about the weather in one short sentence."
PROMPT = "Will it rain tomorrow?"


@pytest.fixture(scope="module")
def app():
    """spaces_app/app.py as a module (it is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("text2lora_space_app", ROOT / "spaces_app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def nonzero_t2l(tiny_config) -> T2LModel:
    """A tiny hypernetwork whose heads are non-zero, so its adapters change the tiny base model's answers."""
    torch.manual_seed(0)
    model = T2LModel(tiny_config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0.0, 0.05)
            head.bias.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="module")
def adapter_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adapter_cache")


@pytest.fixture(scope="module")
def space(app, nonzero_t2l, adapter_cache_dir):
    return app.Text2LoraSpace(nonzero_t2l, max_prompt_tokens=48, max_new_tokens=32, adapter_cache=adapter_cache_dir)


def reference_answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy answer computed with plain transformers, independently of the app."""
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------- logic


def test_generate_reports_size_norms_zip_and_caches_by_description(app, space, nonzero_t2l):
    request = space.adapter_request(space.default_hypernetwork, DESCRIPTION)
    result, cached = space.generate(request)
    assert not cached
    again, cached_again = space.generate(space.adapter_request(space.default_hypernetwork, "  " + DESCRIPTION + " "))
    assert cached_again and again is result
    other, cached_other = space.generate(space.adapter_request(space.default_hypernetwork, "Write a haiku."))
    assert not cached_other and other is not result

    expected = nonzero_t2l.generate_lora(DESCRIPTION)
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(result.adapter.state_dict[key], value)

    config = nonzero_t2l.config
    for module in config.target_modules:
        for layer in range(config.num_layers):
            path = config.module_paths[module].format(layer=layer)
            want = float(expected.delta_weight(path).norm())
            assert result.norms[module]["delta"][layer] == pytest.approx(want, rel=1e-5)
            assert want > 0

    with zipfile.ZipFile(result.zip_path) as archive:
        names = archive.namelist()
        folder = names[0].split("/")[0]
        assert {f"{folder}/adapter_config.json", f"{folder}/adapter_model.safetensors"} <= set(names)
        weights = load_safetensors(archive.read(f"{folder}/adapter_model.safetensors"))
    assert set(weights) == set(expected.state_dict)

    summary = space.summary(result, cached=False)
    assert f"{expected.num_parameters:,} parameters" in summary and "generated in" in summary
    assert "made earlier in this session" in space.summary(result, cached=True)
    figure = app.norms_figure(result.norms, "test")
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == len(config.target_modules)


def test_a_new_app_reads_adapters_from_the_disk_cache(app, space, nonzero_t2l, adapter_cache_dir):
    request = space.adapter_request(space.default_hypernetwork, "Sort a list of words alphabetically.")
    first, _ = space.generate(request)
    assert first.source == "hypernetwork"
    fresh = app.Text2LoraSpace(nonzero_t2l, adapter_cache=adapter_cache_dir)
    second, seen_before = fresh.generate(request)
    assert not seen_before and second.source == "adapter cache"
    assert "read from the adapter cache in" in fresh.summary(second, cached=False)
    for key, value in first.adapter.state_dict.items():
        torch.testing.assert_close(second.adapter.state_dict[key], value)


def test_mixing_two_descriptions(space, nonzero_t2l):
    request = space.adapter_request(space.default_hypernetwork, "Translate to French.", "Be terse.", 0.25)
    assert request.weights == (0.75, 0.25)
    result, _ = space.generate(request)
    expected = nonzero_t2l.mix_lora(["Translate to French.", "Be terse."], [0.75, 0.25])
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(result.adapter.state_dict[key], value)
    # weight 0 (or no second description) is the first description alone
    assert space.adapter_request(space.default_hypernetwork, "Translate to French.", "Be terse.", 0.0).weights is None


def test_over_long_and_empty_inputs_get_clear_messages(app, space):
    with pytest.raises(app.SpaceError, match=r"too long: \d+ tokens, but the description encoder reads at most 64"):
        space.adapter_request(space.default_hypernetwork, "weather " * 200)
    with pytest.raises(app.SpaceError, match="too long .*characters"):
        space.adapter_request(space.default_hypernetwork, "x" * (app.MAX_DESCRIPTION_CHARS + 1))
    with pytest.raises(app.SpaceError, match="empty"):
        space.adapter_request(space.default_hypernetwork, "   ")
    request = space.adapter_request(space.default_hypernetwork, DESCRIPTION)
    with pytest.raises(app.SpaceError, match="prompt is too long: .* at most 48"):
        list(space.stream_answers(request, "rain " * 100, 8))
    with pytest.raises(app.SpaceError, match="between 1 and 32"):
        list(space.stream_answers(request, PROMPT, 500))


def test_answers_stream_and_match_plain_transformers(space, nonzero_t2l, tiny_base_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    request = space.adapter_request(space.default_hypernetwork, DESCRIPTION)
    updates = list(space.stream_answers(request, PROMPT, 12))
    base, adapted = updates[-1]
    assert len(updates) > 4  # it streamed, not one final message
    assert updates[0][1] == ""  # the base model answers first

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()
    assert base.strip() == reference_answer(model, tokenizer, PROMPT, 12).strip()
    nonzero_t2l.generate_lora(DESCRIPTION).save_pretrained(tmp_path / "adapter")
    adapted_model = PeftModel.from_pretrained(model, tmp_path / "adapter").eval()
    assert adapted.strip() == reference_answer(adapted_model, tokenizer, PROMPT, 12).strip()
    assert adapted != base

    # the base answer is the base model's even after an adapter was active (slots are swapped, not merged)
    assert list(space.stream_answers(request, PROMPT, 12))[-1] == (base, adapted)


def test_load_hypernetwork_by_path_and_untrained_notice(space, tiny_t2l, tmp_path, app):
    tiny_t2l.save_pretrained(tmp_path / "untrained")
    name = space.add_hypernetwork(str(tmp_path / "untrained"))
    assert "untrained" in space.describe_hypernetwork(name)
    assert "untrained" not in space.describe_hypernetwork(space.default_hypernetwork)
    result, _ = space.generate(space.adapter_request(name, DESCRIPTION))
    assert "ΔW = 0 everywhere" in space.summary(result, cached=False)
    with pytest.raises(app.SpaceError, match="Could not load the hypernetwork"):
        space.add_hypernetwork(str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------- browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash .ci/install.d/browser` (Debian's chromium package).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield browser
        browser.close()


def launch(demo) -> str:
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    return url


def artifact_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("TEXT2LORA_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def drive(page, url: str, description: str, prompt: str, timeout_ms: int) -> tuple[str, str]:
    """Type a description, generate, wait for the summary, ask a prompt, wait for both answers."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    page.locator("#description textarea").fill(description)
    page.locator("#generate").click()
    expect(page.locator("#adapter-summary")).to_contain_text("Adapter ready", timeout=timeout_ms)
    expect(page.locator("#adapter-summary")).to_contain_text("parameters")
    expect(page.locator("#adapter-zip")).to_contain_text(".zip")
    expect(page.locator("#adapter-norms img, #adapter-norms svg, #adapter-norms canvas").first).to_be_visible()
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#ask").click()
    base, adapted = page.locator("#base-answer textarea"), page.locator("#adapted-answer textarea")
    expect(base).not_to_have_value("", timeout=timeout_ms)
    expect(adapted).not_to_have_value("", timeout=timeout_ms)
    # the answers are complete when the event is done (gradio removes its progress overlay)
    expect(page.locator("#adapted-answer .generating, #base-answer .generating")).to_have_count(0, timeout=timeout_ms)
    return base.input_value(), adapted.input_value()


def exactly(text: str) -> re.Pattern:
    """The textbox value `text`, up to surrounding whitespace (streamed text keeps the tokenizer's spacing)."""
    return re.compile(r"^\s*" + re.escape(text) + r"\s*$")


def expected_answers(t2l, base_dir, description: str, prompt: str, max_new_tokens: int, folder: Path):
    """(base, adapted) greedy answers computed with plain transformers + PEFT, independently of the app."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    base = reference_answer(model, tokenizer, prompt, max_new_tokens)
    t2l.generate_lora(description).save_pretrained(folder)
    adapted = reference_answer(PeftModel.from_pretrained(model, folder).eval(), tokenizer, prompt, max_new_tokens)
    return base.strip(), adapted.strip()


def test_space_in_a_real_browser(app, nonzero_t2l, browser, tiny_base_dir, tiny_t2l, tmp_path):
    from playwright.sync_api import expect

    demo = app.build_demo(nonzero_t2l, max_new_tokens=16, adapter_cache=tmp_path / "adapters")
    url = launch(demo)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        base, adapted = drive(page, url, DESCRIPTION, PROMPT, timeout_ms=60_000)
        page.screenshot(path=str(artifact_path(tmp_path, "space-tiny.png")), full_page=True)
        assert artifact_path(tmp_path, "space-tiny.png").stat().st_size > 10_000
        want = expected_answers(nonzero_t2l, tiny_base_dir, DESCRIPTION, PROMPT, 16, tmp_path / "a1")
        assert (base.strip(), adapted.strip()) == want and want[0] != want[1]

        # Two users at once: a second session with its own adapter; both send a new question together and are
        # queued. Each gets the answers of its own adapter (the shared base model swaps adapters per request).
        other, question = "Reply only with words that rhyme with cat.", "Is it sunny today?"
        page2 = browser.new_page(viewport={"width": 1280, "height": 1600})
        drive(page2, url, other, PROMPT, timeout_ms=60_000)
        for p in (page, page2):
            p.locator("#prompt textarea").fill(question)
        page.locator("#ask").click()
        page2.locator("#ask").click()
        want1 = expected_answers(nonzero_t2l, tiny_base_dir, DESCRIPTION, question, 16, tmp_path / "a2")
        want2 = expected_answers(nonzero_t2l, tiny_base_dir, other, question, 16, tmp_path / "a3")
        assert want1[0] == want2[0] and len({want1[1], want2[1], want1[0]}) == 3
        for p, (want_base, want_adapted) in ((page, want1), (page2, want2)):
            expect(p.locator("#base-answer textarea")).to_have_value(exactly(want_base), timeout=60_000)
            expect(p.locator("#adapted-answer textarea")).to_have_value(exactly(want_adapted), timeout=60_000)

        # another hypernetwork, by path: the page says it is untrained
        tiny_t2l.save_pretrained(tmp_path / "untrained")
        page.get_by_text("Load another hypernetwork").click()
        page.locator("#hypernetwork-name textarea, #hypernetwork-name input").first.fill(str(tmp_path / "untrained"))
        page.locator("#load-hypernetwork").click()
        expect(page.locator("#hypernetwork-info")).to_contain_text("untrained", timeout=30_000)
        expect(page.locator("#adapter-summary")).to_contain_text("Generate an adapter with the new hypernetwork")

        # an over-long description gets a clear message instead of a silently truncated adapter
        page.locator("#description textarea").fill("weather " * 200)
        page.locator("#generate").click()
        expect(page.get_by_text("description encoder reads at most 64").first).to_be_visible(timeout=30_000)
    finally:
        demo.close()


def test_space_shows_nearest_training_tasks_and_the_far_warning_in_a_real_browser(app, nonzero_t2l, browser, tmp_path):
    """Beside the adapter: its nearest training tasks with their similarities, and a warning when the description
    is far from every training task (tiny hypernetwork with centroids of two tasks' descriptions)."""
    from playwright.sync_api import expect

    from text2lora.nearest_tasks import centroids_from_embeddings

    t2l = T2LModel(nonzero_t2l.config).eval()
    t2l.load_state_dict(nonzero_t2l.state_dict())
    far_text = "Reply only with words that rhyme with cat."
    centroids = centroids_from_embeddings(
        ["weather_questions", "french_translation"],
        t2l.encode_descriptions([DESCRIPTION, "Translate English sentences into French."]),
        [0, 1, 2],
    )
    top_far = float(centroids.similarities(t2l.encode_descriptions(far_text)).max())
    assert top_far < 0.999
    centroids.threshold = (top_far + 1.0) / 2  # between the far text's best similarity and an exact match's 1.0
    t2l.task_centroids = centroids
    demo = app.build_demo(t2l, max_new_tokens=8, adapter_cache=tmp_path / "adapters")
    url = launch(demo)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(url, wait_until="domcontentloaded")
        summary = page.locator("#adapter-summary")
        page.locator("#description textarea").fill(DESCRIPTION)
        page.locator("#generate").click()
        expect(summary).to_contain_text("nearest training tasks", timeout=60_000)
        expect(summary).to_contain_text("weather_questions 1.00")
        expect(summary).to_contain_text("french_translation")
        expect(summary).not_to_contain_text("far from every training task")
        page.locator("#description textarea").fill(far_text)
        page.locator("#generate").click()
        expect(summary).to_contain_text("far from every training task", timeout=60_000)
        expect(summary).to_contain_text("its adapter will be close to the generic one")
        page.screenshot(path=str(artifact_path(tmp_path, "space-nearest-tasks.png")), full_page=True)
    finally:
        demo.close()


@pytest.mark.integration
def test_space_default_smollm2_in_a_real_browser(app, browser, tmp_path, monkeypatch):
    """One command, no arguments: the embedded default (SmolLM2 + the shipped or an untrained hypernetwork)."""
    monkeypatch.setenv("TEXT2LORA_ADAPTER_CACHE_DIR", str(tmp_path / "adapters"))
    demo = app.build_demo(max_new_tokens=24)
    url = launch(demo)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        base, adapted = drive(page, url, app.EXAMPLE_DESCRIPTIONS[0], app.EXAMPLE_PROMPTS[0], timeout_ms=120_000)
        page.screenshot(path=str(artifact_path(tmp_path, "space-smollm2.png")), full_page=True)
        assert base.strip() and adapted.strip()
        from text2lora import packaged

        if packaged.DEFAULT_CHECKPOINT is None:  # untrained default: the UI says so, and the answers agree
            assert "untrained" in page.locator("#hypernetwork-info").inner_text()
            assert adapted == base
        else:  # the shipped, trained hypernetwork: its adapter changes the answer
            assert "untrained" not in page.locator("#hypernetwork-info").inner_text()
            assert adapted != base
    finally:
        demo.close()
