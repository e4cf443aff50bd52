"""Bradley-Terry reward-model training on ``transformers.Trainer`` (accelerate / DeepSpeed ready).

Loss (TRL's, with its two options)::

    L = -log sigmoid(r(x, y_c) - r(x, y_r) - margin)  +  center_coef * mean((r_c + r_r)^2)

Why not TRL's ``RewardTrainer`` itself: we need chosen and rejected in ONE forward pass, length-grouped
batches padded only to the longest pair in the batch, and frozen embeddings (on the default backbone 96M of
its 117M parameters are the word-embedding matrix, whose AdamW update dominates a CPU step). The Trainer base
keeps everything else standard: ``accelerate launch`` / DeepSpeed configs, bf16, gradient checkpointing,
cosine schedule with warm-up, logging. ``benchmarks/bench_train.py`` measures both side by side.

>>> path = train_reward_model("me5-small", load_pairs("embedded", langs=["en"], split="train"))  # doctest: +SKIP

The returned directory is an ordinary HF model directory (safetensors) with ``xlrm_card.json`` (backbone, data
fingerprint, languages, parameters, versions, train metrics) and ``xlrm_format.json`` (template, truncation).
Training is content-addressed: the same backbone + data + parameters return the saved model at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from dataclasses import asdict, dataclass, replace
from numbers import Integral
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from . import hub
from .backbones import PACKAGED, build_stamp
from .compiling import GRAPH_ROW_MULTIPLE, GRAPHS, compile_blocks, compile_mode, resolve_compile
from .formatting import TextFormat, encode, fit_positions, forward_kwargs, pad_batch
from .models import config_files_digest, damaged_model, load_reward_model, resolve_backbone
from .packing import pack, packed_rewards, packed_training, should_pack, supports_packing
from .store import (CARD_FILE, atomic_dir, cache_dir, entry_lock, file_digest, file_digest_memo, file_lock,
                    fingerprint, json_text, library_versions, remove_abandoned, slug)

log = logging.getLogger(__name__)
STAT_NAMES = ("accuracy", "margin", "rewards/chosen", "rewards/rejected", "rewards/min", "rewards/max")
# part of the cache key: bump when a change to this module changes what training produces (5: a tokenizer without
# a pad token gets its own instead of EOS, chat templates render with a fixed date, a bf16 checkpoint trains in
# float32 weights; see models._set_pad and load_reward_model)
TRAINER_VERSION = 7  # 7: LoRA: dropout off under disable_dropout, alpha 2 x rank unless given
# 6: RoBERTa-family encoders number their own positions


@dataclass
class RewardConfig:
    """Every knob of a training run (all of it goes into the cache key and the model card).

    A field added here changes every RM's cache key (:func:`training_key` hashes ``asdict``): every cached RM is
    trained again, at 3B hours of it. A knob that leaves the trained model as it was at some value (a speed
    setting) is better a value of an existing field (``torch_compile="graphs"``), or kept out of the key at that
    value; bump ``TRAINER_VERSION`` only when what a recipe trains has changed."""

    lr: float = 3e-5                 # peak learning rate (paper: 1e-5 at global batch 128 on 3B models)
    epochs: float = 2.0              # passes over the pairs (paper: 1)
    batch_size: int = 16             # pairs per optimizer step (x2 sequences: chosen and rejected)
    grad_accum: int = 1              # gradient-accumulation steps (global batch = batch_size x grad_accum x GPUs)
    max_length: int = 256            # tokens per (prompt, answer); longer sequences keep their END
    template: str = "auto"           # "auto" | "chat" | "plain" (see xlrm_lib.formatting)
    warmup_ratio: float = 0.1        # linear warm-up fraction, then cosine decay (paper's schedule)
    weight_decay: float = 0.0
    seed: int = 42                   # paper's seed; also seeds the fresh score head
    freeze_embeddings: bool = True   # keep the (huge, multilingual) word-embedding matrix fixed
    disable_dropout: bool = True     # TRL's default: chosen and rejected see the same network (and 1.3x faster on CPU)
    lora: dict | int | None = None   # LoRA rank, or {"r": 16, "alpha": 32, "dropout": 0.05}; None/0 = full FT
    #                                  (alpha: 2 x r unless given; {}: LoRA with these defaults)
    margin: float = 0.0              # constant margin inside the sigmoid
    center_coef: float = 0.0         # reward-centring weight (Eisenstein et al. 2023), TRL's center_rewards_coefficient
    bf16: bool | None = None         # None = bf16 autocast where it is fast (bf16 GPU; CPU with AMX/AVX512-BF16)
    gradient_checkpointing: bool = False
    group_by_length: bool = True     # batches of similar length: less padding (padded batches only)
    packing: bool | str = "auto"     # padding-free rows + flash varlen attention; "auto" = decoder RM on a CUDA GPU
    torch_compile: bool | str = "auto"  # torch.compile the repeated blocks; "auto" = packed training on a CUDA GPU;
    #                                     "graphs" = and replay them as CUDA graphs (experimental; packed only)
    logging_steps: int = 5

    def lora_settings(self) -> dict | None:
        """The LoRA adapters' settings (rank, alpha = 2 x rank unless given, dropout, target modules), or None
        for full fine-tuning (``lora`` None or 0; ``{}`` means LoRA with the defaults)."""
        if self.lora is None or (isinstance(self.lora, Integral) and self.lora == 0):
            return None
        given = {"r": int(self.lora)} if isinstance(self.lora, Integral) else dict(self.lora)
        r = int(given.get("r", 16))
        return {"r": r, "alpha": float(given.get("alpha", 2 * r)), "dropout": float(given.get("dropout", 0.05)),
                "target_modules": given.get("target_modules", "all-linear")}

    def validate(self) -> "RewardConfig":
        """``self``, its numbers as their fields' types (``epochs=1`` is ``1.0``: the same RM, the same cache key),
        if every knob has a usable value; else one ValueError naming each bad one and what it takes."""
        from . import checks

        tests = [
            ("lr", lambda v: checks.finite_number("lr", v, above=0)),
            ("epochs", lambda v: checks.finite_number("epochs", v, above=0)),
            ("batch_size", lambda v: checks.positive_int("batch_size", v)),
            ("grad_accum", lambda v: checks.positive_int("grad_accum", v)),
            ("max_length", lambda v: checks.positive_int("max_length", v, minimum=8)),
            ("warmup_ratio", lambda v: checks.finite_number("warmup_ratio", v, at_least=0, below=1)),
            ("weight_decay", lambda v: checks.finite_number("weight_decay", v, at_least=0)),
            ("seed", lambda v: checks.seed("seed", v)),
            ("lora", _check_lora),
            ("margin", lambda v: checks.finite_number("margin", v)),
            ("center_coef", lambda v: checks.finite_number("center_coef", v, at_least=0)),
            ("bf16", lambda v: checks.choice("bf16", v, (None, True, False))),
            ("packing", lambda v: checks.choice("packing", v, (True, False, "auto"))),
            ("torch_compile", lambda v: checks.choice("torch_compile", v, (True, False, "auto", GRAPHS))),
            ("logging_steps", lambda v: checks.positive_int("logging_steps", v)),
            *[(flag, lambda v, f=flag: checks.choice(f, v, (True, False)))
              for flag in ("freeze_embeddings", "disable_dropout", "gradient_checkpointing", "group_by_length")],
        ]
        bad, numbers = [], {}
        for name, test in tests:
            try:
                value = test(getattr(self, name))
            except ValueError as e:
                bad.append(str(e))
                continue
            if name in NUMBER_FIELDS:
                numbers[name] = value  # finite_number's float, positive_int's int
        if self.torch_compile == GRAPHS and self.packing is False:
            bad.append(f"torch_compile = {GRAPHS!r} (CUDA graphs) needs packed training; expected packing true or "
                       "'auto' with it, or torch_compile true, false or 'auto' with packing false")
        if self.torch_compile == GRAPHS and isinstance(self.grad_accum, int) and self.grad_accum > 1:
            # CUDA-graph trees install a backward graph's output as .grad; the next micro-batch's replay overwrites
            # it (pytorch/pytorch#169545: an error, or wrong gradients)
            bad.append(f"torch_compile = {GRAPHS!r} (CUDA graphs) with grad_accum = {self.grad_accum}: gradient "
                       "accumulation over replayed graphs is not supported; expected grad_accum 1 (a larger "
                       "batch_size) or another torch_compile")
        if bad:
            raise ValueError("invalid training parameter(s): " + "; ".join(bad))
        TextFormat(self.template, self.max_length)
        return replace(self, **numbers)


NUMBER_FIELDS = ("lr", "epochs", "batch_size", "grad_accum", "max_length", "warmup_ratio", "weight_decay", "seed",
                 "margin", "center_coef", "logging_steps")
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def _check_lora(value) -> None:
    """``None``, a rank >= 0 (0: full fine-tuning) or ``{"r": 16, "alpha": 32, "dropout": 0.05, ...}``."""
    from . import checks

    if value is None or (isinstance(value, Integral) and not isinstance(value, bool) and value >= 0):
        return
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(LORA_KEYS))
        if unknown:
            raise ValueError(f"lora has unknown key(s) {unknown}; expected some of {list(LORA_KEYS)}")
        if "r" in value:
            checks.positive_int("lora['r']", value["r"])
        if "alpha" in value:
            checks.finite_number("lora['alpha']", value["alpha"], above=0)
        if "dropout" in value:
            checks.finite_number("lora['dropout']", value["dropout"], at_least=0, below=1)
        return
    raise ValueError(f"lora = {value!r}; expected a rank (an integer >= 0; 0 = full fine-tuning) or a dict with "
                     f"keys {list(LORA_KEYS)}")


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, *, margin: float = 0.0, center_coef: float = 0.0):
    """Bradley-Terry loss of paired rewards ``(batch,)``.

    >>> round(float(bt_loss(torch.tensor([1.0]), torch.tensor([0.0]))), 4)  # -log sigmoid(1)
    0.3133
    """
    if r_chosen.ndim != 1 or r_chosen.shape != r_rejected.shape:  # (n, 1) - (n,) would broadcast to (n, n)
        raise ValueError(f"bt_loss takes two reward vectors of one shape (batch,); got {tuple(r_chosen.shape)} and "
                         f"{tuple(r_rejected.shape)} (squeeze a (batch, 1) head output with [:, 0])")
    loss = -F.logsigmoid(r_chosen - r_rejected - margin).mean()
    if center_coef:
        loss = loss + center_coef * ((r_chosen + r_rejected) ** 2).mean()
    return loss


# ----------------------------------------------------------------------------------- data
def data_fingerprint(pairs) -> str:
    cols = [c for c in ("id", "lang", "prompt", "chosen", "rejected") if c in pairs.column_names]
    return fingerprint([[json.dumps(r[c], ensure_ascii=False) for c in cols] for r in pairs.select_columns(cols)])


def backbone_fingerprint(backbone: str) -> dict:
    """What identifies a backbone: a packaged name + its build stamp (builder and source package versions), a hub
    id + the commit its main branch points at (:func:`xlrm_lib.hub.commit`; the RM is trained from that commit),
    or a local dir's contents (the weights, and the config, tokenizer and chat template: an edited template or
    tokenizer is another backbone)."""
    path = Path(str(backbone)).expanduser()
    if path.is_dir():
        card = path / CARD_FILE
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        return {"local": str(path.name), "card": file_digest(card) if card.exists() else None,
                "weights": [file_digest_memo(w) for w in weights],  # every shard: a 3B model has several
                "files": (config_files_digest(path) or "")[:16]}
    if str(backbone) in PACKAGED:
        return {"name": str(backbone), "build": build_stamp(str(backbone))}
    return {"name": str(backbone), "revision": hub.commit(str(backbone))}


def tokenize_pairs(tokenizer, pairs, fmt: TextFormat) -> list[dict]:
    prompts = pairs["prompt"]
    chosen = encode(tokenizer, prompts, pairs["chosen"], fmt)
    rejected = encode(tokenizer, prompts, pairs["rejected"], fmt)
    return [{"input_ids_chosen": c, "input_ids_rejected": r, "length": max(len(c), len(r))}
            for c, r in zip(chosen, rejected)]


@dataclass
class PairCollator:
    """Stack chosen then rejected into ONE padded batch of ``2 * n`` sequences (one forward pass).

    Training pads on the RIGHT whatever the tokenizer's side: with left padding a causal model's padding
    queries see no key at all, SDPA's fused CUDA kernels return NaN there, and 0 * NaN in the backward poisons
    the weight gradients (seen on an H200 after a few steps). Position ids count real tokens, so the rewards
    are the same on either side.
    """

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, features: list[dict]) -> dict:
        seqs = _chosen_then_rejected(features)
        return {**pad_batch(seqs, self.pad_token_id, self.padding_side), "real_tokens": sum(map(len, seqs))}


@dataclass
class PackedPairCollator:
    """Chosen then rejected, concatenated into ONE padding-free row (see :mod:`xlrm_lib.packing`); for CUDA
    graphs, rounded up to a multiple of ``row_multiple`` tokens with the kernel's length bound fixed at
    ``max_length`` (:func:`xlrm_lib.packing.pack`)."""

    row_multiple: int | None = None
    max_length: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        seqs = _chosen_then_rejected(features)
        return {**pack(seqs, row_multiple=self.row_multiple, max_length=self.max_length),
                "real_tokens": sum(map(len, seqs))}


def _chosen_then_rejected(features: list[dict]) -> list[list[int]]:
    """The ``2 n`` sequences of ``n`` pairs, chosen first: ``rewards.chunk(2)`` splits them back."""
    return [f["input_ids_chosen"] for f in features] + [f["input_ids_rejected"] for f in features]


# ----------------------------------------------------------------------------------- trainer
def _make_trainer_class():
    from transformers import Trainer

    class BTTrainer(Trainer):
        """``Trainer`` with the Bradley-Terry loss and TRL-style logged metrics."""

        def __init__(self, *a, margin=0.0, center_coef=0.0, cuda_graphs=False, **kw):
            super().__init__(*a, **kw)
            self.margin, self.center_coef, self.cuda_graphs = margin, center_coef, cuda_graphs
            self._stats: list[torch.Tensor] = []  # one row of STAT_NAMES per step, on the device: no sync per step
            self.real_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            n_real = inputs.pop("real_tokens", None)
            if self.cuda_graphs and model.training:  # a new step: the graphs' output buffers may be reused
                torch.compiler.cudagraph_mark_step_begin()
            if "cu_seq_lens" in inputs:
                # the packed kernel is half precision only: make sure the bf16 autocast is on around it
                with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=bool(self.args.bf16)):
                    rewards = packed_rewards(model, inputs)
            else:
                rewards = model(**forward_kwargs(model, inputs)).logits.squeeze(-1)
            rc, rr = rewards.float().chunk(2)
            loss = bt_loss(rc, rr, margin=self.margin, center_coef=self.center_coef)
            if model.training:
                self.real_tokens += int(n_real if n_real is not None else inputs["attention_mask"].sum())
                with torch.no_grad():
                    self._stats.append(torch.stack([
                        loss.detach(), (rc > rr).float().mean(), (rc - rr).mean(), rc.mean(), rr.mean(),
                        torch.minimum(rc, rr).min(), torch.maximum(rc, rr).max()]))
            return (loss, {"rewards_chosen": rc, "rewards_rejected": rr}) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if self._stats:  # the one host sync per logging window; every process's steps (they all log)
                rows = self.accelerator.gather(torch.stack(self._stats)).float().cpu()
                self._stats = []
                if not torch.isfinite(rows[:, 0]).all():
                    raise FloatingPointError(f"non-finite loss {rows[:, 0].tolist()} before step "
                                             f"{self.state.global_step}; lower lr, or use bf16/float32 instead of fp16")
                for i, k in enumerate(STAT_NAMES):
                    col = rows[:, i + 1]
                    logs[k] = float(col.min() if k.endswith("/min") else col.max() if k.endswith("/max") else col.mean())
            super().log(logs, *args, **kwargs)

    return BTTrainer


def _prepare_model(model, cfg: RewardConfig):
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if lora := cfg.lora_settings():
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"]))
    if cfg.disable_dropout:  # after wrapping: LoRA brings dropout modules of its own
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if cfg.gradient_checkpointing:  # transformers 5.x renamed it (the old name warns); 4.x has the old one only
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    return model


def check_pairs(pairs, tokenizer=None, model=None) -> None:
    if pairs is not None and not isinstance(pairs, datasets.Dataset):
        raise TypeError(f"pairs is a {type(pairs).__name__}; expected a datasets.Dataset in the canonical schema: "
                        "load them with xlrm_lib.data.load_pairs (or datasets.Dataset.from_list(rows))")
    if pairs is None or len(pairs) < 2:
        raise ValueError(f"need at least 2 preference pairs to train, got {0 if pairs is None else len(pairs)}")
    missing = {"prompt", "chosen", "rejected"} - set(pairs.column_names)
    if missing:
        raise ValueError(f"pairs lack column(s) {sorted(missing)}; load them with xlrm_lib.data.load_pairs")
    answers = list(zip(pairs["chosen"], pairs["rejected"]))  # one read of the two columns
    empty = [i for i, (c, r) in enumerate(answers)
             if not isinstance(c, str) or not isinstance(r, str) or not c.strip() or not r.strip()]
    if empty:
        raise ValueError(f"{len(empty)} pair(s) have an empty or non-text chosen/rejected answer (rows {empty[:5]}); "
                         "load the pairs with xlrm_lib.data.load_pairs(..., drop_bad=True) to drop them")
    if all(c == r for c, r in answers):
        raise ValueError("every pair has chosen == rejected: there is nothing to learn")
    if tokenizer is None or model is None:
        return
    n_emb = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_emb:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model embeds only {n_emb}: "
                         "tokenizer and model do not match")


def read_card(model_dir) -> dict:
    path = Path(model_dir) / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{model_dir} has no {CARD_FILE}: not a model trained by xlrm")
    return json.loads(path.read_text())


def train_reward_model(backbone: str, pairs, *, output_dir: str | os.PathLike | None = None, name: str | None = None,
                       config: RewardConfig | None = None, force: bool = False, device=None,
                       progress: bool = True, **overrides) -> Path:
    """Train (or fetch from cache) a Bradley-Terry RM on ``pairs``; return its model directory.

    Parameters
    ----------
    backbone : packaged name, local directory or hub id (see :func:`xlrm_lib.models.load_reward_model`).
    pairs : ``datasets.Dataset`` in the canonical schema (:func:`xlrm_lib.data.load_pairs`).
    output_dir : where to save; default ``$XLRM_CACHE/models/<key>`` (content-addressed).
    config / overrides : a :class:`RewardConfig`, and/or its fields as keyword arguments
        (``lr=1e-5, epochs=1, lora={"r": 8}``).
    force : retrain even if a model with the same key exists.
    """
    unknown = set(overrides) - set(RewardConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown training parameter(s) {sorted(unknown)}; expected {sorted(RewardConfig.__dataclass_fields__)}")
    cfg = RewardConfig(**{**asdict(config or RewardConfig()), **overrides}).validate()
    resolve_backbone(backbone)  # fail fast on a bad name, before any work
    check_pairs(pairs)  # and on bad data, before fingerprinting it
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device = {device!r}; expected a torch device such as 'cpu', 'cuda' or 'cuda:1'") from None
    key_obj = training_key(backbone, pairs, cfg)
    key = fingerprint(key_obj)
    out = Path(output_dir) if output_dir else cache_dir("models") / f"{slug(name or 'rm')}-{key}"
    said: set = set()  # a damaged RM's warning, given once though the cache is checked twice
    if not force and _cache_hit(out, key, said):  # without the lock: a cache others share read-only is read as before
        return out
    with _one_trainer(out):
        if not force and _cache_hit(out, key, said):  # another process trained it while this one waited
            return out
        for stale in remove_abandoned(out):  # a killed training of this RM: its half-written copy
            log.info("removed %s, left by a training of the same RM that was killed", stale)
        return _train(backbone, pairs, cfg, key_obj, key, out, device=device, force=force, progress=progress)


def _one_trainer(out: Path):
    """While one process trains ``out``, another asking for it (a second run sharing the RM: same backbone, data and
    parameters) waits, then takes it from the cache instead of training it again (hours at 3B). Not under
    torchrun / accelerate launch (several processes train one RM together; one waiting would stall the others'
    collectives), and not across hosts unless the filesystem supports ``flock``."""
    if world_size() > 1:
        return contextlib.nullcontext()

    def busy(holder: str, waited: float):
        if not waited:
            log.warning("%s is training %s (the same RM: backbone, pairs and parameters); waiting for it, then "
                        "using its model", holder, out)
        else:  # a training can take hours; a hung or stopped one would hold this run for ever
            log.warning("still waiting (%.0f min) for %s to finish training %s; if it is hung or stopped, end it "
                        "and this run trains the RM itself", waited / 60, holder, out)

    return file_lock(entry_lock(out), busy=busy)


def _train(backbone, pairs, cfg: RewardConfig, key_obj: dict, key: str, out: Path, *, device, force: bool,
           progress: bool) -> Path:
    """Train the RM :func:`train_reward_model` asked for (``key``: ``key_obj``'s fingerprint) and save it at ``out``
    (atomically)."""
    use_bf16 = key_obj["config"]["bf16"]
    model, tok = load_reward_model(backbone, device=device, seed=cfg.seed,
                                   revision=key_obj["backbone"].get("revision"))  # the commit the key holds
    check_pairs(pairs, tok, model)
    fmt = fit_positions(TextFormat(cfg.template, cfg.max_length).resolved(tok), model)
    features = tokenize_pairs(tok, pairs, fmt)
    model = _prepare_model(model.train(), cfg)
    packed = resolve_packing(cfg.packing, model, half=use_bf16)
    model_device = next(model.parameters()).device
    compiled = compile_blocks(model, mode=compile_mode(cfg.torch_compile)) if resolve_compile(
        cfg.torch_compile, packed=packed, device_type=model_device.type) else 0
    graphs = cfg.torch_compile == GRAPHS  # packed (resolve_compile said); rows of repeating lengths, one bound
    collator = (PackedPairCollator(GRAPH_ROW_MULTIPLE, max(fmt.max_length, GRAPH_ROW_MULTIPLE)) if graphs
                else PackedPairCollator() if packed else PairCollator(tok.pad_token_id, "right"))
    # under torchrun / accelerate launch every process runs this function: all of them train, the main one writes
    main = int(os.environ.get("RANK", "0")) == 0
    # not forced, a copy another process finished meanwhile (same key) is kept: its readers stay on its files
    same = None if force else (lambda d: (d / CARD_FILE).is_file() and read_card(d).get("key") == key
                                         and not damaged_model(d))
    if main:  # once, not from every process of a torchrun launch
        _warn_uninformative(features, fmt)
    with atomic_dir(out, keep=same) if main else _scratch_dir() as tmp:
        args = _training_args(tmp / "_trainer", cfg, n_pairs=len(features), bf16=use_bf16, packed=packed,
                              cpu=str(device) == "cpu" or not torch.cuda.is_available(), progress=progress)
        trainer = _make_trainer_class()(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(features),
            data_collator=collator,
            margin=cfg.margin, center_coef=cfg.center_coef, cuda_graphs=graphs,
        )
        if _zero3(trainer.accelerator):
            check_zero3_saving(trainer.accelerator, lora=bool(cfg.lora_settings()))  # before training, not at the save
        try:
            # a packed training loop keeps the packed attention through backward (gradient checkpointing's re-runs)
            with _attention_backend(model), (packed_training(model) if packed else contextlib.nullcontext()):
                result = trainer.train()
        except Exception as e:  # compiling happens at the first step, inside the Trainer
            if compiled and _is_compile_error(e):
                raise RuntimeError(f"torch.compile of {compiled} {type(model).__name__} blocks failed "
                                   f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); train with "
                                   "torch_compile=False (params YAML, train section: `torch_compile: false`)") from e
            raise
        history = [h for h in trainer.state.log_history if "loss" in h]
        acc = trainer.accelerator
        real_tokens = int(acc.reduce(torch.tensor(trainer.real_tokens, device=acc.device), "sum"))  # all processes
        model, state = _trained_weights(trainer, cfg)
        model.config.pad_token_id = tok.pad_token_id
        if not main:
            acc.wait_for_everyone()  # until the main process has saved the model and renamed its directory
            return out
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tok.save_pretrained(tmp)
        fmt.save(tmp)
        import shutil

        shutil.rmtree(tmp / "_trainer", ignore_errors=True)
        langs = sorted(set(pairs["lang"])) if "lang" in pairs.column_names else []
        card = {
            "key": key, "backbone": str(backbone), "backbone_fingerprint": key_obj["backbone"],
            "backbone_revision": key_obj["backbone"].get("revision"),
            "data_fingerprint": key_obj["data"], "languages": langs, "n_pairs": len(features),
            "config": asdict(cfg), "packed": packed, "compiled_blocks": compiled, "format": asdict(fmt),
            "versions": library_versions(),
            # what the weights hold, checked on every load (models.damaged_model): bytes overwritten in place
            "weights": {f.name: file_digest(f) for f in sorted(tmp.glob("*.safetensors"))},
            # results depend on these through floating-point reduction order (see README, "What the default
            # run finds"): the same seed on another thread count or device is a different run
            "runtime": {"device": str(model_device), "threads": torch.get_num_threads(),
                        "bf16": use_bf16, "processes": trainer.args.world_size, **key_obj.get("launch", {}),
                        "saved_dtype": str(next(iter(state.values())).dtype if state else model.dtype)},
            "train_metrics": {**result.metrics, "real_tokens": real_tokens,
                              "final_accuracy": history[-1].get("accuracy") if history else None},
            "log_history": history,
            # which process trained it (a run that found it in the cache, or waited for another, did not)
            "trained_by": trained_by_this_process(),
        }
        (tmp / CARD_FILE).write_text(json_text(card), encoding="utf-8")
    acc.wait_for_everyone()  # the directory is in place: let the other processes return it
    return out


PROCESS_ID = uuid.uuid4().hex[:16]  # this process; unlike a pid, never another one's (containers reuse pids)


def trained_by_this_process() -> dict:
    """The card's ``trained_by``: this host and process (pid, and an id no other process has), and when (UTC)."""
    import socket
    from datetime import datetime, timezone

    return {"host": socket.gethostname(), "pid": os.getpid(), "process": PROCESS_ID,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def training_key(backbone, pairs, cfg: RewardConfig) -> dict:
    """What a trained RM depends on, hashed into its cache key: the backbone (its files, or its hub commit), the
    pairs, the configuration (``bf16=None`` resolved to what it means here, so a cache shared between machines never
    hands an fp32-trained RM to a caller that would have trained in bf16, or back), the trainer's version and, when
    not one plain process, how it was launched (:func:`launch_settings`)."""
    key_obj = {"backbone": backbone_fingerprint(backbone), "data": data_fingerprint(pairs),
               "config": {**asdict(cfg), "bf16": cfg.bf16 if cfg.bf16 is not None else fast_bf16()},
               "trainer": TRAINER_VERSION}
    if launch := launch_settings():  # several processes (a global batch of batch_size x processes), DeepSpeed
        key_obj["launch"] = launch
    return key_obj


def _cache_hit(out: Path, key: str, said: set | None = None) -> bool:
    """Whether ``out`` holds a whole RM trained under ``key``; a ValueError if it holds one of another key.
    A damaged one is warned about, unless its message is in ``said`` (where it is added)."""
    if not (out / CARD_FILE).exists():
        return False
    card = read_card(out)
    if card.get("key") != key:
        raise ValueError(f"{out} holds a model trained with other parameters (key {card.get('key')} != {key}); "
                         "pass force=True to overwrite it, or another output_dir")
    damaged = damaged_model(out)
    if damaged:
        # (a full disk, a killed copy): every load would fail
        log.log(logging.DEBUG if said is not None and damaged in said else logging.WARNING, "%s: training it again",
                damaged)
        if said is not None:
            said.add(damaged)
        return False
    log.info("cache hit: %s", out)
    return True


def _training_args(output_dir: Path, cfg: RewardConfig, *, n_pairs: int, bf16: bool, packed: bool, cpu: bool,
                   progress: bool):
    """transformers' ``TrainingArguments`` for ``cfg``: cosine schedule, warm-up and logging counted in optimizer
    steps (each takes ``batch_size`` pairs per device on every process), nothing saved by the Trainer itself."""
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        lr_scheduler_type="cosine", weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed,
        bf16=bf16, save_strategy="no", report_to=[], remove_unused_columns=False,
        length_column_name="length", disable_tqdm=not progress, dataloader_num_workers=0,
        use_cpu=cpu, logging_nan_inf_filter=False,
        **_sampling_args(cfg.group_by_length and not packed),  # a packed row has no padding to save
    )
    # optimizer steps: each takes batch_size pairs per device (DataParallel: per GPU) on every process
    per_pass = args.train_batch_size * args.world_size
    steps = optimizer_steps(n_pairs, cfg, per_pass)
    args.warmup_steps = math.ceil(cfg.warmup_ratio * steps)
    args.logging_steps = max(1, min(cfg.logging_steps, int(steps) // 3))  # >= 3 points
    if one_step_at_lr_zero(n_pairs, cfg, per_pass) and args.process_index == 0:
        log.warning("this training takes 1 optimizer step, at learning rate 0 (the first of the warm-up): the RM "
                    "leaves it as it started (%d pairs, batch_size %d, grad_accum %d, epochs %s); train on more "
                    "pairs or epochs, a smaller batch_size, or warmup_ratio 0", n_pairs, cfg.batch_size,
                    cfg.grad_accum, cfg.epochs)
    return args


def optimizer_steps(n_pairs: int, cfg: RewardConfig, per_pass: int | None = None) -> float:
    """The optimizer steps of training ``n_pairs`` under ``cfg`` (the Trainer takes the ceiling): each takes
    ``grad_accum`` passes of ``per_pass`` pairs (default ``batch_size``: one process, one device)."""
    return math.ceil(n_pairs / ((per_pass or cfg.batch_size) * cfg.grad_accum)) * cfg.epochs


def one_step_at_lr_zero(n_pairs: int, cfg: RewardConfig, per_pass: int | None = None) -> bool:
    """Whether training ``n_pairs`` under ``cfg`` is a single optimizer step with a warm-up: taken at the
    warm-up's learning rate 0, it leaves the RM as it started (:func:`_training_args` warns of it; the grid's
    pre-flight refuses it for one process: more processes or GPUs only make fewer steps).

    >>> cfg = RewardConfig(batch_size=8, epochs=1.0)
    >>> one_step_at_lr_zero(8, cfg), one_step_at_lr_zero(9, cfg), one_step_at_lr_zero(8, replace(cfg, warmup_ratio=0))
    (True, False, False)
    """
    steps = optimizer_steps(n_pairs, cfg, per_pass)
    return math.ceil(steps) == 1 and math.ceil(cfg.warmup_ratio * steps) > 0


def _warn_uninformative(features: list[dict], fmt: TextFormat) -> None:
    """Warn about pairs whose chosen and rejected are the same tokens once cut to ``fmt.max_length`` (answers
    that differ only in the part cut away): they add log 2 to the loss and no gradient, and score as ties."""
    same = sum(f["input_ids_chosen"] == f["input_ids_rejected"] for f in features)
    if same:
        log.warning("%d of %d pairs are the same text once cut to max_length %d tokens (keeping the %s; their "
                    "answers differ only in the part cut away): they teach the RM nothing, and an evaluation at "
                    "this length scores them as ties; raise max_length", same, len(features), fmt.max_length,
                    "end" if fmt.truncation_side == "left" else "start")


def _trained_weights(trainer, cfg: RewardConfig):
    """The trained model (LoRA merged) and, under DeepSpeed ZeRO-3, its gathered state dict (else None); a
    FloatingPointError on every process if training left a non-finite weight."""
    acc, model = trainer.accelerator, trainer.model
    # the weights as saved: under DeepSpeed ZeRO-3 each process holds a shard, gathered here (a collective;
    # the main process gets them, in 16 bits); elsewhere the model's own tensors
    state = acc.get_state_dict(trainer.model_wrapped) if _zero3(acc) and not cfg.lora_settings() else None
    # only what training changed (LoRA: the adapters, before merging): a frozen matrix keeps its loaded
    # values, and reading it would page in all of a memory-mapped embedding matrix for nothing
    tensors = dict(model.named_parameters()) if state is None else state
    broken = [n for n, p in model.named_parameters()
              if p.requires_grad and n in tensors and not _all_finite(tensors[n])]
    if cfg.lora_settings():
        model = model.merge_and_unload()
    # every process stops, not only the one that holds the gathered weights (the others would wait forever)
    if int(acc.reduce(torch.tensor(len(broken), device=acc.device), "sum")):
        raise FloatingPointError(f"training left non-finite weights in {len(broken) or 'some'} tensor(s), e.g. "
                                 f"{broken[:3]}; nothing was saved. Lower lr (it was {cfg.lr:g}), or train "
                                 "in bf16/float32 instead of fp16")
    return model, state


def world_size() -> int:
    """How many processes train together (torchrun / accelerate launch set ``WORLD_SIZE``; unset or empty: 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launch_settings() -> dict:
    """How this process was launched, where that changes the trained model: ``processes`` (torchrun / accelerate
    set ``WORLD_SIZE``; each takes ``batch_size`` pairs a step) and DeepSpeed (accelerate's environment: ZeRO
    stage, config file's digest; it saves 16-bit weights). Empty for one plain process, so its key is as before."""
    out = {}
    if (world := world_size()) > 1:
        out["processes"] = world
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true", "yes"):
        config = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        out["deepspeed"] = {"zero_stage": os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"),
                            "config": file_digest(config) if config and Path(config).is_file() else None}
    return out


def _zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


def check_zero3_saving(accelerator, lora: bool = False) -> None:
    """Under DeepSpeed ZeRO-3 each process holds a shard of the weights: saving gathers them, which DeepSpeed does
    only with ``stage3_gather_16bit_weights_on_model_save: true`` (accelerate's "auto" means false), and LoRA's
    merge into partitioned weights fails. Either would end the whole training in an error at the save."""
    if lora:
        raise ValueError("LoRA under DeepSpeed ZeRO-3: the adapters cannot be merged into weights partitioned across "
                         "processes (the save would fail after the whole training); train the LoRA RM with ZeRO-2 "
                         "or without DeepSpeed, or train all weights (lora 0; a params file: lora_r: 0)")
    config = accelerator.state.deepspeed_plugin.deepspeed_config or {}
    if (config.get("zero_optimization") or {}).get("stage3_gather_16bit_weights_on_model_save") is not True:
        raise ValueError("DeepSpeed ZeRO-3 without stage3_gather_16bit_weights_on_model_save: the trained weights "
                         "could not be gathered to save; set `stage3_gather_16bit_weights_on_model_save: true` under "
                         "zero_optimization in the DeepSpeed config (or answer yes to saving 16-bit weights in "
                         "`accelerate config`: zero3_save_16bit_model: true)")


@contextlib.contextmanager
def _scratch_dir():
    """A throw-away directory for a process that trains but does not write (not the main one)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xlrm-rank-") as d:
        yield Path(d)


@torch.no_grad()
def _all_finite(t: torch.Tensor, chunk: int = 1 << 22) -> bool:
    """``torch.isfinite(t).all()`` in slices: on a whole 96M-entry embedding matrix it allocated ~0.8 GB (the
    training notebook's peak memory) where a 4M-entry slice needs ~20 MB."""
    flat = t.detach().reshape(-1)
    return all(bool(torch.isfinite(part).all()) for part in flat.split(chunk))


def _is_compile_error(e: BaseException) -> bool:
    """Raised by torch.compile (dynamo tracing, or the backend: inductor's errors subclass dynamo's)."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(e, TorchDynamoException)


def resolve_packing(packing, model, *, half: bool = True) -> bool:
    """``"auto"``: pack where the flash kernel runs (a decoder RM on CUDA, bf16); ``True``: pack or say why not."""
    if packing == "auto":
        return should_pack(model, half=half)
    why_not = supports_packing(model)
    if packing and why_not:
        raise ValueError(f"packing=True is not possible: {why_not}; use packing=False or 'auto'")
    return bool(packing)


@contextlib.contextmanager
def _attention_backend(model):
    """On a CPU, train with transformers' eager attention; GPUs keep the default choice.

    Measured on a me5-small RM (bf16 autocast, 80-120-token batches, 2 cores): eager 21.6-21.8 s, SDPA's math
    kernel 23.7-24.1 s, SDPA's fused CPU flash kernel 37-96 s (its backward is slow, and erratic across Jupyter
    kernels); in fp32 eager and math are even (41.6 vs 42.1 s). Scoring keeps SDPA, the faster forward in fp32.
    The model's own choice is restored afterwards, so the saved RM loads as usual.
    """
    before = getattr(model.config, "_attn_implementation", None)
    if next(model.parameters()).device.type != "cpu" or before == "eager":
        yield
        return
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError, NotImplementedError, ImportError) as e:  # old transformers, or no eager
        log.info("eager attention unavailable (%s: %s); training with SDPA's math kernel", type(e).__name__, e)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            yield
        return
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def fast_bf16() -> bool:
    """bf16 autocast pays off on a bf16-capable GPU, or a CPU with AMX / AVX512-BF16 (2x here); not elsewhere."""
    if torch.cuda.is_available():  # emulated bf16 (a T4 / V100) is slower than fp32, not faster
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _sampling_args(group_by_length: bool) -> dict:
    """transformers >= 5 names it ``train_sampling_strategy``; 4.x has ``group_by_length``."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}

