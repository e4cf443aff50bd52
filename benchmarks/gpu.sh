#!/usr/bin/env bash
# The GPU benchmarks in one prepared run (one NVIDIA GPU, bf16; ~6 min on an H100/H200):
#   training, ours (packed + compiled blocks) vs TRL RewardTrainer on a random Qwen2-0.5B-shaped RM, with our
#   CUDA-graph variant, our eager-packed ablation and a profile of each (bench_train.py --gpu-synthetic), and, with SCORE=1,
#   scoring, ours vs a reward-bench-style pipeline in fp32 on the same shape (bench_score.py --gpu-synthetic).
# Usage: benchmarks/gpu.sh OUT_DIR      (results JSON + logs land in OUT_DIR)
#   all four variants may not fit one 600 s device call: STEPS=60 VARIANTS="ours trl ours-graphs" PROFILE_STEPS=0
#   is the headline run (~4 min); the ablation and the profiles are a second call.
# On a machine without trl/datasets/this transformers, put their wheels in .whl/ first (they are installed with
# --no-deps into /tmp/site, ahead of the system's packages).
set -u -o pipefail  # a failing benchmark fails the script (not tee's exit status)
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
out=$(mkdir -p "$out" && cd "$out" && pwd)  # absolute before the cd below
cd "$(dirname "$0")/.."
limit=${LIMIT_S:-540}  # each benchmark stops well inside a 600 s device call; its JSON is written on failure too
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 - <<'PY' 2>&1 | tee -a "$out/gpu.txt"
import inspect, torch, transformers, trl, datasets
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton: missing (torch.compile's inductor cannot generate GPU kernels)")
from torch.nn.attention.varlen import varlen_attn
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__,
      "datasets", datasets.__version__, "varlen_attn", list(inspect.signature(varlen_attn).parameters))
PY
TORCH_LOGS=recompiles,cudagraphs timeout "$limit" python3 benchmarks/bench_train.py --gpu-synthetic --steps "${STEPS:-40}" \
  --repeats "${REPEATS:-3}" --warmup-steps "${WARMUP:-10}" --variants ${VARIANTS:-ours trl ours-graphs ours-eager} \
  --profile-steps "${PROFILE_STEPS:-8}" --json "$out/bench_train_gpu.json" 2>&1 | grep -v "^{'" \
  | tee "$out/bench_train_gpu.log" || rc=$?
if [ "${SCORE:-0}" = 1 ]; then
  timeout "$limit" python3 benchmarks/bench_score.py --gpu-synthetic --bf16-variant --pairs "${PAIRS:-192}" --repeats "${REPEATS:-2}" \
    --json "$out/bench_score_gpu.json" 2>&1 | tee "$out/bench_score_gpu.log" || rc=$?
fi
exit "${rc:-0}"
