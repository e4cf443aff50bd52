"""Language codes: one canonical form (ISO 639-1 where it exists) and FLORES-200 for hub configs.

M-RewardBench names its configs by FLORES-200 codes (``kor_Hang``, ``zho_Hans``); people type ``ko`` or
``zh``. Everything inside xlrm uses the short code; :func:`flores` gives the hub config name back.

>>> normalize_lang("kor_Hang"), normalize_lang("KO"), flores("zh")
('ko', 'ko', 'zho_Hans')
"""

from __future__ import annotations

import contextlib
import difflib
import re

TRANSLATED_SUFFIX = "-mt"  # a translate-train RM for language t is named t + this suffix (e.g. "es-mt")

# The FLORES-200 languages (NLLB's): short code (ISO 639-1 where the language has one, else its ISO 639-3
# code), FLORES-200 code, English name. M-RewardBench's 23 languages and English are among them. A language
# FLORES-200 writes in two scripts is here in one (Chinese: both, as zh and zh-tw): ace_Arab, bjn_Arab, kas_Deva,
# knc_Arab, taq_Tfng and min_Arab are refused rather than mislabelled.
_TABLE = """
af afr_Latn Afrikaans | ak aka_Latn Akan | am amh_Ethi Amharic | ar arb_Arab Arabic | as asm_Beng Assamese
ast ast_Latn Asturian | awa awa_Deva Awadhi | ay ayr_Latn Aymara | az azj_Latn Azerbaijani | ba bak_Cyrl Bashkir
bm bam_Latn Bambara | ban ban_Latn Balinese | be bel_Cyrl Belarusian | bem bem_Latn Bemba | bn ben_Beng Bengali
bho bho_Deva Bhojpuri | bo bod_Tibt Tibetan | bs bos_Latn Bosnian | bug bug_Latn Buginese | bg bul_Cyrl Bulgarian
ca cat_Latn Catalan | ceb ceb_Latn Cebuano | cs ces_Latn Czech | ckb ckb_Arab Central Kurdish | cy cym_Latn Welsh
da dan_Latn Danish | de deu_Latn German | dz dzo_Tibt Dzongkha | el ell_Grek Greek | en eng_Latn English
eo epo_Latn Esperanto | et est_Latn Estonian | eu eus_Latn Basque | ee ewe_Latn Ewe | fo fao_Latn Faroese
fa pes_Arab Persian | fj fij_Latn Fijian | fi fin_Latn Finnish | fon fon_Latn Fon | fr fra_Latn French
fur fur_Latn Friulian | ff fuv_Latn Fulfulde | gd gla_Latn Scottish Gaelic | ga gle_Latn Irish | gl glg_Latn Galician
gn grn_Latn Guarani | gu guj_Gujr Gujarati | ht hat_Latn Haitian Creole | ha hau_Latn Hausa | he heb_Hebr Hebrew
hi hin_Deva Hindi | hne hne_Deva Chhattisgarhi | hr hrv_Latn Croatian | hu hun_Latn Hungarian | hy hye_Armn Armenian
ig ibo_Latn Igbo | ilo ilo_Latn Ilocano | id ind_Latn Indonesian | is isl_Latn Icelandic | it ita_Latn Italian
jv jav_Latn Javanese | ja jpn_Jpan Japanese | kab kab_Latn Kabyle | kn kan_Knda Kannada | ka kat_Geor Georgian
kk kaz_Cyrl Kazakh | km khm_Khmr Khmer | ki kik_Latn Kikuyu | rw kin_Latn Kinyarwanda | ky kir_Cyrl Kyrgyz
kg kon_Latn Kikongo | ko kor_Hang Korean | ku kmr_Latn Kurdish (Kurmanji) | lo lao_Laoo Lao | lv lvs_Latn Latvian
li lim_Latn Limburgish | ln lin_Latn Lingala | lt lit_Latn Lithuanian | lmo lmo_Latn Lombard
lb ltz_Latn Luxembourgish | lg lug_Latn Ganda | luo luo_Latn Luo | lus lus_Latn Mizo | mag mag_Deva Magahi
mai mai_Deva Maithili | ml mal_Mlym Malayalam | mr mar_Deva Marathi | mk mkd_Cyrl Macedonian | mg plt_Latn Malagasy
mt mlt_Latn Maltese | mn khk_Cyrl Mongolian | mi mri_Latn Maori | ms zsm_Latn Malay | my mya_Mymr Burmese
nl nld_Latn Dutch | nn nno_Latn Norwegian Nynorsk | nb nob_Latn Norwegian Bokmal | ne npi_Deva Nepali
nso nso_Latn Northern Sotho | ny nya_Latn Nyanja | oc oci_Latn Occitan | om gaz_Latn Oromo | or ory_Orya Odia
pa pan_Guru Punjabi | pap pap_Latn Papiamento | pl pol_Latn Polish | pt por_Latn Portuguese | prs prs_Arab Dari
ps pbt_Arab Pashto | qu quy_Latn Quechua | ro ron_Latn Romanian | rn run_Latn Rundi | ru rus_Cyrl Russian
sg sag_Latn Sango | sa san_Deva Sanskrit | sat sat_Olck Santali | scn scn_Latn Sicilian | si sin_Sinh Sinhala
sk slk_Latn Slovak | sl slv_Latn Slovenian | sm smo_Latn Samoan | sn sna_Latn Shona | sd snd_Arab Sindhi
so som_Latn Somali | st sot_Latn Southern Sotho | es spa_Latn Spanish | sq als_Latn Albanian | sc srd_Latn Sardinian
sr srp_Cyrl Serbian | ss ssw_Latn Swati | su sun_Latn Sundanese | sv swe_Latn Swedish | sw swh_Latn Swahili
szl szl_Latn Silesian | ta tam_Taml Tamil | tt tat_Cyrl Tatar | te tel_Telu Telugu | tg tgk_Cyrl Tajik
tl tgl_Latn Tagalog | th tha_Thai Thai | ti tir_Ethi Tigrinya | tpi tpi_Latn Tok Pisin | tn tsn_Latn Tswana
ts tso_Latn Tsonga | tk tuk_Latn Turkmen | tum tum_Latn Tumbuka | tr tur_Latn Turkish | tw twi_Latn Twi
ug uig_Arab Uyghur | uk ukr_Cyrl Ukrainian | umb umb_Latn Umbundu | ur urd_Arab Urdu | uz uzn_Latn Uzbek
vec vec_Latn Venetian | vi vie_Latn Vietnamese | war war_Latn Waray | wo wol_Latn Wolof | xh xho_Latn Xhosa
yi ydd_Hebr Yiddish | yo yor_Latn Yoruba | yue yue_Hant Cantonese | zh zho_Hans Chinese (Simplified)
zh-tw zho_Hant Chinese (Traditional) | zu zul_Latn Zulu
acm acm_Arab Mesopotamian Arabic | acq acq_Arab Ta'izzi-Adeni Arabic | aeb aeb_Arab Tunisian Arabic
ajp ajp_Arab South Levantine Arabic | apc apc_Arab North Levantine Arabic | ars ars_Arab Najdi Arabic
ary ary_Arab Moroccan Arabic | arz arz_Arab Egyptian Arabic | azb azb_Arab South Azerbaijani | ace ace_Latn Acehnese
bjn bjn_Latn Banjar | cjk cjk_Latn Chokwe | crh crh_Latn Crimean Tatar | dik dik_Latn Southwestern Dinka
dyu dyu_Latn Dyula | kac kac_Latn Jingpho | kam kam_Latn Kamba | ks kas_Arab Kashmiri | kbp kbp_Latn Kabiye
kea kea_Latn Kabuverdianu | kmb kmb_Latn Kimbundu | knc knc_Latn Central Kanuri | lij lij_Latn Ligurian
ltg ltg_Latn Latgalian | lua lua_Latn Luba-Kasai | min min_Latn Minangkabau | mni mni_Beng Meitei | mos mos_Latn Mossi
nus nus_Latn Nuer | pag pag_Latn Pangasinan | shn shn_Mymr Shan | taq taq_Latn Tamasheq
tzm tzm_Tfng Central Atlas Tamazight
"""
# NLLB's tokenizers (their FAIRSEQ_LANGUAGE_CODES) write Santali as sat_Beng, though FLORES-200 writes it in Ol Chiki
NLLB_TOKEN = {"sat_Olck": "sat_Beng"}

