"""What a params file expands to: the spec :func:`load_spec` reads and checks, and the grid of notebook
executions (:class:`Cell` s, in dependency order: train -> evaluate -> probe / align -> report) :func:`plan`
makes of it. Nothing here runs or loads a model; :mod:`xlrm_lib.preflight` checks the cells,
:mod:`xlrm_lib.runner` runs them."""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import checks
from .checks import did_you_mean
from .langs import TRANSLATED_SUFFIX, code_of
from .store import PLAN_FILE, PRETRAINED_DIR, slug

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"train": "train_reward_model", "evaluate": "evaluate_transfer", "probe": "representation_shift",
             "align": "alignment", "report": "report"}
TOP_KEYS = {"run", "description", "backbones", "seeds", "langs", "eval_langs", "translated", "pretrained",
            "notebooks_dir", "kernel", "num_gpus", "num_cpus", *NOTEBOOKS}
TRANSLATED_KEYS = {"from", "to", "backend", "model"}  # one translate-train RM: {from: en, to: es, backend: apertium}
PRETRAINED_KEYS = {"name", "model", "kind"}  # one model evaluated as it is: {name: skywork, model: Skywork/...}
PRETRAINED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
    except UnicodeDecodeError as e:
        raise ParamError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); re-encode it as "
                         "UTF-8 (e.g. `iconv -f latin1 -t utf-8`), which YAML files are read as") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(spec, dict):
        raise ParamError(f"{path}: expected a mapping of keys (run, langs, train, ...), got {type(spec).__name__}")
    unknown = sorted(set(spec) - TOP_KEYS, key=str)  # a key may be a number: `1: a`
    if unknown:
        raise ParamError("\n".join(f"{path}: unknown top-level key {k!r}{did_you_mean(k, TOP_KEYS)}; expected one of "
                                   f"{sorted(TOP_KEYS)}" for k in unknown))
    named_by_file = spec.get("run") is None  # absent, or `run:` left empty (null): the file's name, not "None"
    if named_by_file:
        spec["run"] = path.stem
    run = str(spec["run"])
    if not checks.RUN_NAME.fullmatch(run) or len(run) > checks.RUN_NAME_MAX:
        rule = (f"must be letters, digits, '.', '_' or '-', not starting with '.', at most {checks.RUN_NAME_MAX} "
                "characters (it names a folder under the outputs directory)")
        plain = (slug(run).lstrip(".") or "run")[:checks.RUN_NAME_MAX]
        if named_by_file:  # "default copy.yaml", as a file manager names a copy: the user wrote no run name
            raise ParamError(f"{path}: the run is named after the file, {run!r}, which {rule}; add `run: {plain}` "
                             "to the file, or rename the file")
        raise ParamError(f"{path}: run name {spec['run']!r} {rule}; e.g. `run: {plain}`")
    for key, example in (("kernel", "python3"), ("notebooks_dir", "notebooks")):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ParamError(f"{path}: {key} = {value!r}; expected a non-empty string, e.g. {key}: {example} (or "
                             "leave it out for the default)")
    spec["_source"] = str(path.resolve())  # where it was read (a run folder's own copy: see _check_run_folder)
    return spec


def _check_run_folder(spec: dict, run_dir: Path) -> None:
    """A params file read from inside a run folder (its ``params.yaml``, in a copy shared or moved) resumes that
    folder only when the run writes there: a renamed copy, or one run without ``--outputs <its parent>``, would
    start the whole grid anew in another folder."""
    source = Path(spec["_source"]).parent if spec.get("_source") else None
    if source is None or not (source / PLAN_FILE).is_file() or source == run_dir.resolve():
        return
    raise ParamError(f"{spec['_source']} lies in the run folder {source}, but this run would write to {run_dir} "
                     f"and compute the grid anew there. To resume that folder: xlrm run {spec['_source']} --outputs "
                     f"{source.parent}" + (f" (after setting `run: {source.name}` in it: the folder's name)"
                                            if source.name != str(spec["run"]) else "")
                     + "; to start a new run from these parameters, copy the file out of the run folder first")


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


