#!/usr/bin/env bash
# Every GPU number of benchmarks/RESULTS.md in one short run, for a session lent a device:
# flash-attention check of the probe, then probe vs plain sdpa vs flash at LLaVA-1.5-7B shape
# (700 and 8k tokens, batch 1 and 8) and Qwen2.5-VL-7B shape (16k tokens), bf16 random weights,
# then the prune_ratio 0.9 prefill speed-up at LLaVA-1.5-7B shape, then `lmms-textdom measure` against the probed
# generate run at Qwen2.5-VL-7B shape (8k-token prompt, answers of 64 and 512 tokens), and, where vllm is
# installed, lmms-eval's vllm backend on a tiny checkpoint with its logs measured (make vllm-check). About 12
# minutes on one H200.
#   bash benchmarks/gpu_run.sh 2>&1 | tee gpu_results.txt
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
date -u
"$python" gpu_checks.py
# bench_probe.py --gpu ends with compiled decoding (static cache, inductor with CUDA graphs), plain vs
# probe at LLaVA-1.5-7B shape, 700 tokens, batch 1 and 8: four compilations of the 7B graph (~4 minutes)
"$python" bench_probe.py --gpu --repeats 2 --new-tokens 32
"$python" bench_pruning.py --shape llava-7b --device cuda --dtype bfloat16 --ratios 0 0.9 --repeats 3
"$python" bench_measure.py --gpu --repeats 3
if "$python" -c "import vllm" 2>/dev/null; then
    (cd .. && VLLM_PYTHON="$python" PROJECT_PYTHON="$python" VLLM_CHECK_DIR="${TMPDIR:-/tmp}/vllm-check" scripts/vllm-check.sh)
else
    echo "vllm not installed here: skipped the vLLM check (pip install vllm, then rerun)"
fi
