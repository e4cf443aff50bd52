"""Plotly figures. Functions return figures and never write files; the runner decides where they go.

``transfer``: transfer heatmaps and English-vs-target bars; ``probe``: representation-shift figures;
``align``: best-of-n win rates.
"""

from .transfer import category_bars, english_vs_target_bars, transfer_heatmap  # noqa: F401


def use_embedding_renderer() -> None:
    """Make figures in executed notebooks survive nbconvert to HTML.

    Plotly's default renderer in a papermill kernel emits a MIME bundle that nbconvert's HTML exporter
    drops; ``notebook_connected+plotly_mimetype`` writes the figure as HTML+JS that renders in the HTML
    report, and keeps the MIME bundle for JupyterLab.
    """
    import plotly.io as pio

    pio.renderers.default = "notebook_connected+plotly_mimetype"
