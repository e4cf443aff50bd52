"""xlrm cache: space per kind, and pruning exactly the RMs (and their reward caches) no finished run names."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xlrm_lib import caches, store
from xlrm_lib.cli import main


def _model(root, name, key, size=1000):
    d = root / "models" / f"{name}-{key}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"\0" * size)
    (d / "xlrm_card.json").write_text(json.dumps({"key": key}))
    return d


def _used_by(outputs, cell, model_dir):
    d = outputs / "run" / "train" / cell
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"kind": "train", "model_dir": str(model_dir)}))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("XLRM_CACHE", str(root))
    used, old = _model(root, "en", "aaaa"), _model(root, "en", "bbbb", size=3000)
    _model(root, "ko", "cccc")
    (root / "models" / ".ko-dddd.x1y2.tmp").mkdir()  # a training still running (or killed): never pruned
    (root / "rewards").mkdir()
    for name in ("aaaa-1.npz", "bbbb-1.npz", "bbbb-2.npz", "eeee-1.npz"):  # eeee: an RM outside the cache
        (root / "rewards" / name).write_bytes(b"\0" * 10)
    for model in ("en-aaaa", "en-bbbb", "me5-small"):  # per-model hidden states (me5-small: a base model)
        (root / "hidden_states" / model).mkdir(parents=True)
        (root / "hidden_states" / model / "hidden-1.npy").write_bytes(b"\0" * 100)
    (root / "hidden_states" / "hidden-0.npy").write_bytes(b"\0" * 7)  # flat: from before, never read again
    outputs = tmp_path / "outputs"
    _used_by(outputs, "en", used)
    other = tmp_path / "other-outputs"
    _used_by(other, "ko", root / "models" / "ko-cccc")
    return root, outputs, other, old


def test_usage_counts_entries_and_unfinished_ones(cache):
    root, *_ = cache
    rows = {r["kind"]: r for r in caches.usage()}
    assert rows["models"]["entries"] == 3 and rows["models"]["unfinished"] == 1
    assert rows["models"]["bytes"] == 1000 + 3000 + 1000 + 3 * len(json.dumps({"key": "aaaa"}))
    assert rows["rewards"] == {"kind": "rewards", "entries": 4, "bytes": 40, "unfinished": 0, "unfinished_bytes": 0}


def test_prune_plan_keeps_what_any_given_outputs_dir_uses(cache):
    root, outputs, other, old = cache
    plan = caches.prune_plan([outputs, other])
    states = root / "hidden_states"
    assert plan == [old, root / "rewards" / "bbbb-1.npz", root / "rewards" / "bbbb-2.npz", states / "en-bbbb",
                    states / "hidden-0.npy"]
    assert [p.name for p in caches.prune_plan([outputs])] == ["en-bbbb", "ko-cccc", "bbbb-1.npz", "bbbb-2.npz",
                                                               "en-bbbb", "hidden-0.npy"]  # ko-cccc has no states
    with pytest.raises(FileNotFoundError, match="outputs directory .* does not exist"):
        caches.prune_plan([root / "nope"])


def test_prune_keeps_a_judge_named_by_a_runs_params_and_lists_copies_left_aside(cache):
    """A judge RM is named by the params file (align: judge: <dir>), not as any cell's model_dir: pruning it
    broke the next run. A copy a killed forced retrain left aside is never read again."""
    root, outputs, other, old = cache
    (outputs / "run" / "params.yaml").write_text(f"run: run\nalign:\n  judge: {old}\n")
    aside = root / "models" / ".en-aaaa.0123456789ab.old"
    aside.mkdir()
    plan = caches.prune_plan([outputs, other])
    assert old not in plan and aside in plan and plan[-1] == aside


def test_cli_lists_then_deletes_only_with_yes(cache, capsys):
    root, outputs, other, old = cache
    assert main(["cache", "--prune", "--outputs", str(outputs), "--outputs", str(other), "--min-age", "0"]) == 0
    out = capsys.readouterr().out
    assert "5 entries (3.1 kB)" in out and "rerun with --yes" in out and old.exists()  # 3000 + 2 x 10 + 100 + 7
    assert main(["cache", "--prune", "--outputs", str(outputs), "--outputs", str(other), "--yes", "--min-age", "0"]) == 0
    assert "deleted 3.1 kB" in capsys.readouterr().out
    assert not old.exists() and sorted(p.name for p in (root / "rewards").iterdir()) == ["aaaa-1.npz", "eeee-1.npz"]
    assert sorted(p.name for p in (root / "hidden_states").iterdir()) == ["en-aaaa", "me5-small"]
    assert (root / "models" / "ko-cccc").exists() and (root / "models" / ".ko-dddd.x1y2.tmp").exists()
    assert main(["cache", "--yes"]) == 2  # --yes without --prune deletes nothing and says so
    assert "--yes, --outputs and --min-age go with --prune" in capsys.readouterr().err


def test_the_cli_reads_a_relative_cache_from_where_it_runs_and_refuses_a_file(tmp_path, monkeypatch, capsys):
    # the kernels start in the repository root: `XLRM_CACHE=xc xlrm ...` from another folder validated ./xc and
    # would have run on <repo>/xc; a file there was a FileExistsError traceback from `xlrm cache`
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLRM_CACHE", "xc")
    assert main(["cache"]) == 0
    assert os.environ["XLRM_CACHE"] == str(tmp_path / "xc")  # listed as it is: not created
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("XLRM_CACHE", "afile")
    assert main(["cache"]) == 2
    assert f"XLRM_CACHE = {tmp_path / 'afile'} is a file; set XLRM_CACHE to a directory" in capsys.readouterr().err
    # a read-only cache is listed (and pruning lists what it would delete); deleting from it is refused up front
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "xc"))
    monkeypatch.setattr(store, "write_probe", lambda folder: (_ for _ in ()).throw(OSError(30, "Read-only file system")))
    assert main(["cache"]) == 0 and main(["cache", "--prune"]) == 0
    assert main(["cache", "--prune", "--yes"]) == 2
    assert "is not a writable directory (Read-only file system)" in capsys.readouterr().err


def test_a_filesystem_without_file_locks_runs_the_work_unlocked_and_says_so(tmp_path, monkeypatch, caplog):
    # NFSv3 without lockd answers flock with ENOLCK, Lustre without -o flock ENOSYS: the training it guards must
    # still run (before the lock existed it did)
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with caplog.at_level("WARNING", logger="xlrm_lib.store"):
        with store.file_lock(tmp_path / "models" / ".rm.lock"):
            ran.append(1)
        with store.file_lock(tmp_path / "models" / ".other.lock"):
            ran.append(2)
    assert ran == [1, 2]
    assert caplog.text.count("has no working file locks (No locks available): going on without them") == 1
    assert not store.drop_lock(tmp_path / "models" / ".rm.lock")  # nothing to tell: left alone
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):  # any other error is not "no locks here"
        with store.file_lock(tmp_path / "models" / ".third.lock"):
            pass


def test_a_lock_file_is_writable_by_every_user_of_a_shared_cache(tmp_path):
    # a second user of the cache must be able to open the first one's lock file (0644 under umask 022 refused)
    old = os.umask(0o022)
    try:
        with store.file_lock(tmp_path / ".rm.lock"):
            assert (tmp_path / ".rm.lock").read_text() == f"{os.getpid()} {socket.gethostname()}"
    finally:
        os.umask(old)
    assert (tmp_path / ".rm.lock").stat().st_mode & 0o777 == 0o666


def test_prune_drops_the_training_locks_of_models_gone_unless_held(cache):
    # every training leaves models/.<name>.lock (train._one_trainer); they piled up after their models were pruned
    root, outputs, other, old = cache
    models = root / "models"
    for name in ("en-aaaa", "en-bbbb", "ko-free", "ko-training"):  # kept, pruned, gone, being trained
        store.entry_lock(models / name).write_text("1")
    assert store.locked_entry(models / ".ko-free.lock") == models / "ko-free"
    assert store.locked_entry(outputs / "run" / store.RUN_LOCK) is None  # a run folder's lock guards no entry
    with store.file_lock(models / ".ko-training.lock"):
        caches.prune(caches.prune_plan([outputs, other]))
        assert sorted(p.name for p in models.glob(".*.lock")) == [".en-aaaa.lock", ".ko-training.lock"]
    assert not old.exists()


def test_a_prune_killed_mid_delete_leaves_no_half_rm_under_its_name(cache, monkeypatch):
    # killed while deleting an RM, prune left models/<rm>/ without its card and weights, which runs took for trained
    root, outputs, other, old = cache
    real = caches.shutil.rmtree

    def killed(path, *a, **k):
        (Path(path) / "xlrm_card.json").unlink()  # part of it deleted, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(caches.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        caches.prune([old])
    assert not old.exists()  # renamed aside whole before deleting: the name runs read is gone, not half there
    [aside] = (root / "models").glob(f".{old.name}.*.old")
    monkeypatch.setattr(caches.shutil, "rmtree", real)
    assert aside in caches.prune_plan([outputs, other])  # the next prune finishes it
    caches.prune(caches.prune_plan([outputs, other]))
    assert not aside.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_a_killed_writer_not_yet_reaped_has_abandoned_its_folder(tmp_path):
    # a SIGKILLed training's lock is released at once, but its pid lives on as a zombie until reaped: the run that
    # took over saw it alive and left its temporary model folder in the cache for good
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    folder = tmp_path / ".en-me5-small-1.a.tmp"
    folder.mkdir()
    (folder / store.WRITER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid}))
    try:
        assert store.abandoned(folder) is False  # running
        child.kill()
        deadline = time.time() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.time() < deadline
            time.sleep(0.05)
        assert store.abandoned(folder) is True  # dead, not reaped
    finally:
        child.kill()
        child.wait()
    assert store.abandoned(folder) is True  # reaped


def test_human_sizes():
    assert caches.human(999) == "999 B" and caches.human(470_640_124) == "470.6 MB" and caches.human(2e12) == "2.0 TB"


def test_states_dir_is_named_after_the_model_directory_or_hub_id(tmp_path, monkeypatch):
    from xlrm_lib.store import states_dir

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    rm = tmp_path / "models" / "en-me5-small-21385b5f836fe50f"
    rm.mkdir(parents=True)
    assert states_dir(rm) == tmp_path / "cache" / "hidden_states" / rm.name and states_dir(rm).is_dir()
    assert states_dir(str(rm) + "/").name == rm.name
    assert states_dir("Qwen/Qwen2.5-3B-Instruct").name == "Qwen--Qwen2.5-3B-Instruct"
    assert states_dir("me5-small").name == "me5-small"
    with pytest.raises(ValueError, match="cannot name a hidden-state cache after model ''"):
        states_dir("")


def test_atomic_dir_replaces_a_finished_directory_and_tolerates_a_concurrent_writer(tmp_path, monkeypatch):
    from xlrm_lib import store

    dest = tmp_path / "models" / "rm-abc"
    for content in ("first", "forced rebuild"):
        with store.atomic_dir(dest) as tmp:
            (tmp / "w.bin").write_text(content)
    assert (dest / "w.bin").read_text() == "forced rebuild"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rm-abc"]  # nothing left aside or half-written
    # another process renames its copy into place between our rename-aside and our rename: theirs is kept
    real_replace = os.replace

    def racing_replace(src, dst):
        other = Path(dst).with_name(".other.tmp")
        other.mkdir()
        (other / "w.bin").write_text("theirs")
        real_replace(other, dst)
        return real_replace(src, dst)  # dst is a non-empty directory now: OSError

    monkeypatch.setattr(store.os, "replace", racing_replace)
    with store.atomic_dir(dest) as tmp:
        (tmp / "w.bin").write_text("ours")
    monkeypatch.undo()
    assert (dest / "w.bin").read_text() == "theirs" and sorted(p.name for p in dest.parent.iterdir()) == ["rm-abc"]


def test_atomic_dir_without_replace_keeps_a_copy_another_writer_finished(tmp_path):
    """Two runs train one content address at once: the one that finishes second must not swap the files under
    the first one's readers (it did: the first copy was renamed aside and deleted)."""
    from xlrm_lib import store

    dest = tmp_path / "models" / "rm-abc"
    finished = lambda d: (d / "w.bin").exists()  # noqa: E731  (the test of a finished copy)
    with store.atomic_dir(dest, keep=finished) as tmp:
        (tmp / "w.bin").write_text("first")
        with store.atomic_dir(dest, keep=finished) as other:  # finishes while the first is still writing
            (other / "w.bin").write_text("second")
    assert (dest / "w.bin").read_text() == "second"
    with store.atomic_dir(dest, keep=finished) as tmp:
        (tmp / "w.bin").write_text("third")
    assert (dest / "w.bin").read_text() == "second" and sorted(p.name for p in dest.parent.iterdir()) == ["rm-abc"]
    # a folder that is not a finished copy (made beforehand, half-copied) is replaced, not kept
    (dest / "w.bin").unlink()
    (dest / "notes.txt").write_text("mine")
    with store.atomic_dir(dest, keep=finished) as tmp:
        (tmp / "w.bin").write_text("fourth")
    assert (dest / "w.bin").read_text() == "fourth"


