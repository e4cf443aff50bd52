"""xlrm_lib.report with several seeds: paired tests stay within one run, and the spread across runs is reported.

Hand-built score tables: one category, 4 items on the target language, so every accuracy is a count / 4.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from xlrm_lib import report


def _rows(source, lang, correct, seed, backbone="bb"):
    """``correct``: 1 right, 0 wrong, 0.5 a tie (equal rewards, counted wrong)."""
    return [{"id": f"{lang}-{i}", "lang": lang, "category": "chat", "subset": "toy", "source": source,
             "reward_chosen": float(c), "reward_rejected": 0.5, "margin": float(c) - 0.5, "correct": c == 1,
             "tie": c == 0.5, "len_chosen": 3, "len_rejected": 3, "backbone": backbone, "seed": seed}
            for i, c in enumerate(correct)]


def _scores(seeds: dict[int, tuple[list[int], list[int]]]) -> pd.DataFrame:
    """``seed -> (English RM's correctness on ko, ko RM's correctness on ko)``; both RMs are right on all en items."""
    rows = []
    for seed, (en_on_ko, ko_on_ko) in seeds.items():
        rows += _rows("en", "ko", en_on_ko, seed) + _rows("ko", "ko", ko_on_ko, seed)
        rows += _rows("en", "en", [1, 1, 1, 1], seed) + _rows("ko", "en", [1, 1, 1, 1], seed)
    return pd.DataFrame(rows)


TWO_SEEDS = {42: ([1, 1, 1, 0], [1, 0, 0, 0]),   # en 0.75 - ko 0.25 = +0.50
             43: ([1, 0, 0, 0], [1, 1, 0, 0])}   # en 0.25 - ko 0.50 = -0.25


def test_one_seed_keeps_the_plain_headline():
    heads = report.headlines(_scores({42: TWO_SEEDS[42]}), n_boot=200)
    t = heads["native"]
    assert "seed" not in t.columns
    assert t.set_index("lang").loc["ko", "diff"] == pytest.approx(0.5)
    tabs = report.tables({"scores": _scores({42: TWO_SEEDS[42]})})
    assert "seed_summary" not in tabs
    assert tabs["key_numbers"]["english_minus_native_avg"]["diff"] == pytest.approx(0.5)
    assert 0 < tabs["key_numbers"]["english_minus_native_avg"]["p_value"] <= 1


def test_another_source_rm_is_named_where_the_english_one_was():
    # report: {english: ko} compared the ko RM with each target's own, under labels saying "English RM"
    tabs = report.tables({"scores": _scores({42: TWO_SEEDS[42]})}, english="ko")
    assert report.key_numbers_table(tabs["key_numbers"])["comparison"].tolist() == [
        "ko RM − native RM, mean over targets"]
    title = report.figures(tabs)["english_vs_native"].layout.title.text
    assert title.startswith("ko RM minus each target language's own RM") and "blue / red: the ko RM better" in title
    assert "English RM" not in title
    tabs = report.tables({"scores": _scores({42: TWO_SEEDS[42]})})  # the default: the English RM, said so
    assert report.key_numbers_table(tabs["key_numbers"])["comparison"].tolist() == [
        "English RM − native RM, mean over targets"] and "english" not in tabs["key_numbers"]
    assert report.figures(tabs)["english_vs_native"].layout.title.text.startswith("English RM minus")


def test_two_seeds_are_tested_apart_and_summarised():
    scores = _scores(TWO_SEEDS)
    t = report.headlines(scores, n_boot=200)["native"]
    assert sorted(set(zip(t["backbone"], t["seed"]))) == [("bb", 42), ("bb", 43)]
    ko = t[t["lang"] == "ko"].set_index("seed")
    assert ko.loc[42, "diff"] == pytest.approx(0.5) and ko.loc[43, "diff"] == pytest.approx(-0.25)
    assert (ko["n"] == 4).all()  # each paired test sees its own 4 items, not 8 or 16 mixed ones
    assert ko.loc[42, "only_a"] == 2 and ko.loc[42, "only_b"] == 0  # items 1, 2: en right, ko wrong

    tabs = report.tables({"scores": scores})
    summary = tabs["seed_summary"].set_index("comparison").loc["native"]
    assert summary["runs"] == 2
    assert summary["mean_diff"] == pytest.approx(0.125)
    assert summary["sd_diff"] == pytest.approx(math.sqrt(((0.5 - 0.125) ** 2 + (-0.25 - 0.125) ** 2) / 1))
    assert (summary["min_diff"], summary["max_diff"]) == pytest.approx((-0.25, 0.5))
    assert summary["per_run"] == {"bb-s42": 0.5, "bb-s43": -0.25}
    key = tabs["key_numbers"]["english_minus_native_avg"]
    assert key["diff"] == pytest.approx(0.125) and key["per_run"] == [0.5, -0.25]
    assert tabs["matrix"].loc["en", "ko"] == pytest.approx(0.5)  # pooled over the two seeds: (0.75 + 0.25) / 2
    figs = report.figures(tabs)  # which the matrix and the categories said nowhere
    assert all("pooled over seeds 42, 43" in figs[f].layout.title.text for f in ("transfer_matrix", "categories"))
    assert "per seed," in figs["english_vs_native"].layout.title.text


def test_the_report_notebook_shows_every_figure_and_table():
    """A figure report.figures draws but no cell of report.ipynb shows is written to figures/ and missing from
    report.html; a table save_tables writes outside REPORT_CSV would be left stale by a later report."""
    from xlrm_lib import preflight

    from xlrm_lib.grid import REPO

    source = "".join(c["source"] for c in preflight.notebook_cells(REPO / "notebooks" / "report.ipynb"))
    assert [f for f in report.FIGURES if f'figures.get("{f}")' not in source] == []
    for name in ("transfer_matrix", "accuracy", "english_vs_native", "seed_summary", "key_numbers",
                 *report.AS_THEY_ARE):
        assert report.REPORT_CSV.fullmatch(f"{name}.csv")


def test_a_table_the_report_could_not_remove_later_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "AS_THEY_ARE", (*report.AS_THEY_ARE, "diagonal"))  # added, REPORT_CSV not rebuilt
    with pytest.raises(AssertionError, match=r"\['diagonal.csv'\] missing from report.REPORT_CSV"):
        report.save_tables(tmp_path, {"diagonal": pd.DataFrame({"a": [1]})})


def test_seed_figure_has_one_trace_per_seed():
    from xlrm_lib import plots

    t = report.headlines(_scores(TWO_SEEDS), n_boot=200)["native"]
    fig = plots.english_vs_target_bars(t)
    assert sorted(tr.name for tr in fig.data) == ["seed 42", "seed 43"]


def test_two_backbones_are_kept_apart():
    # two backbones are two models: the transfer matrix, accuracies, key numbers and figures must not pool them
    a = _scores({42: TWO_SEEDS[42]})                                      # en on ko 0.75, ko on ko 0.25
    b = _scores({42: TWO_SEEDS[43]}).assign(backbone="org/Other-3B")    # en on ko 0.25, ko on ko 0.50
    tabs = report.tables({"scores": pd.concat([a, b], ignore_index=True)})
    m = tabs["matrix"]
    assert m.loc["bb · en", "ko"] == pytest.approx(0.75) and m.loc["Other-3B · en", "ko"] == pytest.approx(0.25)
    assert set(tabs["accuracy"]["source"]) == {"bb · en", "bb · ko", "Other-3B · en", "Other-3B · ko"}
    key = tabs["key_numbers"]["by_backbone"]
    assert key["bb"]["english_minus_native_avg"]["diff"] == pytest.approx(0.5)
    assert key["Other-3B"]["english_minus_native_avg"]["diff"] == pytest.approx(-0.25)
    assert key["bb"]["english_row"]["ko"] == pytest.approx(0.75)
    assert "seed_summary" not in tabs  # one seed per backbone: no spread across seeds to show
    fig = report.figures(tabs)["english_vs_native"]  # the report names each backbone's bars, shortly
    assert "per backbone," in fig.layout.title.text  # not "per seed": there is one
    assert sorted(tr.name for tr in fig.data) == ["Other-3B", "bb"]


def test_probe_lines_of_two_backbones_are_apart():
    cka = pd.DataFrame({"model": ["en", "en", "en", "en"], "layer": [0, 1, 0, 1], "cka": [1.0, 0.9, 1.0, 0.8],
                        "cell": ["probe/a-s42", "probe/a-s42", "probe/b-s42", "probe/b-s42"]})
    tabs = report.tables({"scores": pd.DataFrame(), "probe": {"cka": cka}})
    assert sorted(set(tabs["probe_cka"]["model"])) == ["a-s42 · en", "b-s42 · en"]


def test_seeds_without_a_backbone_column():
    # a library caller's scores may carry seeds and no backbone: one model, several runs
    tabs = report.tables({"scores": _scores(TWO_SEEDS).drop(columns="backbone")})
    assert tabs["seed_summary"].set_index("comparison").loc["native", "runs"] == 2


def test_backbones_that_share_a_last_name_keep_their_paths():
    assert report.backbone_labels(["/x/a/llama", "/x/b/llama"]) == {"/x/a/llama": "/x/a/llama", "/x/b/llama": "/x/b/llama"}
    assert report.backbone_labels(["Qwen/Qwen2.5-3B", "meta-llama/Llama-3.2-3B"]) == {
        "Qwen/Qwen2.5-3B": "Qwen2.5-3B", "meta-llama/Llama-3.2-3B": "Llama-3.2-3B"}


def test_key_numbers_read_as_points_and_tables_as_people_read_them():
    key = {"english_minus_native_avg": {"diff": 0.0164, "ci": [-0.0357, 0.0699], "p_value": 0.6032},
           "english_minus_translated_avg": {"diff": 0.02, "sd": 0.01, "per_run": [0.01, 0.03]}}
    t = report.key_numbers_table(key)
    assert t["points"].tolist() == [1.6, 2.0] and t.loc[0, "ci_low"] == -3.6 and t.loc[1, "sd"] == 1.0
    assert t.loc[0, "p_value"] == 0.603  # the sign-flip test of that average, beside its interval
    # (1.960 + 0.842) x SE, SE = 10.56 points / (2 x 1.960): 7.5 points, the least these items would show 4 times in 5
    assert t.loc[0, "detectable"] == 7.5
    same = report.key_numbers_table({"english_minus_native_avg": {"diff": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}})
    assert "detectable" not in same  # RMs with the same verdict on every item: an interval of no width, no power
    assert "backbone" not in t.columns and report.key_numbers_table(None).empty
    two = report.key_numbers_table({"by_backbone": {"a": key, "b": key}})
    assert two["backbone"].tolist() == ["a", "a", "b", "b"]
    head = pd.DataFrame({"lang": ["ko", "average"], "b": ["ko", "{lang}-mt"], "diff": [0.012345, 0.5]})
    assert report.readable(head)["b"].tolist() == ["ko", "<target>-mt"] and report.readable(head)["diff"][0] == 0.012


def test_the_report_csvs_spell_the_average_rows_target_as_people_read_it(tmp_path):
    head = pd.DataFrame({"lang": ["ko", "average"], "a": ["en", "en"], "b": ["ko", "{lang}-mt"], "diff": [0.0125, 0.5]})
    win = pd.DataFrame({"lang": ["average"], "b": ["{lang}"], "win_rate": [0.55]})
    report.save_tables(tmp_path, {"headlines": {"translated": head}, "accuracy": pd.DataFrame({"x": [1]}),
                                  "align_native": win})
    out = pd.read_csv(tmp_path / "english_vs_translated.csv")
    assert out["b"].tolist() == ["ko", "<target>-mt"] and out["diff"].tolist() == [0.0125, 0.5]  # not rounded
    assert pd.read_csv(tmp_path / "align_native.csv")["b"].tolist() == ["<target>"]
    assert head["b"].tolist() == ["ko", "{lang}-mt"]  # the caller's table is left as it was
    report.save_tables(tmp_path, {"key_numbers": {"english_minus_native_avg": {"diff": 0.0164, "ci": [-0.0357, 0.0699],
                                                                           "p_value": 0.6032}}})
    key = pd.read_csv(tmp_path / "key_numbers.csv")  # the header's numbers, in points, with `detectable`
    assert key[["points", "ci_low", "ci_high", "p_value", "detectable"]].values.tolist() == [[1.6, -3.6, 7.0, 0.603, 7.5]]
    assert not (tmp_path / "english_vs_translated.csv").exists()  # an earlier report's table this one lacks


def test_run_header_says_what_was_run(tmp_path):
    rep = {"run": "default", "params": {"run": "default", "description": "8 languages", "backbones": ["me5-small"],
                                        "langs": ["en", "ko"], "translated": [{"from": "en", "to": "es"}],
                                        "train": {"lr": 1e-4, "epochs": 3.0}}}
    h = report.run_header(rep).set_index("field")["value"]
    assert h["description"] == "8 languages" and h["RM languages"] == "en, ko"
    assert h["translate-train RMs"] == "en->es (apertium)" and h["training"] == "lr 0.0001, epochs 3.0"
    assert report.run_header({"run": "x"}).empty
    # the other stages' settings, and when the notebooks were made (a kept one can be days older)
    rep["params"].update(evaluate={"bf16": True, "batch_size": 8}, probe={"langs": ["en", "ko"], "pooling": "cls"},
                         align={"n": 8, "judge": "x/judge-rm", "policy": "Qwen/Qwen2.5-7B-Instruct"})
    rep["runs"] = pd.DataFrame({"finished": ["2026-11-27T19:11:08", None, "2026-11-26T08:00:00"]})
    h = report.run_header(rep).set_index("field")["value"]
    assert (h["evaluation"], h["probe"], h["best-of-n"]) == ("batch_size 8, bf16 True", "langs [en, ko], pooling cls",
                                                             "n 8, judge x/judge-rm, policy Qwen/Qwen2.5-7B-Instruct")
    rep["params"].update(eval_langs=["ko", "de"], train={"lr": 1e-4, "bf16": False, "lora_r": 4,
                                                         "freeze_embeddings": False})
    h = report.run_header(rep).set_index("field")["value"]
    assert h["evaluation languages"] == "ko, de"  # top-level: the evaluate section may not set it
    assert h["training"] == "lr 0.0001, bf16 False, freeze_embeddings False, lora_r 4"
    assert h["notebooks finished"] == "2026-11-26T08:00:00 to 2026-11-27T19:11:08"
    rep["runs"] = pd.DataFrame({"finished": ["2026-11-28T10:40:57Z", "2026-11-28T10:44:30Z"]})  # UTC since
    assert report.run_header(rep).set_index("field")["value"]["notebooks finished"] == (
        "2026-11-28T10:40:57 to 2026-11-28T10:44:30 UTC")
    software = "python 3.11.7, xlrm 0.1.0, torch 2.13.0+cpu, transformers 5.24.0, datasets 5.2.0, peft 0.21.2"
    shown = report.full_width(pd.DataFrame({"field": ["software"], "value": [software]})).to_html()
    assert software in shown  # whole: pandas' display cut it at 50 characters, transformers' version with it


def test_run_header_says_which_code_made_the_notebooks_and_how_the_rms_were_trained():
    # a report looked the same whatever code made it, and showed only the training settings the params file set
    # (a smoke run's `limit: 16` and the default run's bf16 'auto' = on were invisible)
    code = {"library": "ab12", "commit": "02bc0f05c86e", "edited": []}
    edited = {"library": "cd34", "commit": "02bc0f05c86e", "edited": ["xlrm_lib/report.py"]}
    card = {"recipe": {"lr": 1e-4, "epochs": 1.0, "bf16": None, "template": "auto", "max_length": 256},
            "format": {"template": "plain", "max_length": 128, "truncation_side": "left"},
            "runtime": {"device": "cpu", "threads": 2, "bf16": True, "processes": 1}}
    rep = {"params": {"run": "x", "train": {"lr": 1e-4}}, "runs": pd.DataFrame({"code": [code, code, edited]}),
           "train": pd.DataFrame([{"rm_name": "en", "n_pairs": 16, **card}, {"rm_name": "ko", "n_pairs": 12, **card}])}
    h = report.run_header(rep).set_index("field")["value"]
    assert h["code"] == ("git 02bc0f05c86e, library ab12 (2 notebooks); git 02bc0f05c86e with uncommitted changes "
                         "to xlrm_lib/report.py, library cd34 (1 notebook)")
    assert h["training (as trained)"] == "lr 0.0001, epochs 1.0, bf16 True, text plain, max_length 128, truncation left"
    assert h["training ran on"] == "cpu, 2 threads, 1 process" and h["training pairs"] == "en 16, ko 12"
    assert "training" not in h  # the params file's subset gives way to the cards
    rep["train"] = pd.DataFrame([{"rm_name": "en", "n_pairs": 16, **card},  # RMs trained differently: both values
                                 {"rm_name": "ko", "n_pairs": 16, **card, "recipe": {**card["recipe"], "lr": 5e-5}}])
    assert report.run_header(rep).set_index("field")["value"]["training (as trained)"].startswith("lr 0.0001 / 5e-05,")
    two = pd.DataFrame([{"rm_name": "en", "n_pairs": 16, "seed": 1, **card}, {"rm_name": "en", "n_pairs": 12,
                                                                              "seed": 2, **card}])
    assert dict(report.as_trained(two))["training pairs"] == "s1 en 16, s2 en 12"  # one seed's en hid the other's
    old = pd.concat([two, pd.DataFrame([{"rm_name": "ko", "n_pairs": 9, "seed": 1}])], ignore_index=True)
    assert dict(report.as_trained(old))["training (as trained)"].startswith("2 of 3 RMs (the others' notebooks")
    assert report.code_line(pd.DataFrame({"code": [None]})) is None  # notebooks from before it: no row
    assert report.code_line(pd.DataFrame({"code": [{"library": "ab12", "commit": None, "edited": []}]})) == (
        "not a git checkout, library ab12")


def test_results_tables_show_without_row_numbers_nan_or_padding_and_render_the_same_twice():
    table = pd.DataFrame({"lang": ["ko", "average"], "diff": [0.01636, 0.05], "p_holm": [1.0, float("nan")]})
    html = report.shown(table).to_html()
    assert ">0.016<" in html and ">0.05<" in html and "nan" not in html.lower() and ">1<" in html
    assert "row_heading" not in html  # the pandas index 0, 1, ... is not a column of the report
    assert html == report.shown(table).to_html()  # content-named CSS ids: two renders diff only where results do
    assert report.shown(None) is None and report.shown(table.iloc[:0]) is None
    tiny = report.shown(pd.DataFrame({"p_value": [1 / 2001], "n": [1234567.0]})).to_html()
    assert ">0.0005<" in tiny and ">1234567<" in tiny  # not "0" (3 decimals) nor 1.23457e+06


def test_runs_table_links_from_the_report_notebooks_folder(tmp_path):
    runs = pd.DataFrame([{"stage": "train", "cell": "train/a", "seconds": 3.0, "notebook_html": "train/a/t.html"}])
    assert 'href="../train/a/t.html"' in report.runs_table_html(runs)
    # the template open in JupyterLab reads its links from notebooks/ (the kernel started there): they pointed
    # one folder above it, not into the run
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    assert 'href="../outputs/default/train/a/t.html"' in report.runs_table_html(
        runs, run_dir=repo / "outputs" / "default", from_dir=repo / "notebooks")
    assert 'href="../train/a/t.html"' in report.runs_table_html(  # xlrm run: rendered in <run>/report
        runs, run_dir=repo / "outputs" / "default", from_dir=repo / "outputs" / "default" / "report")


def test_collect_refuses_an_empty_run_dir():
    with pytest.raises(ValueError, match="run_dir is empty: set it in the notebook's parameters cell"):
        report.collect("")


def test_collect_says_where_it_looked_for_a_relative_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # papermill run by hand from another folder: relative to there, not the repository
    with pytest.raises(FileNotFoundError) as err:
        report.collect("outputs/default")
    assert f"looked in {tmp_path.resolve() / 'outputs' / 'default'}" in str(err.value)


def test_run_header_takes_single_values_for_grid_axes():
    h = report.run_header({"params": {"run": "x", "seeds": 7, "backbones": "me5-small", "langs": "en"}})
    h = h.set_index("field")["value"]
    assert (h["seeds"], h["backbones"], h["RM languages"]) == ("7", "me5-small", "en")


def _cell(run_dir, name, source, correct, *, done=True, **metrics):
    """A finished evaluate cell folder: its scores table, metrics.json and (if done) the runner's _done.json."""
    from xlrm_lib import store

    d = run_dir / name
    d.mkdir(parents=True)
    pd.DataFrame(_rows(source, "ko", correct, 42)).to_parquet(d / "scores.parquet")
    store.write_json(d / "metrics.json", {"kind": "evaluate", "rm_name": source, "tables": {"scores": "scores.parquet"},
                                           **metrics})
    if done:
        store.write_json(d / store.DONE_FILE, {"key": "k", "seconds": 1.0})


