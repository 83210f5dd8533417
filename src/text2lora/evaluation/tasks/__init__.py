"""lm-evaluation-harness task configs (YAML) for the evaluation benchmarks, over local files.

lm-eval reads these YAML files and imports `utils.py` by path; this `__init__` only makes the folder
part of the installed package.
"""
