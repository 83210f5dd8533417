"""`get_peft_model` with `TextLoraConfig`: a PEFT LoRA model whose weights come from a description.

The result is an ordinary `PeftModel`: fine-tune it from the generated adapter (a better start than the LoRA
initialisation when the hypernetwork is trained), merge it, or save it as a plain LoRA adapter that loads
without text2lora.

    python examples/peft_text_lora_config.py
    python examples/peft_text_lora_config.py --finetune-steps 0    # no fine-tuning
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from default_hypernetwork import load_t2l
from peft import PeftModel, get_peft_model

from text2lora import TextLoraConfig, initialize_text_lora_weights, load_base_model

DESCRIPTION = "Convert a temperature from Celsius to Fahrenheit and give only the number."
EXAMPLE = ("Convert 100 degrees Celsius to Fahrenheit.", "212")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t2l", help="hypernetwork: Hub name or folder (default: the shipped one)")
    parser.add_argument("--base-model", help="base model (default: the one the hypernetwork was made for)")
    parser.add_argument("--finetune-steps", type=int, default=3, help="AdamW steps on one example after generating")
    args = parser.parse_args(argv)
    t2l = load_t2l(args.t2l)
    base_name = args.base_model or t2l.config.base_model_name_or_path
    base, tokenizer = load_base_model(base_name)

    # Rank, alpha and target modules come from the hypernetwork; the LoRA weights from the description, written by
    # an explicit initialisation call after get_peft_model (as PEFT's EVA does with initialize_lora_eva_weights).
    model = get_peft_model(base, TextLoraConfig(description=DESCRIPTION, t2l=t2l))
    initialize_text_lora_weights(model)
    model.print_trainable_parameters()

    # Fine-tune from the generated adapter on one (prompt, answer) pair, completion tokens only.
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": EXAMPLE[0]}], add_generation_prompt=True,
                                           tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    answer_ids = tokenizer(EXAMPLE[1], add_special_tokens=False, return_tensors="pt").input_ids
    input_ids = torch.cat([prompt_ids, answer_ids], dim=1)
    labels = input_ids.clone()
    labels[:, : prompt_ids.shape[1]] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for step in range(args.finetune_steps + 1):
        loss = model(input_ids=input_ids, labels=labels).loss
        losses.append(loss.item())
        print(f"step {step}: loss {loss.item():.4f}")
        if step == args.finetune_steps:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()

    # Saved as a plain LoRA adapter: PEFT alone loads it back, with the same outputs.
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        fresh, _ = load_base_model(base_name)
        reloaded = PeftModel.from_pretrained(fresh, folder).eval()
        with torch.no_grad():
            difference = (reloaded(input_ids=input_ids).logits - model(input_ids=input_ids).logits).abs().max().item()
    print(f"saved and reloaded with plain PEFT: max logit difference {difference:.2e}")
    return {"first_loss": losses[0], "last_loss": losses[-1], "reload_difference": difference}


if __name__ == "__main__":
    main()
