"""Checks of single parameter values (an integer, a number in bounds, a choice, languages, layers, a run's or an
RM's name), each raising a ValueError that names the parameter, its value and what is expected.

The library's functions call them on entry, so a direct call fails before it loads a model;
:mod:`xlrm_lib.notebook_checks` combines them into one notebook's checks, which the runner's pre-flight runs for
every cell of a grid. This module imports nothing of the library but :mod:`xlrm_lib.langs`, so any module may use it.

>>> positive_int("batch_size", 0)
Traceback (most recent call last):
...
ValueError: batch_size = 0; expected an integer >= 1
>>> languages("langs", ["en", "EN"])
Traceback (most recent call last):
...
ValueError: langs lists 'en' more than once (en, EN); keep one
"""

from __future__ import annotations

import difflib
import math
import re
from numbers import Integral, Real

from .langs import TRANSLATED_SUFFIX, code_of, normalize_lang, normalize_langs


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


SEED_MAX = 2**32 - 1  # numpy's legacy seeding (transformers' set_seed, UMAP's random_state) takes no larger seed


def is_seed(value) -> bool:
    """Whether ``value`` is an integer in 0..2**32 - 1 (what every seeded library here takes)."""
    return not isinstance(value, bool) and isinstance(value, Integral) and 0 <= value <= SEED_MAX


def seed(name: str, value) -> int:
    """``value`` if :func:`is_seed`; else a ValueError naming ``name``."""
    if not is_seed(value):
        raise ValueError(f"{name} = {value!r}; expected an integer in 0..{SEED_MAX} (numpy's seeds, which the "
                         "trainer and UMAP use, go no higher)")
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
    if strict and (isinstance(value, str) or not isinstance(value, (list, tuple))):
        raise ValueError(f"{name} = {value!r}; expected a list of language codes, e.g. [en, ko]")
    if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
        flag = next(v for v in value if isinstance(v, bool))
        raise ValueError(f"{name} = {list(value)!r} holds {flag!r}: YAML reads an unquoted no, yes, on or off as "
                         f"{flag!r}; quote the code, e.g. {name}: [en, 'no'] (Norwegian)")
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
    try:
        return normalize_lang(code)
    except ValueError:
        return None


RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a run's name: it names a folder under the outputs directory
RUN_NAME_MAX = 100  # characters: a folder name, with room for the cells' own below it (a file name holds 255 bytes)


def rm_name(name) -> str:
    """An RM's name as a grid names it: a language's canonical code (``EN``, ``eng_Latn`` -> ``en``), the
    translated suffix kept (``ES-mt`` -> ``es-mt``); any other name as it is."""
    text = str(name)
    translated = text.lower().endswith(TRANSLATED_SUFFIX)
    base = text[: -len(TRANSLATED_SUFFIX)] if translated else text
    return (code_of(base) or base) + (TRANSLATED_SUFFIX if translated else "")


def language(name: str, value) -> str:
    return languages(name, [value])[0]


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
    text = isinstance(value, str) and value.lstrip().startswith("[")  # papermill -p layers "[1, -1]" passes text
    raise ValueError(f"{name} = {value!r}; expected 'all' or a non-empty list of integer hidden-state indices "
                     "(0 is the embeddings, -1 the last layer)"
                     + (f"; papermill's -p passes text: give it as YAML, -y \"{name}: {value}\"" if text else ""))
