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


def test_unknown_code_lists_the_accepted_codes():
    with pytest.raises(ValueError) as e:
        normalize_lang("xx")
    msg = str(e.value)
    assert "'xx'" in msg
    assert str(sorted(LANGUAGES)) in msg
    assert "kor_Hang" in msg  # and says FLORES codes work too


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