def test_prune_keeps_young_rms_and_refuses_to_delete_while_a_run_holds_an_outputs_folder(cache, capsys):
    """A running grid names its RMs in metrics.json only when their notebooks finish: pruning meanwhile deleted an
    RM it had just trained (or one of a run writing elsewhere), and its evaluation failed."""
    import fcntl

    root, outputs, other, old = cache
    hour_ago = os.stat(old).st_mtime - 3700
    for p in [old, *old.iterdir()]:
        os.utime(p, (hour_ago, hour_ago))
    assert caches.prune_plan([outputs, other], min_age_s=3600)[:1] == [old]  # ko-cccc is young but used
    young = _model(root, "de", "ffff")  # just trained by a run that has not written its metrics.json yet
    assert young not in caches.prune_plan([outputs, other], min_age_s=3600)
    assert young in caches.prune_plan([outputs, other])  # min_age_s=0: the library's default
    assert main(["cache", "--prune", "--outputs", str(outputs), "--outputs", str(other)]) == 0
    out = capsys.readouterr().out
    assert "unused: " + str(old) in out and str(young) not in out
    assert "kept 1 unused RM(s) written in the last 60 min" in out
    (outputs / "run" / ".lock").write_text("")
    with open(outputs / "run" / ".lock", "r+") as lock:  # as runner._run_lock holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242 node3")
        lock.flush()
        assert caches.live_runs([outputs, other]) == [f"{outputs / 'run'} (process 4242 on node3)"]
        assert caches.live_runs([outputs / "run"]) == [f"{outputs / 'run'} (process 4242 on node3)"]  # the run folder
        assert main(["cache", "--prune", "--outputs", str(outputs), "--outputs", str(other), "--yes"]) == 2
        assert "not deleting: xlrm run is using" in capsys.readouterr().err and old.exists()
    assert caches.live_runs([outputs]) == []  # released: deleting may go ahead
    assert main(["cache", "--prune", "--outputs", str(outputs), "--outputs", str(other), "--yes"]) == 0
    assert not old.exists() and young.exists()
    assert main(["cache", "--prune", "--min-age", "-1"]) == 2


