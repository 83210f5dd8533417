"""Train a small T2L hypernetwork by SFT: descriptions -> adapters -> frozen base LLM -> completion loss.

Each step generates one adapter per task from a randomly chosen description of that task, runs the base model
with each example's adapter, and back-propagates the completion-only loss into the hypernetwork alone. Here on a
toy collection (examples/toy_tasks.py) with one task held out, to watch the held-out loss; pass `--dataset` for
a real collection (`t2l data build`), and see `t2l train sft` for full runs from a config file.

    python examples/train_sft.py --max-steps 40 --output-dir runs/t2l-sft-toy
"""

from __future__ import annotations

import argparse

from toy_tasks import TASKS, toy_task_dataset

from text2lora import DescriptionEncoder, T2LConfig, T2LModel, load_base_model, load_description_adapter
from text2lora.configuration_t2l import DEFAULT_ENCODER
from text2lora.training import T2LSFTConfig, T2LSFTTrainer, load_task_dataset

HELD_OUT = "double_number"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--t2l", help="start from this hypernetwork (default: a new one for the base model)")
    parser.add_argument("--dataset", help="a task collection (save_to_disk folder or JSONL); default: toy tasks")
    parser.add_argument("--output-dir", default="runs/t2l-sft-toy")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--tasks-per-batch", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="1e-3 diverged on SmolLM2 in a 20-step run")
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args(argv)

    base, tokenizer = load_base_model(args.base_model)
    if args.t2l:
        t2l = T2LModel.from_pretrained(args.t2l)
    else:  # a new L hypernetwork; its adapters start as the LoRA initialisation (bias-HyperInit)
        size = DescriptionEncoder(DEFAULT_ENCODER).embedding_size
        t2l = T2LModel(T2LConfig.for_base_model(base, encoder_name_or_path=DEFAULT_ENCODER, task_embedding_size=size))

    if args.dataset:
        train, held_out = load_task_dataset(args.dataset), None
    else:
        train = toy_task_dataset([t for t in TASKS if t != HELD_OUT], examples_per_task=32)
        held_out = toy_task_dataset([HELD_OUT], examples_per_task=16, seed=1)
    config = T2LSFTConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        tasks_per_batch=args.tasks_per_batch,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        per_device_eval_batch_size=8,
    )
    trainer = T2LSFTTrainer(t2l, base, args=config, train_dataset=train, eval_dataset=held_out,
                            processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"] if held_out is not None else float("nan")
    trainer.train()
    after = trainer.evaluate()["eval_loss"] if held_out is not None else float("nan")
    trainer.save_model(args.output_dir)  # the hypernetwork, with its model card and loss_curve.png
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"training loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out task loss {before:.3f} -> {after:.3f}")

    # The trained hypernetwork is an ordinary checkpoint: load it and make an adapter for an unseen description.
    trained = T2LModel.from_pretrained(args.output_dir)
    model, _ = load_base_model(args.base_model)
    description = TASKS[HELD_OUT][0][0]
    load_description_adapter(model, description, t2l=trained)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Number: 21"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"{description!r} + 'Number: 21' -> {reply!r}")
    return {"first_loss": losses[0], "last_loss": losses[-1], "held_out_before": before, "held_out_after": after}


if __name__ == "__main__":
    main()
