"""xlrm_lib.langs: ISO 639-1 / FLORES-200 normalisation and its error messages."""

import pytest

from xlrm_lib.langs import LANGUAGES, flores, language_name, normalize_lang, normalize_langs


@pytest.mark.parametrize("code, expected", [
    ("ko", "ko"), ("KO", "ko"), (" ko ", "ko"), ("kor_Hang", "ko"), ("KOR_HANG", "ko"),
    ("zho_Hans", "zh"), ("zho_Hant", "zh-tw"), ("zh-CN", "zh"), ("zh_tw", "zh-tw"), ("zh-Hant", "zh-tw"),
    ("arb_Arab", "ar"), ("pes_Arab", "fa"), ("rus_Cyrl", "ru"), ("eng_Latn", "en"),
])
def test_normalize_lang(code, expected):
    assert normalize_lang(code) == expected


def test_flores_and_names():
    assert flores("zh") == "zho_Hans"
    assert flores("kor_Hang") == "kor_Hang"
    assert flores("KO") == "kor_Hang"
    assert flores("zh-tw") == "zho_Hant"
    assert language_name("ko") == "Korean"
    assert language_name("arb_Arab") == "Arabic"


def test_every_language_round_trips_through_flores():
    for short, (fl, _) in LANGUAGES.items():
        assert normalize_lang(fl) == short
        assert flores(short) == fl
    # FLORES codes are unique, so the reverse map loses nothing
    assert len({fl for fl, _ in LANGUAGES.values()}) == len(LANGUAGES)


@pytest.mark.parametrize("code, right", [("kr", "ko"), ("KR", "ko"), ("jp", "ja")])
def test_country_codes_are_refused_with_the_language_code(code, right):
    with pytest.raises(ValueError) as e:
        normalize_lang(code)
    msg = str(e.value)
    assert "country code" in msg
    assert f"'{right}'" in msg


def test_unknown_code_says_what_is_accepted_and_the_nearest_spellings():
    with pytest.raises(ValueError) as e:
        normalize_lang("xx")
    msg = str(e.value)
    assert "'xx'" in msg and "did you mean" not in msg
    assert "'kor_Hang'" in msg and "'Korean'" in msg and f"one of the {len(LANGUAGES)} FLORES-200 languages" in msg
    with pytest.raises(ValueError, match=r"unknown language 'Swahilli' \(did you mean 'Swahili'\?\)"):
        normalize_lang("Swahilli")


@pytest.mark.parametrize("given, code", [
    ("yo", "yo"), ("am", "am"), ("ta", "ta"), ("ur", "ur"), ("sv", "sv"), ("fi", "fi"), ("ms", "ms"),
    ("fil", "tl"), ("ceb", "ceb"),                                         # beyond M-RewardBench's 23
    ("pt-BR", "pt"), ("pt_BR", "pt"), ("en-US", "en"), ("es-419", "es"), ("mt-MT", "mt"),  # a region is dropped...
    ("zh-HK", "zh-tw"), ("zh_TW", "zh-tw"), ("zh-CN", "zh"),               # ...except Chinese's: its script
    ("swa", "sw"), ("hin", "hi"), ("eng", "en"), ("ara", "ar"),            # ISO 639-3
    ("Swahili", "sw"), ("korean", "ko"), ("Chinese (Traditional)", "zh-tw"), ("Farsi", "fa"),  # names
    ("yor_Latn", "yo"), ("zsm_Latn", "ms"),
])
def test_the_flores_200_languages_in_the_spellings_people_use(given, code):
    assert normalize_lang(given) == code
    assert flores(code) == LANGUAGES[code][0] and flores(given) == flores(code)


def test_the_table_is_nllbs_language_list():
    # NLLB-200's tokenizer codes (transformers ships them): each of ours is one, and each of theirs is ours but
    # the second scripts refused rather than mislabelled; Santali is sat_Olck in FLORES-200, sat_Beng in NLLB
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES as nllb

    from xlrm_lib.langs import NLLB_TOKEN

    ours = {NLLB_TOKEN.get(fl, fl) for fl, _ in LANGUAGES.values()}
    assert ours <= set(nllb)
    assert set(nllb) - ours == {"ace_Arab", "bjn_Arab", "kas_Deva", "knc_Arab", "taq_Tfng"}


@pytest.mark.parametrize("given", ["az-IR", "pa-PK", "es-mt", "ES-MT", "kas_Deva"])
def test_a_tag_that_changes_the_script_or_names_an_rm_is_not_a_language(given):
    with pytest.raises(ValueError, match="unknown language"):
        normalize_lang(given)


def test_code_of_takes_codes_only_not_words_of_some_language():
    from xlrm_lib.langs import code_of

    assert [code_of(x) for x in ("EN", "kor_hang", "zh_TW", "ko")] == ["en", "ko", "zh-tw", "ko"]
    assert [code_of(x) for x in ("dan", "run", "Korean", "pt-BR", "skywork", None)] == [None] * 6
    assert normalize_lang("dan") == "da"  # the lenient reading still takes an ISO 639-3 code


def test_every_language_has_one_flores_code_and_name():
    assert len(LANGUAGES) > 150
    assert len({fl for fl, _ in LANGUAGES.values()}) == len(LANGUAGES) == len({n for _, n in LANGUAGES.values()})
    assert all(normalize_lang(fl) == short and normalize_lang(name) == short
               for short, (fl, name) in LANGUAGES.items())
    assert LANGUAGES["en"] == ("eng_Latn", "English") and LANGUAGES["sw"] == ("swh_Latn", "Swahili")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_string_code(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        normalize_lang(bad)


def test_normalize_langs_keeps_order_and_drops_duplicates():
    assert normalize_langs("en,kor_Hang, ko ,zh,") == ["en", "ko", "zh"]
    assert normalize_langs(["zho_Hans", "zh", "ar", "EN"]) == ["zh", "ar", "en"]
    assert normalize_langs([]) == []
    with pytest.raises(ValueError, match="country code"):
        normalize_langs(["en", "kr"])


@pytest.mark.parametrize("given, code", [
    ("zh-MO", "zh-tw"), ("zho_MO", "zh-tw"), ("cmn-TW", "zh-tw"), ("zho-CN", "zh"),  # Macau and Taiwan: Traditional
    ("nor", "nb"), ("Norwegian", "nb"), ("Kurdish", "ku"),  # a macrolanguage: the variety the table lists first
])
def test_chinese_regions_and_macrolanguages(given, code):
    assert normalize_lang(given) == code


def test_sindhi_written_in_india_is_refused_not_mislabelled():
    with pytest.raises(ValueError, match="unknown language 'sd-IN'"):
        normalize_lang("sd-IN")
    assert normalize_lang("sd-PK") == "sd"
