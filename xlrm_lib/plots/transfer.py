"""Figures of the core study: transfer heatmaps, English-vs-target differences, category bars.

Every function returns a ``plotly.graph_objects.Figure``; none writes files (the runner decides paths).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..data import CATEGORIES


def transfer_heatmap(matrix: pd.DataFrame, *, title: str = "RM accuracy: source (train) x target (eval)",
                     diverging: bool = False, zmid: float | None = None, fmt: str = ".2f",
                     x_title: str = "target language (evaluated on)", y_title: str = "source (RM trained on)",
                     hover: str = "source %{y} -> target %{x}", value_title: str | None = None) -> go.Figure:
    """Annotated heatmap of a source x target matrix (:func:`xlrm_lib.evaluate.transfer_matrix`), or of any
    square language matrix given its axis titles and hover text.

    ``diverging=True`` (for differences) centres a red-blue scale on ``zmid`` (default 0). ``value_title``: the
    colour bar's title (default "accuracy" for a source x target matrix, "CKA" and the like are the caller's).
    """
    z = matrix.to_numpy(dtype=float)
    text = [[("" if np.isnan(v) else format(v, fmt)) for v in row] for row in z]
    kw = dict(colorscale="RdBu", zmid=0.0 if zmid is None else zmid) if diverging else dict(colorscale="Viridis")
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                               text=text, texttemplate="%{text}", hovertemplate=hover + ": %{z:.3f}<extra></extra>",
                               colorbar=dict(title=dict(text=value_title or (
                                   "accuracy difference" if diverging else "accuracy"))), **kw))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, yaxis_autorange="reversed",
                      width=120 + 70 * max(len(matrix.columns), 4), height=160 + 50 * max(len(matrix.index), 4))
    return fig


def languages_then_average(fig: go.Figure, langs) -> go.Figure:
    """Order the x axis: languages sorted, ``average`` last (plotly would take the first trace's order, so a
    language the first RM or run lacks landed after the average)."""
    langs = sorted({str(x) for x in langs} - {"average"}) + (["average"] if "average" in set(map(str, langs)) else [])
    return fig.update_xaxes(categoryorder="array", categoryarray=langs)


def english_vs_target_bars(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Bars of acc(English RM) - acc(target RM) per target language with 95% CIs (and the average)."""
    t = table.copy()
    several = [k for k in ("backbone", "seed") if k in t.columns and t[k].nunique() > 1]
    if several:  # several runs: grouped bars, one colour per backbone / seed
        import plotly.express as px

        parts = [t["backbone"].astype(str) if k == "backbone" else "seed " + t["seed"].astype(str) for k in several]
        t["run"] = parts[0] if len(parts) == 1 else parts[0] + " " + parts[1]
        fig = px.bar(t, x="lang", y="diff", color="run", barmode="group", error_y=t["ci_high"] - t["diff"],
                     error_y_minus=t["diff"] - t["ci_low"])
        fig.add_hline(y=0, line_color="black", line_width=1)
        per = " and ".join({"backbone": "backbone", "seed": "seed"}[k] for k in several)
        fig.update_layout(title=(title or f"{_source_rm(t)} minus {_target_rm(t)} per {per}, overall accuracy")
                          + "<br><sup>whiskers: 95% bootstrap intervals</sup>",
                          yaxis_title=DIFF_AXIS, xaxis_title="target language")
        return languages_then_average(fig, t["lang"])
    err_hi = t["ci_high"] - t["diff"]
    err_lo = t["diff"] - t["ci_low"]
    # a bar is coloured by its sign only where its interval excludes 0: red and blue bars whose intervals all
    # cross 0 read as findings
    clear = (t["ci_low"] > 0) | (t["ci_high"] < 0)
    colors = ["#555" if lang == "average" else (UNCLEAR if not c else "#2b8cbe" if d >= 0 else "#e34a33")
              for lang, d, c in zip(t["lang"], t["diff"], clear)]
    fig = go.Figure(go.Bar(x=t["lang"], y=t["diff"], marker_color=colors, customdata=t[["ci_low", "ci_high"]],
                           error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                           hovertemplate="%{x}: %{y:+.3f} (95% CI %{customdata[0]:+.3f} to %{customdata[1]:+.3f})"
                                         "<extra></extra>"))
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(title=(title or f"{_source_rm(t)} minus {_target_rm(t)}, overall accuracy")
                      + CI_NOTE.replace("the English RM", f"the {_source_rm(t)}"),
                      yaxis_title=DIFF_AXIS, xaxis_title="target language")
    return languages_then_average(fig, t["lang"])


