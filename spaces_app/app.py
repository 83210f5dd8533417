"""Text-to-LoRA Space: describe a task, get a LoRA adapter in one forward pass, and compare the adapted model's
answers with the base model's.

Run it locally with one command (offline, on the embedded default):

    python spaces_app/app.py            # options: --t2l NAME_OR_PATH --base-model NAME_OR_PATH --port 7860

This file is the Gradio wiring only; the state (hypernetworks, adapters, the base model's adapter slots) is
`space_state.Text2LoraSpace`, a thin shell over text2lora's pipeline.
"""

from __future__ import annotations

import os
import sys

# Read by gradio and huggingface_hub when they are imported, so set before the imports below.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # space_state.py beside this file, however it is run

import argparse
from collections.abc import Sequence
from typing import Any

import gradio as gr
from space_state import (  # noqa: F401 (re-exported: the app module is what tests and the Space load)
    EXAMPLE_DESCRIPTIONS,
    EXAMPLE_PROMPTS,
    MAX_DESCRIPTION_CHARS,
    AdapterResult,
    SpaceError,
    SpaceRequest,
    Text2LoraSpace,
    adapter_norms,
    norms_figure,
)

from text2lora.checkpoints import HypernetworkLike

# ---------------------------------------------------------------------- the Gradio app


def build_demo(t2l: HypernetworkLike = None, base_model: str | os.PathLike | None = None, **options: Any) -> gr.Blocks:
    """The Gradio app. `t2l` / `base_model` / `options` go to `Text2LoraSpace` (see there)."""
    space = Text2LoraSpace(t2l, base_model, **options)

    def on_generate(description: str, mix_description: str, mix_weight: float, session: dict):
        try:
            request = space.adapter_request(session["hypernetwork"], description, mix_description, mix_weight)
            known_warning = space.cache_warning
            result, cached = space.generate(request)
        except SpaceError as err:
            raise gr.Error(str(err)) from None
        if space.cache_warning and space.cache_warning != known_warning:
            gr.Warning(space.cache_warning)
        session = {**session, "adapter": [request.hypernetwork, list(request.descriptions), request.weights]}
        title = " + ".join(d if len(d) <= 60 else d[:59] + "…" for d in request.descriptions)
        return space.summary(result, cached), norms_figure(result.norms, title), str(result.zip_path), session

    def on_ask(prompt: str, max_new_tokens: float, session: dict):
        if not session.get("adapter"):
            raise gr.Error("Generate an adapter first: describe the task above and press “Generate adapter”.")
        hypernetwork, descriptions, weights = session["adapter"]
        request = SpaceRequest(hypernetwork, tuple(descriptions), tuple(weights) if weights else None)
        try:
            yield from space.stream_answers(request, prompt, int(max_new_tokens))
        except SpaceError as err:
            raise gr.Error(str(err)) from None

    def on_load_hypernetwork(name: str, session: dict):
        try:
            loaded = space.add_hypernetwork(name)
        except SpaceError as err:
            raise gr.Error(str(err)) from None
        info = space.describe_hypernetwork(loaded)
        return info, {"hypernetwork": loaded, "adapter": None}, "*Generate an adapter with the new hypernetwork.*", None, None

    with gr.Blocks(title="Text-to-LoRA") as demo:
        session = gr.State({"hypernetwork": space.default_hypernetwork, "adapter": None})
        gr.Markdown(
            "# Text-to-LoRA\n"
            "Describe a task in plain language: a hypernetwork writes a LoRA adapter for the base model in one "
            "forward pass ([paper](https://arxiv.org/abs/2506.06105)). Then ask both models the same question."
        )
        hypernetwork_info = gr.Markdown(space.describe_hypernetwork(space.default_hypernetwork), elem_id="hypernetwork-info")
        with gr.Row():
            with gr.Column(scale=3):
                description = gr.Textbox(
                    label="Task description", lines=3, max_lines=8, elem_id="description",
                    placeholder="e.g. " + EXAMPLE_DESCRIPTIONS[0],
                )
                gr.Examples([[d] for d in EXAMPLE_DESCRIPTIONS], inputs=[description], label="Example descriptions")
                with gr.Accordion("Mix with a second description", open=False):
                    mix_description = gr.Textbox(label="Second description", lines=2, elem_id="mix-description")
                    mix_weight = gr.Slider(
                        0.0, 1.0, value=0.0, step=0.05, label="Weight of the second description",
                        info="The adapter is made from (1 - w) × first + w × second, mixed in embedding space.",
                    )
                generate_button = gr.Button("Generate adapter", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                summary = gr.Markdown("*No adapter yet.*", elem_id="adapter-summary")
                download = gr.File(label="PEFT adapter folder (zip)", elem_id="adapter-zip")
        norms_plot = gr.Plot(label="Per-layer norms of the generated adapter", elem_id="adapter-norms")

        gr.Markdown("## Ask both models")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", lines=2, scale=4, elem_id="prompt")
            max_new_tokens = gr.Slider(
                1, space.max_new_tokens, value=min(96, space.max_new_tokens), step=1, label="Answer length (tokens)",
                scale=1,
            )
        gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Example prompts")
        ask_button = gr.Button("Ask base and adapted model", variant="primary", elem_id="ask")
        with gr.Row():
            base_answer = gr.Textbox(label="Base model", lines=8, interactive=False, elem_id="base-answer")
            adapted_answer = gr.Textbox(label="Adapted model", lines=8, interactive=False, elem_id="adapted-answer")

        with gr.Accordion("Load another hypernetwork", open=False):
            hypernetwork_name = gr.Textbox(
                label="Hub name or local folder", placeholder="owner/name or /path/to/hypernetwork",
                elem_id="hypernetwork-name",
            )
            load_button = gr.Button("Load hypernetwork", elem_id="load-hypernetwork")

        generate_button.click(
            on_generate, [description, mix_description, mix_weight, session], [summary, norms_plot, download, session],
            concurrency_id="adapters",
        )
        answer_event = {
            "fn": on_ask, "inputs": [prompt, max_new_tokens, session], "outputs": [base_answer, adapted_answer],
            "concurrency_id": "base-model",
        }
        ask_button.click(**answer_event)
        prompt.submit(**answer_event)
        load_button.click(
            on_load_hypernetwork, [hypernetwork_name, session],
            [hypernetwork_info, session, summary, norms_plot, download], concurrency_id="adapters",
        )
    # One request at a time per concurrency group (adapters / base model); everyone else waits in the queue.
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Text-to-LoRA demo.")
    parser.add_argument("--t2l", default=None, help="hypernetwork (Hub name or folder); default: the shipped one")
    parser.add_argument("--base-model", default=None, help="base model (default: the hypernetwork's own)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    build_demo(args.t2l, args.base_model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
