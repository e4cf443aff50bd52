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
    assert english_vs_target_bars(diff).layout.title.text.startswith("English RM minus the target RM, overall accuracy<br>")
    acc = pd.DataFrame({"lang": ["en", "en"], "category": ["chat", "overall"], "accuracy": [0.5, 0.5],
                        "ci_low": [0.4, 0.4], "ci_high": [0.6, 0.6]})  # no "source" column: one panel
    assert [list(t.y) for t in category_bars(acc).data] == [[0.5]]


def test_titles_say_what_is_compared_and_axes_what_they_hold():
    translated = pd.DataFrame({"lang": ["es", "fr", "average"], "a": "en", "b": ["es-mt", "fr-mt", "{lang}-mt"],
                               "judge": "gold", "win_rate": [0.5] * 3, "ci_low": [0.4] * 3, "ci_high": [0.6] * 3})
    assert win_rate_bars(translated).layout.title.text.startswith("Best-of-n win rate vs translate-train RM (judge: gold)<br>")
    native = translated.assign(b=["es", "fr", "{lang}"])
    assert win_rate_bars(native).layout.title.text.startswith("Best-of-n win rate vs target-language RM (judge: gold)<br>")
    matrix = pd.DataFrame([[0.6, 0.7]], index=["en"], columns=["en", "ko"])
    assert transfer_heatmap(matrix).data[0].colorbar.title.text == "accuracy"
    assert transfer_heatmap(matrix, value_title="CKA").data[0].colorbar.title.text == "CKA"
    acc = pd.DataFrame({"lang": ["ko"], "category": ["chat"], "accuracy": [0.5], "ci_low": [0.4], "ci_high": [0.6]})
    assert category_bars(acc).layout.xaxis.title.text == "target language"


def test_difference_bars_are_coloured_only_where_the_interval_excludes_zero():
    # six blue bars and a red one read as findings while every interval crossed 0
    diff = pd.DataFrame({"lang": ["de", "es", "ko", "average"], "diff": [0.05, 0.03, -0.04, 0.01],
                         "ci_low": [0.01, -0.02, -0.08, -0.02], "ci_high": [0.09, 0.08, -0.01, 0.04]})
    fig = english_vs_target_bars(diff)
    assert list(fig.data[0].marker.color) == ["#2b8cbe", "#b8b8b8", "#e34a33", "#555"]
    assert "95% bootstrap intervals" in fig.layout.title.text and "1 point" in fig.layout.yaxis.title.text
    assert "95% CI" in fig.data[0].hovertemplate


def test_category_panels_each_name_their_languages_and_rm():
    # plotly labelled only the bottom panel's languages, the rest showed bars without names, "source=en" sideways
    acc = pd.DataFrame({"source": ["en"] * 2 + ["ko"] * 2, "lang": ["en", "ko"] * 2, "category": ["safety", "chat"] * 2,
                        "accuracy": [0.5] * 4, "ci_low": [0.4] * 4, "ci_high": [0.6] * 4})
    fig = category_bars(acc)
    assert all(ax.showticklabels for ax in (fig.layout.xaxis, fig.layout.xaxis2))
    assert sorted(a.text for a in fig.layout.annotations) == ["RM en", "RM ko"]
    assert list(dict.fromkeys(t.name for t in fig.data)) == ["chat", "safety"]  # RewardBench's order
    assert {t.name: t.marker.color for t in fig.data} == {"chat": "#0072B2", "safety": "#009E73"}  # fixed colours


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