# short code -> (FLORES-200 code, English name)
LANGUAGES: dict[str, tuple[str, str]] = {
    short: (fl, name) for short, fl, name in (entry.split(None, 2) for entry in re.split(r"\s*[|\n]\s*", _TABLE.strip()))}

_FROM_FLORES = {fl.lower(): short for short, (fl, _) in LANGUAGES.items()}
ISO3_CODES = {fl.split("_")[0]: short for short, (fl, _) in LANGUAGES.items() if not short.startswith("zh")}
ISO3_CODES.update({"ara": "ar", "fas": "fa", "per": "fa", "msa": "ms", "may": "ms", "swa": "sw", "lav": "lv",
                   "mon": "mn", "nep": "ne", "orm": "om", "uzb": "uz", "aze": "az", "sqi": "sq", "alb": "sq",
                   "kur": "ku", "fil": "tl", "yid": "yi", "mlg": "mg", "pus": "ps", "que": "qu", "est": "et",
                   "ger": "de", "fre": "fr", "dut": "nl", "gre": "el", "chi": "zh", "zho": "zh", "cmn": "zh",
                   "cze": "cs", "rum": "ro", "arm": "hy", "geo": "ka", "ice": "is", "mac": "mk", "bur": "my",
                   "wel": "cy", "baq": "eu", "tib": "bo", "slo": "sk", "mao": "mi", "nor": "nb", "no": "nb"})
