"""Plotly figures. Functions return figures and never write files; the runner decides where they go.

``transfer``: transfer heatmaps and English-vs-target bars; ``probe``: representation-shift figures;
``align``: best-of-n win rates.
"""

from .align import win_rate_bars  # noqa: F401
from .probe import cka_by_layer, norm_violin, sv_ratio_box, umap_scatter  # noqa: F401
from .train import training_curves  # noqa: F401
from .transfer import category_bars, english_vs_target_bars, transfer_heatmap  # noqa: F401


def use_embedding_renderer(shared_js: str | None = None) -> None:
    """Make figures in executed notebooks survive nbconvert to HTML.

    Plotly's default renderer in a papermill kernel emits only a MIME bundle, which nbconvert's HTML exporter
    drops. ``notebook`` writes HTML+JS with plotly.js embedded once per notebook (no CDN: reports open
    offline); ``plotly_mimetype`` keeps the interactive bundle for JupyterLab. ``shared_js``: a relative path
    to a ``plotly.min.js`` to load instead of embedding it (the runner's cell notebooks share the run's
    ``figures/plotly.min.js``: 4.9 MB once per run instead of twice per notebook, ~220 MB for the default run).
    """
    import plotly.io as pio

    if shared_js is None:
        pio.renderers.default = "notebook+plotly_mimetype"
        return
    from plotly.io.base_renderers import MimetypeRenderer

    class SharedScript(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=shared_js, full_html=False,
                                             validate=False)}

    pio.renderers["xlrm_shared_js"] = SharedScript()
    pio.renderers.default = "xlrm_shared_js+plotly_mimetype"
