"""T2L SFT on the tiny test models under `accelerate launch` (one process per rank); used by test_accelerate_ddp.

Writes, per rank, `rank{N}.json` (world size, distributed type, evaluation loss before and after training, the
logged training losses) and `rank{N}.safetensors` (the hypernetwork's final weights) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from text2lora import T2LConfig, T2LModel  # noqa: E402
from text2lora.training.sft_config import T2LSFTConfig  # noqa: E402
from text2lora.training.sft_trainer import T2LSFTTrainer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from t2l_tiny_tasks import task_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=16)
    cli = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)  # every rank builds the same initial hypernetwork; DDP also broadcasts rank 0's
    config = T2LConfig.for_base_model(
        cli.base, encoder_name_or_path=cli.encoder, task_embedding_size=32, latent_size=16, head_in_size=32
    )
    hypernetwork = T2LModel(config)
    base = AutoModelForCausalLM.from_pretrained(cli.base, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(cli.base)
    args = T2LSFTConfig(
        output_dir=str(Path(cli.out) / "run"),
        max_steps=cli.steps,
        learning_rate=1e-2,
        warmup_steps=0.1,
        tasks_per_batch=2,
        examples_per_task=2,
        neftune_noise_alpha=None,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        max_length=64,
        use_cpu=True,
        disable_tqdm=True,
        plot_loss=False,
        cache_dir="none",
        per_device_eval_batch_size=4,
        ddp_backend="gloo",
    )
    data = task_dataset()
    trainer = T2LSFTTrainer(hypernetwork, base, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    rank = trainer.args.process_index
    out = Path(cli.out)
    save_file({k: v.detach().contiguous() for k, v in trainer.hypernetwork.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    result = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "eval_before": before,
        "eval_after": after,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
