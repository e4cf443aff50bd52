"""A tripwire for the caches keyed by hand-bumped versions.

Trained RMs (train.TRAINER_VERSION), cached rewards (reward_cache.SCORER_VERSION), hidden states
(probe.STATES_VERSION) and policy samples (generate.GENERATOR_VERSION) are keyed by a version number, not by the
code that makes them. Their own modules say when to bump it; the shared modules below change those results too
(how a text is formatted and cut, padded or packed, how positions are numbered, how a model is loaded), and an edit
there would otherwise reuse results the old code made. The runner's notebook keys hash the whole library and need
no such care.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

import pytest

from xlrm_lib import generate, probe, reward_cache, train

LIB = Path(__file__).resolve().parents[1] / "xlrm_lib"

# what each shared module can change, and its code's digest (docstrings and comments left out) when the versions
# below were last checked against it
SHARED = {
    "formatting": ("texts as the models read them", "8756815b84ef5853"),
    "packing": ("padding-free training and scoring", "dfee431cfd4a7ddb"),
    "arch": ("positions, decoder or encoder", "ae50dc46ff7aa4ba"),
    "models": ("loading, pad tokens, dtypes", "ebda07a7554e8a8a"),
    "compiling": ("compiled training", "468430a0a6f80891"),
}
VERSIONS = {"train.TRAINER_VERSION": 7, "reward_cache.SCORER_VERSION": 3, "probe.STATES_VERSION": 3,
            "generate.GENERATOR_VERSION": 2}
PYTHON = (3, 11)  # ast.unparse may write the same code otherwise in another Python


def code_digest(path: Path) -> str:
    """The code of a module without its docstrings and comments (an edit of prose leaves it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def test_code_digest_ignores_prose_not_code(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 1  # one\n')
    b.write_text('"""Other doc."""\n\n\ndef f(x):\n    """Said otherwise."""\n    return x + 1\n')
    c.write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 2\n')
    assert code_digest(a) == code_digest(b) != code_digest(c)


def test_versions_are_the_ones_recorded():
    now = {"train.TRAINER_VERSION": train.TRAINER_VERSION, "reward_cache.SCORER_VERSION": reward_cache.SCORER_VERSION,
           "probe.STATES_VERSION": probe.STATES_VERSION, "generate.GENERATOR_VERSION": generate.GENERATOR_VERSION}
    assert now == VERSIONS, (f"a cache version changed ({now}); set VERSIONS in {Path(__file__).name} to it, and "
                             "SHARED's digests to the code it was bumped for")


@pytest.mark.skipif(sys.version_info[:2] != PYTHON, reason=f"digests recorded under Python {PYTHON}")
@pytest.mark.parametrize("module", sorted(SHARED))
def test_shared_code_is_what_the_cache_versions_were_checked_against(module):
    what, recorded = SHARED[module]
    now = code_digest(LIB / f"{module}.py")
    assert now == recorded, (
        f"xlrm_lib/{module}.py changed ({what}): trained RMs, cached rewards, hidden states and policy samples are "
        f"keyed by {', '.join(VERSIONS)}, not by this file. If the change alters what a model computes, bump the "
        f"versions of the results it changes (and VERSIONS here); then set SHARED[{module!r}] to {now!r}")
