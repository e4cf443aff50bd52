"""Aggregate a run: read every notebook's ``metrics.json`` and tables (never re-executes anything).

>>> rep = collect("outputs/default")      # doctest: +SKIP
>>> evaluate.transfer_matrix(rep["scores"])  # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path

import pandas as pd

from . import checks, evaluate, stats, store
from .study import METRICS_FILE, has_targets

log = logging.getLogger(__name__)


def collect(run_dir) -> dict:
    """Everything a run produced: ``runs`` (one row per executed notebook), ``train``, ``scores`` (of the run's
    trained RMs), ``pretrained_scores`` (of models evaluated as they are: hub RMs, judges), ``probe``, ``align``."""
    if not str(run_dir or "").strip():  # Path("") is the current folder: it would report on whatever is here
        raise ValueError("run_dir is empty: set it in the notebook's parameters cell, e.g. run_dir = "
                         "'outputs/default' (`xlrm run` fills it)")
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        where = f" (looked in {run_dir.resolve()}: a relative path is read from the working directory)" \
            if not run_dir.is_absolute() else ""
        raise FileNotFoundError(f"run directory not found: {run_dir}{where}; give the run's folder "
                                "(outputs/<run>), or make it with `xlrm run params/<file>.yaml`")
    written = _read_plan(run_dir)
    plan = set(written["cells"]) if written is not None else None
    runs, by_kind, ignored = [], {}, []
    for metrics_path in sorted(run_dir.glob(f"*/*/{METRICS_FILE}")) + sorted(run_dir.glob(f"*/{METRICS_FILE}")):
        cell_dir = metrics_path.parent
        name = cell_dir.relative_to(run_dir).as_posix()
        done = store.finished_record(cell_dir)
        m = json.loads(metrics_path.read_text())
        if m.get("kind") == "report":  # this report's own folder (its previous metrics), or another report's
            continue
        # a run by `xlrm run` reads only its grid's finished cells: a folder of a cell since dropped from the grid,
        # or one whose notebook did not finish this time, holds results of other settings
        if plan is not None and (name not in plan or not done):
            ignored.append(name)
            continue
        htmls = sorted(p for p in cell_dir.glob("*.html") if not p.name.endswith(".failed.html"))
        runs.append({"stage": cell_dir.relative_to(run_dir).parts[0], "cell": str(cell_dir.relative_to(run_dir)),
                     "kind": m.get("kind"), "seconds": done.get("seconds"), "finished": done.get("finished"),
                     "software": m.get("software"), "code": m.get("code"), "hub_commits": m.get("hub_commits") or {},
                     "notebook_html": os.path.relpath(htmls[0], run_dir) if htmls else None})
        by_kind.setdefault(m.get("kind"), []).append((cell_dir, m))
    failed = {}
    if plan is not None:  # also the grid's cells that did not finish and wrote no metrics (failed, not run)
        ignored = sorted({*ignored, *(name for name in plan if name != "report"
                                      and not store.finished_record(run_dir / name))})
        # of those, the ones whose notebook failed this time (not a failure of an earlier run, left beside a cell
        # not run now): the report points at the notebook that says why
        started = (run_dir / store.PLAN_FILE).stat().st_mtime
        failed = {name: os.path.relpath(html[0], run_dir) for name in ignored
                  if (html := sorted((run_dir / name).glob("*.failed.html"))) and html[0].stat().st_mtime >= started}
        ignored = [name for name in ignored if name not in failed]
    out = {"runs": pd.DataFrame(runs), "train": pd.DataFrame([m for _, m in by_kind.get("train", [])]),
           "params": _read_params(run_dir / "params.yaml"), "run": run_dir.name, "ignored": ignored,
           "failed": failed,
           "translations_not_run": (written or {}).get("translations_not_run") or [],
           "edited_templates": (written or {}).get("edited_templates") or []}
    # models evaluated as they are (the params file's `pretrained`, or any model without an xlrm training card)
    # are shown apart from the run's trained RMs
    evals = [(d, m, bool(m.get("pretrained")) or d.relative_to(run_dir).parts[0] == store.PRETRAINED_DIR)
             for d, m in by_kind.get("evaluate", []) if "scores" in m.get("tables", {})]
    for key, pretrained in (("scores", False), ("pretrained_scores", True)):
        frames = [pd.read_parquet(d / m["tables"]["scores"]) for d, m, p in evals if p == pretrained]
        out[key] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out["pretrained_metrics"] = [m for _, m, p in evals if p]
    for kind in ("probe", "align"):
        tables: dict[str, list[pd.DataFrame]] = {}
        for d, m in by_kind.get(kind, []):
            for name, fname in m.get("tables", {}).items():
                df = pd.read_parquet(d / fname) if fname.endswith(".parquet") else pd.read_csv(d / fname)
                tables.setdefault(name, []).append(df.assign(cell=str(d.relative_to(run_dir))))
        out[kind] = {name: pd.concat(dfs, ignore_index=True) for name, dfs in tables.items()}
        out[f"{kind}_metrics"] = [m for _, m in by_kind.get(kind, [])]
    return out


def _read_plan(run_dir: Path) -> dict | None:
    """The run's plan as ``xlrm run`` wrote it (``cells``: the grid's cell names; ``translations_not_run``), or
    None for a folder of notebooks run by hand."""
    path = run_dir / store.PLAN_FILE
    return json.loads(path.read_text()) if path.exists() else None


RUN_KEYS = ("backbone", "seed")  # one training run of the grid: the paired tests never mix two of them


def headlines(scores: pd.DataFrame, *, english: str = "en", n_boot: int = 2000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """English RM minus target RM per language: vs native target RMs and vs translate-train (``-mt``) RMs.

    Paired tests compare two RMs on the same items, so they run within one (backbone, seed) run; with several
    runs the table has one block per run, labelled by ``backbone`` and ``seed`` columns (see :func:`seed_summary`).
    """
    keys = [k for k in RUN_KEYS if k in scores.columns]
    runs = list(scores.groupby(keys, sort=True)) if keys else [((), scores)]
    out: dict[str, list[pd.DataFrame]] = {}
    for group, sub in runs:
        for label, fmt in evaluate.HEADLINE_TARGETS.items():
            if has_targets(set(sub["source"]), set(sub["lang"]), english=english, target_fmt=fmt):
                t = evaluate.english_vs_target(sub, english=english, target_source=fmt, n_boot=n_boot, seed=seed)
                out.setdefault(label, []).append(t.assign(**dict(zip(keys, group))) if len(runs) > 1 else t)
    return {label: pd.concat(ts, ignore_index=True) for label, ts in out.items()}


def several_backbones(scores: pd.DataFrame) -> bool:
    return "backbone" in scores.columns and scores["backbone"].nunique() > 1


def _seeds_per_backbone(scores: pd.DataFrame) -> int:
    if "seed" not in scores.columns:
        return 0
    return int(scores.groupby("backbone")["seed"].nunique().max() if "backbone" in scores.columns
               else scores["seed"].nunique())


def backbone_labels(backbones) -> dict:
    """Short names for backbones in table rows and legends: a hub id or path without what comes before its last
    ``/``, unless two backbones would then share a name (``/x/a/llama``, ``/x/b/llama``)."""
    names = {b: str(b).rstrip("/").rsplit("/", 1)[-1] for b in backbones}
    return names if len(set(names.values())) == len(names) else {b: str(b) for b in backbones}


def by_backbone_view(scores: pd.DataFrame) -> pd.DataFrame:
    """With several backbones, each RM's ``source`` names its backbone too (``Qwen2.5-3B-Instruct · en``), so that
    transfer matrices and accuracy tables keep the backbones apart instead of pooling their rows."""
    if not several_backbones(scores):
        return scores
    names = backbone_labels(scores["backbone"].unique())
    return scores.assign(source=scores["backbone"].map(names) + " · " + scores["source"].astype(str))


def seed_summary(heads: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Across runs (seeds) of each backbone: the English-minus-target average of each run, its mean, SD, range, and
    how many runs' 95% CIs exclude 0 either way. The spread is what one seed cannot show (see README's default-run
    findings). Two backbones are two models, not two runs: each gets its own rows."""
    rows = []
    for label, t in heads.items():
        avg = t[t["lang"] == "average"]
        if "seed" not in avg.columns:
            continue
        for backbone, runs in (avg.groupby("backbone", sort=True) if "backbone" in avg.columns else [(None, avg)]):
            rows.append(_seed_row(label, backbone, runs))
    return pd.DataFrame(rows)