def test_collect_reads_only_this_grids_finished_cells(tmp_path):
    """A language dropped from the grid, or a cell that did not finish this time, leaves a folder with results of
    other settings: they must not enter the report (they did: every */*/metrics.json was read)."""
    from xlrm_lib import store

    _cell(tmp_path, "evaluate/bb-s42-en", "en", [1, 1, 1, 0])
    _cell(tmp_path, "evaluate/bb-s42-ko", "ko", [1, 0, 0, 0])       # dropped from the grid since
    _cell(tmp_path, "evaluate/bb-s42-es", "es", [0, 0, 0, 0], done=False)  # in the grid, unfinished this time
    store.write_json(tmp_path / store.PLAN_FILE, {"cells": ["evaluate/bb-s42-en", "evaluate/bb-s42-es", "report"]})
    (tmp_path / "report").mkdir()  # a rerun: the report's own metrics of last time, its _done.json removed
    store.write_json(tmp_path / "report" / "metrics.json", {"kind": "report"})
    rep = report.collect(tmp_path)
    assert sorted(rep["scores"]["source"].unique()) == ["en"]
    assert rep["ignored"] == ["evaluate/bb-s42-es", "evaluate/bb-s42-ko"]
    header = report.run_header({**rep, "params": {"run": "x"}}).set_index("field")["value"]
    assert header["not in this grid or unfinished (left out)"] == "evaluate/bb-s42-es, evaluate/bb-s42-ko"
    # a notebook that failed this time is said to, with the rendered notebook that says why; one that failed in
    # an earlier run (rendered before this run's plan) and was not run now is only unfinished
    old = tmp_path / "evaluate/bb-s42-es/evaluate_transfer.failed.html"
    old.write_text("<html/>")
    os.utime(old, (1, 1))
    assert report.collect(tmp_path)["failed"] == {}
    os.utime(old)
    rep = report.collect(tmp_path)
    assert rep["ignored"] == ["evaluate/bb-s42-ko"]
    header = report.run_header({**rep, "params": {"run": "x"}}).set_index("field")["value"]
    assert header["failed (left out; its notebook says why)"] == (
        "evaluate/bb-s42-es (evaluate/bb-s42-es/evaluate_transfer.failed.html)")
    (tmp_path / store.PLAN_FILE).unlink()  # notebooks run by hand into a folder: everything there is read
    assert sorted(report.collect(tmp_path)["scores"]["source"].unique()) == ["en", "es", "ko"]


