"""Rewards a trained RM already gave, on disk: each token sequence is scored once per model, across notebooks.

Why: the grid scores the same (prompt, answer) sequences with the same RM in more than one notebook. The evaluate
notebook scores every test pair; best-of-n then scores candidate pools whose chosen and rejected answers are
exactly those sequences (half of each pool in the default run). With the cache, best-of-n computes only what is
new.

What identifies a model: its ``xlrm_card.json``, whole (the ``key`` in it fingerprints backbone, data and every
training knob, and the card's metrics and timings differ between two trainings under one key, e.g. a forced retrain
on another thread count, which gives other weights), a digest of its weights, the parameter dtype, the device
type and the autocast flag;
a reward computed under another of these is another entry, never reused. A model
without a card (a hub RM, a bare backbone) is not cached: nothing identifies its weights cheaply. One file per
model under ``$XLRM_CACHE/rewards/``: a blake2b digest of each sequence's token ids and its reward.

Several processes may score one RM at once: every write re-reads the file, merges and renames atomically, so the
worst a race does is drop entries, which are then simply recomputed.

>>> cache = RewardCache.for_model(model)            # doctest: +SKIP
>>> # (None when the model has no xlrm card)
>>> cache.get([[0, 17, 2], [0, 9, 2]])              # doctest: +SKIP
array([0.731, nan])
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from .models import loaded_from, weights_digest
from .store import CARD_FILE, atomic_path, cache_dir, fingerprint

log = logging.getLogger(__name__)

SCORER_VERSION = 3  # part of every cache key: bump when a change to scoring changes the rewards it gives
# 2: RoBERTa-family encoders number their own positions (0-based ids shifted every token)
# 3: under bf16 the score head's last projection runs in float32 (bf16 rewards made ties); encoders pad right
# (the key took a digest of the score head only until a body change was shown to be read as cached: it now
# takes every weight, models.weights_digest)


def sequence_digest(seq) -> bytes:
    """16-byte digest of a token-id sequence (the cache's entry key)."""
    return hashlib.blake2b(np.asarray(seq, dtype=np.int64).tobytes(), digest_size=16).digest()


class RewardCache:
    """Rewards of one model (one precision, one device type), keyed by token-id sequence."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_model(cls, model, *, bf16: bool = False) -> "RewardCache | None":
        """The cache of ``model`` as loaded from an xlrm RM directory, or ``None`` if it has no card.

        Also ``None`` for a PEFT-wrapped model (its adapters are not in the card). A digest of all its weights
        (:func:`xlrm_lib.models.weights_digest`) is part of the key, so a model changed in memory after loading
        (fine-tuned further, ablated, pruned) does not read its directory's rewards.
        """
        if hasattr(model, "get_base_model"):
            return None
        model_dir = loaded_from(model)
        card = model_dir / CARD_FILE if model_dir else None
        if card is None or not card.is_file():
            return None
        try:
            text = card.read_text()
            model_key = json.loads(text)["key"]
        except (OSError, ValueError, KeyError):
            log.warning("%s is unreadable or has no 'key': rewards of this model are not cached", card)
            return None
        param = next(model.parameters())
        key = fingerprint({"card": hashlib.sha256(text.encode()).hexdigest(), "weights": weights_digest(model),
                           "dtype": str(param.dtype), "device": param.device.type, "bf16": bool(bf16),
                           "scorer": SCORER_VERSION})
        return cls(cache_dir("rewards") / f"{model_key}-{key}.npz")

    def _read(self) -> dict[bytes, float]:
        try:
            with np.load(self.path) as f:
                digests, rewards = f["digests"], f["rewards"]
                if digests.dtype != np.uint8 or digests.shape != (len(rewards), 16):
                    raise ValueError(f"digests of shape {digests.shape} and dtype {digests.dtype}")
                # raw bytes, row by row (numpy's fixed-width bytes type would strip a digest's trailing zeros)
                return dict(zip(map(bytes, digests), rewards.tolist()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a damaged file (an empty or cut
            # one: EOFError, BadZipFile) is only a lost cache: start again
            log.warning("reward cache %s is unreadable (%s); recomputing its rewards", self.path, e)
            return {}

    def get(self, seqs) -> np.ndarray:
        """Cached rewards of ``seqs`` (float64), NaN where the sequence has not been scored yet."""
        known = self._read()
        return np.array([known.get(sequence_digest(s), np.nan) for s in seqs], dtype=np.float64)

    def put(self, seqs, rewards) -> None:
        """Add (sequence, reward) entries; non-finite rewards are not stored."""
        new = {sequence_digest(s): float(r) for s, r in zip(seqs, rewards) if np.isfinite(r)}
        if not new:
            return
        merged = {**self._read(), **new}
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            digests = np.frombuffer(b"".join(merged), dtype=np.uint8).reshape(len(merged), 16)
            np.savez(f, digests=digests, rewards=np.fromiter(merged.values(), float, count=len(merged)))
