"""Figures for best-of-n alignment (:mod:`xlrm_lib.align`). Each function returns a plotly Figure.

>>> import pandas as pd
>>> t = pd.DataFrame({"lang": ["ko", "zh"], "a": "en", "b": ["ko", "zh"], "judge": "gold",
...                   "win_rate": [0.6, 0.55], "ci_low": [0.5, 0.45], "ci_high": [0.7, 0.65]})
>>> [trace.name for trace in win_rate_bars(t).data]
['en']
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..langs import TRANSLATED_SUFFIX
from .transfer import languages_then_average


def win_rate_bars(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Win rate per language with 95% CI error bars and a dashed 0.5 line (no preference).

    ``table`` is :func:`~xlrm_lib.align.win_rate`, :func:`~xlrm_lib.align.headline_win_rates` or
    :func:`~xlrm_lib.align.win_rate_table` output; with several RMs in column ``a``, bars are grouped by RM.
    """
    missing = [c for c in ("lang", "win_rate", "ci_low", "ci_high") if c not in table.columns]
    if missing:
        raise ValueError(f"win_rate_bars needs columns lang, win_rate, ci_low, ci_high; missing {missing}")
    t = table.assign(a=table["a"].astype(str) if "a" in table.columns else "win rate")
    fig = go.Figure()
    for name, g in t.groupby("a", sort=False):
        against = g["b"].astype(str) if "b" in g.columns else pd.Series([""] * len(g), index=g.index)
        # the average row names a pattern ("{lang}", "{lang}-mt"): each language's own target RM
        against = against.where(~against.str.contains("{lang}", regex=False),
                                against.str.replace("{lang}", "each target language's ", regex=False)
                                .str.replace("'s -mt", "'s translate-train", regex=False).str.strip() + " RM")
        fig.add_bar(x=g["lang"], y=g["win_rate"], name=name, customdata=against,
                    error_y=dict(type="data", array=g["ci_high"] - g["win_rate"],
                                 arrayminus=g["win_rate"] - g["ci_low"], visible=True),
                    hovertemplate=f"{name} vs %{{customdata}} on %{{x}}: %{{y:.3f}}<extra></extra>")
    fig.add_hline(y=0.5, line_dash="dash", line_color="black", line_width=1)
    if title is None:
        judge = f" (judge: {t['judge'].iloc[0]})" if "judge" in t.columns else ""
        bs = sorted(set(t["b"].astype(str))) if "b" in t.columns else []
        kind = "translate-train" if bs and all(b.endswith(TRANSLATED_SUFFIX) for b in bs) else "target-language"
        against = f" vs {bs[0]}" if len(bs) == 1 else (f" vs {kind} RM" if bs else "")
        title = f"Best-of-n win rate{against}{judge}"
    fig.update_layout(title=title + "<br><sup>whiskers: 95% bootstrap intervals; dashed: no preference (0.5)</sup>",
                      barmode="group", xaxis_title="language", yaxis_title="win rate (ties count 1/2)",
                      yaxis_range=[0, 1], showlegend=True, legend_title_text="picks of RM")
    return languages_then_average(fig, t["lang"])
