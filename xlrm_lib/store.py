"""Where things are cached and how they are written: content fingerprints and atomic writes.

Nothing half-written is ever taken for finished work: every writer here writes to a temporary name in the
destination directory and renames it into place (``os.replace`` is atomic on one filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator


log = logging.getLogger(__name__)
SOFTWARE = ("python", "xlrm", "torch", "transformers", "datasets", "peft", "numpy")  # what results are made with


def installed_version(package: str) -> str | None:
    """The installed version of a PyPI distribution, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def library_versions() -> dict:
    """The installed versions of what computes the results (:data:`SOFTWARE`; None for one not installed), read
    from package metadata (nothing imported): recorded with every notebook's outputs and every RM's card."""
    import platform

    return {"python": platform.python_version(), **{name: installed_version(name) for name in SOFTWARE[1:]}}


_CODE: dict = {}


def source_digests() -> dict[str, str]:
    """``path -> digest`` of ``xlrm_lib``'s Python files (paths relative to the repository, sorted): what the
    runner keys every cell on and :func:`code_version` records."""
    root = Path(__file__).resolve().parents[1]
    return {f.relative_to(root).as_posix(): file_digest(f) for f in sorted((root / "xlrm_lib").rglob("*.py"))}


def utc_stamp() -> str:
    """Now, as the run's records write it: ISO 8601 in UTC, to the second (``2026-11-28T12:48:18Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def code_version() -> dict:
    """The code that computes the results, as recorded with every notebook's outputs: ``library``, a digest of
    ``xlrm_lib``'s source files (two runs with one digest ran the same library code, committed or not);
    ``commit``, the checkout's git HEAD (12 hex digits), and ``edited``, the files of ``xlrm_lib/`` and
    ``notebooks/`` that differ from it (None and [] outside a git checkout, or without git). Read once a process.

    >>> sorted(code_version())
    ['commit', 'edited', 'library']
    """
    if not _CODE:
        import subprocess

        root = Path(__file__).resolve().parents[1]
        _CODE["library"] = fingerprint(sorted(source_digests().items()))

        def git(*args) -> str | None:
            try:
                done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                return None
            return done.stdout if done.returncode == 0 else None

        head = git("rev-parse", "--verify", "--quiet", "HEAD")
        _CODE["commit"] = head.strip()[:12] if head else None
        status = git("status", "--porcelain", "-z", "--untracked-files=all", "--", "xlrm_lib", "notebooks") \
            if head else None
        entries, edited = (status or "").split("\0"), []
        while entries:  # "XY path" each (no quoting with -z); a rename's or copy's old path follows it
            entry = entries.pop(0)
            if entry[:1] in ("R", "C") and entries:
                entries.pop(0)
            if entry[3:].endswith((".py", ".ipynb")):
                edited.append(entry[3:])
        _CODE["edited"] = sorted(edited)
    return dict(_CODE)


CARD_FILE = "xlrm_card.json"  # beside a trained RM's weights: its cache key, config, data fingerprint, metrics
DONE_FILE = "_done.json"  # in a run's cell folder once its notebook finished: the key it finished with
PLAN_FILE = "_plan.json"  # in a run folder: the cells of the grid as last run (the report reads only these)
PRETRAINED_DIR = "pretrained"  # in a run folder: the evaluate notebooks of its params file's `pretrained` models
METRICS_FILE = "metrics.json"  # in a cell folder: what its notebook found, and the tables it wrote ("tables")


def done_json(cell_dir) -> dict:
    """A cell's ``_done.json`` as written, its outputs whole or not; {} without one."""
    try:
        record = json.loads((Path(cell_dir) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def finished_record(cell_dir) -> dict:
    """A finished cell's ``_done.json`` (its key, when it finished, how long it took), or {} if it has not
    finished or its outputs are no longer whole: its rendered notebook and HTML, its ``metrics.json`` and the
    tables that names, each of the size and content it was written with (``table_bytes``, ``table_digests``). A
    cell whose ``metrics.json`` or ``scores.parquet`` was deleted, cut short or edited by hand runs again, where it
    was kept (its dependants then failed on the file, every time, or a report read the edited numbers while
    its HTML showed the old ones) or left out of the report unsaid. So does one whose ``metrics.json`` is not the
    one its notebook wrote (``metrics_digest``): its rendered notebook re-executed in the run folder with other
    parameters wrote new tables and a ``metrics.json`` that agrees with them, while its HTML and the report
    showed the old ones."""
    cell_dir = Path(cell_dir)
    record = done_json(cell_dir)
    try:
        metrics = json.loads((cell_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not record or not isinstance(metrics, dict):
        return {}
    if "metrics_digest" in record and file_digest(cell_dir / METRICS_FILE) != record["metrics_digest"]:
        return {}  # rewritten since: the rendered notebook re-executed by hand with other parameters, say
    # the rendered files by name: the record's absolute paths name where the run folder was when they were made
    made = [Path(str(record[k])).name for k in ("notebook", "html") if record.get(k)]
    tables = metrics.get("tables") if isinstance(metrics.get("tables"), dict) else {}
    if not all((cell_dir / name).is_file() for name in [*made, *map(str, tables.values())]):
        return {}
    sizes = metrics.get("table_bytes") if isinstance(metrics.get("table_bytes"), dict) else {}
    if any((cell_dir / str(name)).stat().st_size != size for name, size in sizes.items()
           if (cell_dir / str(name)).is_file()):  # cut short, or emptied, since: made again
        return {}
    digests = metrics.get("table_digests") if isinstance(metrics.get("table_digests"), dict) else {}
    if any(file_digest(cell_dir / str(name)) != digest for name, digest in digests.items()
           if (cell_dir / str(name)).is_file()):  # edited since, even to the same size: made again
        return {}
    return record


_UMASK = os.umask(0)
os.umask(_UMASK)


def read_card_or_none(model_dir) -> dict | None:
    """The training card of a model directory trained by xlrm (``xlrm_card.json``), or None: none there, or not
    readable as a JSON object."""
    try:
        card = json.loads((Path(model_dir) / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def write_probe(folder: Path) -> None:
    """Make ``folder`` if needed and write (then remove) a file of a name of its own in it; an OSError if it
    cannot take files."""
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)  # two runs may check at once
    os.close(fd)
    os.unlink(probe)


def absolute_cache_env() -> None:
    """A relative ``$XLRM_CACHE`` made absolute, from this process's working directory: the kernels a run starts
    work in the repository root, and would otherwise read and write another cache than the one validated here."""
    given = os.environ.get("XLRM_CACHE")
    if given and not Path(given).expanduser().is_absolute():
        os.environ["XLRM_CACHE"] = str(Path(given).expanduser().resolve())


def cache_root() -> Path:
    """``$XLRM_CACHE`` (default ``~/.cache/xlrm``), as it is: not created."""
    return Path(os.environ.get("XLRM_CACHE") or Path.home() / ".cache" / "xlrm").expanduser()


def cache_dir(*parts: str) -> Path:
    """``$XLRM_CACHE`` (default ``~/.cache/xlrm``) joined with ``parts``; created if missing."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def states_dir(model: str | os.PathLike) -> Path:
    """The hidden-state cache of one model: ``$XLRM_CACHE/hidden_states/<name>``, named after the model's directory
    (a trained RM's is unique: ``en-me5-small-21385b5f836fe50f``) or its hub id (``Qwen--Qwen2.5-3B-Instruct``),
    so ``xlrm cache --prune`` removes an RM's hidden states with the RM. The files' own keys still hash the
    model's weights: a name shared by two models costs nothing but pruning granularity."""
    local = Path(model).expanduser()
    name = str(model).strip("/").replace("/", "--")
    name = local.resolve().name if name and local.is_dir() else name
    if not name or name.startswith("."):
        raise ValueError(f"cannot name a hidden-state cache after model {str(model)!r}; expected a model "
                         "directory or a hub id")
    return cache_dir("hidden_states", name)


def fingerprint(obj: Any, n: int = 16) -> str:
    """Stable short sha256 of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:n]


def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def file_digest_memo(path: str | os.PathLike, n: int = 16) -> str:
    """:func:`file_digest`, remembered in ``$XLRM_CACHE/digests`` under the file's path, inode, size, modification
    and change times: a 3B model's weight shards (~12 GB) are read once, not at every training of a grid. The
    change time catches a same-size edit whose modification time was put back (``cp -p``, ``rsync -a``)."""
    path = Path(path).resolve()
    memo = cache_dir("digests") / fingerprint([str(path), *stat_identity(path), n], n=32)
    if memo.exists():
        return memo.read_text().strip()
    digest = file_digest(path, n)
    write_text(memo, digest)
    return digest


def stat_identity(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """(inode, size, mtime, ctime) in ns: what changes when a file's content may have (ctime cannot be set back)."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, on error remove it.

    >>> with atomic_path("/tmp/xlrm-doctest.txt") as tmp:
    ...     _ = tmp.write_text("done")
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + TMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:  # a full disk says "No space left on device", not where
            raise OSError(e.errno, e.strerror, str(dest)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, keep=None) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory: build it under a temporary name, then rename.

    ``keep``: a test of an existing ``dest``; if it passes (another writer of the same content address finished
    first), that copy is kept and this one dropped, so a reader that already uses it is never switched to other
    files. Otherwise (no test, a forced rebuild, a folder without the finished content) ``dest`` is replaced."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=TMP_SUFFIX, dir=dest.parent))
    (tmp / WRITER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        yield tmp
        (tmp / WRITER_FILE).unlink(missing_ok=True)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private; the result is an ordinary directory
        for f in tmp.rglob("*"):  # and some writers (safetensors) make their files private too
            if f.is_file():
                os.chmod(f, 0o666 & ~_UMASK)
        if keep is not None and dest.is_dir() and keep(dest):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _replace_dir(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _out_of_space_here(e, tmp):  # safetensors says so in its own error type, and neither says where
            code, why = (e.errno, e.strerror) if isinstance(e, OSError) else (errno.ENOSPC, "No space left on device")
            raise OSError(code, why, str(dest)) from e
        raise


def _out_of_space_here(e: BaseException, tmp: Path) -> bool:
    """Whether ``e`` is a full disk (or quota) met writing into ``tmp``: an OSError naming no file or one in
    ``tmp``, or safetensors' own error saying so. A full disk elsewhere (a compile cache in /tmp) keeps its path."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT) and (
            e.filename is None or Path(e.filename).resolve().is_relative_to(tmp.resolve()))
    return type(e).__name__ == "SafetensorError" and ("No space left on device" in str(e) or "StorageFull" in str(e))


def slug(text: str) -> str:
    """``text`` as one file name: every run of characters other than letters, digits, ``_ . -`` becomes ``_`` (a
    hub id or a path must not nest directories).

    >>> slug("Qwen/Qwen2.5-3B Instruct")
    'Qwen_Qwen2.5-3B_Instruct'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


class LockBusy(Exception):
    """:func:`file_lock` gave up waiting; ``holder`` says which process holds it (:func:`lock_holder`)."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder}")
        self.path, self.holder = path, holder


def lock_holder(text: str) -> str:
    """Who holds a lock, from its file's ``"<pid> <host>"`` (:func:`file_lock` writes it): ``'process 4242 on
    node3'``; on this host, whether that process is stopped (Ctrl-Z: it holds the lock and does nothing)."""
    pid, _, host = text.strip().partition(" ")
    host = host.strip()
    if not pid.isdigit():
        return "an unknown process"
    if not host:  # an older xlrm's lock file: perhaps another node's process (this host's pid is another one)
        return f"process {pid} (host not recorded)"
    if host != socket.gethostname():
        return f"process {pid} on {host}"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        state = ""
    if state == "T":
        return f"process {pid} on this host, stopped (Ctrl-Z? resume it with `fg` or `kill -CONT {pid}`, or end it)"
    return f"process {pid} on this host"


# flock's answers on filesystems without working locks (NFSv3 without lockd, Lustre without -o flock, some FUSE
# and SMB mounts): locking is then skipped, as on Windows, rather than failing the work it guards
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF}
_SAID_NO_LOCKS: set = set()


def _open_lock(path: Path, *, create: bool) -> int:
    """A descriptor of the lock file: read-write (created readable and writable by all: a cache several users
    share), or read-only where it is another user's (flock locks a read-only descriptor too)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):  # only its creator may change its mode
        if os.fstat(fd).st_uid == os.getuid() and os.fstat(fd).st_mode & 0o777 != 0o666:
            os.fchmod(fd, 0o666)
    return fd


def _take(fcntl, fd: int, path: Path) -> bool | None:
    """Try the exclusive lock once: True (taken), False (held by another), None (this filesystem has no locks)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno not in _NO_LOCKS:
            raise
        if path.parent not in _SAID_NO_LOCKS:
            _SAID_NO_LOCKS.add(path.parent)
            log.warning("the filesystem of %s has no working file locks (%s): going on without them", path.parent,
                        e.strerror)
        return None


REMIND_S = 600.0  # while waiting without a timeout, the holder is named again this often (a hung holder shows)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None, busy=None) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``path``, a small file naming its holder (pid and host).

    If another process holds it, ``busy(holder, waited)`` is called (to say why this waits: ``holder`` as
    :func:`lock_holder` words it, ``waited`` the seconds waited so far, 0 the first time, then every
    :data:`REMIND_S`), and this waits: for ever (``timeout=None``) or up to ``timeout`` seconds, then
    :class:`LockBusy`. The OS releases the lock when its holder exits, killed or not, so a crash never leaves a
    stale lock. The file stays (deleting a lock file races with a process that opened it). Where there are no
    file locks (Windows, a filesystem without them: a warning) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(path, create=True)

    def holder() -> str:
        return lock_holder(os.pread(fd, 256, 0).decode(errors="replace"))

    try:
        taken = _take(fcntl, fd, path)
        if taken is False:
            start = said = time.monotonic()
            if busy is not None:
                busy(holder(), 0.0)
            deadline = None if timeout is None else start + timeout
            while taken is False:  # polling (not a blocking flock): Ctrl-C stays responsive, a timeout is possible
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise LockBusy(path, holder())
                if busy is not None and now - said >= REMIND_S:
                    said = now
                    busy(holder(), now - start)
                time.sleep(0.1 if deadline is not None else min(1.0, REMIND_S))
                taken = _take(fcntl, fd, path)
        if taken:
            with contextlib.suppress(OSError):  # a read-only descriptor (another user's file): no holder to write
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}".encode(), 0)
        try:
            yield
        finally:
            if taken:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def drop_lock(path: str | os.PathLike) -> bool:
    """Delete the :func:`file_lock` file ``path`` if no process holds it now; whether it was deleted. (A process
    that opened it just before and waits would then hold a lock on the deleted file while a newcomer takes a new
    one: at worst two trainings of one RM, as without the lock; callers drop only locks of models being deleted
    or gone.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        fd = _open_lock(Path(path), create=False)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        Path(path).unlink(missing_ok=True)
        return True
    except OSError:  # held by a process, or no locks here: leave it
        return False
    finally:
        os.close(fd)


LOCK_SUFFIX = ".lock"  # of a file_lock's file
RUN_LOCK = LOCK_SUFFIX  # in a run folder while an `xlrm run` uses it (xlrm_lib.runner)
TMP_SUFFIX = ".tmp"  # the last part of the name an entry is written under (atomic_path, atomic_dir)


def entry_lock(dest: str | os.PathLike) -> Path:
    """The lock of one cache entry (``.<name>.lock`` beside it): its writers take it (an RM's training)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}{LOCK_SUFFIX}")


def locked_entry(lock: Path) -> Path | None:
    """The entry an :func:`entry_lock` guards; None for a path that is not one."""
    name = lock.name
    return lock.with_name(name[1:-len(LOCK_SUFFIX)]) if name.startswith(".") and name.endswith(LOCK_SUFFIX) and \
        len(name) > len(LOCK_SUFFIX) + 1 else None


def unfinished(path: Path) -> bool:
    """Whether ``path`` is an entry still being written (or left by a killed writer): ``.<name>.*.tmp``."""
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


WRITER_FILE = ".xlrm-writer.json"  # in a directory being built: which process (host, pid) writes it


def abandoned(tmp_dir: Path) -> bool:
    """Whether a directory :func:`atomic_dir` was building was left by a process that is gone: one of this host
    (its writer file says so) whose pid runs no more (a killed training leaves a whole model there: ~12 GB at 3B).
    A writer on another host, or a folder without a writer file, cannot be told: False."""
    try:
        writer = json.loads((Path(tmp_dir) / WRITER_FILE).read_text())
        host, pid = writer["host"], int(writer["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return _zombie(pid)  # killed, not yet reaped (its lock already released): gone for good


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and awaits reaping (Linux ``/proc``): a writer SIGKILLed with its parent is one
    for a moment, exactly when a waiter for its entry lock wakes up."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))


def remove_abandoned(dest: str | os.PathLike) -> list[Path]:
    """Delete the folders :func:`atomic_dir` was building for ``dest`` (``.<name>.*.tmp``) whose writer is gone
    (:func:`abandoned`): a killed training leaves a whole model there (~6 GB at 3B), which nothing else would
    ever remove but ``xlrm cache --prune``. Callers hold ``dest``'s :func:`entry_lock`. Returns what went."""
    dest = Path(dest)
    gone = [p for p in dest.parent.glob(f".{dest.name}.*{TMP_SUFFIX}") if p.is_dir() and abandoned(p)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` at ``dest``. An existing ``dest`` (a forced rebuild) is renamed aside first and removed after,
    never deleted in place; if another writer puts its copy there meanwhile (the same content address: two
    notebooks training one RM), that copy is kept and ours dropped. Checking, deleting and renaming raced."""
    aside = None
    if dest.exists():
        aside = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.old")
        try:
            os.rename(dest, aside)
        except FileNotFoundError:  # the other writer moved it first
            aside = None
    try:
        os.replace(tmp, dest)
    except OSError:
        if not dest.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer's copy arrived first: keep it
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _strict(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None: strict JSON (JavaScript's JSON.parse refuses Python's bare NaN)."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) or (hasattr(obj, "dtype") and getattr(obj, "ndim", None) == 0
                                  and obj.dtype.kind == "f"):  # Python and NumPy floats
        return float(obj) if math.isfinite(obj) else None
    return obj


def json_text(obj: Any) -> str:
    """Indented, strict JSON (undefined numbers as null; Paths and other objects as strings)."""
    return json.dumps(_strict(obj), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj), encoding="utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_frame(path: str | os.PathLike, df) -> None:
    """Write a DataFrame as parquet or CSV (by extension), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unsupported table extension {path.suffix!r}; expected '.parquet' or '.csv'")
