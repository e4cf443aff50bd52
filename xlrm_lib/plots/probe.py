"""Figures for representation shift (:mod:`xlrm_lib.probe`). Each function returns a plotly Figure.

>>> fig = cka_by_layer({"rm-en": [1.0, 0.9, 0.7], "rm-ko": [1.0, 0.8, 0.5]})
>>> [trace.name for trace in fig.data]
['rm-en', 'rm-ko']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

# one colour per language in every figure of the suite; others get the spare colours in order of appearance
LANG_COLORS = {
    "en": "#1f77b4", "es": "#ff7f0e", "it": "#2ca02c", "ko": "#d62728", "zh": "#9467bd",
    "de": "#8c564b", "fr": "#e377c2", "ru": "#7f7f7f", "ar": "#bcbd22", "ja": "#17becf",
}
_SPARE = px.colors.qualitative.Dark24


def lang_colors(langs) -> dict[str, str]:
    """Colour for each language in ``langs``: fixed for known codes, spares for the rest."""
    spare = iter(c for c in _SPARE if c not in LANG_COLORS.values())
    out = {}
    for lang in dict.fromkeys(langs):
        out[lang] = LANG_COLORS.get(lang) or next(spare, "#333333")
    return out


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {list(columns)}; missing {missing} (has {list(df.columns)})")


def _long(data, value: str) -> pd.DataFrame:
    """A long DataFrame, or dict model -> values (1-D array) / DataFrame, as a frame with a model column."""
    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"expected a DataFrame or a dict model -> values; got {type(data).__name__}")
    frames = []
    for model, values in data.items():
        frame = values.copy() if isinstance(values, pd.DataFrame) else pd.DataFrame({value: np.asarray(values)})
        frames.append(frame.assign(model=model))
    return pd.concat(frames, ignore_index=True)


def cka_by_layer(df_or_dict) -> go.Figure:
    """CKA with the base model per layer, one line per RM.

    Accepts a DataFrame with columns model, layer, cka, or a dict model -> array (n_layers,).
    """
    if isinstance(df_or_dict, dict):
        df = _long(df_or_dict, "cka")
        df["layer"] = df.groupby("model").cumcount()
    else:
        df = df_or_dict
    _require(df, ["model", "layer", "cka"], "cka_by_layer")
    fig = px.line(df, x="layer", y="cka", color="model", markers=True,
                  labels={"cka": "CKA vs base", "layer": "layer (0 = embeddings)"})
    return fig.update_layout(title="Representation similarity to the base model", yaxis_range=[None, 1.02])


def sv_ratio_box(df) -> go.Figure:
    """Per-item singular-value ratio s1 / sum(s), one box per model.

    Accepts a DataFrame with columns model, sv_ratio, or a dict model -> array (n_items,).
    """
    df = _long(df, "sv_ratio")
    _require(df, ["model", "sv_ratio"], "sv_ratio_box")
    fig = px.box(df, x="model", y="sv_ratio", points="outliers", labels={"sv_ratio": "s1 / sum(s)"})
    return fig.update_layout(title="Cross-lingual alignment of items (higher = more shared)")


def norm_violin(df) -> go.Figure:
    """Hidden-state norms per language (colour), one panel per model if a model column is present.

    Accepts the output of :func:`xlrm_lib.probe.hidden_norms` (columns lang, norm, optionally model) or a
    dict model -> such a DataFrame.
    """
    df = _long(df, "norm")
    _require(df, ["lang", "norm"], "norm_violin")
    colors = lang_colors(df["lang"])
    fig = px.violin(df, x="lang", y="norm", color="lang", box=True, color_discrete_map=colors,
                    category_orders={"lang": list(colors)},
                    facet_col="model" if "model" in df.columns else None)
    # the legend names each colour: with a panel per model, plotly labels only every other language's violin
    return fig.update_layout(title="Hidden-state norms by language (last probed layer)", legend_title_text="language")


def umap_scatter(coords_df: pd.DataFrame) -> go.Figure:
    """UMAP coordinates (columns x, y, lang, model) coloured by language, one panel per model."""
    _require(coords_df, ["x", "y", "lang", "model"], "umap_scatter")
    colors = lang_colors(coords_df["lang"])
    hover = [c for c in ("item", "text") if c in coords_df.columns]
    fig = px.scatter(coords_df, x="x", y="y", color="lang", facet_col="model", color_discrete_map=colors,
                     category_orders={"lang": list(colors)}, hover_data=hover or None)
    # UMAP axes have no units, and each panel is its own embedding
    fig.update_xaxes(showticklabels=False, title=None, matches=None)
    fig.update_yaxes(showticklabels=False, title=None, matches=None)
    return fig.update_layout(title="UMAP of hidden states (last probed layer)", legend_title_text="language")


def cross_lingual_heatmap(table: pd.DataFrame) -> go.Figure:
    """The base model's CKA between languages (:func:`xlrm_lib.study.representation_shift`'s
    ``cross_lingual_cka_base``: a ``lang`` column and one column per language), a language x language heatmap."""
    from .transfer import transfer_heatmap

    _require(table, ["lang"], "cross_lingual_heatmap")
    return transfer_heatmap(table.set_index("lang"),
                            title="Cross-lingual CKA within the base model (last probed layer)",
                            x_title="language", y_title="language", hover="%{y} vs %{x}", value_title="CKA")
