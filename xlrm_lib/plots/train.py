"""Training curves of a reward model (returns figures, never writes files)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curves(history: pd.DataFrame) -> go.Figure:
    """Loss, pairwise accuracy and reward margin per logged step (``xlrm_lib.study.train_history``)."""
    panels = [c for c in ("loss", "accuracy", "margin") if c in history.columns]
    if not panels or "step" not in history.columns:
        raise ValueError(f"history needs a 'step' column and one of loss/accuracy/margin; got {list(history.columns)}")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    for i, col in enumerate(panels, 1):
        fig.add_trace(go.Scatter(x=history["step"], y=history[col], mode="lines+markers", name=col), row=1, col=i)
    fig.update_xaxes(title_text="optimizer step")
    return fig.update_layout(title="Training (Bradley-Terry)", showlegend=False, height=320)
