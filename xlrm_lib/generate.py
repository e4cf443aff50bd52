"""Candidates sampled from a policy LM for best-of-n: n seeded samples per prompt, batched, cached on disk.

Every sample has its own random generator seeded by (seed, prompt, sample index), so samples do not depend on
``batch_size`` and the first k samples of an n > k run equal a k-sample run. One JSON file per prompt under
``$XLRM_CACHE/generations`` (key: model fingerprint, prompt, n, sampling parameters, seed).

>>> policy, tok = load_policy("gemma3-270m")                                           # doctest: +SKIP
>>> cands = generate_candidates(policy, tok, load_parallel_prompts(path, langs=["ko"]), n=4)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .formatting import TextFormat, as_messages, chat_text, pad_batch, render
from .models import (default_device, load_tokenizer, resolve_backbone, revision_kwargs, torch_dtype,
                     weights_digest)
from .store import cache_dir as default_cache_dir
from .store import fingerprint, write_json

log = logging.getLogger(__name__)

CAND_COLUMNS = ["prompt_id", "lang", "cand_id", "text", "prompt"]  # a candidate table (pools add gold labels)
KEY = ["prompt_id", "lang"]


def require_columns(df, columns, what: str) -> None:
    """A ValueError unless ``df`` is a DataFrame with every one of ``columns``, naming ``what`` it is."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")


