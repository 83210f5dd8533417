"""Text-to-LoRA with outside libraries, one module each, through their public APIs (no patching):

- `integrations.peft`: `TextLoraConfig` for `get_peft_model`, then `initialize_text_lora_weights` (as PEFT's EVA).
- `integrations.transformers`: `load_description_adapter(model, description, ...)`, `load_adapter` from a description.
- `integrations.vllm`: generated adapters for a running vLLM server or an offline `vllm.LLM`.
- `integrations.sentence_transformers`: classic sentence-transformers encoder folders read with plain transformers
  (what `DescriptionEncoder` uses for them: no sentence-transformers import, embeddings independent of the batch).
"""
