"""One notebook execution: papermill in a Jupyter kernel (a kernel that fails to start, the port race of
several kernels on one host, is retried with jitter), and its offline HTML rendering."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
import time
from pathlib import Path

from . import store
from .grid import REPO, ParamError
from .store import DONE_FILE

log = logging.getLogger(__name__)

KERNEL_RACE = re.compile(r"Kernel died before replying|kernel_info|Address already in use|ZMQError|"
                         r"Kernel didn't respond|timed out waiting|failed to start", re.I)


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
            ip = os.path.join(tempfile.gettempdir(), f"{SOCKET_PREFIX}{uuid.uuid4().hex[:12]}")
            _SOCKETS.append(ip)  # and by remove_sockets after a stop (no shutdown then)
            return ip

    return IPCKernelManager



SOCKET_PREFIX = "xlrm-kernel-"  # in the temporary folder: <prefix><12 hex>-<n>, a kernel's IPC sockets
_SOCKETS: list[str] = []  # this process's kernels' socket paths, less the "-<n>"


def remove_sockets(own: bool = False) -> int:
    """Remove this process's kernels' socket files, and those in the temporary folder that nothing listens on
    any more and are over 10 minutes old (kernels of a killed run: ~1,400 had piled up here): a stop ends the
    kernels without their shutdown, which removes them. ``own``: this process's kernels' files too, unasked (they
    have ended: the process is exiting after a stop; a session's next run may still have some alive). Returns how
    many went."""
    import glob
    import socket
    import stat

    gone = 0
    for path in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), SOCKET_PREFIX + "*")):  # ours among them
        if not (own and any(path.startswith(ip + "-") for ip in _SOCKETS)):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISSOCK(st.st_mode) or st.st_mtime > time.time() - 600:
                continue  # not a socket (not ours to judge), or a kernel starting now (bound, not yet listening)
            with socket.socket(socket.AF_UNIX) as s:  # another run's live kernel: keep it
                s.settimeout(1.0)  # a listener that does not accept (a stopped process) is kept, not waited for
                try:
                    s.connect(path)
                    continue
                except ConnectionRefusedError:
                    pass  # a socket file no process listens on
                except OSError:
                    continue  # a listener that did not answer in time, or one we may not reach: kept
        try:
            os.unlink(path)
            gone += 1
        except OSError:
            pass
    return gone


def _record_output_path(written: Path, final: Path) -> None:
    """papermill records the notebook's output path in its metadata: the file it wrote as it went, which is
    renamed once finished; the record names the final one."""
    import nbformat

    try:
        nb = nbformat.read(written, as_version=4)
        nb.metadata.setdefault("papermill", {})["output_path"] = str(final)
        nbformat.write(nb, written)
    except Exception:  # noqa: BLE001 - a notebook papermill left unreadable (a killed kernel): kept as it is
        log.debug("could not record the output path of %s", written, exc_info=True)


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
        _record_output_path(tmp, target)
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
    result = {"status": "ok" if error is None else "failed", "finished": store.utc_stamp(),
              "seconds": round(time.time() - t0, 1), "notebook": str(target), "html": str(html) if html else None,
              "error": error}
    if error is None:
        for stale in (out / f"{name}.failed.ipynb", out / f"{name}.failed.html"):
            stale.unlink(missing_ok=True)
        metrics = out / store.METRICS_FILE  # as the notebook wrote it: a re-execution by hand rewrites it
        store.write_json(out / DONE_FILE, {"key": key, **result, "params": params,  # params: what pending reads
                                           **({"hub_commits": hub_commits} if hub_commits else {}),
                                           **({"metrics_digest": store.file_digest(metrics)} if metrics.is_file()
                                              else {})})
    return result


OFFLINE_TEMPLATE = Path(__file__).with_name("templates") / "offline.html.j2"


def render_html(nb_path: Path, html_path: Path, title: str | None = None) -> Path | None:
    """nbconvert the executed notebook to standalone HTML (plotly figures were embedded by their renderer), with
    nbconvert's lab template less its CDN scripts (:data:`OFFLINE_TEMPLATE`). ``title``: the page's title
    (default ``<stage>/<cell>``, from the folders: every page was titled "Notebook")."""
    if not nb_path.exists():
        return None
    store.write_text(html_path, html_page(nb_path, title or f"{html_path.parent.parent.name}/{html_path.parent.name}"))
    return html_path


def html_page(nb_path: Path, title: str, *, code: bool = True) -> str:
    """An executed notebook as one standalone HTML page (:func:`render_html`); ``code=False`` leaves out the code
    cells' inputs and the In/Out prompts: the markdown and the outputs, for readers of the results (the report
    ``xlrm run`` publishes at ``<run>/report.html``)."""
    import nbformat
    from nbconvert import HTMLExporter

    hide = {} if code else {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}
    body, _ = HTMLExporter(template_file=str(OFFLINE_TEMPLATE), **hide).from_notebook_node(
        nbformat.read(nb_path, as_version=4), resources={"metadata": {"name": title}})
    return body


def check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ParamError(f"kernel {kernel!r} is not installed; expected one of "
                         f"{sorted(manager.find_kernel_specs())} (--kernel, or `kernel:` in the params file)") from None