def test_write_json_is_strict_json_undefined_numbers_as_null(tmp_path):
    # a probe's base row has no sv_closest_share (NaN): Python's bare NaN is refused by JavaScript's JSON.parse
    np = pytest.importorskip("numpy")
    path = tmp_path / "m.json"
    store.write_json(path, {"a": float("nan"), "b": [1.5, float("inf"), np.float32("nan"), np.float64(2.0)],
                            "c": {"d": -float("inf"), "e": np.float32(0.5)}, "p": tmp_path, "n": 3, "t": True})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert back == {"a": None, "b": [1.5, None, None, 2.0], "c": {"d": None, "e": 0.5}, "p": str(tmp_path),
                    "n": 3, "t": True}


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path):
    # "xlrm: error: no space left writing a file": which one was not said
    import errno

    from xlrm_lib import store

    with pytest.raises(OSError) as e:
        with store.atomic_path(tmp_path / "summary.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "summary.json")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_a_full_disk_while_saving_a_model_names_the_model_folder(tmp_path):
    # safetensors raises its own SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull,
    # message: \"No space left on device\" })"): the CLI's "no space left writing <file>" did not catch it
    import errno

    from safetensors import SafetensorError

    from xlrm_lib import store

    for raised in (SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                   '"No space left on device" })'), OSError(errno.EDQUOT, "Disk quota exceeded")):
        with pytest.raises(OSError) as e:
            with store.atomic_dir(tmp_path / "rm") as tmp:
                (tmp / "config.json").write_text("{}")
                raise raised
        assert e.value.errno == getattr(raised, "errno", errno.ENOSPC) and e.value.filename == str(tmp_path / "rm")
        assert e.value.__cause__ is raised
        assert list(tmp_path.iterdir()) == []  # the half-written folder is gone
    with pytest.raises(ValueError, match="not a disk problem"):  # other errors pass through as they are
        with store.atomic_dir(tmp_path / "rm"):
            raise ValueError("not a disk problem")
    # a full disk elsewhere while the folder is built (the compile cache, during training) keeps its own path, and an
    # error that only quotes the words (the compile failure's advice) its type
    elsewhere = OSError(errno.ENOSPC, "No space left on device", "/tmp/torchinductor_me/x.py")
    with pytest.raises(OSError) as e:
        with store.atomic_dir(tmp_path / "rm"):
            raise elsewhere
    assert e.value is elsewhere
    with pytest.raises(RuntimeError, match="train with torch_compile=False"):
        with store.atomic_dir(tmp_path / "rm"):
            raise RuntimeError("torch.compile of 24 blocks failed (No space left on device); train with "
                               "torch_compile=False")
    with pytest.raises(OSError) as e:  # a file inside the folder being built: the folder is named
        with store.atomic_dir(tmp_path / "rm") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "model.safetensors"))
    assert e.value.filename == str(tmp_path / "rm")


