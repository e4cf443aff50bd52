"""What kind of model this is, seen through the wrappers training puts around it (DDP, DeepSpeed, PEFT): a decoder
or an encoder, and how many positions it takes. Plain reads of a model's config; imports nothing of the library,
so formatting, packing and model loading share it without importing each other.
"""

from __future__ import annotations

DECODER_TYPES = {"llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "mistral", "gpt2",
                 "phi", "phi3", "olmo", "olmo2", "smollm3", "granite", "cohere", "starcoder2"}


def is_decoder(model_or_config) -> bool:
    """Whether a model (or its config) is a decoder: its score head reads the last real token."""
    cfg = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(cfg, "is_decoder", False)) or getattr(cfg, "model_type", "") in DECODER_TYPES


def unwrap(model):
    """The transformers model under DDP / DeepSpeed / PEFT wrappers (LoRA layers are injected in place: same
    computation). DeepSpeed's engine has a ``config`` too (its own, a dict): only a model's config stops here."""
    from transformers import PretrainedConfig

    while True:
        if hasattr(model, "module") and not isinstance(getattr(model, "config", None), PretrainedConfig):
            model = model.module  # DistributedDataParallel, DataParallel, a DeepSpeed engine
        elif hasattr(model, "get_base_model"):  # peft.PeftModel
            model = model.get_base_model()
        else:
            return model


LEARNED_POSITION_DECODERS = {"gpt2", "gpt_neo", "opt"}  # decoders with a position table (most use rotary)


def position_limit(model) -> int | None:
    """Tokens a model with a learned position table can take (``max_position_embeddings``, less the RoBERTa
    family's ``padding_idx + 1`` offset): encoders and :data:`LEARNED_POSITION_DECODERS` (GPT-2: ``n_positions``);
    None for rotary / relative positions, which have no hard end."""
    cfg = getattr(unwrap(model), "config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    if cfg is not None and n is not None and getattr(cfg, "model_type", "") in LEARNED_POSITION_DECODERS:
        return int(n)
    if cfg is None or n is None or is_decoder(cfg) or getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return None
    if getattr(cfg, "position_biased_input", True) is False:  # DeBERTa-v2/v3 (mDeBERTa): relative positions only
        return None
    return int(n) - (int(cfg.pad_token_id or 0) + 1 if positions_from_ids(model) else 0)


def positions_from_ids(model) -> bool:
    """Whether ``model`` (through its wrappers) derives position ids from ``input_ids`` itself (the RoBERTa
    family: positions start at ``padding_idx + 1``)."""
    m = unwrap(model)
    body = getattr(m, "base_model", m)
    return hasattr(getattr(body, "embeddings", None), "create_position_ids_from_input_ids")
