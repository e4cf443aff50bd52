"""Figures draw what their tables hold: axis order, hover text, optional columns (hand-made tables)."""

import pandas as pd
import pytest

from xlrm_lib.plots import category_bars, english_vs_target_bars, norm_violin, transfer_heatmap, win_rate_bars


def _wins():
    # RM "en" lacks zh: plotly took the first trace's order, so zh landed after "average"
    return pd.DataFrame({"lang": ["ko", "average", "zh", "ko", "average"], "a": ["en", "en", "x", "x", "x"],
                         "b": ["ko", "{lang}", "zh", "ko", "{lang}-mt"], "win_rate": [0.6, 0.6, 0.4, 0.5, 0.45],
                         "ci_low": [0.5] * 5, "ci_high": [0.7] * 5})


def test_languages_come_sorted_with_the_average_last():
    assert win_rate_bars(_wins()).layout.xaxis.categoryarray == ("ko", "zh", "average")
    diff = pd.DataFrame({"lang": ["zh", "average", "ko"], "diff": [0.1, 0.05, 0.0], "ci_low": [0, 0, -0.1],
                         "ci_high": [0.2, 0.1, 0.1]})
    assert english_vs_target_bars(diff).layout.xaxis.categoryarray == ("ko", "zh", "average")


def test_the_average_bar_hovers_with_words_not_the_pattern():
    custom = [list(trace.customdata) for trace in win_rate_bars(_wins()).data]
    assert custom == [["ko", "each target language's RM"], ["zh", "ko", "each target language's translate-train RM"]]


def test_optional_columns_are_optional():
    diff = pd.DataFrame({"lang": ["ko"], "diff": [0.1], "ci_low": [0.0], "ci_high": [0.2]})  # no "b" column
    assert english_vs_target_bars(diff).layout.title.text == "English RM minus the target RM, overall accuracy"
    acc = pd.DataFrame({"lang": ["en", "en"], "category": ["chat", "overall"], "accuracy": [0.5, 0.5],
                        "ci_low": [0.4, 0.4], "ci_high": [0.6, 0.6]})  # no "source" column: one panel
    assert [list(t.y) for t in category_bars(acc).data] == [[0.5]]


def test_titles_say_what_is_compared_and_axes_what_they_hold():
    translated = pd.DataFrame({"lang": ["es", "fr", "average"], "a": "en", "b": ["es-mt", "fr-mt", "{lang}-mt"],
                               "judge": "gold", "win_rate": [0.5] * 3, "ci_low": [0.4] * 3, "ci_high": [0.6] * 3})
    assert win_rate_bars(translated).layout.title.text == "Best-of-n win rate vs translate-train RM (judge: gold)"
    native = translated.assign(b=["es", "fr", "{lang}"])
    assert win_rate_bars(native).layout.title.text == "Best-of-n win rate vs target-language RM (judge: gold)"
    matrix = pd.DataFrame([[0.6, 0.7]], index=["en"], columns=["en", "ko"])
    assert transfer_heatmap(matrix).data[0].colorbar.title.text == "accuracy"
    assert transfer_heatmap(matrix, value_title="CKA").data[0].colorbar.title.text == "CKA"
    acc = pd.DataFrame({"lang": ["ko"], "category": ["chat"], "accuracy": [0.5], "ci_low": [0.4], "ci_high": [0.6]})
    assert category_bars(acc).layout.xaxis.title.text == "target language"


def test_every_language_of_the_norms_is_named():
    # 11 panels and no legend: plotly labelled every other violin, the rest were known only by hovering
    norms = pd.DataFrame({"lang": ["ar", "de", "en", "es"] * 2, "norm": range(8), "model": ["base"] * 4 + ["en"] * 4})
    fig = norm_violin(norms)
    assert fig.layout.showlegend is not False and sorted({t.name for t in fig.data}) == ["ar", "de", "en", "es"]
    assert "last probed layer" in fig.layout.title.text


def test_cross_lingual_heatmap_reads_the_probes_table():
    # the representation-shift notebook drew it with five presentation arguments of its own
    from xlrm_lib.plots import cross_lingual_heatmap

    table = pd.DataFrame({"lang": ["en", "ko"], "en": [1.0, 0.5], "ko": [0.5, 1.0]})
    fig = cross_lingual_heatmap(table)
    assert [list(row) for row in fig.data[0].z] == [[1.0, 0.5], [0.5, 1.0]]
    assert fig.data[0].colorbar.title.text == "CKA" and fig.layout.xaxis.title.text == "language"
    assert fig.layout.title.text.startswith("Cross-lingual CKA within the base model")
    with pytest.raises(ValueError, match="lang"):
        cross_lingual_heatmap(table.drop(columns="lang"))
