"""Per-sample LoRA: equal to PEFT for each sample's adapter, differentiable, checkpoint- and SDPA-safe, and
memory that grows with the rank, not with `tokens x d x r`."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from text2lora.training.per_sample_lora import PerSampleLora, enable_activation_checkpointing


def _base(tiny_base_dir, attn="sdpa"):
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32, attn_implementation=attn)
    model.requires_grad_(False)
    return model.eval()


def _random_factors(config, batch, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    lora_A, lora_B = {}, {}
    for m in config.target_modules:
        d_in, d_out = config.module_shapes[m]
        lora_A[m] = (torch.randn(batch, config.num_layers, config.lora_r, d_in, generator=gen) * 0.2).requires_grad_(requires_grad)
        lora_B[m] = (torch.randn(batch, config.num_layers, d_out, config.lora_r, generator=gen) * 0.2).requires_grad_(requires_grad)
    return lora_A, lora_B


def _peft_with(base, config, lora_A, lora_B, index):
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        use_rslora=config.use_rslora,
        target_modules=list(config.target_modules),
        lora_dropout=0.0,
    )
    model = get_peft_model(base, peft_config)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for m in config.target_modules:
            for layer in range(config.num_layers):
                path = "base_model.model." + config.module_paths[m].format(layer=layer)
                modules[path].lora_A["default"].weight.copy_(lora_A[m][index, layer])
                modules[path].lora_B["default"].weight.copy_(lora_B[m][index, layer])
    return model


def _batch(batch=3, length=12, vocab=200, seed=1):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch, length), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    if batch > 1:
        attention_mask[1, -3:] = 0  # one right-padded row
    return input_ids, attention_mask


def test_each_sample_matches_a_peft_model_with_its_weights(tiny_base_dir, tiny_config):
    base = _base(tiny_base_dir)
    input_ids, attention_mask = _batch()
    lora_A, lora_B = _random_factors(tiny_config, batch=3)
    lora = PerSampleLora(base, tiny_config)
    with torch.no_grad():
        plain = base(input_ids=input_ids, attention_mask=attention_mask).logits
        with lora.apply(lora_A, lora_B):
            ours = base(input_ids=input_ids, attention_mask=attention_mask).logits
    assert not torch.allclose(ours, plain, atol=1e-3), "the adapters must change the outputs"
    for b in range(3):
        peft_model = _peft_with(_base(tiny_base_dir), tiny_config, lora_A, lora_B, b)
        with torch.no_grad():
            reference = peft_model(input_ids=input_ids[b : b + 1], attention_mask=attention_mask[b : b + 1]).logits
        torch.testing.assert_close(ours[b : b + 1], reference, atol=1e-5, rtol=1e-5)


def test_gradients_match_peft_lora_gradients(tiny_base_dir, tiny_config):
    input_ids, attention_mask = _batch(batch=1)
    lora_A, lora_B = _random_factors(tiny_config, batch=1, requires_grad=True)
    base = _base(tiny_base_dir)
    with PerSampleLora(base, tiny_config).apply(lora_A, lora_B):
        loss = base(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss
    loss.backward()

    peft_model = _peft_with(_base(tiny_base_dir), tiny_config, lora_A, lora_B, 0)
    peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss.backward()
    modules = dict(peft_model.named_modules())
    for m in tiny_config.target_modules:
        for layer in range(tiny_config.num_layers):
            path = "base_model.model." + tiny_config.module_paths[m].format(layer=layer)
            torch.testing.assert_close(lora_A[m].grad[0, layer], modules[path].lora_A["default"].weight.grad, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(lora_B[m].grad[0, layer], modules[path].lora_B["default"].weight.grad, atol=1e-5, rtol=1e-4)


def _hook_count(model):
    return sum(len(module._forward_hooks) for module in model.modules())


def test_hooks_are_removed_after_the_block_and_on_errors(tiny_base_dir, tiny_config):
    base = _base(tiny_base_dir)
    lora = PerSampleLora(base, tiny_config)
    before = _hook_count(base)
    lora_A, lora_B = _random_factors(tiny_config, batch=2)
    with lora.apply(lora_A, lora_B):
        assert _hook_count(base) == before + tiny_config.num_layers * len(tiny_config.target_modules)
    assert _hook_count(base) == before and not lora.is_active

    input_ids, _ = _batch(batch=3)  # 3 samples but 2 adapters: the hook raises mid-forward
    with pytest.raises(ValueError, match="per-sample adapters"):
        with lora.apply(lora_A, lora_B):
            base(input_ids=input_ids)
    assert _hook_count(base) == before and not lora.is_active

    with pytest.raises(RuntimeError, match="boom"):
        with lora.apply(lora_A, lora_B):
            raise RuntimeError("boom")
    assert _hook_count(base) == before


def test_wrong_factor_shapes_are_rejected(tiny_base_dir, tiny_config):
    base = _base(tiny_base_dir)
    lora_A, lora_B = _random_factors(tiny_config, batch=2)
    m = tiny_config.target_modules[0]
    lora_A[m] = lora_A[m][:, :, :4]
    with pytest.raises(ValueError, match=r"lora_A\['q_proj'\] must be"):
        with PerSampleLora(base, tiny_config).apply(lora_A, lora_B):
            pass


def _grads(base, config, checkpointing, attn_grads_input):
    input_ids, attention_mask = attn_grads_input
    lora_A, lora_B = _random_factors(config, batch=input_ids.shape[0], requires_grad=True)
    lora = PerSampleLora(base, config)
    if checkpointing:
        enable_activation_checkpointing(base, lora)
        base.train()
    labels = input_ids.masked_fill(attention_mask == 0, -100)  # padded positions attend to nothing: no loss there
    with lora.apply(lora_A, lora_B):
        loss = base(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()  # the recompute of checkpointed layers happens here, after the block
    return loss.detach(), [lora_A[m].grad for m in config.target_modules] + [lora_B[m].grad for m in config.target_modules]


def test_non_reentrant_checkpointing_and_sdpa_give_the_same_gradients(tiny_base_dir, tiny_config):
    inputs = _batch(batch=3)
    loss_ref, grads_ref = _grads(_base(tiny_base_dir, "eager"), tiny_config, False, inputs)
    loss_sdpa, grads_sdpa = _grads(_base(tiny_base_dir, "sdpa"), tiny_config, False, inputs)
    loss_ckpt, grads_ckpt = _grads(_base(tiny_base_dir, "sdpa"), tiny_config, True, inputs)
    assert all(g is not None and g.abs().sum() > 0 for g in grads_ckpt)
    torch.testing.assert_close(loss_sdpa, loss_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_ckpt, loss_ref, atol=1e-5, rtol=1e-5)
    for a, b, c in zip(grads_ref, grads_sdpa, grads_ckpt):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(c, a, atol=1e-5, rtol=1e-4)


def test_reentrant_checkpointing_is_refused(tiny_base_dir, tiny_config):
    base = _base(tiny_base_dir)
    with pytest.raises(ValueError, match="non-reentrant"):
        enable_activation_checkpointing(base, PerSampleLora(base, tiny_config), use_reentrant=True)


def _saved_bytes(fn) -> int:
    """Bytes of distinct storages autograd saves for backward while `fn` runs."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_memory_grows_with_rank_not_with_tokens_times_width(tiny_base_dir, tiny_config):
    """A and B are applied per sample, never materialised per token: the extra saved memory is the LoRA input,
    the rank-r activations (`batch x tokens x r` per module) and the factors, far below `batch x tokens x r x d`."""
    base = _base(tiny_base_dir)
    batch, length = 4, 32
    input_ids = torch.randint(5, 200, (batch, length))
    embeds = base.get_input_embeddings()(input_ids).detach().requires_grad_(True)  # so the base saves activations
    lora_A, lora_B = _random_factors(tiny_config, batch=batch, requires_grad=True)
    lora = PerSampleLora(base, tiny_config)

    plain = _saved_bytes(lambda: base(inputs_embeds=embeds))

    def with_lora():
        with lora.apply(lora_A, lora_B):
            base(inputs_embeds=embeds)

    extra = _saved_bytes(with_lora) - plain
    n_sites = tiny_config.num_layers * len(tiny_config.target_modules)
    r = tiny_config.lora_r
    rank_activations = n_sites * batch * length * r * 4
    factors = sum(t.numel() * 4 for t in list(lora_A.values()) + list(lora_B.values()))
    per_token_repeat = sum(
        tiny_config.num_layers * batch * length * r * (d_in + d_out) * 4 for d_in, d_out in tiny_config.module_shapes.values()
    )
    # Like any LoRA, `x @ A^T` keeps its input x for A's gradient (q_proj and v_proj read the same x per layer).
    inputs = tiny_config.num_layers * batch * length * max(d for d, _ in tiny_config.module_shapes.values()) * 4
    assert extra <= inputs + 2 * rank_activations + factors, (extra, inputs, rank_activations, factors)
    assert extra < per_token_repeat / 4


