"""Which commit of a Hugging Face hub repository a name means now: the revision caches and records key on.

A hub id (``Qwen/Qwen2.5-3B-Instruct``, ``CohereLabsCommunity/multilingual-reward-bench``) names a moving branch:
M-RewardBench has been re-cut and re-translated since its release. So the training key of an RM on a hub backbone
holds the backbone's commit and the RM is loaded at that commit, and the runner's cell keys hold the commit of
every hub model or dataset a cell names: an upstream change reruns what read it instead of reusing old numbers.

The commit comes from the hub (one metadata request, a few seconds at most) or, offline (``HF_HUB_OFFLINE=1``, or
no network), from the local hub cache's ``refs/<revision>``. None when neither knows it: a hub id that was never
downloaded cannot be loaded offline anyway. A notebook that ``xlrm run`` executes is told the commits its cell is
keyed on (:data:`PINS_ENV`, a JSON ``{repo_id: commit}``), so it loads exactly those, not what ``main`` has
become since the run was planned.

>>> commit("Qwen/Qwen2.5-3B-Instruct")   # doctest: +SKIP
'aa8e72537993ba99e69dfaafa59ed015b17504d1'
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, as the hub spells repository ids
COMMIT = re.compile(r"[0-9a-f]{40}")
PINS_ENV = "XLRM_HUB_COMMITS"  # {repo_id: commit} of a cell's hub ids, set by the runner for its notebook's kernel


def pins() -> dict:
    """``{repo_id: commit}`` the runner pinned for this process (:data:`PINS_ENV`); {} when none."""
    try:
        out = json.loads(os.environ.get(PINS_ENV) or "{}")
    except ValueError:
        raise ValueError(f"{PINS_ENV} = {os.environ[PINS_ENV]!r:.80} is not JSON; expected {{repo_id: commit}} "
                         "(the runner sets it; unset it to use the hub's main branch)") from None
    if not isinstance(out, dict):
        return {}
    return {k: v for k, v in out.items() if isinstance(v, str) and COMMIT.fullmatch(v)}


DATASET_PIN = "dataset:"  # a pin's key prefix for a dataset that a model parameter of the same cell names too


def pinned(repo_id: str, repo_type: str = "model") -> str | None:
    """The commit the runner pinned ``repo_id`` to for this process (:data:`PINS_ENV`), or None. A dataset's pin
    is under ``dataset:<id>`` where the cell names a model repo of the same id too, else under its id."""
    found = pins()
    return (found.get(DATASET_PIN + repo_id) if repo_type == "dataset" else None) or found.get(repo_id)


def is_hub_id(value) -> bool:
    """Whether ``value`` reads as a hub repository id (``org/name``) and names no local path."""
    if not isinstance(value, str) or not HUB_ID.match(value):
        return False
    return not Path(value).expanduser().exists()


def _repo_dir(repo_id: str, repo_type: str) -> Path:
    """A repository's folder in the local hub cache (``models--org--name``), as huggingface_hub lays it out."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"


def cached_commit(repo_id: str, repo_type: str = "model", revision: str = "main") -> str | None:
    """``refs/<revision>`` of the local hub cache (no request to the hub); for ``main`` without one (a model
    fetched only by commit, which writes no ref), its snapshot: the only one, else the newest (with a warning
    naming the others)."""
    repo = _repo_dir(repo_id, repo_type)
    try:
        return (repo / "refs" / revision).read_text().strip() or None
    except OSError:
        pass
    snaps = [d for d in (repo / "snapshots").glob("*") if d.is_dir() and COMMIT.fullmatch(d.name)]
    if revision != "main" or not snaps:
        return None
    snaps.sort(key=lambda d: d.stat().st_mtime)
    if len(snaps) > 1:
        log.warning("%s %s has no refs/main and %d snapshots in the local hub cache; using the newest, %s",
                    repo_type, repo_id, len(snaps), snaps[-1].name)
    return snaps[-1].name


_COMMITS: dict = {}
_GATED: set = set()
_NO_ANSWER: set = set()


def gated(repo_id: str) -> bool:
    """Whether the hub answered that ``repo_id`` is gated (its licence not accepted by this token) when asked."""
    return repo_id in _GATED


def unreachable() -> bool:
    """Whether a request of this process got no answer from the hub (no network), HF_HUB_OFFLINE being unset."""
    return bool(_NO_ANSWER)


