"""What ``$XLRM_CACHE`` holds, and pruning the trained RMs no run uses any more.

Everything under ``$XLRM_CACHE`` is content-addressed and can be rebuilt, but some of it is expensive and large:
every trained RM is a full model directory (470 MB for me5-small, ~6 GB for a 3B model in bf16), and a forced
retrain or a changed recipe leaves the old one behind. ``xlrm cache`` lists the space per kind;
``xlrm cache --prune --outputs outputs`` lists the RMs that no notebook under the given outputs directories
names (as its ``model_dir``, a judge, any path in its ``metrics.json`` or the run's ``params.yaml``), with the
reward caches and hidden states of exactly those RMs (a 3B model's probe states are ~4 GB at 23 languages x 500
items), and ``--yes`` deletes them. Hidden-state files from
before they were kept per model (``hidden_states/hidden-*.npy``) are never read again and are listed too, and
so are old copies a killed forced retrain left aside (``models/.<name>.*.old``).
Directories a killed training or conversion left half-written (``.<name>.*.tmp``) are listed when their writer
was a process of this host that is gone (:func:`xlrm_lib.store.abandoned`); others (still being written, or
by another host) are only reported. Nothing else is pruned: translations are small, backbones are needed. A run in progress may use an RM no ``metrics.json`` names yet (its
training just finished): ``xlrm cache --prune`` keeps RMs younger than an hour (``--min-age``) and refuses
``--yes`` while an ``xlrm run`` holds one of the given outputs' run folders. A run writing to another outputs
directory is guarded only by the age rule: pass its directory too.

>>> plan = prune_plan(["outputs"])            # doctest: +SKIP
>>> [p.name for p in plan]                     # doctest: +SKIP
['en-me5-small-21385b5f836fe50f', 'en-me5-small-21385b5f836fe50f-3c9f....npz']
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from .store import (LOCK_SUFFIX, RUN_LOCK, abandoned, cache_dir, drop_lock, lock_holder, locked_entry, read_card_or_none,
                    unfinished)

REPO = Path(__file__).resolve().parents[1]  # where notebooks run (xlrm run and setup_notebook chdir there)


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def usage(root: str | Path | None = None) -> list[dict]:
    """One row per kind of cache entry: ``kind``, ``entries``, ``bytes``, and ``unfinished`` (entries still being
    written, or left by a killed process: ``.<name>.*.tmp``) with ``unfinished_bytes``."""
    root = Path(root) if root else cache_dir()
    rows = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        done = [p for p in kind.iterdir() if not p.name.startswith(".")]
        partial = [p for p in kind.iterdir() if unfinished(p)]
        rows.append({"kind": kind.name, "entries": len(done), "bytes": sum(map(size_of, done)),
                     "unfinished": len(partial), "unfinished_bytes": sum(map(size_of, partial))})
    return rows


def used_models(outputs_dirs) -> set[Path]:
    """Paths a run under ``outputs_dirs`` names: every string in a notebook's ``metrics.json`` (its ``model_dir``,
    a judge RM...) and in a run's ``params.yaml`` (a judge or backbone given as a cache path), resolved."""
    import yaml

    used = set()
    for out in outputs_dirs:
        out = Path(out)
        if not out.is_dir():
            raise FileNotFoundError(f"outputs directory {str(out)!r} does not exist; pass the directories your runs "
                                    "write to (xlrm run --outputs, default <repo>/outputs)")
        for f in [*out.rglob("metrics.json"), *out.rglob("params.yaml")]:
            try:
                text = f.read_text()
                doc = json.loads(text) if f.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError):
                continue
            for v in _strings(doc):
                if "/" in v or os.sep in v:  # a relative path means the repository's, as the kernels read it
                    path = Path(v).expanduser()
                    used.update({path.resolve(), (REPO / path).resolve()})
    return used


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def prune_plan(outputs_dirs, root: str | Path | None = None, *, min_age_s: float = 0,
               young: list | None = None) -> list[Path]:
    """The RM directories in the cache that no finished notebook under ``outputs_dirs`` uses, followed by the
    reward-cache files of those RMs (named by their card's key), their hidden-state directories
    (:func:`xlrm_lib.store.states_dir`) and the unreachable flat hidden-state files. Deletes nothing.
    ``min_age_s``: RMs written less than that many seconds ago are kept (a running grid may be about to use them);
    those unused ones are appended to ``young`` if given."""
    root = Path(root) if root else cache_dir()
    used = used_models(outputs_dirs)
    models = [p for p in sorted((root / "models").glob("*")) if p.is_dir() and not p.name.startswith(".")]
    now = time.time()
    unused, recent = [], []
    for p in models:
        if p.resolve() not in used:
            (unused if now - _written(p) >= min_age_s else recent).append(p)
    if young is not None:
        young.extend(recent)
    keys = {_card_key(p) for p in unused} - {_card_key(p) for p in models if p not in unused} - {None}
    rewards = [f for f in sorted((root / "rewards").glob("*.npz")) if f.name.split("-", 1)[0] in keys]
    states = [root / "hidden_states" / p.name for p in unused if (root / "hidden_states" / p.name).is_dir()]
    flat = sorted((root / "hidden_states").glob("hidden-*.npy"))
    aside = sorted(p for p in (root / "models").glob(".*.old") if p.is_dir())  # a replaced copy a killed run left
    # a model a killed training (or conversion) was writing: its process, on this host, is gone
    dead = sorted(p for kind in ("models", "backbones") if (root / kind).is_dir() for p in (root / kind).iterdir()
                  if unfinished(p) and p.is_dir() and abandoned(p))
    return unused + rewards + states + flat + aside + dead


