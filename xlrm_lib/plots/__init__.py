"""Plotly figures. Functions return figures and never write files; the runner decides where they go.

``transfer``: transfer heatmaps and English-vs-target bars; ``probe``: representation-shift figures;
``align``: best-of-n win rates.
"""

from .align import win_rate_bars  # noqa: F401
from .probe import cka_by_layer, norm_violin, sv_ratio_box, umap_scatter  # noqa: F401
from .train import training_curves  # noqa: F401
from .transfer import category_bars, english_vs_target_bars, transfer_heatmap  # noqa: F401


def use_embedding_renderer() -> None:
    """Make figures in executed notebooks survive nbconvert to HTML.

    Plotly's default renderer in a papermill kernel emits only a MIME bundle, which nbconvert's HTML exporter
    drops. ``notebook`` writes HTML+JS with plotly.js embedded once per notebook (no CDN: reports open
    offline); ``plotly_mimetype`` keeps the interactive bundle for JupyterLab.
    """
    import plotly.io as pio

    pio.renderers.default = "notebook+plotly_mimetype"