def test_an_os_error_without_an_errno_keeps_its_message_and_type(tmp_path):
    from xlrm_lib import store

    with pytest.raises(TimeoutError, match="the disk took too long"):
        with store.atomic_path(tmp_path / "x.json"):
            raise TimeoutError("the disk took too long")


def test_prune_lists_what_a_killed_training_left_half_written_and_only_that(tmp_path):
    # a killed training's .tmp folder (a whole model: ~12 GB at 3B) was reported, never pruned
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # exited: its pid runs no more
    models = tmp_path / "models"
    writers = {".en-me5-small-1.a.tmp": {"host": socket.gethostname(), "pid": dead_pid},
               ".en-me5-small-2.b.tmp": {"host": socket.gethostname(), "pid": os.getpid()},  # still writing
               ".en-me5-small-3.c.tmp": {"host": "another-node", "pid": dead_pid},  # cannot be told from here
               ".en-me5-small-4.d.tmp": None}  # from before writer files
    for name, writer in writers.items():
        (models / name).mkdir(parents=True)
        if writer:
            (models / name / store.WRITER_FILE).write_text(json.dumps(writer))
    (tmp_path / "outputs").mkdir()
    plan = caches.prune_plan([tmp_path / "outputs"], tmp_path)
    assert [p.name for p in plan] == [".en-me5-small-1.a.tmp"]
    with store.atomic_dir(models / "en-me5-small-5") as tmp:  # a finished directory keeps no writer file
        assert json.loads((tmp / store.WRITER_FILE).read_text())["pid"] == os.getpid()
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in (models / "en-me5-small-5").iterdir()) == ["config.json"]
    # training that RM again removes only its own dead copies (it stayed until `xlrm cache --prune --yes`)
    for name in (".en-me5-small-1.b.tmp", ".en-me5-small-10.a.tmp"):  # the same RM, and another whose name extends it
        (models / name).mkdir()
        (models / name / store.WRITER_FILE).write_text(json.dumps(writers[".en-me5-small-1.a.tmp"]))
    assert sorted(p.name for p in store.remove_abandoned(models / "en-me5-small-1")) == [".en-me5-small-1.a.tmp",
                                                                                           ".en-me5-small-1.b.tmp"]
    assert (models / ".en-me5-small-10.a.tmp").is_dir() and not (models / ".en-me5-small-1.a.tmp").exists()
    assert store.remove_abandoned(models / "en-me5-small-2") == []  # its writer is alive (this process)


