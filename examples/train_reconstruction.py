"""Train a small T2L hypernetwork by reconstruction: it learns to reproduce a library of task LoRAs.

1. A LoRA library: one ordinary LoRA per task ("oracle" adapters, trained here on the toy tasks of
   examples/toy_tasks.py; or pass `--library` with one made by `t2l train oracle-lora`).
2. Reconstruction: the hypernetwork maps each task's descriptions to that task's LoRA (L1 loss on the weight
   updates, no LLM in the loop, so steps are cheap).
3. The error of the generated updates against the library, before and after training.

    python examples/train_reconstruction.py --output-dir runs/t2l-recon-toy
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from toy_tasks import toy_task_dataset
from trl import SFTConfig

from text2lora import DescriptionEncoder, T2LConfig, T2LModel, load_base_model
from text2lora.configuration_t2l import DEFAULT_ENCODER
from text2lora.training import (
    LoraLibrary,
    T2LReconstructionConfig,
    T2LReconstructionTrainer,
    lora_config_for,
    train_oracle_loras,
)


def relative_errors(t2l: T2LModel, library: LoraLibrary) -> dict[str, float]:
    """Per task: ||dW_generated - dW_library|| / ||dW_library|| over all modules and layers (Frobenius)."""
    config, errors = t2l.config, {}
    for entry in library.entries:
        adapter = t2l.generate_lora(entry.descriptions[0])
        difference = reference = 0.0
        for module in config.target_modules:
            target = entry.factors.delta_weight(module)  # [layers, out, in]
            for layer in range(config.num_layers):
                generated = adapter.delta_weight(config.module_paths[module].format(layer=layer))
                difference += float((generated - target[layer]).pow(2).sum())
                reference += float(target[layer].pow(2).sum())
        errors[entry.name] = math.sqrt(difference / max(reference, 1e-30))
    return errors


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--t2l", help="start from this hypernetwork (default: a new one for the base model)")
    parser.add_argument("--library", help="an existing LoRA library folder (default: train one on the toy tasks)")
    parser.add_argument("--output-dir", default="runs/t2l-recon-toy")
    parser.add_argument("--tasks", help="comma-separated toy tasks to use (default: all)")
    parser.add_argument("--oracle-steps", type=int, default=20, help="training steps of each oracle LoRA")
    parser.add_argument("--max-steps", type=int, default=200, help="reconstruction steps")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)

    base, tokenizer = load_base_model(args.base_model)
    if args.t2l:
        t2l = T2LModel.from_pretrained(args.t2l)
    else:
        size = DescriptionEncoder(DEFAULT_ENCODER).embedding_size
        t2l = T2LModel(T2LConfig.for_base_model(base, encoder_name_or_path=DEFAULT_ENCODER, task_embedding_size=size))

    if args.library:
        library = LoraLibrary.load(args.library)
    else:  # one LoRA per toy task, with the hypernetwork's rank, alpha and target modules
        oracle_args = SFTConfig(output_dir=str(output / "oracle-runs"), max_steps=args.oracle_steps,
                                per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=10,
                                save_strategy="no", report_to=[], max_length=64,
                                bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        tasks = args.tasks.split(",") if args.tasks else None
        library = train_oracle_loras(base, tokenizer, toy_task_dataset(tasks, examples_per_task=32),
                                     output / "library", oracle_args, lora_config_for(t2l.config))
    print(f"library: {len(library)} LoRAs ({', '.join(library.names)})")

    before = relative_errors(t2l, library)
    config = T2LReconstructionConfig(output_dir=str(output / "t2l"), max_steps=args.max_steps, logging_steps=20,
                                     save_strategy="no", report_to=[])
    trainer = T2LReconstructionTrainer(t2l, library, args=config)
    trainer.train()
    trainer.save_model(str(output / "t2l"))  # the hypernetwork, with its model card and loss_curve.png
    after = relative_errors(T2LModel.from_pretrained(output / "t2l"), library)

    print(f"{'task':<16} relative error of the generated update: before -> after")
    for name in library.names:
        print(f"{name:<16} {before[name]:.3f} -> {after[name]:.3f}")
    mean = {k: sum(v.values()) / len(v) for k, v in (("before", before), ("after", after))}
    print(f"{'mean':<16} {mean['before']:.3f} -> {mean['after']:.3f}")
    return mean


if __name__ == "__main__":
    main()
