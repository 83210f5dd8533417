"""Add a generated adapter to an existing transformers script: one import and one line.

The script below is an ordinary transformers text-generation script; the lines marked `# text2lora` are all
it takes to answer with an adapter made from a description. Several descriptions become several named
adapters, switched with `set_adapter` and turned off with `disable_adapters`, exactly like adapters loaded
with `load_adapter`.

    python examples/existing_transformers_script.py
"""

from __future__ import annotations

import argparse

from default_hypernetwork import load_t2l
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import text2lora
from text2lora import load_description_adapter  # text2lora: `load_adapter`, from a description


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t2l", help="hypernetwork: Hub name or folder (default: the shipped one)")
    parser.add_argument("--base-model", help="base model (default: the one the hypernetwork was made for)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    t2l = load_t2l(args.t2l)
    # Offline, resolve_base_model finds the packaged SmolLM2; with Hub access the plain name works as well.
    base = text2lora.resolve_base_model(args.base_model or t2l.config.base_model_name_or_path)

    # ---- the existing script ----
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    load_description_adapter(model, "Classify the sentiment of a review as positive or negative.", t2l=t2l,
                                   adapter_name="sentiment")  # text2lora: the one new line
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    messages = [{"role": "user", "content": "Review: the food was cold and the waiter rude. Sentiment?"}]
    options = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "return_full_text": False}
    # ---- end of the existing script ----

    # A second adapter beside the first; switch between them, or turn adapters off for the base model.
    load_description_adapter(model, "Answer in French.", t2l=t2l, adapter_name="french")
    answers = {}
    for name in ("sentiment", "french"):
        model.set_adapter(name)
        answers[name] = generator(messages, **options)[0]["generated_text"]
    model.disable_adapters()
    answers["base"] = generator(messages, **options)[0]["generated_text"]
    model.enable_adapters()
    for name, text in answers.items():
        print(f"[{name}] {text.strip()}")
    return answers


if __name__ == "__main__":
    main()