_FROM_NAME = {name.lower(): short for short, (_, name) in LANGUAGES.items()}
_FROM_NAME.update({"chinese": "zh", "mandarin": "zh", "farsi": "fa", "filipino": "tl", "norwegian": "nb",
                   "kurdish": "ku", "malagasy": "mg"})
# common aliases people type; Chinese regions name a script (Taiwan, Hong Kong, Macau: Traditional)
_ALIASES = {"zh-cn": "zh", "zh-sg": "zh", "zh-hans": "zh", "zh-hant": "zh-tw", "zh-hk": "zh-tw", "zh-mo": "zh-tw",
            "kr": None, "jp": None}  # kr/jp are country codes: refuse them explicitly (see below)
_REGION = re.compile(r"([a-z]{2,3})[-_]([a-z]{2}|[0-9]{3})")  # pt-BR, es_419: the language without its region
# regions where the language is written in another script than the one listed: refused, not mislabelled
_OTHER_SCRIPT = {"az-ir", "ku-iq", "ku-ir", "pa-pk", "sd-in", "mn-cn", "ks-in"}


def normalize_lang(code: str) -> str:
    """The canonical short code of a language, given as an ISO 639-1 or 639-3 code, a FLORES-200 code, a
    BCP-47 tag with a region (``pt-BR`` -> ``pt``; Chinese regions give the script: ``zh-TW`` -> ``zh-tw``) or
    its English name (case-insensitive).

    Raises
    ------
    ValueError
        If the language is unknown (its message suggests the nearest spellings).
    """
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"language code must be a non-empty string, got {code!r}")
    name = code.strip().lower()
    if name in _FROM_NAME:
        return _FROM_NAME[name]
    key = name.replace(" ", "")
    if found := code_of(key):
        return found
    for k in (key, key.replace("_", "-")):
        if _ALIASES.get(k):
            return _ALIASES[k]
    if key in ISO3_CODES:
        return ISO3_CODES[key]
    region = _REGION.fullmatch(key.replace("_", "-"))
    if region and region.group(1) in ("zh", "zho", "cmn"):  # Chinese: the region names the script
        return "zh-tw" if region.group(2) in ("tw", "hk", "mo") else "zh"
    # a region, not '-mt' (an RM name: es-mt is Spanish translate-train), nor one that changes the script
    if (region and region.group(1) not in ("kr", "jp") and region.group(0) not in _OTHER_SCRIPT
            and (region.group(2) != TRANSLATED_SUFFIX[1:] or region.group(1) == "mt")):  # mt-MT is Maltese
        with contextlib.suppress(ValueError):
            return normalize_lang(region.group(1))
    if key in ("kr", "jp"):
        hint = (" ('kr' is Korea's country code, and Kanuri's language code: Korean is 'ko', Kanuri 'knc')"
                if key == "kr" else " ('jp' is a country code; the language code is 'ja')")
    else:
        spelt = {**{k: k for k in LANGUAGES}, **{n: LANGUAGES[s][1] for n, s in _FROM_NAME.items() if s in LANGUAGES},
                 **{fl.lower(): fl for fl, _ in LANGUAGES.values()}}
        near = [spelt[n] for n in difflib.get_close_matches(name, spelt, n=3, cutoff=0.75)]
        hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
    raise ValueError(
        f"unknown language {code!r}{hint}; expected an ISO 639-1 code such as 'ko' (or ISO 639-3, 'kor'), a "
        f"FLORES-200 code such as 'kor_Hang', or an English name such as 'Korean': one of the "
        f"{len(LANGUAGES)} FLORES-200 languages in xlrm_lib.langs.LANGUAGES"
    )


def code_of(text) -> str | None:
    """The canonical code of ``text`` if it is written as a language code, short or FLORES-200 (any case, '_' or
    '-'), else None. Stricter than :func:`normalize_lang` (no names, ISO 639-3 or regions): for telling a column
    or model name that IS a language code from one that only looks like a word of some language ('dan', 'run')."""
    if not isinstance(text, str):
        return None
    key = text.strip().lower()
    for k in (key, key.replace("_", "-"), key.replace("-", "_")):
        if k in LANGUAGES:
            return k
        if k in _FROM_FLORES:
            return _FROM_FLORES[k]
    return None


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
