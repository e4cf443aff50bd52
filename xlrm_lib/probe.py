"""Representation shift between a base model and reward models (Hong et al. 2025, section 5).

Extract pooled hidden states of parallel texts, then compare them: linear CKA between models layer by layer,
CKA between languages within one model, the singular-value ratio f = s1 / sum(s) of one item's
representations across languages (the paper's measure; closer to the base model = less shift), hidden-state
norms, and 2-D UMAP views.

>>> states = {lang: hidden_states(rm, tok, texts[lang]) for lang in texts}       # doctest: +SKIP
>>> base = {lang: hidden_states(base_model, tok, texts[lang]) for lang in texts}  # doctest: +SKIP
>>> shift_summary(base, {"rm-en": states})                                      # doctest: +SKIP

Arrays of states are ``(n_items, n_layers, d)`` float32; row ``i`` is the same item in every language and
every model. CKA runs in float64 on the CPU with NumPy.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import store
from .arch import is_decoder
from .checks import layer_list, positive_int
from .formatting import fit_length, forward_kwargs, position_ids
from .models import tokenizer_identity, weights_digest

POOLINGS = ("auto", "mean", "cls", "last")
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- hidden states

def _resolve_pooling(model, pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {list(POOLINGS)}")
    if pooling != "auto":
        return pooling
    cfg = model.config
    names = [type(model).__name__, *(getattr(cfg, "architectures", None) or [])]
    causal = not getattr(cfg, "is_encoder_decoder", False) and (
        is_decoder(cfg) or any("CausalLM" in name for name in names))
    # a decoder's last real token is the only one that has seen the whole text (and is what RM heads read)
    return "last" if causal else "mean"


def resolve_layers(layers, n_total: int) -> list[int]:
    layers = layer_list("layers", layers)
    if layers == "all":
        return list(range(n_total))
    out = []
    for layer in layers:
        if not -n_total <= int(layer) < n_total:
            raise ValueError(f"layer {layer} out of range: the model has {n_total} hidden states (embeddings + "
                             f"{n_total - 1} blocks); expected {-n_total}..{n_total - 1}")
        out.append(int(layer) % n_total)
    return out


def _pool(h: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, d), (batch, seq) -> (batch, d)."""
    if pooling == "cls":
        return h[:, 0]
    if pooling == "last":
        # index of the last real token, whatever the padding side: argmax of mask * (1..seq)
        last = (mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(1)
        return h[torch.arange(len(h), device=h.device), last]
    # where, not multiply: padding rows of a left-padded decoder may hold NaN, and NaN * 0 is NaN
    return torch.where(mask[:, :, None].bool(), h, 0.0).sum(1) / mask.sum(1, keepdim=True)


def _forward(body, enc, pooling: str, layers, rows: list[int]) -> torch.Tensor:
    """Pooled states of one tokenized batch, (batch, n_layers, d) float32; ``rows``: the texts' indices."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    empty = (mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"texts {[rows[i] for i in empty]} have no tokens")
    if pooling == "cls" and not bool(mask[:, 0].all()):
        raise ValueError("pooling='cls' reads position 0, which is padding here; "
                         "set tokenizer.padding_side = 'right'")
    # positions count real tokens only, so left padding changes nothing
    kwargs = forward_kwargs(body, {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask),
                                   "output_hidden_states": True})
    if "use_cache" in inspect.signature(body.forward).parameters:
        kwargs["use_cache"] = False
    hs = body(**kwargs).hidden_states
    if hs is None:
        raise ValueError(f"{type(body).__name__} returned no hidden_states; "
                         "encoder-decoder models are not supported")
    # pool layer by layer: stacking all layers first would hold (batch, layers, seq, d) in memory
    pooled = []
    for i in resolve_layers(layers, len(hs)):
        p = _pool(hs[i].float(), mask, pooling)
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"non-finite activations at layer {i} (hidden_states[{i}]) for one of the texts "
                             f"{sorted(rows)}; check the weights and dtype "
                             "(float16 overflow is a common cause)")
        pooled.append(p)
    return torch.stack(pooled, 1)


STATES_VERSION = 3  # part of the hidden-state cache key; 2: RoBERTa-family encoders number their own positions;
# 3: every weight tensor in the model digest, texts in the RMs' format


def model_digest(model) -> str:
    """A key of ``model``'s identity for :func:`hidden_states`' cache: config, path and every weight tensor
    (:func:`xlrm_lib.models.weights_digest`; the first and last tensors alone did not tell a LoRA retrain apart).
    Compute it once per model and pass it to each ``hidden_states`` call."""
    h = hashlib.sha256()
    h.update(model.config.to_json_string().encode())
    h.update(str(getattr(model, "name_or_path", "")).encode())
    h.update(weights_digest(model).encode())
    return h.hexdigest()


def _cache_key(model_key: str, tokenizer, texts, pooling, layers, max_length, truncation_side) -> str:
    h = hashlib.sha256(model_key.encode())
    layers = layers if isinstance(layers, str) else [int(i) for i in np.atleast_1d(layers)]
    meta = [type(tokenizer).__name__, tokenizer_identity(tokenizer), len(tokenizer),
            truncation_side, list(texts), pooling, layers, max_length, STATES_VERSION]
    h.update(json.dumps(meta, ensure_ascii=False).encode())
    return h.hexdigest()


def hidden_states(model, tokenizer, texts, *, layers="all", pooling: str = "auto", batch_size: int = 16,
                  max_length: int = 256, truncation_side: str | None = None,
                  cache_dir: str | os.PathLike | None = None, model_key: str | None = None) -> np.ndarray:
    """Pooled hidden states of ``texts`` at each requested layer.

    Parameters
    ----------
    model : transformers model
        A bare ``*Model`` or a ``*ForSequenceClassification`` / ``*ForCausalLM`` wrapper. Index 0 of its
        hidden states is the embedding layer.
    tokenizer : transformers tokenizer
        Must have a pad token. Texts are tokenized as given (apply the chat template first).
    texts : list of str, or list of token-id lists, length n_texts
        Token ids (e.g. :func:`xlrm_lib.formatting.encode` of (prompt, answer) pairs in an RM's format) are
        used as they are: ``max_length`` and ``truncation_side`` apply to strings only.
    layers : "all" or list of int
        Hidden-state indices; negative counts from the end as in Python.
    pooling : {"auto", "mean", "cls", "last"}
        "mean" averages real tokens (attention-mask weighted), "cls" reads position 0, "last" the last real
        token under left or right padding. "auto" is "last" for decoders and "mean" otherwise.
    batch_size, max_length : int
        Texts longer than ``max_length`` tokens are truncated on ``truncation_side`` (``"left"`` keeps their
        end, where an RM reads; None: the tokenizer's own side).
    cache_dir : path, optional
        Reuse results stored here under a key of the model, tokenizer, texts and arguments.
    model_key : str, optional
        :func:`model_digest` of ``model``, computed once by a caller that probes one model many times
        (it is the slow part of the key); computed here when not given.

    Returns
    -------
    np.ndarray, shape (n_texts, n_layers, d), float32
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty list of strings; got {type(texts).__name__} {texts!r:.60}")
    positive_int("batch_size", batch_size)
    positive_int("max_length", max_length)
    encoded = not isinstance(texts[0], str)
    kind = (lambda t: isinstance(t, (list, tuple)) and len(t) > 0 and all(isinstance(i, int) for i in t)) \
        if encoded else (lambda t: isinstance(t, str))
    if not all(map(kind, texts)):
        bad = next(i for i, t in enumerate(texts) if not kind(t))
        raise ValueError(f"texts[{bad}] is {texts[bad]!r:.80}; expected every text to be a string, or every one a "
                         "non-empty list of token ids")
    if getattr(tokenizer, "pad_token", None) is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token "
                         "(pooling reads the attention mask, so which token pads does not matter)")
    pooling = _resolve_pooling(model, pooling)
    if pooling == "cls" and is_decoder(model.config):
        raise ValueError(f"pooling='cls' on a decoder ({type(model).__name__}): its first token sees only itself, "
                         "so every text would get the same vector; use 'last' (what its score head reads) or 'auto'")
    max_length = fit_length(max_length, model)
    side = truncation_side or tokenizer.truncation_side
    if side not in ("left", "right"):
        raise ValueError(f"truncation_side = {truncation_side!r}; expected 'left', 'right' or None")
    texts = [list(t) for t in texts] if encoded else list(texts)
    path = None
    if cache_dir is not None:
        key = _cache_key(model_key or model_digest(model), tokenizer, texts, pooling, layers, max_length, side)
        path = Path(cache_dir) / f"hidden-{key[:32]}.npy"
        cached = _read_cached(path, len(texts))
        if cached is not None:
            return cached
    if encoded:
        ids = texts
    else:
        before, tokenizer.truncation_side = tokenizer.truncation_side, side
        try:
            ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        finally:
            tokenizer.truncation_side = before
    result = _pooled_states(model, tokenizer, ids, pooling=pooling, layers=layers, batch_size=batch_size)
    if path is not None:
        with store.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, result)  # a file object: given a path, np.save would append ".npy" to the temp name
    return result


def _read_cached(path: Path, n_texts: int) -> np.ndarray | None:
    """The hidden states stored at ``path`` if it holds ``n_texts`` readable rows; else None (computed again)."""
    if not path.exists():
        return None
    try:
        cached = np.load(path)
    except (OSError, ValueError, EOFError) as e:  # cut short (a full disk, an interrupted copy): made again
        log.warning("hidden-state cache file %s is unreadable (%s); computing those states again", path, e)
        return None
    if cached.shape[0] != n_texts:
        log.warning("hidden-state cache file %s holds %d rows, not %d; computing them again", path,
                    cached.shape[0], n_texts)
        return None
    return cached


def _pooled_states(model, tokenizer, ids: list[list[int]], *, pooling: str, layers, batch_size: int) -> np.ndarray:
    """``(len(ids), n_layers, d)`` float32: the token-id lists run through ``model`` in batches of similar lengths
    (sorted, so little of each forward is padding), rows put back in the order given."""
    # the wrapper's hidden states are its body's; calling the body skips the LM head, whose logits
    # (batch x seq x vocab) would be ~2 GB per batch for a 128k-vocabulary model
    body = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    result = None
    try:
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                rows = order[start:start + batch_size].tolist()
                enc = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                enc = {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}
                pooled = _forward(body, enc, pooling, layers, rows).cpu().numpy()
                if result is None:
                    result = np.empty((len(ids), *pooled.shape[1:]), dtype=np.float32)
                result[rows] = pooled
    finally:
        model.train(was_training)
    return result


# ----------------------------------------------------------------------------- CKA

def _as_2d(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got shape {X.shape}")
    _finite(X, name)
    return X


def _finite(a: np.ndarray, name: str) -> None:
    """A NaN in the states would make every statistic NaN (or fail deep in LAPACK): name it instead."""
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {int((~np.isfinite(a)).sum())} non-finite values (NaN/inf); check the "
                         "hidden states it came from (dtype overflow, a broken checkpoint)")


class UndefinedCKAError(ValueError):
    """CKA of a representation that does not vary (a constant layer): no similarity to speak of."""


def _grams(xs: np.ndarray) -> np.ndarray:
    """(n, layers, d) -> (layers, n, n) Gram matrices of centered features, zero diagonal."""
    xs = np.moveaxis(xs, 1, 0)
    # centering leaves HSIC_u unchanged but avoids cancellation with the large means of LLM activations
    xs = xs - xs.mean(axis=1, keepdims=True)
    K = xs @ np.swapaxes(xs, 1, 2)
    idx = np.arange(K.shape[1])
    K[:, idx, idx] = 0.0
    return K


def _hsic_u(K: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Unbiased HSIC for every pair: K (a, n, n), L (b, n, n), zero diagonals -> (a, b)."""
    n = K.shape[-1]
    trace = K.reshape(len(K), -1) @ L.reshape(len(L), -1).T  # tr(K L) = sum(K * L) for symmetric L
    k1, l1 = K.sum(-1), L.sum(-1)
    return (trace + np.outer(k1.sum(-1), l1.sum(-1)) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1.T)) \
        / (n * (n - 3))


def linear_cka(X, Y, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n examples.

    Parameters
    ----------
    X : array, shape (n, d1)
    Y : array, shape (n, d2)
    debiased : bool
        False: Kornblith et al. (2019), biased towards 1 at small n / large d. True: the unbiased HSIC
        estimator (Song et al. 2012), near 0 for independent data; needs n >= 4 and can be slightly < 0.

    Returns
    -------
    float
    """
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same number of rows; got {X.shape} and {Y.shape}")
    need = 4 if debiased else 2
    if len(X) < need:
        raise ValueError(f"{'debiased' if debiased else 'biased'} CKA needs n >= {need}; got n={len(X)}")
    if debiased:
        K, L = _grams(X[:, None]), _grams(Y[:, None])
        xy, xx, yy = _hsic_u(K, L)[0, 0], _hsic_u(K, K)[0, 0], _hsic_u(L, L)[0, 0]
    else:
        X, Y = X - X.mean(0), Y - Y.mean(0)
        K, L = X @ X.T, Y @ Y.T
        xy, xx, yy = (K * L).sum(), (K * K).sum(), (L * L).sum()
    if xx <= 0 or yy <= 0:
        raise UndefinedCKAError(f"CKA is undefined: {'X' if xx <= 0 else 'Y'} has (near) zero variance")
    return float(xy / np.sqrt(xx * yy))


class MinibatchCKA:
    """Debiased linear CKA accumulated over minibatches (Nguyen, Raghu & Kornblith 2021).

    Each ``update`` adds one batch's unbiased HSIC for every (x-layer, y-layer) pair; ``compute`` returns
    mean HSIC_xy / sqrt(mean HSIC_xx * mean HSIC_yy). Memory is O(n_layers_x * n_layers_y), not O(n), so it
    scales to any number of examples. Batches should be random samples of the same population.

    >>> cka = MinibatchCKA()
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(4):
    ...     x = rng.normal(size=(64, 2, 8)); cka.update(x, x)
    >>> np.round(np.diag(cka.compute()), 6).tolist()
    [1.0, 1.0]
    """

    def __init__(self):
        self._xy = self._xx = self._yy = None
        self.n_batches = 0

    def update(self, xs, ys) -> None:
        """Add one batch: xs (batch, n_layers_x, d), ys (batch, n_layers_y, d')."""
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        if xs.ndim != 3 or ys.ndim != 3:
            raise ValueError(f"xs and ys must be (batch, n_layers, d); got shapes {xs.shape} and {ys.shape}")
        if len(xs) != len(ys) or len(xs) < 4:
            raise ValueError(f"xs and ys need the same batch size >= 4; got {len(xs)} and {len(ys)}")
        if self._xy is not None and self._xy.shape != (xs.shape[1], ys.shape[1]):
            raise ValueError(f"layer counts changed: earlier batches had {self._xy.shape}, "
                             f"this one has {(xs.shape[1], ys.shape[1])}")
        K, L = _grams(xs), _grams(ys)
        xy, xx, yy = _hsic_u(K, L), np.diag(_hsic_u(K, K)), np.diag(_hsic_u(L, L))
        if self._xy is None:
            self._xy, self._xx, self._yy = xy, xx, yy
        else:
            self._xy, self._xx, self._yy = self._xy + xy, self._xx + xx, self._yy + yy
        self.n_batches += 1

    def compute(self) -> np.ndarray:
        """CKA for every layer pair, shape (n_layers_x, n_layers_y)."""
        if self._xy is None:
            raise ValueError("MinibatchCKA.compute() called before any update()")
        # the 1/n_batches factors of the three means cancel
        return self._xy / np.sqrt(np.outer(self._xx, self._yy))


def _at_layer(states, layer: int, name: str) -> np.ndarray:
    """(n, n_layers, d) -> (n, d) at ``layer``."""
    a = np.asarray(states)
    if a.ndim != 3:
        raise ValueError(f"{name} must be (n_items, n_layers, d); got shape {a.shape}")
    if not -a.shape[1] <= layer < a.shape[1]:
        raise ValueError(f"layer {layer} out of range for {name} with {a.shape[1]} layers; "
                         f"expected {-a.shape[1]}..{a.shape[1] - 1}")
    _finite(a[:, layer, :], f"{name} at layer {layer}")
    return a[:, layer, :]


def _same_n(states_by_lang: dict, min_langs: int = 1) -> int:
    if len(states_by_lang) < min_langs:
        raise ValueError(f"need at least {min_langs} languages; got {list(states_by_lang)}")
    sizes = {lang: len(s) for lang, s in states_by_lang.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all languages need the same items (rows aligned); got n per language {sizes}")
    return next(iter(sizes.values()))


FULL_CKA_MAX_N = 4096  # beyond this many rows layerwise_cka works in minibatches (n x n Grams: 128 MB here)
CKA_BATCH = 1024


def layerwise_cka(base_states, rm_states, *, debiased: bool = True, batch_size: int | None | str = "auto",
                  seed: int = 0) -> np.ndarray:
    """CKA between two models at each layer, on the same texts.

    base_states, rm_states : (n, n_layers, d) and (n, n_layers, d'). With ``batch_size`` the rows are shuffled
    (``seed``) and fed to :class:`MinibatchCKA` (debiased only); a last batch under 4 rows is dropped.
    ``"auto"``: the exact estimator up to :data:`FULL_CKA_MAX_N` rows, minibatches of :data:`CKA_BATCH` beyond
    (the exact one is quadratic: 11,500 rows took ~30 s and 3 GB per layer on 2 cores).
    A layer where either model's states do not vary (e.g. the embeddings of one shared last token) is NaN.
    Returns shape (n_layers,).
    """
    a, b = np.asarray(base_states), np.asarray(rm_states)
    if a.ndim != 3 or b.ndim != 3 or a.shape[:2] != b.shape[:2]:
        raise ValueError(f"base_states and rm_states must be (n, n_layers, d) with the same n and n_layers; "
                         f"got {a.shape} and {b.shape}")
    _finite(a, "base_states")
    _finite(b, "rm_states")
    if batch_size == "auto":
        batch_size = None if len(a) <= FULL_CKA_MAX_N or not debiased else CKA_BATCH
    if batch_size is None:
        return np.array([_cka_or_nan(a[:, i], b[:, i], debiased) for i in range(a.shape[1])])
    positive_int("batch_size", batch_size, minimum=4)  # the debiased estimator needs 4 rows per batch
    if not debiased:
        raise ValueError("the minibatch estimator is debiased only; pass debiased=True or batch_size=None")
    if len(a) < 4:
        raise ValueError(f"{len(a)} items; the debiased CKA needs at least 4 (more for a stable value)")
    order = np.random.default_rng(seed).permutation(len(a))
    cka = MinibatchCKA()
    for start in range(0, len(a), batch_size):
        rows = order[start:start + batch_size]
        if len(rows) >= 4:
            cka.update(a[rows], b[rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.diag(cka.compute()).copy()
    out[~np.isfinite(out)] = np.nan  # a layer without variance
    return out


def _cka_or_nan(x, y, debiased: bool) -> float:
    try:
        return linear_cka(x, y, debiased=debiased)
    except UndefinedCKAError:
        return float("nan")


def cross_lingual_cka(states_by_lang: dict[str, np.ndarray], *, layer: int = -1,
                      debiased: bool = True) -> pd.DataFrame:
    """CKA between every pair of languages within one model: languages x languages DataFrame."""
    _same_n(states_by_lang, min_langs=1)
    reps = {lang: _at_layer(s, layer, f"states[{lang!r}]") for lang, s in states_by_lang.items()}
    langs = list(reps)
    grid = [[linear_cka(reps[a], reps[b], debiased=debiased) for b in langs] for a in langs]
    return pd.DataFrame(grid, index=pd.Index(langs, name="lang"), columns=langs)


# ----------------------------------------------------------------------------- singular values and norms

def sv_ratio(H) -> float:
    """sigma_1 / sum(sigma) of H (k, d): one item's representations in k languages.

    1 when all k vectors are parallel (rank 1); 1/k for k orthogonal rows of equal norm.
    """
    H = _as_2d(H, "H")
    s = np.linalg.svd(H, compute_uv=False)
    if s.sum() <= 0:
        raise ValueError(f"sv_ratio is undefined for an all-zero matrix of shape {H.shape}")
    return float(s[0] / s.sum())


def sv_ratios(states_by_lang: dict[str, np.ndarray], *, layer: int = -1) -> np.ndarray:
    """:func:`sv_ratio` of each item across languages; returns shape (n_items,)."""
    _same_n(states_by_lang, min_langs=2)
    H = np.stack([_at_layer(s, layer, f"states[{lang!r}]") for lang, s in states_by_lang.items()], 1)
    s = np.linalg.svd(H.astype(np.float64), compute_uv=False)  # (n_items, min(k, d))
    total = s.sum(1)
    if (total <= 0).any():
        raise ValueError(f"items {np.flatnonzero(total <= 0).tolist()} are all-zero in every language")
    return s[:, 0] / total


def hidden_norms(states_by_lang: dict[str, np.ndarray], *, layer: int = -1) -> pd.DataFrame:
    """L2 norm of each item's representation: long DataFrame with columns lang, item, norm."""
    if not states_by_lang:
        raise ValueError("hidden_norms needs the states of at least one language; got none")
    frames = [pd.DataFrame({"lang": lang, "item": np.arange(len(s)),
                            "norm": np.linalg.norm(_at_layer(s, layer, f"states[{lang!r}]"), axis=1)})
              for lang, s in states_by_lang.items()]
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- UMAP

def umap_embed(H, *, random_state: int | None = 0, n_neighbors: int = 15, min_dist: float = 0.1,
               metric: str = "cosine") -> np.ndarray:
    """2-D UMAP of H (n, d) -> (n, 2).

    With n <= n_neighbors, n_neighbors drops to n - 1 (n >= 5 needed). A fixed ``random_state`` makes the
    result reproducible but forces UMAP to run single-threaded; pass None for speed without reproducibility.
    numba's on-disk cache (``$XLRM_CACHE/numba`` unless ``NUMBA_CACHE_DIR`` is set) is shared by all kernels;
    a few of UMAP's functions are not cacheable, so the first call in a process still takes ~10 s on 2 cores.
    """
    H = _as_2d(H, "H")
    if len(H) < 5:
        raise ValueError(f"UMAP needs at least 5 points; got n={len(H)}")
    n_neighbors = min(n_neighbors, len(H) - 1)
    # numba reads its cache location once, at import: set it first, so kernels reuse compiled code
    os.environ.setdefault("NUMBA_CACHE_DIR", str(store.cache_dir("numba")))
    import umap

    with warnings.catch_warnings():  # the single-thread notice for a fixed seed is documented above
        warnings.filterwarnings("ignore", message="n_jobs value")
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                            random_state=random_state)
        return reducer.fit_transform(H).astype(np.float32)


# ----------------------------------------------------------------------------- summary

def shift_summary(base: dict[str, np.ndarray], rms: dict[str, dict[str, np.ndarray]], *, layer: int = -1,
                  n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per model ("base", then each RM) of representation-shift measures at ``layer``.

    Columns: model, sv_ratio_mean, sv_ratio_ci_low, sv_ratio_ci_high (percentile bootstrap over items, the
    same resamples for every model), sv_closest_share (the share of those resamples in which this RM's mean
    sv_ratio is the nearest to the base's: how firm "closest to base" is; NaN for the base),
    cka_last_layer_vs_base (debiased CKA with the base model on all languages' items stacked, as
    :func:`layerwise_cka` computes it: minibatches above :data:`FULL_CKA_MAX_N` items; named for the default
    layer=-1), mean_norm.
    Inputs map lang -> (n_items, n_layers, d), with the same languages and items for every model.
    """
    if not 0 < ci < 1 or n_boot < 1:
        raise ValueError(f"need 0 < ci < 1 and n_boot >= 1; got ci={ci}, n_boot={n_boot}")
    if "base" in rms:
        raise ValueError("an RM is named 'base', which is the base model's row; rename it")
    langs = list(base)
    n = _same_n(base, min_langs=2)
    for name, states in rms.items():
        if set(states) != set(langs):
            raise ValueError(f"RM {name!r} has languages {sorted(states)}; the base model has {sorted(langs)}")
        if _same_n(states) != n:
            raise ValueError(f"RM {name!r} has {_same_n(states)} items per language; the base model has {n}")
    resamples = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    base_stack = np.concatenate([_at_layer(base[lang], layer, f"base[{lang!r}]") for lang in langs])
    rows, boot = [], {}
    for name, states in {"base": base, **rms}.items():
        ratios = sv_ratios({lang: states[lang] for lang in langs}, layer=layer)
        boot[name] = ratios[resamples].mean(1)
        low, high = np.quantile(boot[name], [(1 - ci) / 2, (1 + ci) / 2])
        stack = np.concatenate([_at_layer(states[lang], layer, f"{name}[{lang!r}]") for lang in langs])
        rows.append({"model": name, "sv_ratio_mean": ratios.mean(), "sv_ratio_ci_low": low,
                     "sv_ratio_ci_high": high,
                     "cka_last_layer_vs_base": layerwise_cka(base_stack[:, None], stack[:, None])[0],
                     "mean_norm": np.linalg.norm(stack, axis=1).mean()})
    out = pd.DataFrame(rows)
    out.insert(4, "sv_closest_share", np.nan)
    if rms:  # paired: every RM and the base on the same resampled items
        dist = np.abs(np.stack([boot[name] for name in rms]) - boot["base"])  # (n_rms, n_boot)
        wins = np.bincount(np.argmin(np.where(np.isnan(dist), np.inf, dist), axis=0), minlength=len(rms))
        out.loc[1:, "sv_closest_share"] = wins / n_boot
    return out
