"""Plotly figures. Functions return figures and never write files; the runner decides where they go.

``transfer``: transfer heatmaps and English-vs-target bars; ``probe``: representation-shift figures;
``align``: best-of-n win rates.
"""

from .align import win_rate_bars  # noqa: F401
from .probe import cka_by_layer, cross_lingual_heatmap, norm_violin, sv_ratio_box, umap_scatter  # noqa: F401
from .train import training_curves  # noqa: F401
from .transfer import category_bars, english_vs_target_bars, transfer_heatmap  # noqa: F401


def use_embedding_renderer(shared_js: str | None = None) -> None:
    """Make figures in executed notebooks survive nbconvert to HTML, offline.

    Plotly's default renderer in a papermill kernel emits only a MIME bundle, which nbconvert's HTML exporter
    drops. Each figure gets HTML+JS here (plotly's own ``notebook`` renderer also loads MathJax from a CDN for
    every figure); ``plotly_mimetype`` keeps the interactive bundle for JupyterLab. plotly.js itself is shown
    once, in the calling cell's output (``setup_notebook``'s, the first of every notebook: re-running or
    reordering figure cells cannot lose it, as embedding it in the first figure did), so reports open offline.
    ``shared_js``: a relative path to a ``plotly.min.js`` that every figure loads instead (the runner's cell
    notebooks share the run's ``figures/plotly.min.js``: 4.9 MB once per run instead of once per notebook,
    ~220 MB for the default run).
    """
    import hashlib

    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    drawn: dict[str, int] = {}

    class Html(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            # the figure's div named by its content (and how often it was drawn): a notebook rendered again gives
            # the same HTML, so two renders of a report diff only where results differ (plotly drew a uuid4)
            digest = hashlib.sha256(pio.to_json(fig_dict, validate=False).encode()).hexdigest()[:12]
            drawn[digest] = drawn.get(digest, 0) + 1
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs=shared_js or False, include_mathjax=False,
                                             full_html=False, validate=False,
                                             div_id=f"fig-{digest}-{drawn[digest]}")}

    pio.renderers["xlrm_html"] = Html()
    pio.renderers.default = "xlrm_html+plotly_mimetype"
    if shared_js is None:
        _show_html(plotly_script())


def plotly_script() -> str:
    """plotly.js as the ``<script>`` a page's figures use (its global ``Plotly``), with no CDN for MathJax."""
    from plotly.offline import get_plotlyjs

    return ('<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
            f'<script charset="utf-8" type="text/javascript">{get_plotlyjs()}</script>')


def _show_html(html: str) -> None:
    """Display raw HTML in the running kernel's current output; nothing outside a kernel (a script, a test)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - ipykernel brings IPython
        return
    if get_ipython() is not None:
        display(HTML(html))
