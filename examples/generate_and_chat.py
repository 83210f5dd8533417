"""Generate a LoRA adapter from a task description, then chat with the adapted model next to the base model.

    python examples/generate_and_chat.py
    python examples/generate_and_chat.py --description "Translate English into French." --prompt "Good morning!"
    python examples/generate_and_chat.py --interactive      # type prompts; an empty line quits
"""

from __future__ import annotations

import argparse
import time

from default_hypernetwork import load_t2l
from transformers import TextStreamer

from text2lora import load_base_model, load_description_adapter
from text2lora.compare import answer


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t2l", help="hypernetwork: Hub name or folder (default: the shipped one)")
    parser.add_argument("--base-model", help="base model (default: the one the hypernetwork was made for)")
    parser.add_argument("--description", default="Solve grade-school math word problems and end with the final number.")
    parser.add_argument("--prompt", action="append", help="a prompt to answer (repeatable)")
    parser.add_argument("--interactive", action="store_true", help="read prompts from the keyboard")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--save-adapter", help="also write the adapter as a PEFT folder here")
    args = parser.parse_args(argv)

    t2l = load_t2l(args.t2l)
    model, tokenizer = load_base_model(args.base_model or t2l.config.base_model_name_or_path)

    # One call: generate the adapter from the description and load it into the model (as `load_adapter` does).
    start = time.perf_counter()
    adapter = load_description_adapter(model, args.description, t2l=t2l, adapter_name="task")
    print(f"adapter: {adapter.num_parameters:,} parameters, {adapter.nbytes / 1e6:.2f} MB, "
          f"generated and loaded in {time.perf_counter() - start:.2f} s")
    if args.save_adapter:
        adapter.save_pretrained(args.save_adapter)
        print(f"saved to {args.save_adapter}")

    prompts = args.prompt or ["A baker has 24 muffins and sells 9. How many are left?"]
    answers: dict[str, list[str]] = {"base": [], "adapted": []}
    while prompts or args.interactive:
        prompt = prompts.pop(0) if prompts else input("\nprompt> ").strip()
        if not prompt:
            break
        print(f"\n>>> {prompt}\n--- base model:")
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        model.disable_adapters()
        answers["base"].append(answer(model, tokenizer, prompt, args.max_new_tokens, streamer=streamer))
        model.enable_adapters()
        print("--- adapted model:")
        answers["adapted"].append(answer(model, tokenizer, prompt, args.max_new_tokens, streamer=streamer))
    return answers


if __name__ == "__main__":
    main()
