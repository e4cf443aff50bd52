"""Keep the template notebooks in ``notebooks/`` clean: no outputs, counts or per-session metadata in git.

Notebooks are committed without outputs (``xlrm run`` clears a template's as it runs it): the rendered record of
a run lives in ``outputs/<run>/``. ``make setup`` registers this module as a git *clean filter* for
``notebooks/*.ipynb`` (see ``.gitattributes``), so a notebook run and saved in JupyterLab keeps its outputs on
disk while git stores it stripped. By hand::

    python -m xlrm_lib.nbclean notebooks/*.ipynb           # strip in place (prints what changed)
    python -m xlrm_lib.nbclean --check notebooks/*.ipynb   # exit 1 if any would change
    python -m xlrm_lib.nbclean < in.ipynb > out.ipynb      # the git filter: stdin -> stdout

The notebook JSON is read and written with the standard library, in nbformat's layout (indent 1, sorted keys),
so a clean notebook passes through byte for byte; the filter starts in ~50 ms (nbformat takes ~1 s to import).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEEP_CELL_METADATA = ("tags",)  # papermill's `parameters` tag lives here
KEEP_NB_METADATA = ("kernelspec",)


def clean(nb: dict) -> dict:
    """A copy of notebook ``nb`` (its JSON as a dict) without outputs, execution counts and session metadata.

    Kept: sources, cell ids, cell tags, attachments, the kernelspec and the language name."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook: expected a JSON object with a 'cells' list (nbformat 4)")
    meta = nb.get("metadata") or {}
    new_meta = {k: meta[k] for k in KEEP_NB_METADATA if k in meta}
    lang = (meta.get("language_info") or {}).get("name")
    if lang:
        new_meta["language_info"] = {"name": lang}  # the version and file details change with each machine
    cells = []
    for cell in nb["cells"]:
        cell = dict(cell)
        cell["metadata"] = {k: v for k, v in (cell.get("metadata") or {}).items() if k in KEEP_CELL_METADATA}
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    return {**nb, "metadata": new_meta, "cells": cells}


def dumps(nb: dict) -> str:
    """nbformat's on-disk layout, so clean files round-trip unchanged."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def clean_text(text: str) -> str:
    return dumps(clean(json.loads(text)))


def _filter(stdin, stdout) -> int:
    """The git clean filter: never lose a file, so text that is not a notebook passes through unchanged."""
    text = stdin.read()
    try:
        out = clean_text(text)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        print(f"xlrm_lib.nbclean: left unchanged ({e})", file=sys.stderr)
        out = text
    stdout.write(out)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xlrm_lib.nbclean",
                                description="Strip outputs and session metadata from notebooks.")
    p.add_argument("paths", nargs="*", type=Path, help="notebooks to clean in place (none: stdin -> stdout)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    a = p.parse_args(argv)
    if not a.paths:
        if a.check:
            p.error("--check needs notebook paths")
        sys.stdin.reconfigure(encoding="utf-8")
        sys.stdout.reconfigure(encoding="utf-8")
        return _filter(sys.stdin, sys.stdout)
    dirty = []
    for path in a.paths:
        try:
            text = path.read_text(encoding="utf-8")
            out = clean_text(text)
        except (OSError, ValueError) as e:
            p.exit(2, f"{path}: {e}\n")
        if out == text:
            continue
        dirty.append(path)
        if not a.check:
            tmp = path.with_name(f".{path.name}.nbclean-tmp")
            tmp.write_text(out, encoding="utf-8")
            tmp.replace(path)  # atomic: an interrupted clean leaves the notebook as it was
    verb = "would clean" if a.check else "cleaned"
    for path in dirty:
        print(f"{verb} {path}")
    return 1 if (a.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