def _seed_row(label: str, backbone, avg: pd.DataFrame) -> dict:
    d = avg["diff"].to_numpy(float)
    row = {"comparison": label} if backbone is None else {"comparison": label, "backbone": backbone}
    return {**row, "runs": len(d), "mean_diff": float(d.mean()),
                     "sd_diff": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
                     "min_diff": float(d.min()), "max_diff": float(d.max()),
            "runs_ci_above_0": int((avg["ci_low"] > 0).sum()), "runs_ci_below_0": int((avg["ci_high"] < 0).sum()),
            "per_run": {f"{r.backbone}-s{r.seed}" if "backbone" in avg else f"s{r.seed}": round(float(r.diff), 4)
                        for r in avg.itertuples()}}


def key_numbers(scores: pd.DataFrame, heads: dict, *, english: str = "en") -> dict:
    """The numbers a reader wants first: the diagonal, the English RM's row, and the average differences (with
    several backbones, these per backbone under ``by_backbone``)."""
    if several_backbones(scores):
        names = backbone_labels(sorted(scores["backbone"].unique()))
        return {"by_backbone": {
            name: key_numbers(scores[scores["backbone"] == b], {label: t[t["backbone"] == b] for label, t in heads.items()},
                              english=english)
            for b, name in names.items()}}
    m = evaluate.transfer_matrix(scores)
    diag = {lang: round(float(m.loc[lang, lang]), 3) for lang in m.index if lang in m.columns}
    out = {"diagonal": diag, "english_row": {k: round(float(v), 3) for k, v in m.loc[english].items()}
           if english in m.index else {}, **({"english": english} if english != "en" else {})}
    for label, t in heads.items():
        avgs = t[t["lang"] == "average"]
        if avgs.empty:
            continue
        if len(avgs) == 1:
            avg = avgs.iloc[0]
            out[f"english_minus_{label}_avg"] = {"diff": round(float(avg["diff"]), 4),
                                                 "ci": [round(float(avg["ci_low"]), 4),
                                                        round(float(avg["ci_high"]), 4)],
                                                 **({"p_value": round(float(avg["p_value"]), 4)}
                                                    if "p_value" in avg and pd.notna(avg["p_value"]) else {})}
        else:  # several seeds: the mean of their averages and its spread (no pooled CI: runs are not items)
            d = avgs["diff"].to_numpy(float)
            out[f"english_minus_{label}_avg"] = {"diff": round(float(d.mean()), 4), "sd": round(float(d.std(ddof=1)), 4),
                                                 "per_run": [round(float(x), 4) for x in d]}
    return out