def load_policy(policy, *, dtype="float32", device=None, trust_remote_code: bool = False):
    """A causal LM and its tokenizer (pad token set) from a packaged name (``"gemma3-270m"``), a dir or a hub id.

    float32 by default, whatever the checkpoint holds (transformers 5 would keep a hub model's bf16): in bf16 a
    prompt's logits move with the other rows of its batch, enough for the seeded sampler to pick other tokens,
    and samples would then depend on ``batch_size``. ``dtype="bfloat16"`` halves the memory of a large policy.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_backbone(policy)
    tok = load_tokenizer(path, trust_remote_code, new_pad=False)  # pads with EOS if it must: see models._set_pad
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                                       output_loading_info=True,
                                                       **revision_kwargs(str(path), None))  # a hub id at its pinned commit
    fresh = sorted(str(k) for k in info.get("missing_keys", ()))
    if fresh:  # e.g. a reward model's checkpoint: its LM head would be random, and so would every token or verdict
        raise ValueError(f"{str(policy)!r} is not a complete causal LM: {len(fresh)} weight(s) would be freshly "
                         f"initialised ({fresh[:3]}); give a decoder with its LM head (a policy or judge), not a "
                         "reward model or an encoder")
    classifier = [a for a in getattr(model.config, "architectures", None) or [] if "ForSequenceClassification" in a]
    if classifier:  # a reward model whose LM head is tied to its embeddings: nothing is missing, yet no LM was trained
        raise ValueError(f"{str(policy)!r} is a reward model ({classifier[0]}), not a causal LM; give a policy or "
                         "judge LM (a reward model is evaluated with model_kind 'rm')")
    return model.to(default_device(device)).eval(), tok


def policy_prompt(tokenizer, prompt) -> tuple[str, bool]:
    """The text a policy continues, and whether the tokenizer should add its special tokens.

    The tokenizer's chat template with a generation prompt where it has one; else the plain format that
    RMs without a template are scored in (``User: ...\\n\\nAssistant:``).

    >>> policy_prompt(None, "Hi?")
    ('User: Hi?\\n\\nAssistant:', True)
    """
    messages = as_messages(prompt)
    if getattr(tokenizer, "chat_template", None):
        return chat_text(tokenizer, messages, generation_prompt=True), False
    return render(None, messages, "", TextFormat("plain")).rstrip(), True


def model_fingerprint(model, tokenizer=None) -> str:
    """Short content hash of a model (config + :func:`xlrm_lib.models.weights_digest`) and its tokenizer."""
    cfg = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    weights = weights_digest(model)
    tok = None
    if tokenizer is not None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        vocab = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
        tok = [type(tokenizer).__name__, fingerprint(vocab), getattr(tokenizer, "chat_template", None)]
    return fingerprint([type(model).__name__, cfg, weights, tok])


class _SeededSampler:
    """Temperature + nucleus sampling with one RNG per batch row, as a logits processor for greedy ``generate``.

    ``generate``'s own sampler draws for the whole batch from one torch RNG, so a sample would depend on its
    batch-mates; here row ``i`` draws from its own ``rngs[i]`` (inverse CDF), and the processor returns
    scores that make greedy decoding take exactly that token.
    """

    def __init__(self, rngs, temperature: float, top_p: float):
        self.rngs, self.temperature, self.top_p = rngs, temperature, top_p

    def __call__(self, input_ids, scores):  # scores: (batch, vocab)
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        index = None
        if self.top_p < 1.0:  # keep the smallest top set whose mass reaches top_p
            probs, index = probs.sort(dim=-1, descending=True, stable=True)
            probs = probs.masked_fill(probs.cumsum(-1) - probs >= self.top_p, 0.0)
        cdf = probs.cumsum(-1)
        u = torch.tensor([r.random() for r in self.rngs], dtype=cdf.dtype, device=cdf.device) * cdf[:, -1]
        pick = torch.searchsorted(cdf, u[:, None], right=True).clamp_(max=cdf.shape[-1] - 1)
        token = pick if index is None else index.gather(-1, pick)
        return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)


GENERATOR_VERSION = 2  # part of the sample cache key: bump when sampling or cutting changes

_NEXT_TURN = re.compile(r"\n\s*User:")  # the plain format's next user turn (formatting.TextFormat("plain"))


def one_turn(text: str) -> str:
    r"""A plain-format sample up to the next ``User:`` turn: a base model without a chat template goes on writing
    the conversation (its own next question, then an answer to that), which the RMs would score as the answer.

    >>> one_turn("Water it daily.\n\nUser: And in winter?\n\nAssistant: Less.")
    'Water it daily.'
    """
    return _NEXT_TURN.split(text, 1)[0].strip()


def _stop_ids(policy, tokenizer) -> tuple[set, int]:
    """The EOS ids that end a sample (the model's generation_config, else the tokenizer's) and the pad id."""
    eos = getattr(getattr(policy, "generation_config", None), "eos_token_id", None)
    eos = tokenizer.eos_token_id if eos is None else eos
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    return eos_ids, pad


@torch.no_grad()
def _sample(policy, tokenizer, texts, add_special, *, n, max_new_tokens, temperature, top_p, seed, batch_size,
            eos_ids: set, pad: int):
    """``n`` samples for each text, ``batch_size`` rows per ``generate`` call: list (texts) of lists (n)."""
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

    class Sampler(_SeededSampler, LogitsProcessor):
        pass

    device = next(policy.parameters()).device
    cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=pad,
                           eos_token_id=sorted(eos_ids) or None, repetition_penalty=1.0)
    enc = [tokenizer(t, add_special_tokens=s)["input_ids"] for t, s in zip(texts, add_special)]
    rows = sorted(((i, k) for i in range(len(texts)) for k in range(n)), key=lambda r: len(enc[r[0]]))
    out = [[""] * n for _ in texts]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = pad_batch([enc[i] for i, _ in chunk], pad, "left")
        # each sample's RNG depends on (seed, prompt, k) only: same samples whatever the batch or n
        rngs = [np.random.default_rng(int(fingerprint([seed, texts[i], k]), 16)) for i, k in chunk]
        gen = policy.generate(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device), generation_config=cfg,
                              logits_processor=LogitsProcessorList([Sampler(rngs, temperature, top_p)]))
        for (i, k), ids in zip(chunk, gen[:, batch["input_ids"].shape[1] :].tolist()):
            cut = next((j for j, t in enumerate(ids) if t in eos_ids), len(ids))
            out[i][k] = tokenizer.decode(ids[:cut], skip_special_tokens=True).strip()
    return out


def generate_candidates(policy, tokenizer, prompts: pd.DataFrame, *, n: int = 4, max_new_tokens: int = 128,
                        temperature: float = 0.7, top_p: float = 0.95, seed: int = 0, batch_size: int = 16,
                        cache_dir=None, on_empty: str = "raise", bf16: bool = False) -> pd.DataFrame:
    """Sample ``n`` answers per (prompt, language) from a causal LM: :data:`CAND_COLUMNS`.

    Parameters
    ----------
    policy : a causal LM, or a name for :func:`load_policy` (then ``tokenizer`` may be ``None``).
    prompts : ``prompt_id, lang, prompt`` (see :func:`load_parallel_prompts`).
    temperature, top_p : sampling parameters (``temperature > 0``: best-of-n needs distinct samples). They
        replace the model's own sampling defaults (``generation_config``); its EOS ids still stop a sample.
    seed : sample ``k`` of a prompt is drawn from its own RNG seeded by ``(seed, prompt text, k)``, so the
        samples do not change with ``batch_size`` or the other prompts in the call.
    cache_dir : where samples are kept, one JSON file per prompt keyed by (model fingerprint, rendered prompt,
        n, max_new_tokens, temperature, top_p, seed, EOS and pad ids); default ``$XLRM_CACHE/generations``. A second call with
        the same key generates nothing.
    on_empty : ``"raise"`` (default) on an empty generation, or ``"drop"`` those candidates with a warning (and a
        (prompt, language) left with one sample: nothing to pick among; none left at all is an error).
    bf16 : a policy given by name loads in bfloat16 (half float32's memory: ~15 GB for a 7B model), and its samples
        then move with the other prompts of their batch (:func:`load_policy`); cached apart from float32's.
    """
    if int(n) < 2:
        raise ValueError(f"best-of-n needs n >= 2 candidates per prompt, got n={n}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (greedy decoding gives n identical candidates), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if on_empty not in ("raise", "drop"):
        raise ValueError(f"on_empty must be 'raise' or 'drop', got {on_empty!r}")
    if bf16 not in (True, False):
        raise ValueError(f"bf16 = {bf16!r}; expected True or False")
    if isinstance(policy, (str, os.PathLike)):
        policy, loaded_tok = load_policy(policy, dtype="bfloat16" if bf16 else "float32")
        tokenizer = loaded_tok if tokenizer is None else tokenizer
    require_columns(prompts, ["prompt_id", "lang", "prompt"], "generate_candidates' prompts")
    if prompts.empty:
        raise ValueError("no prompts to generate for")
    fp = model_fingerprint(policy, tokenizer)
    root = Path(cache_dir).expanduser() / fp if cache_dir else default_cache_dir("generations", fp)
    params = {"n": int(n), "max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
              "top_p": float(top_p), "seed": int(seed)}
    rendered = [policy_prompt(tokenizer, p) for p in prompts["prompt"]]
    eos_ids, pad = _stop_ids(policy, tokenizer)  # they cut the samples, so they are part of what is cached
    stops = {"eos": sorted(int(i) for i in eos_ids), "pad": int(pad), "version": GENERATOR_VERSION}
    # a plain-format sample is cut at its next "User:" turn (one_turn): a key of its own, chat samples keep theirs
    keys = [fingerprint({"model": fp, "prompt": text, **params, **stops, **({"cut": "one_turn"} if plain else {})})
            for text, plain in rendered]
    first: dict[str, int] = {}  # a prompt repeated in the table is generated once
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    texts: dict[str, list[str]] = {}
    for key in first:
        f = root / f"{key}.json"
        if f.exists():
            texts[key] = json.loads(f.read_text(encoding="utf-8"))["texts"]
    todo = [i for key, i in first.items() if key not in texts]
    if todo:
        log.info("generating %d x %d samples (%d prompts cached)", len(todo), n, len(first) - len(todo))
        samples = _sample(policy, tokenizer, [rendered[i][0] for i in todo], [rendered[i][1] for i in todo],
                          batch_size=int(batch_size), eos_ids=eos_ids, pad=pad, **params)
        for i, s in zip(todo, samples):
            s = [one_turn(t) for t in s] if rendered[i][1] else s  # plain format: one turn (chat: EOS ends it)
            write_json(root / f"{keys[i]}.json", {"texts": s, "prompt": rendered[i][0], **params})
            texts[keys[i]] = s
    rows = [(pid, lang, k, t, p) for pid, lang, p, key in zip(prompts["prompt_id"], prompts["lang"],
                                                              prompts["prompt"], keys)
            for k, t in enumerate(texts[key])]
    out = pd.DataFrame(rows, columns=CAND_COLUMNS)
    empty = out["text"].str.strip() == ""
    if empty.any():
        where = out.loc[empty, KEY].drop_duplicates().itertuples(index=False)
        msg = (f"{int(empty.sum())} empty generation(s) of {len(out)}, e.g. (prompt_id, lang) "
               f"{[tuple(w) for w in list(where)[:5]]}: the policy stopped at once, or (without a chat template) "
               "began with a next 'User:' turn (check its EOS and chat template, or raise max_new_tokens)")
        if on_empty == "raise":
            raise ValueError(msg + "; pass on_empty='drop' to drop them")
        log.warning("%s; dropped", msg)
        out = out[~empty].reset_index(drop=True)
        alone = out.groupby(KEY)["cand_id"].transform("size") < 2  # nothing to pick among
        if alone.all():
            name = getattr(policy, "name_or_path", "") or "the policy"
            raise ValueError(f"no prompt kept 2 non-empty samples of {name} (the policy stops at once or writes "
                             "only a next 'User:' turn): give it a chat template (an instruction-tuned model), raise "
                             "max_new_tokens, or use another policy")
        if alone.any():
            log.warning("%d (prompt_id, lang) left with one sample: dropped (best-of-n picks among 2 or more)",
                        int(alone.sum()))
            out = out[~alone].reset_index(drop=True)
    return out