UNCLEAR = "#b8b8b8"  # a difference whose 95% interval includes 0
CI_NOTE = ("<br><sup>whiskers: 95% bootstrap intervals; grey: the interval includes 0 (blue / red: the English RM"
           " better / worse)</sup>")
DIFF_AXIS = "accuracy difference (0.01 = 1 point)"


def _source_rm(t: pd.DataFrame) -> str:
    """The RM the bars compare with each target's: "English RM", or the one the report's ``english`` named."""
    names = set(t["a"].dropna().astype(str)) if "a" in t.columns else set()
    return f"{names.pop()} RM" if len(names) == 1 and names != {"en"} else "English RM"


def _target_rm(t: pd.DataFrame) -> str:
    """Which RM each bar compares with: each target language's own RM, native or translate-train (the average
    row names the pattern, e.g. "{lang}-mt"; every other row a concrete RM)."""
    if "b" not in t.columns or t.empty:
        return "the target RM"
    pattern = next((b for b in t["b"].astype(str) if "{lang}" in b), None)
    if pattern is None:  # no average row: derive the suffix from a row
        first = t.iloc[0]
        pattern = str(first["b"]).replace(str(first["lang"]), "{lang}", 1)
    suffix = pattern.replace("{lang}", "")
    return "each target language's own RM" + (f" ({suffix.lstrip('-')}: translate-train)" if suffix else "")


def category_bars(acc: pd.DataFrame, *, source_col: str = "source") -> go.Figure:
    """Grouped bars of accuracy per category and language, one panel per source RM."""
    import plotly.express as px

    d = acc[acc["category"] != "overall"]
    has_source = source_col in d.columns  # one RM's table may come without it
    rms = sorted(d[source_col].astype(str).unique()) if has_source else []
    cats = list(dict.fromkeys([c for c in CATEGORY_COLORS if c in set(d["category"])] + sorted(set(d["category"]))))
    fig = px.bar(d, x="lang", y="accuracy", color="category", barmode="group",
                 facet_row=source_col if has_source else None, category_orders={"category": cats},
                 color_discrete_map=CATEGORY_COLORS,
                 error_y=d["ci_high"] - d["accuracy"], error_y_minus=d["accuracy"] - d["ci_low"],
                 height=140 + 220 * max(len(rms), 1),
                 title=(f"Accuracy per category and target language: RM {', '.join(rms)}" if len(rms) == 1
                        else "Accuracy per category and target language, per RM")
                 + "<br><sup>whiskers: 95% bootstrap intervals</sup>")
    fig.update_yaxes(range=[0, 1])
    # every panel names its languages (plotly labels only the bottom one) and its RM plainly ("RM en", not
    # "source=en" written sideways)
    fig.for_each_annotation(lambda a: a.update(text="RM " + a.text.split("=", 1)[-1]) if "=" in a.text else None)
    fig.update_xaxes(showticklabels=True, title_text="")
    return fig.update_xaxes(title_text="target language", row=1)


# RewardBench's categories in an order and colours that colour-blind readers tell apart (Okabe-Ito)
CATEGORY_COLORS = dict(zip(CATEGORIES, ["#0072B2", "#E69F00", "#009E73", "#CC79A7"]))