def test_a_digest_memo_is_kept_per_length(tmp_path, monkeypatch):
    # the memo's key holds the digest's length: a 16-character digest is never served where 32 were asked for
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    assert store.file_digest_memo(f) == store.file_digest(f)
    assert store.file_digest_memo(f, 32) == store.file_digest(f, 32) and len(store.file_digest_memo(f, 32)) == 32


def test_a_writer_that_cannot_be_signalled_is_alive_not_abandoned(tmp_path, monkeypatch):
    # os.kill(pid, 0) raises PermissionError for another user's live process: its half-written model is in use,
    # and pruning it would delete a training under way; only ProcessLookupError means the writer is gone
    import socket

    folder = tmp_path / ".en-me5-small-1.a.tmp"
    folder.mkdir()
    (folder / store.WRITER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid() + 1}))

    def kill(pid, sig, error):
        raise error

    monkeypatch.setattr(store.os, "kill", lambda pid, sig: kill(pid, sig, PermissionError(1, "not permitted")))
    assert store.abandoned(folder) is False
    monkeypatch.setattr(store.os, "kill", lambda pid, sig: kill(pid, sig, ProcessLookupError(3, "no such process")))
    assert store.abandoned(folder) is True
    monkeypatch.setattr(store.os, "kill", lambda pid, sig: None)  # alive, ours to signal
    assert store.abandoned(folder) is False