def runs_table_html(runs: pd.DataFrame, *, run_dir=None, from_dir=None) -> str:
    """The table of executed notebooks with links to their rendered HTML, relative to ``from_dir``, the folder the
    report notebook is read in (:func:`xlrm_lib.study.notebook_dir`), given the run's folder ``run_dir``; without
    them, relative to ``<run>/report/``, where ``xlrm run`` renders it (its copy at ``<run>/report.html`` drops the
    ``../``)."""
    prefix = "../"
    if run_dir is not None and from_dir is not None:
        prefix = os.path.relpath(Path(run_dir).resolve(), Path(from_dir).resolve()).replace(os.sep, "/") + "/"
    rows = []
    for r in runs.itertuples():
        href = html.escape(f"{prefix}{r.notebook_html}")
        link = f'<a href="{href}">{html.escape(r.cell)}</a>' if r.notebook_html else html.escape(r.cell)
        rows.append(f"<tr><td>{html.escape(str(r.stage))}</td><td>{link}</td><td>{r.seconds or ''}</td></tr>")
    return ("<table><thead><tr><th>stage</th><th>notebook</th><th>seconds</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def or_note(shown, note: str):
    """``shown`` (a figure or table), or ``note`` in italics where the run has none: a section of the report
    without results says why instead of standing empty."""
    if shown is not None and not (isinstance(shown, pd.DataFrame) and shown.empty):
        return shown
    from IPython.display import Markdown

    return Markdown(f"*{note}*")


def full_width(table: pd.DataFrame):
    """``table`` for display with every value whole (pandas cuts cells at 50 characters: the header's software
    line lost transformers' version) and left-aligned, without the index; text shown as text (a model's
    ``<think>`` or ``#include <stdio.h>`` is no markup)."""
    # the table's CSS ids from its content, not random: a report rendered again gives the same HTML
    return (table.style.format(escape="html", na_rep="").hide(axis="index")
            .set_properties(**{"text-align": "left"}).set_uuid(store.fingerprint(table.to_csv(), n=8)))


def _read_params(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_header(rep: dict) -> pd.DataFrame:
    """What was run, from the run's ``params.yaml`` (written by ``xlrm run``): name, description, grid axes, data
    and the main training settings; one ``field, value`` row each (empty without a params file)."""
    p = rep.get("params") or {}
    if not p:
        return pd.DataFrame(columns=["field", "value"])
    train, ev = p.get("train") or {}, p.get("evaluate") or {}
    as_list = lambda v, default: default if v is None else v if isinstance(v, list) else [v]  # noqa: E731 (seeds: 7)
    not_run = {(t.get("from"), t.get("to"), t.get("backend")): t.get("why")
               for t in rep.get("translations_not_run") or [] if isinstance(t, dict)}
    translated = ", ".join(f"{t.get('from')}->{t.get('to')} ({t.get('backend', 'apertium')}"
                           + (f"; not run: {why}" if (why := not_run.get((t.get("from"), t.get("to"),
                                                                           t.get("backend", "apertium")))) else "")
                           + ")" for t in p.get("translated") or [] if isinstance(t, dict))
    rows = [("run", p.get("run", rep.get("run"))), ("description", p.get("description")),
            ("backbones", ", ".join(map(str, as_list(p.get("backbones"), ["me5-small"])))),
            ("seeds", ", ".join(map(str, as_list(p.get("seeds"), [42])))),
            ("RM languages", ", ".join(map(str, as_list(p.get("langs"), [])))),
            ("translate-train RMs", translated or None),
            ("pretrained (evaluated as they are)", ", ".join(f"{e.get('name')}: {e.get('model')} ({e.get('kind', 'rm')})"
                                                            for e in p.get("pretrained") or [] if isinstance(e, dict))
             or None),
            ("training data", f"{train.get('data_source', 'embedded')} ({train.get('split', 'train')})"),
            ("evaluation data", f"{ev.get('eval_source', 'embedded')} ({ev.get('split', 'test')})"),
            *(as_trained(rep.get("train")) or [
                ("training", ", ".join(f"{k} {train[k]}" for k in ("lr", "epochs", "batch_size", "max_length", "bf16",
                                                                   "freeze_embeddings", "lora_r") if k in train) or None)])]
    shown = lambda v: f"[{', '.join(map(str, v))}]" if isinstance(v, list) else v  # noqa: E731
    ev_langs = p.get("eval_langs")  # a top-level key: the grid gives it to every evaluation
    rows.append(("evaluation languages", ", ".join(map(str, ev_langs if isinstance(ev_langs, list) else [ev_langs]))
                 if ev_langs else None))
    for field, section, keys in (("evaluation", "evaluate", ("max_length", "batch_size", "bf16")),
                                 ("probe", "probe", ("langs", "max_items", "max_length", "layers", "pooling")),
                                 ("best-of-n", "align", ("langs", "n", "limit", "judge", "judge_kind", "source",
                                                         "policy", "policy_bf16", "prompts", "max_new_tokens",
                                                         "temperature", "top_p"))):
        given = p.get(section) or {}
        rows.append((field, ", ".join(f"{k} {shown(given[k])}" for k in keys if k in given) or None))
    runs = rep.get("runs")
    finished = runs["finished"] if runs is not None and "finished" in runs else ()
    made = sorted(t for t in finished if isinstance(t, str))
    zone = " UTC" if made and all(t.endswith("Z") for t in made) else ""  # earlier runs wrote the local time
    made = [t.removesuffix("Z") for t in made] if zone else made  # mixed: each as written ("Z": UTC)
    rows.append(("notebooks finished", None if not made else made[0] + zone if made[0] == made[-1] else
                 f"{made[0]} to {made[-1]}{zone}"))
    rows.append(("software", software_line(rep.get("runs"))))
    rows.append(("code", code_line(rep.get("runs"))))
    commits: dict[str, set] = {}
    for pins in runs["hub_commits"] if runs is not None and "hub_commits" in runs else ():
        for repo, sha in (pins or {}).items():
            commits.setdefault(repo, set()).add(str(sha)[:12])
    if commits:  # what the results were computed from (a hub id names a moving branch); several: kept cells differ
        rows.append(("hub commits", ", ".join(f"{repo}@{' and '.join(sorted(shas))}"
                                              for repo, shas in sorted(commits.items()))))
    if rep.get("edited_templates"):
        rows.append(("templates edited since the last commit", "; ".join(map(str, rep["edited_templates"]))))
    failed = rep.get("failed") or {}
    if failed:
        rows.append(("failed (left out; its notebook says why)",
                     ", ".join(f"{name} ({html})" for name, html in list(failed.items())[:6])
                     + (f" and {len(failed) - 6} more" if len(failed) > 6 else "")))
    ignored = rep.get("ignored") or []
    if ignored:  # cell folders of an earlier grid in this run folder
        rows.append(("not in this grid or unfinished (left out)",
                     ", ".join(ignored[:6]) + (f" and {len(ignored) - 6} more" if len(ignored) > 6 else "")))
    return pd.DataFrame([r for r in rows if r[1]], columns=["field", "value"])


def software_line(runs: pd.DataFrame | None) -> str | None:
    """The library versions the run's notebooks were made with (their metrics.json's ``software``), one line;
    several sets (a notebook kept from before an upgrade) are each listed with their count of notebooks."""
    return _sets_line(runs, "software", lambda s: ", ".join(f"{k} {v}" for k, v in s.items() if v))


def code_line(runs: pd.DataFrame | None) -> str | None:
    """The code the run's notebooks were made with (their metrics.json's ``code``,
    :func:`xlrm_lib.store.code_version`): the git commit, files edited since it, the library's digest; several
    (notebooks kept from before an edit) each with their count of notebooks. None for notebooks that predate it.

    >>> runs = pd.DataFrame({"code": [{"library": "ab12", "commit": "02bc0f05c86e", "edited": []}] * 2})
    >>> code_line(runs)
    'git 02bc0f05c86e, library ab12'
    """
    def text(c: dict) -> str:
        edited = list(c.get("edited") or [])
        where = f"git {c['commit']}" if c.get("commit") else "not a git checkout"
        if edited:
            where += (f" with uncommitted changes to {', '.join(edited[:4])}"
                      + (f" and {len(edited) - 4} more" if len(edited) > 4 else ""))
        return f"{where}, library {c.get('library')}"

    return _sets_line(runs, "code", text)


def _sets_line(runs: pd.DataFrame | None, column: str, text) -> str | None:
    """One line of the distinct dicts in ``runs[column]`` (each as ``text(d)``), with their count of notebooks
    when there are several; None without any."""
    if runs is None or column not in runs.columns:
        return None
    sets = [json.dumps(s) for s in runs[column] if isinstance(s, dict)]  # in the writer's key order
    if not sets:
        return None
    counts = pd.Series(sets, dtype=object).value_counts(sort=True)
    if len(counts) == 1:
        return text(json.loads(counts.index[0]))
    return "; ".join(f"{text(json.loads(s))} ({n} notebook{'s' * (n > 1)})" for s, n in counts.items())


def as_trained(train: pd.DataFrame | None) -> list[tuple[str, str]]:
    """The header's rows for the run's trained RMs as their cards say they were trained (every setting, the
    library's defaults included, not only the params file's): the recipe, the text format, where it ran, the
    pairs per RM. A setting that differs between RMs shows each value. [] for trainings that predate it.

    >>> t = pd.DataFrame([{"rm_name": "en", "n_pairs": 160, "recipe": {"lr": 1e-4, "bf16": None},
    ...                    "format": {"template": "plain", "max_length": 256, "truncation_side": "left"},
    ...                    "runtime": {"device": "cpu", "threads": 2, "bf16": True, "processes": 1}}] * 2)
    >>> as_trained(t)  # doctest: +NORMALIZE_WHITESPACE
    [('training (as trained)', 'lr 0.0001, bf16 True, text plain, max_length 256, truncation left'),
     ('training ran on', 'cpu, 2 threads, 1 process'), ('training pairs', '160 per RM')]
    """
    if train is None or "recipe" not in getattr(train, "columns", ()):
        return []
    rows = [r for r in train.to_dict("records") if isinstance(r.get("recipe"), dict)]
    if not rows:
        return []
    settings = [_settings_as_trained(r) for r in rows]
    ran = [_where_trained(r.get("runtime") if isinstance(r.get("runtime"), dict) else {}) for r in rows]

    def values(seen: list) -> str:  # each distinct value once, in the RMs' order
        return " / ".join(str(json.loads(v)) for v in dict.fromkeys(json.dumps(x, default=str) for x in seen))

    keys = list(dict.fromkeys(k for s in settings for k in s))
    several = [k for k in ("backbone", "seed") if len({str(r.get(k)) for r in rows}) > 1]
    name = lambda r: " ".join([*(f"{'s' * (k == 'seed')}{r.get(k)}" for k in several), str(r.get("rm_name"))])  # noqa: E731
    pairs = {name(r): r.get("n_pairs") for r in rows}
    some = f"{len(rows)} of {len(train)} RMs (the others' notebooks predate it): " if len(rows) < len(train) else ""
    return [("training (as trained)", some + ", ".join(f"{k} {values([s.get(k) for s in settings])}" for k in keys)),
            ("training ran on", values(ran) or None),
            ("training pairs", f"{next(iter(pairs.values()))} per RM" if len(set(pairs.values())) == 1
             else ", ".join(f"{k} {v}" for k, v in pairs.items()))]


def _settings_as_trained(row: dict) -> dict:
    """One RM's recipe for the header: its card's config, ``bf16`` as it ran (None is "where it is fast"), and
    the text format it was trained on (the template "auto" resolved, the length, the side cut)."""
    runtime = row.get("runtime") if isinstance(row.get("runtime"), dict) else {}
    fmt = row.get("format") if isinstance(row.get("format"), dict) else {}
    out = {k: v for k, v in row["recipe"].items() if k not in ("template", "max_length")}
    if "bf16" in runtime:
        out["bf16"] = runtime["bf16"]
    return {**out, "text": fmt.get("template"), "max_length": fmt.get("max_length"),
            "truncation": fmt.get("truncation_side")}


def _where_trained(runtime: dict) -> str:
    processes = runtime.get("processes")
    parts = [runtime.get("device"), runtime.get("threads") and f"{runtime['threads']} threads",
             processes and f"{processes} process{'es' * (processes != 1)}"]
    return ", ".join(str(p) for p in parts if p)


def figures_dir(run_dir, output_dir=None) -> Path:
    """Where a report's standalone figures go: the run's ``<run>/figures`` when the report is the run's own
    (``output_dir`` is ``<run>/report``, or not given), else ``<output_dir>/figures``: a report made by hand from
    another run's results does not rewrite (or remove) that run's figures."""
    run_dir = Path(run_dir).expanduser()
    if output_dir is None or Path(output_dir).expanduser().resolve() == (run_dir / "report").resolve():
        return run_dir / "figures"
    return Path(output_dir).expanduser() / "figures"


def spell_targets(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """A copy of ``table`` whose target-RM patterns (``{lang}``, ``{lang}-mt``: the ``average`` rows'
    target) are spelt ``<target>`` / ``<target>-mt``, for people and for the report's CSVs."""
    if table is None:
        return None
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: v.replace("{lang}", "<target>") if isinstance(v, str) else v)
    return out


def readable(table: pd.DataFrame | None, digits: int = 3) -> pd.DataFrame | None:
    """A table for people: floats rounded, target-RM patterns spelt as :func:`spell_targets` does."""
    return None if table is None else spell_targets(table).round(digits)


def shown(table: pd.DataFrame | None, digits: int = 3):
    """A results table as the report shows it: :func:`readable`, through :func:`full_width` (no row numbers;
    an empty cell where there is no value, e.g. the average's Holm p-value; numbers as rounded, 0.05 not
    0.050000); None for no table or an empty one (:func:`or_note` then says why)."""
    if table is None or table.empty:
        return None
    exact = readable(table, digits)
    for c in (c for c in table.columns if str(c).startswith("p_")):  # p-values to 3 significant digits: 0.0005,
        exact[c] = table[c].map(lambda v: float(f"{v:.3g}") if pd.notna(v) else v)  # not "0" at 3 decimals
    floats = [c for c in exact.columns if pd.api.types.is_float_dtype(exact[c])]
    return full_width(exact).format(lambda v: f"{v:.10g}", subset=floats, na_rep="")  # 0.05, not 0.050000


def key_numbers_table(key: dict | None) -> pd.DataFrame:
    """The average English-minus-target differences of :func:`key_numbers`, in accuracy points (the tables
    below them hold fractions: 0.016 is 1.6 points), one row per comparison (and backbone): ``comparison,
    points, ci_low, ci_high, p_value, detectable`` (several seeds: ``sd`` instead). ``detectable``: the smallest
    true difference these items would show at 80% power (:func:`xlrm_lib.stats.detectable_difference`)."""
    rows = []
    key = key or {}
    for backbone, numbers in (key["by_backbone"].items() if "by_backbone" in key else [(None, key)]):
        for label in ("native", "translated"):
            v = numbers.get(f"english_minus_{label}_avg")
            if not v:
                continue
            source = f"{numbers['english']} RM" if numbers.get("english") else "English RM"  # report: {english}
            row = {"backbone": backbone, "comparison": f"{source} − {label} RM, mean over targets",
                   "points": round(100 * v["diff"], 1)}
            if "ci" in v:
                row.update(ci_low=round(100 * v["ci"][0], 1), ci_high=round(100 * v["ci"][1], 1))
                if "p_value" in v:
                    row["p_value"] = round(v["p_value"], 3)
                if v["ci"][1] > v["ci"][0]:  # an interval of no width (the same verdict on every item): no power
                    row["detectable"] = round(100 * stats.detectable_difference(*v["ci"]), 1)
            else:
                row.update(sd=round(100 * v["sd"], 1), runs=len(v["per_run"]))
            rows.append(row)
    out = pd.DataFrame(rows)
    return out.drop(columns="backbone") if not out.empty and out["backbone"].isna().all() else out


def write_figures(figures: dict, out_dir) -> list[Path]:
    """Standalone HTML per figure, all sharing one ``plotly.min.js`` in ``out_dir`` (written once). The folder is
    the report's: an earlier report's figure that this one lacks is removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.html"):  # an earlier report's figure that this one lacks would pass for this run's
        if old.stem not in figures:
            old.unlink()
    paths = []
    for name, fig in figures.items():
        dest = out_dir / f"{name}.html"
        with store.atomic_path(dest) as tmp:
            fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True, div_id=name)  # not a random id
        paths.append(dest)
    return paths


def tables(rep: dict, *, english: str = "en") -> dict:
    """The report's tables from :func:`collect`: whatever the run produced (missing stages are left out)."""
    out = {}
    if not rep["scores"].empty:
        scores = rep["scores"]
        english = _english_rm(english, scores)
        heads = headlines(scores, english=english)  # paired within each (backbone, seed) run
        view = by_backbone_view(scores)  # several seeds of one backbone pool; several backbones do not
        acc = evaluate.accuracy_table(view)  # once: the matrix is one of its categories
        out.update(matrix=evaluate.transfer_matrix(view, table=acc), accuracy=acc, headlines=heads,
                   key_numbers=key_numbers(scores, heads, english=english))
        if _seeds_per_backbone(scores) > 1:
            out["seed_summary"] = seed_summary(heads)  # the spread across seeds of one backbone
            # the matrix and the category accuracies pool the seeds' rows: their figures say so
            out["pooled_seeds"] = sorted(scores["seed"].unique().tolist())
    pre = rep.get("pretrained_scores")
    if pre is not None and not pre.empty:
        matrix = evaluate.transfer_matrix(pre)
        out["pretrained"] = pretrained_table(matrix, pre, rep.get("pretrained_metrics") or [])
        # their rows under the trained RMs' (the heatmap's colour scale is then shared), or the matrix's only ones
        out["matrix"] = pd.concat([out["matrix"], matrix]) if "matrix" in out else matrix
    if rep.get("probe"):
        cka = rep["probe"].get("cka")
        out["probe_cka"] = _per_cell(cka, "model", "probe/")  # one line per probe cell and RM
        out["probe_summary"] = rep["probe"].get("summary")
    if rep.get("align"):
        for label in ("native", "translated"):
            if f"headline_{label}" in rep["align"]:
                out[f"align_{label}"] = _per_cell(rep["align"][f"headline_{label}"], "a", "align/")
        if "pick_origins" in rep["align"]:
            out["align_picks"] = _per_cell(rep["align"]["pick_origins"], "rm", "align/")
    return out


def _per_cell(table: pd.DataFrame | None, column: str, stage: str) -> pd.DataFrame | None:
    """``table`` with ``column`` prefixed by its notebook (``cell`` less ``stage``) where several notebooks (backbones,
    seeds) made it: each gets its own line or bars in the figures, not one trace of all."""
    if table is None or "cell" not in table.columns or table["cell"].nunique() < 2:
        return table
    return table.assign(**{column: table["cell"].str.removeprefix(stage) + " · " + table[column].astype(str)})


def _english_rm(english: str, scores: pd.DataFrame) -> str:
    """``english`` as the run names its RMs (``EN`` -> ``en``), with a warning when the run has no such RM: the
    headline comparison is then left out (run by hand, the report notebook has no grid to check it against)."""
    name, rms = checks.rm_name(english), sorted(set(scores["source"].astype(str)))
    if name not in rms:
        log.warning("english = %r is not an RM of this run (its RMs: %s): the English-vs-target comparisons are "
                    "left out; set english to the source-language RM to compare with", english, ", ".join(rms))
    return name


def pretrained_table(matrix: pd.DataFrame, scores: pd.DataFrame, metrics: list[dict]) -> pd.DataFrame:
    """One row per model evaluated as it is: ``name, kind, model``, its overall accuracy on each target language,
    their ``mean``, the share of pairs it ``tied`` (counted wrong: a judge whose verdict follows the answers'
    positions ties every pair) and ``mean_ties_as_half``, the mean with a tie worth 1/2: what RewardBench's
    generative script expects of a judge, which it asks in one random order (``tied`` is a share of rows, where
    the means weigh categories, so the two means differ by ``tied / 2`` only roughly).

    ``matrix``: the :func:`xlrm_lib.evaluate.transfer_matrix` of their ``scores``; ``metrics``: their evaluate
    notebooks' ``metrics.json``, which say what each name is."""
    info = {m.get("rm_name"): m for m in metrics}
    half = evaluate.transfer_matrix(scores.assign(correct=scores["correct"].astype(float) + 0.5 * scores["tie"]))
    out = matrix.assign(mean=matrix.mean(axis=1), tied=scores.groupby("source")["tie"].mean(),
                        mean_ties_as_half=half.mean(axis=1))
    out.insert(0, "model", [str(info.get(n, {}).get("model_dir", "")) for n in out.index])
    out.insert(0, "kind", [info.get(n, {}).get("model_kind", "rm") for n in out.index])
    out.columns.name = None
    return out.rename_axis("name").reset_index()


FIGURES = ("transfer_matrix", "english_vs_native", "english_vs_translated", "categories", "cka_by_layer",
           "best_of_n_native", "best_of_n_translated")  # what figures() draws; notebooks/report.ipynb shows each


def figures(t: dict) -> dict:
    """Figures for the tables of :func:`tables` (name -> plotly figure); only those the run has data for. Each
    name is one of :data:`FIGURES` (the report notebook has a cell for each: a test reads it)."""
    from . import plots

    figs = {}
    pooled = (f"<br><sup>each RM's accuracy pooled over seeds {', '.join(map(str, t['pooled_seeds']))} (their "
              "rows together; each seed apart: the English-vs-target tables)</sup>" if t.get("pooled_seeds") else "")
    if "matrix" in t:
        figs["transfer_matrix"] = plots.transfer_heatmap(t["matrix"], **(
            {"y_title": "source (RM trained on), then pretrained"} if "pretrained" in t else {}))
        figs["transfer_matrix"].update_layout(title_text=figs["transfer_matrix"].layout.title.text + pooled)
    if "accuracy" in t:  # the trained RMs'
        figs["categories"] = plots.category_bars(t["accuracy"])
        figs["categories"].update_layout(title_text=figs["categories"].layout.title.text + pooled)
        for label, table in t["headlines"].items():
            if "backbone" in table.columns:  # short names in the legend
                table = table.assign(backbone=table["backbone"].map(backbone_labels(table["backbone"].unique())))
            figs[f"english_vs_{label}"] = plots.english_vs_target_bars(table)
    if t.get("probe_cka") is not None:
        figs["cka_by_layer"] = plots.cka_by_layer(t["probe_cka"])
    for label in ("native", "translated"):
        if f"align_{label}" in t:
            figs[f"best_of_n_{label}"] = plots.win_rate_bars(t[f"align_{label}"])
    if unknown := set(figs) - set(FIGURES):  # a new figure: add it to FIGURES and a cell of report.ipynb shows it
        raise AssertionError(f"figure(s) {sorted(unknown)} missing from report.FIGURES")
    return figs


AS_THEY_ARE = ("pretrained", "probe_summary", "align_native", "align_translated", "align_picks")  # tables saved whole
REPORT_CSV = re.compile(r"(transfer_matrix|accuracy|english_vs_\w+|seed_summary|key_numbers|"
                        + "|".join(AS_THEY_ARE) + r")\.csv")  # the CSVs save_tables writes (and removes, stale)


def save_tables(output_dir, t: dict) -> Path:
    """The report's CSVs (transfer matrix, key numbers, headline differences, accuracies, shift, win rates) and
    metrics.json; an earlier report's CSV that this one lacks is removed."""
    from .study import save_outputs

    files = {}
    if "matrix" in t:
        files["transfer_matrix.csv"] = t["matrix"].reset_index()
    if "accuracy" in t:
        files["accuracy.csv"] = t["accuracy"]
        files.update({f"english_vs_{label}.csv": spell_targets(h) for label, h in t["headlines"].items()})
    if t.get("seed_summary") is not None:
        files["seed_summary.csv"] = t["seed_summary"]
    if not (key := key_numbers_table(t.get("key_numbers"))).empty:  # in points, with `detectable`
        files["key_numbers.csv"] = key
    for name in AS_THEY_ARE:
        if t.get(name) is not None:
            files[f"{name}.csv"] = spell_targets(t[name])
    if unnamed := sorted(n for n in files if not REPORT_CSV.fullmatch(n)):  # a later report could not remove it
        raise AssertionError(f"table(s) {unnamed} missing from report.REPORT_CSV")
    for old in Path(output_dir).glob("*.csv"):  # an earlier report's table that this one lacks (only the report's)
        if old.name not in files and REPORT_CSV.fullmatch(old.name):
            old.unlink()
    return save_outputs(output_dir, {"kind": "report", **t.get("key_numbers", {})}, files)
