"""The multi-task training collection: real offline task sources, reviewed descriptions, decontamination.

`build_task_collection` turns the BIG-bench archive (its JSON tasks and the Natural-Instructions v1 tasks it
ships) and reasoning-gym generators into one `datasets.DatasetDict`; the schema is documented in `schema.py`,
the description file format in `descriptions/FORMAT.md`, the removal rules in `decontamination.py`.
"""

from .builder import (
    DEFAULT_VALIDATION_TASKS,
    BuildResult,
    TaskCollectionBuilder,
    TaskCollectionConfig,
    build_task_collection,
    default_collection_dir,
    load_task_collection,
)
from .decontamination import REMOVED_TASKS, BenchmarkNgramIndex, Removal
from .description_files import (
    DescriptionFileError,
    TaskDescriptions,
    check_description_files,
    load_description_file,
    load_source_descriptions,
)
from .build_report import BuildReport, read_report
from .schema import COLUMNS, TRAIN_SPLIT, VALIDATION_SPLIT, collection_features, split_task_id, task_id

__all__ = [
    "COLUMNS",
    "DEFAULT_VALIDATION_TASKS",
    "REMOVED_TASKS",
    "TRAIN_SPLIT",
    "VALIDATION_SPLIT",
    "BenchmarkNgramIndex",
    "BuildReport",
    "BuildResult",
    "DescriptionFileError",
    "Removal",
    "TaskCollectionBuilder",
    "TaskCollectionConfig",
    "TaskDescriptions",
    "build_task_collection",
    "check_description_files",
    "collection_features",
    "default_collection_dir",
    "load_description_file",
    "load_source_descriptions",
    "load_task_collection",
    "read_report",
    "split_task_id",
    "task_id",
]
