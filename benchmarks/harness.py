"""What every benchmark script shares: the machine record, interleaved timing, ratios, tiny models, results files.

Why interleaved and in one process: the machines these run on are shared, so absolute times drift with
background load. Running ours and the baseline alternately (ABBA order), after a warm-up of each, and taking
the median of the per-repeat ratios cancels most of that drift; the absolute numbers are reported too, but the
ratios are what to compare across machines.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never reach the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ----------------------------------------------------------------------------------- machine record
def machine() -> dict:
    """CPU model, cores, accelerator and library versions: enough to know what a number was measured on."""
    import torch
    import transformers

    cpu, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        flags = sorted({f for f in text.split() if f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")})
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    for name in ("trl", "datasets", "accelerate"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        versions["triton"] = __import__("triton").__version__
    except ImportError:
        versions["triton"] = None
    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
               "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "driver": _driver()}
    commit, dirty = _git("rev-parse", "--short", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "loadavg_start": _loadavg(), "versions": versions, "git_commit": commit,
            # the GPU machine gets the working tree, committed or not: say when the commit is not the whole story
            "git_dirty": bool(dirty) if dirty is not None else None, "host": platform.node()}


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def quiet() -> None:
    """Silence per-run progress bars and load reports (a benchmark loads and trains many times)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


# ----------------------------------------------------------------------------------- timing
def interleaved(variants: dict[str, Callable[[], dict]], repeats: int, *, keep_going: bool = False,
                verbose: bool = False, start: int = 0) -> dict[str, list[dict]]:
    """Run every variant ``repeats`` times in ABBA order; each call returns a dict of measurements.

    The order alternates each repeat (A B, B A, A B ...) so neither side always runs right after the other's
    garbage or cache state. ``keep_going``: a variant that raises is reported and dropped, the others go on
    (on a rented GPU one broken ablation must not cost the whole run). ``verbose``: print each run's pairs/s.
    ``start``: the number of the first round (a caller that runs more rounds after these continues the
    alternation with ``start=repeats``).
    """
    names = list(variants)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    failed: set[str] = set()
    for r in range(start, start + repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name in failed:
                continue
            try:
                runs[name].append(variants[name]())
            except Exception as e:  # noqa: BLE001
                if not keep_going:
                    raise
                failed.add(name)
                print(f"# {name} FAILED in round {r + 1}: {e!r}", flush=True)
                continue
            if verbose:
                print(f"# round {r + 1} {name}: {runs[name][-1].get('pairs_per_s', float('nan')):.4g} pairs/s", flush=True)
    for name in failed:  # unpaired leftovers would skew the paired ratios
        runs[name] = []
    return runs


def warm_up(variants: dict[str, Callable[[], object]], *, keep_going: bool = False) -> dict[str, dict]:
    """One untimed-for-the-ratio call of each variant, timed for the record (a compile or first-load cost shows
    here); ``{name: {"seconds": s}}``, or ``{"error": ...}`` for a variant that raised under ``keep_going``
    (the caller drops it before :func:`interleaved`)."""
    out = {}
    for name, fn in variants.items():
        try:
            _, seconds = timed(fn)
        except Exception as e:  # noqa: BLE001
            if not keep_going:
                raise
            out[name] = {"error": repr(e)}
            print(f"# warm-up {name} FAILED, dropped: {e!r}", flush=True)
            continue
        out[name] = {"seconds": round(seconds, 2)}
        print(f"# warm-up {name}: {out[name]['seconds']} s", flush=True)
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``(fn(), seconds)`` by the wall clock (``perf_counter``)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def paired_ratio(ours: list[dict], base: list[dict], key: str) -> dict:
    """Ours / baseline of ``key``: median of the per-repeat ratios (robust to drift) and ratio of medians."""
    per = [o[key] / b[key] for o, b in zip(ours, base) if o.get(key) and b.get(key)]
    mo, mb = median(o.get(key) for o in ours), median(b.get(key) for b in base)
    return {"median_of_ratios": median(per), "ratio_of_medians": (mo / mb) if mo and mb else None,
            "per_repeat": [round(x, 4) for x in per]}


# ----------------------------------------------------------------------------------- tiny in-process backbone
def tiny_bert_backbone(dest: Path, texts: list[str], *, seed: int = 0, vocab_size: int = 400) -> Path:
    """A tiny BERT (2 layers, d=32) with a WordPiece tokenizer trained on ``texts``, saved at ``dest``.

    For smoke runs: it exercises the real code paths (train_reward_model, score_pairs, TRL, the pipeline) on
    real text in seconds, with no network and no converted backbone. ``load_reward_model(dest)`` adds the head.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    tk = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                  model_max_length=512)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=0)
    dest.mkdir(parents=True, exist_ok=True)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def pair_texts(pairs) -> list[str]:
    """All prompt, chosen and rejected strings of canonical pairs (tokenizer-training corpus)."""
    return ([m["content"] for p in pairs["prompt"] for m in p] + list(pairs["chosen"]) + list(pairs["rejected"]))


# ----------------------------------------------------------------------------------- results
def write_results(name: str, record: dict, out: str | os.PathLike | None) -> Path:
    """Write the JSON record to ``out`` or ``benchmarks/results/<name>-<UTC time>.json``; return the path."""
    path = Path(out) if out else RESULTS_DIR / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "loadavg_end": _loadavg()}
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    """A fixed-width text table of ``rows`` (dicts) over ``cols``; floats get 4 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
