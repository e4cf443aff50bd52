"""Language codes: one canonical form (ISO 639-1 where it exists) and FLORES-200 for hub configs.

M-RewardBench names its configs by FLORES-200 codes (``kor_Hang``, ``zho_Hans``); people type ``ko`` or
``zh``. Everything inside xlrm uses the short code; :func:`flores` gives the hub config name back.

>>> normalize_lang("kor_Hang"), normalize_lang("KO"), flores("zh")
('ko', 'ko', 'zho_Hans')
"""

from __future__ import annotations

TRANSLATED_SUFFIX = "-mt"  # a translate-train RM for language t is named t + this suffix (e.g. "es-mt")

# short code -> (FLORES-200 code, English name). The 23 M-RewardBench languages plus English and a few
# languages of the shared parallel prompt sets (bn, sw, th, ...).
LANGUAGES: dict[str, tuple[str, str]] = {
    "ar": ("arb_Arab", "Arabic"),
    "bn": ("ben_Beng", "Bengali"),
    "ca": ("cat_Latn", "Catalan"),
    "cs": ("ces_Latn", "Czech"),
    "de": ("deu_Latn", "German"),
    "el": ("ell_Grek", "Greek"),
    "en": ("eng_Latn", "English"),
    "es": ("spa_Latn", "Spanish"),
    "fa": ("pes_Arab", "Persian"),
    "fr": ("fra_Latn", "French"),
    "he": ("heb_Hebr", "Hebrew"),
    "hi": ("hin_Deva", "Hindi"),
    "id": ("ind_Latn", "Indonesian"),
    "it": ("ita_Latn", "Italian"),
    "ja": ("jpn_Jpan", "Japanese"),
    "ko": ("kor_Hang", "Korean"),
    "nl": ("nld_Latn", "Dutch"),
    "pl": ("pol_Latn", "Polish"),
    "pt": ("por_Latn", "Portuguese"),
    "ro": ("ron_Latn", "Romanian"),
    "ru": ("rus_Cyrl", "Russian"),
    "sw": ("swh_Latn", "Swahili"),
    "th": ("tha_Thai", "Thai"),
    "tr": ("tur_Latn", "Turkish"),
    "uk": ("ukr_Cyrl", "Ukrainian"),
    "vi": ("vie_Latn", "Vietnamese"),
    "zh": ("zho_Hans", "Chinese (Simplified)"),
    "zh-tw": ("zho_Hant", "Chinese (Traditional)"),
}

_FROM_FLORES = {fl.lower(): short for short, (fl, _) in LANGUAGES.items()}
# common aliases people type
_ALIASES = {"zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh", "zh-hant": "zh-tw", "zh_tw": "zh-tw",
            "kr": None, "jp": None}  # kr/jp are country codes: refuse them explicitly (see below)


def normalize_lang(code: str) -> str:
    """Return the canonical short code for an ISO 639-1 or FLORES-200 code (case-insensitive).

    Raises
    ------
    ValueError
        If the code is unknown; the message lists the accepted codes.
    """
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"language code must be a non-empty string, got {code!r}")
    key = code.strip().lower().replace(" ", "")
    if key in LANGUAGES:
        return key
    if key in _FROM_FLORES:
        return _FROM_FLORES[key]
    if key in _ALIASES and _ALIASES[key]:
        return _ALIASES[key]
    hint = ""
    if key in ("kr", "jp"):
        hint = f" ('{key}' is a country code; the language code is '{'ko' if key == 'kr' else 'ja'}')"
    raise ValueError(
        f"unknown language {code!r}{hint}; expected one of {sorted(LANGUAGES)} "
        f"or a FLORES-200 code such as 'kor_Hang'"
    )


def normalize_langs(codes) -> list[str]:
    """Normalise a list (or a comma-separated string) of codes, keeping order and dropping duplicates."""
    if isinstance(codes, str):
        codes = [c for c in codes.split(",") if c.strip()]
    out: list[str] = []
    for c in codes:
        n = normalize_lang(c)
        if n not in out:
            out.append(n)
    return out


def flores(code: str) -> str:
    """FLORES-200 code (the M-RewardBench config name) of a language."""
    return LANGUAGES[normalize_lang(code)][0]


def language_name(code: str) -> str:
    return LANGUAGES[normalize_lang(code)][1]