def _written(model_dir: Path) -> float:
    """When an RM directory was last written (it is renamed into place whole, its card among its files); now, if
    it is being moved (a forced retrain sets the old copy aside)."""
    try:
        return max([model_dir.stat().st_mtime] + [f.stat().st_mtime for f in model_dir.iterdir() if f.is_file()])
    except FileNotFoundError:
        return time.time()


def live_runs(outputs_dirs) -> list[str]:
    """The run folders under ``outputs_dirs`` an ``xlrm run`` is using now (it holds their ``.lock``), with who
    runs it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks (the runner takes none either)
        return []
    live = []
    for out in outputs_dirs:  # an outputs directory's run folders, or a run folder given itself
        for lock in [*Path(out).glob(RUN_LOCK), *sorted(Path(out).glob(f"*/{RUN_LOCK}"))]:
            try:
                with open(lock) as f:  # read-only: a shared lock for an instant (the runner retries meanwhile)
                    try:
                        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                        fcntl.flock(f, fcntl.LOCK_UN)
                    except BlockingIOError:
                        live.append(f"{lock.parent} ({lock_holder(f.read())})")
            except OSError:  # not readable here: not this user's run to guard
                continue
    return live


def _card_key(model_dir: Path) -> str | None:
    return (read_card_or_none(model_dir) or {}).get("key")


def prune(paths: list[Path]) -> int:
    """Delete ``paths`` (from :func:`prune_plan`); returns the bytes freed. The training locks
    (``models/.<name>.lock``) of models no longer there go too, unless a process holds one."""
    freed = 0
    for p in paths:
        size = size_of(p)
        if p.is_dir():
            if p.parent.name == "models" and not p.name.startswith("."):
                # renamed aside whole first (prune_plan lists the models/.*.old a kill leaves): a kill mid-delete
                # left a card-less half RM under the name runs read, which they took for trained
                aside = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.old")
                try:
                    os.rename(p, aside)
                    p = aside
                except FileNotFoundError:
                    continue
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        freed += size
    for models in {p.parent for p in paths if p.parent.name == "models"}:
        for lock in models.glob(f".*{LOCK_SUFFIX}"):
            if (entry := locked_entry(lock)) is not None and not entry.exists():
                drop_lock(lock)
    return freed


def human(n: int) -> str:
    """Bytes for people: ``human(470_640_124) == '470.6 MB'``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover
