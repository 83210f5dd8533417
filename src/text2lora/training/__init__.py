"""Training T2L hypernetworks (SFT and reconstruction) and the baselines they are compared with.

- `T2LSFTTrainer` + `T2LSFTConfig`: SFT through a frozen base LLM with per-sample LoRA (zero-shot T2L).
- `T2LReconstructionTrainer` + `T2LReconstructionConfig`: reproduce a `LoraLibrary` of trained adapters.
- `train_multitask_lora`, `train_oracle_loras`: the multi-task and per-task LoRA baselines (TRL `SFTTrainer`).
- `PerSampleLora`: a different LoRA for every sample of a batch, by batched matmuls.

Import cost: this package loads transformers' Trainer; `import text2lora` does not import it.
"""

from .baselines import lora_config_for, train_multitask_lora, train_oracle_loras
from .resume import last_complete_checkpoint
from .collators import T2LSFTCollator
from .description_table import DescriptionTable, embed_descriptions
from .lora_library import LoraFactors, LoraLibrary, read_peft_adapter, write_task_metadata
from .losses import completion_loss
from .per_sample_lora import PerSampleLora, enable_activation_checkpointing
from .plotting import plot_loss_curves
from .run_config import load_run_config, run_from_config
from .recon_config import T2LReconstructionConfig
from .recon_model import T2LReconstructionModel
from .recon_trainer import T2LReconstructionTrainer
from .sft_config import T2LSFTConfig
from .sft_model import T2LSFTModel
from .sft_trainer import T2LSFTTrainer
from .task_data import TokenizedTasks, load_task_dataset
from .task_loss import completion_nll
from .task_sampling import SequentialTaskBatchSampler, TaskBatchSampler
from .warm_start import warm_start_from_lora

__all__ = [
    "DescriptionTable",
    "LoraFactors",
    "LoraLibrary",
    "PerSampleLora",
    "SequentialTaskBatchSampler",
    "T2LReconstructionConfig",
    "T2LReconstructionModel",
    "T2LReconstructionTrainer",
    "T2LSFTCollator",
    "T2LSFTConfig",
    "T2LSFTModel",
    "T2LSFTTrainer",
    "TaskBatchSampler",
    "TokenizedTasks",
    "completion_loss",
    "completion_nll",
    "embed_descriptions",
    "enable_activation_checkpointing",
    "last_complete_checkpoint",
    "load_run_config",
    "load_task_dataset",
    "lora_config_for",
    "plot_loss_curves",
    "read_peft_adapter",
    "run_from_config",
    "train_multitask_lora",
    "train_oracle_loras",
    "warm_start_from_lora",
    "write_task_metadata",
]