def test_a_rename_that_fails_with_no_copy_in_place_is_an_error_not_a_silent_loss(tmp_path, monkeypatch):
    # only a concurrent writer's copy at dest excuses a failed rename; otherwise the model just built would be
    # dropped without a word and the caller would go on as if it were saved
    import errno

    dest = tmp_path / "models" / "rm-abc"

    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(store.os, "replace", refuse)
    with pytest.raises(OSError, match="Permission denied"):
        with store.atomic_dir(dest) as tmp:
            (tmp / "w.bin").write_text("ours")
    monkeypatch.undo()
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # nothing half-made left behind


def test_a_lock_held_for_a_moment_is_waited_for_and_one_held_on_times_out(tmp_path):
    # `xlrm cache --prune` tests a run's lock for an instant: a run starting meanwhile must wait (up to its
    # timeout), not be refused at once; a lock held past the timeout is LockBusy, naming the holder
    import fcntl

    path = tmp_path / ".lock"
    path.write_text("4242 node3")  # another host's process
    other = open(path, "r+")  # another open file description: flock conflicts even within one process
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    said = []
    release = threading.Timer(0.3, lambda: fcntl.flock(other, fcntl.LOCK_UN))
    release.start()
    try:
        with store.file_lock(path, timeout=5.0, busy=lambda holder, waited: said.append((holder, waited))):
            assert path.read_text() == f"{os.getpid()} {socket.gethostname()}"
    finally:
        release.join()
    assert said == [("process 4242 on node3", 0.0)]
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(store.LockBusy, match=f"is locked by process {os.getpid()} on this host$") as e:
            with store.file_lock(path, timeout=0.3):
                pass
        assert e.value.holder == f"process {os.getpid()} on this host"
    finally:
        other.close()


