"""Evaluation of T2L against its baselines under one harness (`t2l eval`)."""
