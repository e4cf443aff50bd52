"""Plotly figures. Functions return figures and never write files; the runner decides where they go.

``transfer``: transfer heatmaps and English-vs-target bars; ``probe``: representation-shift figures;
``align``: best-of-n win rates.
"""

from .align import win_rate_bars  # noqa: F401
from .probe import cka_by_layer, norm_violin, sv_ratio_box, umap_scatter  # noqa: F401
from .train import training_curves  # noqa: F401
from .transfer import category_bars, english_vs_target_bars, transfer_heatmap  # noqa: F401


def use_embedding_renderer(shared_js: str | None = None) -> None:
    """Make figures in executed notebooks survive nbconvert to HTML, offline.

    Plotly's default renderer in a papermill kernel emits only a MIME bundle, which nbconvert's HTML exporter
    drops. Each figure gets HTML+JS here: the first one of the kernel embeds plotly.js (no CDN: reports open
    offline; plotly's own ``notebook`` renderer also loads MathJax from a CDN for every figure), the others use
    it; ``plotly_mimetype`` keeps the interactive bundle for JupyterLab. ``shared_js``: a relative path to a
    ``plotly.min.js`` that every figure loads instead (the runner's cell notebooks share the run's
    ``figures/plotly.min.js``: 4.9 MB once per run instead of twice per notebook, ~220 MB for the default run).
    """
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class Html(MimetypeRenderer):
        embedded = False  # plotly.js is in an earlier output of this kernel

        def to_mimebundle(self, fig_dict):
            script = shared_js if shared_js is not None else not Html.embedded
            Html.embedded = True
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=script, include_mathjax=False,
                                             full_html=False, validate=False)}

    pio.renderers["xlrm_html"] = Html()
    pio.renderers.default = "xlrm_html+plotly_mimetype"
