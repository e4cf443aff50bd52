"""How training and scoring time grow with the number of pairs and the sequence length, and what an L-language
grid (L trainings, L^2 scorings) costs.

Run (from the repository root)::

    python benchmarks/bench_scaling.py                         # me5-small, 3 sizes x (pairs, length), 2 repeats
    python benchmarks/bench_scaling.py --train-sizes 32 64 128 --score-sizes 128 256 512
    python benchmarks/bench_scaling.py --tiny --repeats 1      # smoke: tiny in-process BERT

Only OUR code is timed here (:func:`xlrm_lib.train.train_reward_model`, one epoch, default recipe;
:func:`xlrm_lib.evaluate.score_pairs`). Length is varied by repeating each answer 1, 2, 4 times
(``--lengths``) with ``max_length`` 512, so the real token count grows while the content stays the same.

Training is timed two ways: the training loop (``train_runtime``) and the whole call (``wall``: load the
backbone, tokenise, train, save), the latter being what a grid pays. A straight line ``t = a + b n`` is fitted
to each over the pair counts; the grid prediction for L languages (``--grid-train-pairs`` and
``--grid-test-pairs`` per language, ``--grid-epochs``) is

    L x (a_train + b_train x pairs x epochs)  +  L x load  +  L^2 x (a_score + b_score x test pairs)

and the script says from which L on scorings dominate (L > training time / scoring time of one cell).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (after the path tweak above)


def lengthen(pairs, k: int):
    """Every answer repeated ``k`` times (blank-line separated): ~k x the answer tokens, same content."""
    if k == 1:
        return pairs
    return pairs.map(lambda r: {"chosen": "\n\n".join([r["chosen"]] * k), "rejected": "\n\n".join([r["rejected"]] * k)})


def fit_line(xs, ys) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ``ys`` on ``xs``."""
    import numpy as np

    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept), float(slope)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="me5-small", help="packaged name or model directory (default me5-small)")
    p.add_argument("--train-sizes", type=int, nargs=3, default=[16, 32, 64], help="training pairs (1 epoch each)")
    p.add_argument("--score-sizes", type=int, nargs=3, default=[64, 128, 256], help="pairs to score")
    p.add_argument("--lengths", type=int, nargs=3, default=[1, 2, 4], help="answer repetitions (length factor)")
    p.add_argument("--length-train-pairs", type=int, default=32, help="training pairs of the length sweep")
    p.add_argument("--length-score-pairs", type=int, default=64, help="scored pairs of the length sweep")
    p.add_argument("--batch-size", type=int, default=16, help="training pairs per step (default 16)")
    p.add_argument("--repeats", type=int, default=2, help="runs per point, interleaved; the median is kept")
    p.add_argument("--grid-train-pairs", type=int, default=160, help="training pairs per language (embedded: 160)")
    p.add_argument("--grid-test-pairs", type=int, default=96, help="test pairs per language (embedded: 96)")
    p.add_argument("--grid-epochs", type=float, default=2.0, help="epochs per training (default 2, the library's; the default grid trains 3)")
    p.add_argument("--tiny", action="store_true", help="tiny in-process model (smoke runs; numbers mean nothing)")
    p.add_argument("--json", default=None, help="results file (default benchmarks/results/bench_scaling-<time>.json)")
    a = p.parse_args(argv)
    harness.quiet()

    from xlrm_lib.data import load_pairs
    from xlrm_lib.evaluate import score_pairs
    from xlrm_lib.formatting import TextFormat
    from xlrm_lib.models import load_reward_model
    from xlrm_lib.train import read_card, train_reward_model

    mach = harness.machine()
    work = Path(tempfile.mkdtemp(prefix="bench_scaling-"))
    backbone = a.backbone
    if a.tiny:
        backbone = str(harness.tiny_bert_backbone(work / "tiny-bert", harness.pair_texts(load_pairs("embedded"))))
    train_all = load_pairs("embedded", split="train")  # all languages: enough pairs for the largest size
    test_all = load_pairs("embedded", split="test")
    for name, sizes, pool in (("train", a.train_sizes, train_all), ("score", a.score_sizes, test_all)):
        if max(sizes) > len(pool):
            p.error(f"--{name}-sizes {sizes}: the embedded {name} split has only {len(pool)} pairs")
    take = lambda ds, n: ds.shuffle(seed=0).select(range(n))  # noqa: E731  (a mixed-language sample)
    fmt512 = TextFormat("auto", 512)

    def train_point(pairs):
        def run():
            path, wall = harness.timed(lambda: train_reward_model(
                backbone, pairs, output_dir=work / "rm", force=True, progress=False, epochs=1,
                batch_size=a.batch_size, max_length=512))
            m = read_card(path)["train_metrics"]
            return {"wall": wall, "loop": m["train_runtime"], "real_tokens": m["real_tokens"], "pairs": len(pairs)}
        return run

    model, tok = load_reward_model(backbone)
    fmt = fmt512.resolved(tok)

    def score_point(pairs):
        def run():
            df, s = harness.timed(lambda: score_pairs(model, tok, pairs, fmt=fmt))
            return {"wall": s, "real_tokens": int(df["len_chosen"].sum() + df["len_rejected"].sum()),
                    "pairs": len(pairs)}
        return run

    points = {}
    for n in a.train_sizes:
        points[("train", "pairs", n)] = train_point(take(train_all, n))
    for k in a.lengths:
        points[("train", "length", k)] = train_point(lengthen(take(train_all, a.length_train_pairs), k))
    for n in a.score_sizes:
        points[("score", "pairs", n)] = score_point(take(test_all, n))
    for k in a.lengths:
        points[("score", "length", k)] = score_point(lengthen(take(test_all, a.length_score_pairs), k))

    print("# warm-up", flush=True)
    train_point(take(train_all, min(a.train_sizes)))()
    score_point(take(test_all, min(a.score_sizes)))()
    _, load_s = harness.timed(lambda: load_reward_model(backbone))  # what each grid RM pays once to be scored
    print(f"# {len(points)} points x {a.repeats} repeats", flush=True)
    runs = harness.interleaved({f"{t}/{axis}/{v}": fn for (t, axis, v), fn in points.items()}, a.repeats)
    shutil.rmtree(work, ignore_errors=True)

    rows = []
    for key, rs in runs.items():
        task, axis, v = key.split("/")
        wall = harness.median(r["wall"] for r in rs)
        tokens = rs[0]["real_tokens"]
        pairs = rs[0]["pairs"]
        rows.append({"task": task, "axis": axis, "value": int(v), "pairs": pairs,
                     "tok/seq": tokens / (2 * pairs), "wall s": wall,
                     "loop s": harness.median(r.get("loop") for r in rs), "ms/pair": 1e3 * wall / pairs,
                     "us/token": 1e6 * wall / tokens})
    print(harness.table(rows, list(rows[0])))

    tr = [r for r in rows if r["task"] == "train" and r["axis"] == "pairs"]
    sc = [r for r in rows if r["task"] == "score" and r["axis"] == "pairs"]
    a_t, b_t = fit_line([r["pairs"] for r in tr], [r["wall s"] for r in tr])
    a_s, b_s = fit_line([r["pairs"] for r in sc], [r["wall s"] for r in sc])
    a_t, a_s = max(a_t, 0.0), max(a_s, 0.0)  # a noisy fit can dip below zero; overhead cannot
    one_train = a_t + b_t * a.grid_train_pairs * a.grid_epochs
    one_score = a_s + b_s * a.grid_test_pairs
    print(f"\nfit (1 epoch): train wall = {a_t:.2f} s + {1e3 * b_t:.1f} ms/pair;  score = {a_s:.2f} s + "
          f"{1e3 * b_s:.2f} ms/pair;  RM load for scoring = {load_s:.2f} s")
    print(f"one training ({a.grid_train_pairs} pairs x {a.grid_epochs:g} epochs) ~ {one_train:.1f} s;  "
          f"one scoring ({a.grid_test_pairs} pairs) ~ {one_score:.2f} s")
    grid = []
    for L in (2, 4, 8, 16):
        t_train, t_score = L * one_train, L * load_s + L * L * one_score
        grid.append({"L": L, "trainings": L, "scorings": L * L, "train s": t_train, "score s": t_score,
                     "total min": (t_train + t_score) / 60, "score share": t_score / (t_train + t_score),
                     "scorings dominate": t_score > t_train})
    print(harness.table(grid, list(grid[0])))
    cross = (one_train - load_s) / one_score if one_score > 0 else float("inf")
    print(f"scorings dominate from L > {cross:.0f} languages (one training / one scoring, minus RM loading)")
    fits = {"train_intercept_s": a_t, "train_s_per_pair_epoch": b_t, "score_intercept_s": a_s,
            "score_s_per_pair": b_s, "rm_load_s": load_s, "one_training_s": one_train, "one_scoring_s": one_score,
            "crossover_L": cross}
    record = {"benchmark": "bench_scaling", "machine": mach, "settings": vars(a), "backbone": backbone,
              "runs": runs, "table": rows, "fits": fits, "grid": grid}
    print(f"results: {harness.write_results('bench_scaling', record, a.json)}")
    return record


if __name__ == "__main__":
    main()
