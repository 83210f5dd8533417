"""The multi-task training collection: real offline task sources, reviewed descriptions, decontamination.

`build_task_collection` turns the BIG-bench archive (its JSON tasks and the Natural-Instructions v1 tasks it
ships) and reasoning-gym generators into one `datasets.DatasetDict`; the schema is documented in `schema.py`.
"""

from .descriptions import (
    DescriptionFileError,
    TaskDescriptions,
    check_description_files,
    load_description_file,
    load_source_descriptions,
)

__all__ = [
    "DescriptionFileError",
    "TaskDescriptions",
    "check_description_files",
    "load_description_file",
    "load_source_descriptions",
]
