"""Figures draw what their tables hold: axis order, hover text, optional columns (hand-made tables)."""

import pandas as pd

from xlrm_lib.plots import category_bars, english_vs_target_bars, win_rate_bars


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