def test_report_outputs_of_an_earlier_report_are_removed(tmp_path):
    import plotly.graph_objects as go

    (tmp_path / "english_vs_translated.csv").write_text("stale")
    (tmp_path / "notes.csv").write_text("not the report's")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "best_of_n_translated.html").write_text("stale")
    (tmp_path / "figs" / "plotly.min.js").write_text("js")
    report.save_tables(tmp_path, {"probe_summary": pd.DataFrame({"model": ["base"]})})
    report.write_figures({"cka_by_layer": go.Figure()}, tmp_path / "figs")
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["notes.csv", "probe_summary.csv"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["cka_by_layer.html", "plotly.min.js"]


def test_models_evaluated_as_they_are_get_their_own_rows_and_stay_out_of_the_headline(tmp_path):
    _cell(tmp_path, "evaluate/pretrained-s42-en", "en", [1, 1, 1, 0], model_dir="/cache/en", pretrained=False)
    _cell(tmp_path, "evaluate/pretrained-s42-ko", "ko", [1, 0, 0, 0], model_dir="/cache/ko", pretrained=False)
    assert sorted(report.collect(tmp_path)["scores"]["source"].unique()) == ["en", "ko"]  # backbone 'org/pretrained'
    import shutil

    shutil.rmtree(tmp_path / "evaluate")
    _cell(tmp_path, "evaluate/bb-s42-en", "en", [1, 1, 1, 0], model_dir="/cache/en", pretrained=False)
    _cell(tmp_path, "evaluate/bb-s42-ko", "ko", [1, 0, 0, 0], model_dir="/cache/ko", pretrained=False)
    _cell(tmp_path, "pretrained/sky", "sky", [1, 1, 0, 0], model_dir="Org/Sky-RM", model_kind="rm",
          pretrained=False)  # an RM another xlrm run trained (it has a card), listed under the params' `pretrained`
    _cell(tmp_path, "pretrained/judge", "judge", [0, 0, 0.5, 1], model_dir="Org/LM", model_kind="judge",
          pretrained=True)
    rep = report.collect(tmp_path)
    assert sorted(rep["scores"]["source"].unique()) == ["en", "ko"]
    assert sorted(rep["pretrained_scores"]["source"].unique()) == ["judge", "sky"]
    t = report.tables(rep)
    assert t["headlines"]["native"].set_index("lang").loc["ko", "diff"] == pytest.approx(0.5)  # en 3/4 - ko 1/4
    assert list(t["matrix"].index) == ["en", "ko", "judge", "sky"]  # trained rows first
    assert t["matrix"]["ko"].to_dict() == {"en": 0.75, "ko": 0.25, "judge": 0.25, "sky": 0.5}
    assert list(t["key_numbers"]["diagonal"]) == ["ko"]
    assert t["pretrained"].to_dict("records") == [
        {"name": "judge", "kind": "judge", "model": "Org/LM", "ko": 0.25, "mean": 0.25, "tied": 0.25,
         "mean_ties_as_half": 0.375},
        {"name": "sky", "kind": "rm", "model": "Org/Sky-RM", "ko": 0.5, "mean": 0.5, "tied": 0.0, "mean_ties_as_half": 0.5}]
    report.save_tables(tmp_path / "report", t)
    assert (tmp_path / "report" / "pretrained.csv").exists()
    import shutil

    shutil.rmtree(tmp_path / "evaluate")  # a run of pretrained models only: their matrix, table and heatmap
    t = report.tables(report.collect(tmp_path))
    assert list(t["matrix"].index) == ["judge", "sky"] and "headlines" not in t and "accuracy" not in t
    assert list(report.figures(t)) == ["transfer_matrix"]
    report.save_tables(tmp_path / "report", t)
    assert sorted(p.name for p in (tmp_path / "report").glob("*.csv")) == ["pretrained.csv", "transfer_matrix.csv"]


def test_the_run_header_says_which_software_made_the_results():
    a = {"python": "3.11.7", "torch": "2.13.0", "peft": None}
    b = {"python": "3.11.7", "torch": "2.12.0", "peft": None}
    one = pd.DataFrame({"cell": ["x", "y"], "software": [a, a]})
    assert report.software_line(one) == "python 3.11.7, torch 2.13.0"  # an uninstalled package is left out
    mixed = pd.DataFrame({"cell": ["x", "y", "z"], "software": [a, b, a]})
    assert report.software_line(mixed) == ("python 3.11.7, torch 2.13.0 (2 notebooks); "
                                          "python 3.11.7, torch 2.12.0 (1 notebook)")
    assert report.software_line(pd.DataFrame({"cell": ["x"]})) is None  # notebooks from before it was recorded
    header = report.run_header({"params": {"run": "r"}, "runs": one}).set_index("field")["value"]
    assert header["software"] == "python 3.11.7, torch 2.13.0"


def test_every_notebooks_metrics_record_the_software_that_made_them(tmp_path):
    from xlrm_lib import store, study

    path = study.save_outputs(tmp_path, {"kind": "evaluate"})
    software = json.loads(path.read_text())["software"]
    assert software == store.library_versions() and software["torch"] and list(software) == list(store.SOFTWARE)
    assert "hub_commits" not in json.loads(path.read_text())  # by hand: nothing pinned
    code = json.loads(path.read_text())["code"]  # and the code: a report could not tell an edited library's
    assert code == store.code_version() and len(code["library"]) == 16
    import subprocess

    head = subprocess.run(["git", "-C", str(Path(store.__file__).parents[1]), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    assert code["commit"] == (head.stdout[:12] if head.returncode == 0 else None)


def test_the_hub_commits_a_notebook_read_are_in_its_metrics_and_the_reports_header(tmp_path, monkeypatch):
    # the commits were only hashed into the cells' keys: no output said which cut of M-RewardBench was scored
    from xlrm_lib import hub, study

    pins = {"CohereLabsCommunity/multilingual-reward-bench": "a" * 40, "Qwen/Qwen2.5-3B-Instruct": "b" * 40}
    monkeypatch.setenv(hub.PINS_ENV, json.dumps({**pins, "org/odd": "not-a-commit"}))
    path = study.save_outputs(tmp_path, {"kind": "evaluate"})
    assert json.loads(path.read_text())["hub_commits"] == pins
    runs = pd.DataFrame({"cell": ["evaluate/a", "train/a"], "hub_commits": [pins, {}]})
    header = report.run_header({"params": {"run": "r"}, "runs": runs}).set_index("field")["value"]
    assert header["hub commits"] == ("CohereLabsCommunity/multilingual-reward-bench@aaaaaaaaaaaa, "
                                      "Qwen/Qwen2.5-3B-Instruct@bbbbbbbbbbbb")


def test_a_report_made_by_hand_from_another_run_keeps_its_figures_apart(tmp_path):
    run = tmp_path / "outputs" / "default"
    assert report.figures_dir(run) == run / "figures"
    assert report.figures_dir(run, run / "report") == run / "figures"  # the run's own report (as xlrm run sets it)
    assert report.figures_dir(str(run) + "/", tmp_path / "outputs" / "default" / "x" / ".." / "report") == run / "figures"
    mine = tmp_path / "scratch" / "report"
    assert report.figures_dir(run, mine) == mine / "figures"  # not the run's: it would rewrite and remove them


def test_best_of_n_of_several_backbones_is_drawn_apart():
    # two backbones' English-vs-ko win rates were one trace named "en", two bars on one category, no legend
    t = pd.DataFrame({"lang": ["ko", "ko"], "a": "en", "b": "ko", "judge": "gold", "win_rate": [0.5, 0.625],
                      "ci_low": [0.4, 0.5], "ci_high": [0.6, 0.7],
                      "cell": ["align/me5-small-s42", "align/gemma3-270m-s42"]})
    tabs = report.tables({"scores": pd.DataFrame(), "align": {"headline_native": t}})
    assert tabs["align_native"]["a"].tolist() == ["me5-small-s42 · en", "gemma3-270m-s42 · en"]
    fig = report.figures(tabs)["best_of_n_native"]
    assert sorted(tr.name for tr in fig.data) == ["gemma3-270m-s42 · en", "me5-small-s42 · en"]
    assert fig.layout.showlegend


def test_the_english_rm_is_named_as_the_run_names_it_or_said_to_be_missing(caplog):
    # run by hand, `-p english EN` left the headline sections empty without a word
    scores = _scores({42: TWO_SEEDS[42]})
    expected = report.tables({"scores": scores})["headlines"]["native"]
    pd.testing.assert_frame_equal(report.tables({"scores": scores}, english="EN")["headlines"]["native"], expected)
    with caplog.at_level("WARNING", logger="xlrm_lib.report"):
        tabs = report.tables({"scores": scores}, english="de")
    assert tabs["headlines"] == {} and "english = 'de' is not an RM of this run (its RMs: en, ko)" in caplog.text


def test_an_empty_section_says_why():
    note = report.or_note(None, "best-of-n was not run in this grid")
    assert note.data == "*best-of-n was not run in this grid*"
    assert report.or_note(pd.DataFrame(), "none").data == "*none*"
    table = pd.DataFrame({"a": [1]})
    assert report.or_note(table, "none") is table


def test_a_finished_cell_whose_table_was_cut_short_is_not_finished(tmp_path):
    # a truncated scores.parquet was kept ("skipped"), and the report failed on it at every run
    from xlrm_lib import store, study

    study.save_outputs(tmp_path, {"kind": "evaluate"}, {"scores": pd.DataFrame({"reward": [0.5, 1.5]})})
    for name in ("evaluate_transfer.ipynb", "evaluate_transfer.html"):
        (tmp_path / name).write_text("x")
    (tmp_path / "_done.json").write_text(json.dumps({"key": "k", "notebook": "evaluate_transfer.ipynb",
                                                     "html": "evaluate_transfer.html"}))
    assert store.finished_record(tmp_path)["key"] == "k"
    scores = tmp_path / "scores.parquet"
    scores.write_bytes(scores.read_bytes()[:-20])
    assert store.finished_record(tmp_path) == {}


def test_a_finished_cell_whose_table_was_edited_to_the_same_size_is_not_finished(tmp_path):
    # 0.7083 -> 0.9083 in accuracy.csv was kept: the report then read the edited numbers, its HTML the old ones
    from xlrm_lib import store, study

    study.save_outputs(tmp_path, {"kind": "evaluate"}, {"accuracy.csv": pd.DataFrame({"accuracy": [0.7083]})})
    (tmp_path / "evaluate_transfer.ipynb").write_text("x")
    (tmp_path / "_done.json").write_text(json.dumps({"key": "k", "notebook": "evaluate_transfer.ipynb"}))
    assert store.finished_record(tmp_path)["key"] == "k"
    table = tmp_path / "accuracy.csv"
    table.write_text(table.read_text().replace("0.7083", "0.9083"))
    assert store.finished_record(tmp_path) == {}
    table.write_text(table.read_text().replace("0.9083", "0.7083"))  # as written: finished again
    assert store.finished_record(tmp_path)["key"] == "k"


def test_a_finished_cell_whose_metrics_were_rewritten_is_not_finished(tmp_path):
    # its rendered notebook re-executed in the run folder with another parameter wrote new tables and a metrics.json
    # that agrees with them: `xlrm run` kept the cell, and the report read numbers its HTML did not show
    from xlrm_lib import store, study

    study.save_outputs(tmp_path, {"kind": "evaluate", "rm_name": "en"}, {"accuracy.csv": pd.DataFrame({"a": [0.7]})})
    (tmp_path / "evaluate_transfer.ipynb").write_text("x")
    done = {"key": "k", "notebook": "evaluate_transfer.ipynb"}
    (tmp_path / "_done.json").write_text(json.dumps({**done, "metrics_digest": store.file_digest(
        tmp_path / "metrics.json")}))
    assert store.finished_record(tmp_path)["key"] == "k"
    study.save_outputs(tmp_path, {"kind": "evaluate", "rm_name": "ko"}, {"accuracy.csv": pd.DataFrame({"a": [0.6]})})
    assert store.finished_record(tmp_path) == {}
    (tmp_path / "_done.json").write_text(json.dumps(done))  # a record of an earlier version, without the digest
    assert store.finished_record(tmp_path)["key"] == "k"


def test_a_finished_cell_whose_table_was_deleted_is_not_finished(tmp_path):
    # the size check skips a table that is not there: only the existence check makes a deleted scores.parquet
    # run the cell again (else it was kept, and its dependants and the report failed on the missing file)
    from xlrm_lib import store, study

    study.save_outputs(tmp_path, {"kind": "evaluate"}, {"scores": pd.DataFrame({"reward": [0.5, 1.5]})})
    (tmp_path / "evaluate_transfer.ipynb").write_text("x")
    (tmp_path / "_done.json").write_text(json.dumps({"key": "k", "notebook": "evaluate_transfer.ipynb"}))
    assert store.finished_record(tmp_path)["key"] == "k"
    (tmp_path / "scores.parquet").unlink()
    assert store.finished_record(tmp_path) == {}


def test_the_header_lists_every_commit_the_runs_cells_read():
    runs = pd.DataFrame({"cell": ["evaluate/a", "evaluate/b"],
                         "hub_commits": [{"org/bench": "a" * 40}, {"org/bench": "b" * 40}]})  # kept cells of a re-cut
    header = report.run_header({"params": {"run": "r"}, "runs": runs}).set_index("field")["value"]
    assert header["hub commits"] == "org/bench@aaaaaaaaaaaa and bbbbbbbbbbbb"


# ----------------------------------------------------------------------------------- gaps a mutation review found
def test_seed_summary_counts_the_runs_whose_interval_excludes_0_each_way():
    avg = pd.DataFrame({"lang": "average", "backbone": "bb", "seed": [1, 2, 3], "diff": [0.1, -0.1, 0.01],
                        "ci_low": [0.02, -0.2, -0.05], "ci_high": [0.18, -0.01, 0.07]})
    row = report.seed_summary({"native": avg}).iloc[0]
    # seed 1's interval lies above 0, seed 2's below, seed 3's holds 0: one run each way, not 2 and 2
    assert (row["runs_ci_above_0"], row["runs_ci_below_0"]) == (1, 1)


def test_key_numbers_of_one_run_hand_computed():
    # 8 ko items: en RM 7/8, ko RM 5/8; a 'de' evaluation that no RM was trained for has no diagonal cell
    rows = (_rows("en", "ko", [1, 1, 1, 1, 1, 1, 1, 0], 42) + _rows("ko", "ko", [1, 1, 1, 1, 1, 0, 0, 0], 42)
            + _rows("en", "en", [1, 1, 1, 1], 42) + _rows("ko", "en", [1, 1, 1, 1], 42)
            + _rows("en", "de", [1, 0, 0, 0], 42) + _rows("ko", "de", [1, 1, 0, 0], 42))
    key = report.tables({"scores": pd.DataFrame(rows)})["key_numbers"]
    assert key["diagonal"] == {"en": 1.0, "ko": 0.625}  # three decimals: 0.625, not 0.62
    assert key["english_row"] == {"de": 0.25, "en": 1.0, "ko": 0.875}
    avg = key["english_minus_native_avg"]
    assert avg["diff"] == pytest.approx(0.25)
    assert avg["ci"][0] <= avg["diff"] <= avg["ci"][1]  # [low, high], in that order


def test_key_numbers_of_several_seeds_give_the_sample_sd_and_the_run_count():
    key = report.tables({"scores": _scores(TWO_SEEDS)})["key_numbers"]
    # diffs +0.50 and -0.25 around 0.125: SD with n - 1 = sqrt(2 x 0.375^2 / 1) = 0.5303
    assert key["english_minus_native_avg"]["sd"] == pytest.approx(0.5303)
    t = report.key_numbers_table(key)
    assert t.loc[0, "sd"] == 53.0 and t.loc[0, "runs"] == 2


def test_run_header_says_why_a_translation_was_not_run_and_how_many_cells_were_left_out():
    rep = {"params": {"run": "x", "translated": [{"from": "en", "to": "es"}, {"from": "en", "to": "de", "backend": "hf"}]},
           "translations_not_run": [{"from": "en", "to": "es", "backend": "apertium", "why": "no apertium-en-es"}],
           "ignored": [f"evaluate/c{i}" for i in range(8)]}
    h = report.run_header(rep).set_index("field")["value"]
    assert h["translate-train RMs"] == "en->es (apertium; not run: no apertium-en-es), en->de (hf)"
    assert h["not in this grid or unfinished (left out)"] == (
        "evaluate/c0, evaluate/c1, evaluate/c2, evaluate/c3, evaluate/c4, evaluate/c5 and 2 more")


def test_a_pretrained_model_of_unsaid_kind_is_an_rm_and_a_cell_without_scores_is_skipped(tmp_path):
    from xlrm_lib import store

    _cell(tmp_path, "evaluate/bb-s42-en", "en", [1, 1, 1, 0], model_dir="/cache/en", pretrained=False)
    _cell(tmp_path, "pretrained/sky", "sky", [1, 1, 0, 0], model_dir="Org/Sky-RM")  # no model_kind recorded
    (tmp_path / "evaluate" / "bb-s42-ko").mkdir()  # an evaluate notebook that wrote no scores table
    store.write_json(tmp_path / "evaluate" / "bb-s42-ko" / "metrics.json", {"kind": "evaluate", "tables": {}})
    rep = report.collect(tmp_path)
    assert sorted(rep["scores"]["source"].unique()) == ["en"]
    assert report.tables(rep)["pretrained"][["name", "kind"]].values.tolist() == [["sky", "rm"]]


def test_has_targets_needs_a_target_rm_besides_the_english_one():
    from xlrm_lib.study import has_targets

    assert not has_targets({"en"}, ["en", "ko"])  # English alone: "en" is no target RM of itself
    assert has_targets({"en", "ko"}, ["en", "ko"])
    assert not has_targets({"en", "ko"}, ["ko"], target_fmt="{lang}-mt")
    assert has_targets({"en", "ko-mt"}, ["ko"], target_fmt="{lang}-mt")


def test_align_and_eval_metrics_hand_computed():
    from xlrm_lib import study

    win = pd.DataFrame({"lang": ["ko", "average"], "win_rate": [0.6, 0.625], "ci_low": [0.4, 0.5],
                        "ci_high": [0.8, 0.75], "p_value": [0.3, 0.04321]})
    m = study.align_metrics({"headline_native": win, "headline_translated": win[win["lang"] == "ko"]}, seed=42)
    assert m == {"kind": "align", "seed": 42,
                 "headline_native": {"win_rate": 0.625, "ci": [0.5, 0.75], "p_value": 0.0432}}
    old = study.align_metrics({"headline_native": win.drop(columns="p_value")})  # tables made before p-values
    assert old["headline_native"] == {"win_rate": 0.625, "ci": [0.5, 0.75]}
    acc = pd.DataFrame({"lang": ["en", "ko", "zh", "ko"], "category": ["overall", "overall", "overall", "chat"],
                        "accuracy": [0.5, 0.5, 1.0, 0.0]})
    m = study.eval_metrics(acc, rm_name="en")
    assert m["overall"] == {"en": 0.5, "ko": 0.5, "zh": 1.0}
    assert m["mean_overall"] == 0.6667 and "pretrained" not in m  # the mean of the languages, not their median
    # an accuracy table of an earlier parameter set (the scoring cell not run again after rm_name changed)
    with pytest.raises(ValueError, match="the accuracy table is of en, not rm_name = 'ko': the scoring cell ran"):
        study.eval_metrics(acc.assign(source="en"), rm_name="ko")
    assert study.eval_metrics(acc.assign(source="en"), rm_name="en")["overall"] == m["overall"]


def test_the_header_names_the_sampling_settings_it_was_given():
    align = {"policy": "Qwen/Qwen2.5-7B-Instruct", "n": 8, "max_new_tokens": 512, "top_p": 0.8, "judge": "x/y"}
    h = report.run_header({"params": {"run": "r", "align": align}}).set_index("field")["value"]
    assert "max_new_tokens 512" in h["best-of-n"] and "top_p 0.8" in h["best-of-n"]


def test_full_width_shows_model_text_as_text_not_html():
    # the alignment notebook shows a policy's samples through full_width: '<think>' or '#include <stdio.h>'
    # were rendered as HTML tags (hidden), as DataFrame's own HTML never does
    html = report.full_width(pd.DataFrame({"en": ["<think>hm</think> #include <stdio.h>"]})).to_html()
    assert "&lt;think&gt;hm&lt;/think&gt; #include &lt;stdio.h&gt;" in html
