"""The notebook cleaner and the git clean filter that keeps notebooks/ committed without outputs."""

import io
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from xlrm_lib import nbclean

from conftest import REPO


def _dirty_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata.update({"kernelspec": {"name": "xlrm", "display_name": "Python 3 (xlrm)", "language": "python"},
                        "language_info": {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"},
                        "widgets": {"state": {}}, "papermill": {"duration": 1.0}})
    params = nbformat.v4.new_code_cell("x = 1  # required", metadata={"tags": ["parameters"], "scrolled": True,
                                                                        "execution": {"iopub.status.busy": "t"}})
    params.execution_count = 4
    params.outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Título — 标题"), params]
    nbformat.write(nb, path)
    return nb


def test_clean_strips_outputs_counts_and_session_metadata(tmp_path):
    nb = _dirty_notebook(tmp_path / "a.ipynb")
    out = nbclean.clean(json.loads((tmp_path / "a.ipynb").read_text()))
    code = out["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert code["metadata"] == {"tags": ["parameters"]}
    assert code["id"] == nb.cells[1].id and "".join(code["source"]) == "x = 1  # required"
    assert out["metadata"] == {"kernelspec": nb.metadata.kernelspec, "language_info": {"name": "python"}}
    assert "".join(out["cells"][0]["source"]) == "# Título — 标题"
    nbformat.validate(nbformat.from_dict(out))  # still a valid notebook
    text = nbclean.dumps(out)
    assert nbclean.clean_text(text) == text  # idempotent


def test_committed_notebooks_are_clean():
    """What git holds for notebooks/ has no outputs (the index when this is a git checkout, else the files)."""
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        rel = path.relative_to(REPO).as_posix()
        shown = subprocess.run(["git", "show", f":{rel}"], cwd=REPO, capture_output=True, text=True)
        text = shown.stdout if shown.returncode == 0 else path.read_text(encoding="utf-8")
        assert nbclean.clean_text(text) == text, f"{rel} is committed with outputs or session metadata"


def test_cli_in_place_and_check(tmp_path, capsys):
    _dirty_notebook(tmp_path / "a.ipynb")
    assert nbclean.main(["--check", str(tmp_path / "a.ipynb")]) == 1
    assert "would clean" in capsys.readouterr().out
    assert nbclean.main([str(tmp_path / "a.ipynb")]) == 0
    assert nbclean.main(["--check", str(tmp_path / "a.ipynb")]) == 0
    assert nbformat.read(tmp_path / "a.ipynb", as_version=4).cells[1].outputs == []
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(SystemExit) as e:
        nbclean.main([str(tmp_path / "bad.ipynb")])
    assert e.value.code == 2
    assert (tmp_path / "bad.ipynb").read_text() == "{not json"  # left as it was


def test_filter_passes_non_notebooks_through(capsys):
    out = io.StringIO()
    assert nbclean._filter(io.StringIO("<<<<<<< HEAD\n{}"), out) == 0
    assert out.getvalue() == "<<<<<<< HEAD\n{}"  # a conflicted file is never lost
    assert "left unchanged" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_filter_commits_clean_and_keeps_the_working_copy(tmp_path):
    """The set-up of `make setup`: .gitattributes names the filter, git config points it at this module."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / ".gitattributes", repo / ".gitattributes")
    _dirty_notebook(repo / "notebooks" / "a.ipynb")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "config", "filter.xlrm-nbclean.clean", f"{sys.executable} -m xlrm_lib.nbclean"],
                   cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    stored = subprocess.run(["git", "show", ":notebooks/a.ipynb"], cwd=repo, capture_output=True, text=True,
                            check=True).stdout
    assert nbclean.clean_text(stored) == stored and '"outputs": []' in stored
    assert nbformat.read(repo / "notebooks" / "a.ipynb", as_version=4).cells[1].outputs  # still on disk