def repo_path(value) -> Path:
    """A path parameter as the kernels read it: relative to the repository root, where they run."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else REPO / path).resolve()


def with_outputs(spec: dict, outputs_dir) -> dict:
    """``spec`` whose runs go under ``outputs_dir`` (``--outputs``; absolute: the kernels run in the repository,
    where a relative path would mean another folder), for :func:`run_dir`; ``None`` keeps it as it is."""
    return {**spec, "_outputs": str(Path(outputs_dir).expanduser().resolve())} if outputs_dir else spec


def run_dir(spec: dict) -> Path:
    """The run folder of ``spec``: ``<outputs>/<run>`` (``outputs`` from :func:`with_outputs`, default
    ``<repo>/outputs``)."""
    return Path(spec.get("_outputs", REPO / "outputs")) / str(spec["run"])


# ----------------------------------------------------------------------------------- planning
def plan(spec: dict, *, notebooks_dir=None, unavailable: list | None = None) -> list[Cell]:
    """Expand a spec into cells in dependency order (see the module docstring for the format).

    ``unavailable``: :func:`unavailable_translations` of ``spec`` when the caller has it already (it loads each hf
    translation model's tokenizer); the translated RMs it names get no cells."""
    from .langs import normalize_lang

    nb_dir = Path(notebooks_dir or spec.get("notebooks_dir") or REPO / "notebooks")
    nb = lambda stage: nb_dir / f"{NOTEBOOKS[stage]}.ipynb"  # noqa: E731
    folder = run_dir(spec)
    _check_run_folder(spec, folder)
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
        out = folder / name
        cells.append(Cell(name, stage, nb(stage), {**params, "output_dir": str(out)}, list(deps), inputs or {},
                          0.0 if stage == "report" else gpus, list(after)))  # the report only reads tables

    unavailable = unavailable_translations(spec) if unavailable is None else unavailable
    skipped = {id(t) for t, _ in unavailable}
    mt_rms = [(normalize_lang(t["to"]) + TRANSLATED_SUFFIX, normalize_lang(t["to"]), normalize_lang(t["from"]),
               t.get("backend", "apertium"), t.get("model", "")) for t in translated if id(t) not in skipped]
    if spec.get("eval_langs") is None and langs:  # each translate-train RM scored on its own language too
        eval_langs = eval_langs + _scorable([lang for _, to, src, *_ in mt_rms for lang in (src, to)
                                             if lang not in eval_langs], spec)
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
        add("report", "report", {**report, "run_dir": str(folder)}, deps=[c.name for c in cells])
        cells[-1].partial = True  # a failed notebook (an off-the-shelf model that does not fit, say) leaves the
        # report of what finished: its header names what is left out, and the run still exits non-zero
    twice = sorted({c.name for c in cells if sum(d.name == c.name for d in cells) > 1})
    if twice:
        raise ParamError(f"the grid names {len(twice)} notebook(s) twice, e.g. {twice[:3]}: a backbone, seed or "
                         "translated RM is listed more than once")
    return cells


def _rm_name(name, rm_names: set) -> str:
    """``name`` as the grid names its RMs (canonical language code, ``-mt`` kept; a language's name or ISO 639-3
    code too: ``English``, ``eng``); a ParamError if none is."""
    canonical = str(name) if str(name) in rm_names else checks.rm_name(name)
    if canonical not in rm_names:  # a language's name or ISO 639-3 code ('English', 'eng'): the lenient reading
        base = canonical.removesuffix(TRANSLATED_SUFFIX)
        canonical = (checks.normalized_or_none(base) or base) + canonical[len(base):]
    if canonical not in rm_names:
        raise ParamError(f"report.english = {name!r} is not an RM of this grid; expected one of {sorted(rm_names)}")
    return canonical


def _grid_axes(spec: dict):
    """``backbones, seeds, langs, eval_langs, num_gpus`` of a spec, checked; languages in canonical codes."""
    problems = []
    backbones, seeds = _as_list(spec, "backbones", ["me5-small"]), _as_list(spec, "seeds", [42])
    if not backbones:
        problems.append("backbones is empty; expected at least one backbone, e.g. [me5-small]")
    not_names = [b for b in backbones if not isinstance(b, str) or not b.strip()]
    if not_names:  # e.g. {model: me5-small}, a pretrained entry's form
        problems.append(f"backbones {not_names} are not model names; expected strings: a packaged backbone, a model "
                        "directory or a hub id, e.g. [me5-small] (models evaluated as they are go under 'pretrained')")
    by_folder: dict[str, list] = {}
    for b in dict.fromkeys(b for b in backbones if b not in not_names):
        by_folder.setdefault(_slug(b), []).append(b)
    # one directory however it is written ('models/m', '<repo>/models/m/'); other names as they are
    local = lambda b: str(where) if (where := repo_path(b)).exists() else b  # noqa: E731
    for folder, same in by_folder.items():  # cells are named by a backbone's last path part
        if len(same) > 1 and len(set(map(local, same))) == 1:
            problems.append(f"backbones {same} name one directory {len(same)} times: list it once")
        elif len(same) > 1:
            problems.append(f"backbones {same} would share the cell names '*/{folder}-s<seed>-*' (cells are named by "
                            "the last part of a backbone's path or hub id): give all but one another name (a local "
                            "directory: rename it; a hub id: `hf download <id> --local-dir models/<new name>`, then "
                            "list that directory)")
    if not seeds:
        problems.append("seeds is empty; expected at least one seed, e.g. [42]")
    bad_seeds = [x for x in seeds if not checks.is_seed(x)]
    if bad_seeds:
        problems.append(f"seeds {bad_seeds} are not integers in 0..{checks.SEED_MAX} (numpy's seeds, which the "
                        "trainer and UMAP use, go no higher)")
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
    elif langs:  # the native RMs' languages (plan adds the translated RMs' where the evaluation source has them)
        eval_langs = list(langs)
    else:  # translated RMs only: the languages they were translated from and into
        for t in translated:
            for key in ("from", "to"):
                code = checks.normalized_or_none(t.get(key)) if isinstance(t, dict) else None
                if code and code not in eval_langs:
                    eval_langs.append(code)
    gpus = 0.0
    try:
        gpus = checks.finite_number("num_gpus", spec.get("num_gpus", 0) or 0, at_least=0)
        if gpus > 1 and gpus != int(gpus):
            problems.append(f"num_gpus = {gpus:g}: more than one GPU per notebook must be a whole number (Ray "
                            "shares a GPU only as a fraction of one, e.g. 0.5)")
    except ValueError as e:
        problems.append(str(e))
    try:  # under Ray: the CPUs each notebook asks for, and its kernel's threads
        checks.positive_int("num_cpus", spec.get("num_cpus", 1), why="CPUs (threads) per notebook under Ray")
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise ParamError("\n".join(problems))
    return backbones, seeds, langs, eval_langs, gpus


def _scorable(langs: list, spec: dict) -> list:
    """Of ``langs`` (in order, once), those the evaluation source has (a file is read by the pre-flight, which
    names a missing one); the others are said to be left out."""
    from .data import FILE_SUFFIXES, check_source

    if not isinstance(spec.get("evaluate"), dict):  # no evaluation: the probe's and best-of-n's sources are checked
        return list(dict.fromkeys(langs))
    section = spec["evaluate"]
    source, split = section.get("eval_source", "embedded"), section.get("split", "test")
    out = []
    for lang in dict.fromkeys(langs):
        try:
            check_source(repo_path(source) if Path(str(source)).suffix.lower() in FILE_SUFFIXES else source, split,
                         langs=[lang])
            out.append(lang)
        except (ValueError, OSError):
            if (source, lang) not in _SAID:  # once per process: plan runs for validate, plan and run alike
                _SAID.add((source, lang))
                log.warning("translate-train RMs are not scored on %s: the evaluation source %r has no %s rows "
                            "(eval_langs names the languages to score)", lang, source, lang)
    return out


_SAID: set = set()


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
        elif backend == "hf" and unknown_hub_model(t["model"]):
            continue  # a typo or not downloaded, not a backend missing here: preflight.model_problems refuses it
        elif why := why_unavailable(t["from"], t["to"], backend, model=t.get("model")):
            out.append((t, why))
    return out


def hub_suggestion(value, repo_type: str = "model", known=()) -> str:
    """`` (did you mean 'x'?)`` for a hub id close to ``value`` among those the local hub cache holds and
    ``known``, or ""."""
    from . import hub

    return did_you_mean(value, [i for i in (*hub.cached_ids(repo_type), *known) if i != value], cutoff=0.8)


def unknown_hub_model(value, repo_type: str = "model") -> bool:
    """A model (or dataset) named like a hub id ('org/name') that is no local path, and that neither the hub nor
    the local hub cache knows (:func:`xlrm_lib.hub.commit`: one request per id and process)."""
    from . import hub
    from .backbones import PACKAGED

    return (isinstance(value, str) and value not in PACKAGED and bool(hub.HUB_ID.match(value))
            and not repo_path(value).exists() and hub.commit(value, repo_type) is None)


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
        elif code_of(name.removesuffix(TRANSLATED_SUFFIX)):  # a code ('ko', 'kor_Hang'), not a word ('dan', 'run')
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
    return slug(str(s).rstrip("/").split("/")[-1])