@pytest.mark.integration
def _per_sample_and_peft_logits(model, config, input_ids, lora_A, lora_B):
    with torch.no_grad():
        with PerSampleLora(model, config).apply(lora_A, lora_B):
            ours = model(**input_ids).logits
        references = []
        for b in range(len(input_ids["input_ids"])):
            peft_model = _peft_with(model, config, lora_A, lora_B, b)
            try:
                references.append(peft_model(input_ids=input_ids["input_ids"][b : b + 1],
                                             attention_mask=input_ids["attention_mask"][b : b + 1]).logits[0])
            finally:
                peft_model.unload()  # the model may be the session's shared SmolLM2: leave it as it was
    return ours, references


def test_real_smollm2_matches_peft(smollm2):
    """On the packaged SmolLM2-135M (30 layers, GQA, SDPA): per-sample LoRA equals PEFT for each sample's weights.

    Exactly, in float64. In float32 both differ from the float64 result by kernel rounding, and PEFT's own float32
    logits are the noisier ones: measured on the 2-core CPU (torch 2.13, these inputs), logits up to |35|, PEFT's
    float32 error up to 8.0e-4, ours up to 1.2e-4, i.e. 2.3e-5 of the largest logit; two CPUs' different kernels
    once put ours and PEFT's float32 logits 6.1e-4 apart. The bound below, 1e-4 of the largest logit (~3.5e-3
    here), leaves ~4x room over that noise while a wrong LoRA (a missing scale, one layer skipped) moves logits by
    more than 1e-2 (checked first).
    """
    import copy

    from text2lora import T2LConfig

    model, tokenizer = smollm2
    config = T2LConfig.for_base_model(model)
    input_ids = tokenizer(["Spell 'cat' backward.", "What is 2 + 3?"], return_tensors="pt", padding=True)
    lora_A, lora_B = _random_factors(config, batch=2, seed=3)
    lora_B = {m: b * 0.1 for m, b in lora_B.items()}
    with torch.no_grad():
        plain = model(**input_ids).logits
    ours, references = _per_sample_and_peft_logits(model, config, input_ids, lora_A, lora_B)
    assert (ours - plain).abs().max() > 1e-2

    model64 = copy.deepcopy(model).double()
    ours64, references64 = _per_sample_and_peft_logits(
        model64, config, input_ids, {m: a.double() for m, a in lora_A.items()}, {m: b.double() for m, b in lora_B.items()}
    )
    del model64
    for b in range(2):
        mask = input_ids["attention_mask"][b].bool()
        truth = references64[b][mask]
        scale = truth.abs().max().item()
        torch.testing.assert_close(ours64[b][mask], truth, atol=1e-10 * scale, rtol=0)
        torch.testing.assert_close(ours[b][mask].double(), truth, atol=1e-4 * scale, rtol=0)
        torch.testing.assert_close(references[b][mask].double(), truth, atol=1e-4 * scale, rtol=0)