@pytest.mark.parametrize("text, said", [
    ("4242 node3", "process 4242 on node3"),
    ("4242", "process 4242 (host not recorded)"),     # written before locks named their host: maybe another node
    (f"4242 {socket.gethostname()}", "process 4242 on this host"),
    ("", "an unknown process"), ("garbage here", "an unknown process"),
])
def test_lock_holder_words(text, said, monkeypatch):
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (  # pid 4242 runs here, in state S (sleeping)
        "4242 (python3) S 1 2 3" if str(self) == "/proc/4242/stat" else real(self, *a, **k)))
    assert store.lock_holder(text) == said


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_stopped_lock_holder_is_named_as_stopped_with_how_to_resume_it(tmp_path):
    # a training stopped with Ctrl-Z holds the lock and does nothing: a waiter only said "process N is training"
    path = tmp_path / ".rm.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from xlrm_lib import store\n"
        f"with store.file_lock({str(path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert holder.stdout.readline() == "held\n"
        os.kill(holder.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while "stopped" not in store.lock_holder(path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the state changes once the signal is delivered
        with pytest.raises(store.LockBusy) as e:
            with store.file_lock(path, timeout=0.2):
                pass
        assert e.value.holder == (f"process {holder.pid} on this host, stopped (Ctrl-Z? resume it with `fg` or "
                                  f"`kill -CONT {holder.pid}`, or end it)")
    finally:
        holder.kill()
        holder.wait()
    with store.file_lock(path, timeout=5):  # killed while stopped: the OS released its lock
        pass


def test_a_waiter_without_a_timeout_names_the_holder_again_every_reminder(tmp_path, monkeypatch):
    # a training can take hours; a hung holder showed as one line at the start of the wait, then silence
    import fcntl

    monkeypatch.setattr(store, "REMIND_S", 0.15)
    path = tmp_path / ".rm.lock"
    path.write_text("4242 node3")
    other = open(path, "r+")
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    said = []
    release = threading.Timer(0.8, lambda: fcntl.flock(other, fcntl.LOCK_UN))
    release.start()
    try:
        with store.file_lock(path, busy=lambda holder, waited: said.append((holder, waited))):
            pass
    finally:
        release.join()
        other.close()
    assert said[0] == ("process 4242 on node3", 0.0) and len(said) >= 3
    assert {h for h, _ in said} == {"process 4242 on node3"}
    waited = [w for _, w in said]
    assert waited == sorted(waited) and all(b - a >= 0.15 for a, b in zip(waited, waited[1:])), waited


def test_the_reward_caches_of_a_key_a_used_rm_shares_are_kept(cache):
    # reward files are named by the RM's card key: an unused copy under the key of a used RM (a copy of the
    # cache's folder, say) is pruned, the rewards that key names are the used RM's and stay
    root, outputs, other, old = cache
    copy = _model(root, "en-copy", "aaaa")
    plan = caches.prune_plan([outputs, other])
    assert copy in plan and root / "rewards" / "aaaa-1.npz" not in plan
    assert root / "rewards" / "bbbb-1.npz" in plan  # bbbb's only RM is unused: its rewards go with it


def test_a_cache_reached_through_a_link_keeps_the_rms_runs_name(cache, tmp_path):
    # runs name their RMs by the path they were trained under; the cache given through a symbolic link names the
    # same folders by other paths: they are compared resolved, else every used RM was listed as unused
    root, outputs, other, old = cache
    link = tmp_path / "linked-cache"
    link.symlink_to(root, target_is_directory=True)
    plan = caches.prune_plan([outputs, other], link)
    assert link / "models" / "en-aaaa" not in plan and link / "models" / "ko-cccc" not in plan
    assert link / "models" / "en-bbbb" in plan


def test_an_rm_a_run_names_by_a_path_relative_to_the_repository_is_kept(cache, tmp_path, monkeypatch):
    # a relative XLRM_CACHE gives relative model_dirs, which the kernels read from the repository root: the
    # cache command run from elsewhere must read them there too, not from its own working directory
    root, outputs, other, old = cache
    _used_by(outputs, "de", os.path.relpath(old, caches.REPO))
    monkeypatch.chdir(tmp_path)
    assert old not in caches.prune_plan([outputs, other])


def test_a_lock_file_without_a_host_does_not_claim_this_host(monkeypatch):
    # "4242" was written by an older xlrm, maybe on another node of a shared filesystem: this host's pid 4242 is
    # another process, and `kill -CONT 4242` would be advice about it
    real = store.Path.read_text
    monkeypatch.setattr(store.Path, "read_text", lambda self, *a, **k: (
        "4242 (sleep) T 1 2 3" if str(self) == "/proc/4242/stat" else real(self, *a, **k)))
    said = store.lock_holder("4242")
    assert "this host" not in said and "kill -CONT" not in said and "4242" in said