def commit(repo_id: str, repo_type: str = "model", revision: str = "main", timeout: float = 10.0) -> str | None:
    """The commit sha ``revision`` of hub repository ``repo_id`` (``repo_type`` "model" or "dataset") points at,
    asked once per process; the local cache's answer when offline; None if unknown (asked again next time)."""
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"repo_type = {repo_type!r}; expected 'model' or 'dataset'")
    if COMMIT.fullmatch(revision):
        return revision  # already a commit
    if revision == "main" and (sha := pinned(repo_id, repo_type)):
        return sha  # what this notebook's cell is keyed on
    key = (repo_id, repo_type, revision)
    if key in _COMMITS:
        return _COMMITS[key]
    from huggingface_hub import HfApi, constants

    sha = None
    if not constants.is_offline_mode():
        try:
            sha = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=timeout).sha
        except Exception as e:  # noqa: BLE001 - no network, no such repo, gated: the cache may still know
            if type(e).__name__ == "GatedRepoError":  # huggingface_hub.errors; it exists: say so, not "a typo"
                _GATED.add(repo_id)
            elif getattr(e, "response", None) is None:  # no answer at all (no network, DNS, a timeout)
                _NO_ANSWER.add(repo_id)
            log.info("hub commit of %s %s@%s not available (%s); using the local cache's", repo_type, repo_id,
                     revision, type(e).__name__)
    sha = sha or cached_commit(repo_id, repo_type, revision)
    if sha is not None:
        _COMMITS[key] = sha
    return sha


def _forget() -> None:
    """Forget what was asked (tests; a long-lived kernel after an upstream change)."""
    _COMMITS.clear()
    _GATED.clear()
    _NO_ANSWER.clear()


commit.cache_clear = _forget


def cached_snapshot(repo_id: str, repo_type: str, sha: str) -> Path | None:
    """The local hub cache's folder of ``repo_id`` at commit ``sha`` (what ``hf download`` or an earlier load left),
    or None."""
    snap = _repo_dir(repo_id, repo_type) / "snapshots" / str(sha)
    return snap if COMMIT.fullmatch(sha or "") and snap.is_dir() else None


ANY_SPLIT = "*"  # in snapshot_configs: a config whose files the README does not list (any split may be there)


def snapshot_configs(snapshot: Path) -> dict[str, set[str]] | None:
    """The configs a dataset snapshot's README.md declares (its YAML block's ``configs:``), each with the splits
    whose data files are in the snapshot (``hf download --include "kor_Hang/*"`` leaves the other configs out; a
    split given without a name is ``train``, as ``datasets`` reads it; :data:`ANY_SPLIT` for a config without
    ``data_files``). ``{}``: a README that declares no configs; None: no README or no YAML block (its configs
    are unknown: ``datasets`` then sees one ``default`` config)."""
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    try:
        text = (Path(snapshot) / "README.md").read_text(encoding="utf-8").lstrip("\ufeff")
        block = REGEX_YAML_BLOCK.search(text)
        meta = yaml.safe_load(block.group(2)) if block else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(meta, dict):
        return None
    configs = meta.get("configs")
    out: dict[str, set[str]] = {}
    for c in configs if isinstance(configs, list) else []:
        if not isinstance(c, dict) or "config_name" not in c:
            continue
        files = c.get("data_files")
        if files is None:
            out[str(c["config_name"])] = {ANY_SPLIT}
            continue
        by_split: dict[str, list] = {}
        entries = files.items() if isinstance(files, dict) else \
            [(e.get("split", "train"), e.get("path")) if isinstance(e, dict) else ("train", e)
             for e in (files if isinstance(files, list) else [files])]
        for split, paths in entries:
            by_split.setdefault(str(split), []).extend(paths if isinstance(paths, list) else [paths])
        out[str(c["config_name"])] = {split for split, paths in by_split.items()
                                      if any(isinstance(p, str) and _matches(Path(snapshot), p) for p in paths)}
    return out


def _matches(folder: Path, pattern: str) -> bool:
    try:
        return next(folder.glob(pattern.lstrip("/")), None) is not None
    except (ValueError, NotImplementedError):  # a pattern glob cannot take: say present, let datasets decide
        return True


def cached_ids(repo_type: str = "model") -> list[str]:
    """The ids of the ``repo_type`` repositories the local hub cache holds (to suggest one for a typo)."""
    from huggingface_hub import constants

    prefix = f"{repo_type}s--"
    try:
        names = [d.name[len(prefix):] for d in Path(constants.HF_HUB_CACHE).iterdir() if d.name.startswith(prefix)]
    except OSError:
        return []
    return sorted(n.replace("--", "/", 1) for n in names)


def any_commit(repo_id: str) -> str | None:
    """The commit of ``repo_id`` as a model, else as a dataset (a parameter that may name either)."""
    return commit(repo_id, "model") or commit(repo_id, "dataset")
