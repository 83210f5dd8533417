"""Generate a LoRA adapter from a task description, then chat with the adapted model next to the base model.

    python examples/generate_and_chat.py
    python examples/generate_and_chat.py --description "Translate English into French." --prompt "Good morning!"
    python examples/generate_and_chat.py --interactive      # type prompts; an empty line quits
"""

from __future__ import annotations

import argparse
import time

import torch
from default_hypernetwork import load_t2l
from transformers import TextStreamer

from text2lora import load_base_model


def answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy answer to one user message, printed as it is generated."""
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


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
    adapter = model.load_description_adapter(args.description, t2l=t2l, adapter_name="task")
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
        model.disable_adapters()
        answers["base"].append(answer(model, tokenizer, prompt, args.max_new_tokens))
        model.enable_adapters()
        print("--- adapted model:")
        answers["adapted"].append(answer(model, tokenizer, prompt, args.max_new_tokens))
    return answers


if __name__ == "__main__":
    main()
