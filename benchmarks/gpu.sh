#!/usr/bin/env bash
# The reranker's throughput on one NVIDIA GPU, offline, in one bounded run: under 10 minutes (budget 480 s).
#
# Usage: bash benchmarks/gpu.sh [--budget SECONDS] [--batches 32,256,2048] [--python PATH]... [--cpu-smoke]
#
# Run from a checkout that holds the exported model (model_repository/gpu/reranker/<version>/model.onnx, from
# `shoprank export`); nothing is downloaded. It
#   1. stops at once, with a message and exit code 2, when nvidia-smi lists no GPU;
#   2. prints nvidia-smi, then for each Python interpreter it finds (--python, .venv/bin/python, python3) the
#      versions of onnxruntime and its execution providers, tensorrt, torch and its CUDA, transformers, peft;
#   3. runs benchmarks/reranker_gpu.py step by step, each in its own process under `timeout`, with the first
#      interpreter able to run it (where none is, the step says why), in this order while the budget lasts:
#        ort-cuda-fp16        ONNX Runtime's CUDA execution provider on the served FP16 file, IO binding
#        torch-served         PyTorch (core/cross_encoder.py, FP16) at the served reranker's layers:
#                             eager, torch.compile, torch.compile with CUDA graphs
#        ort-tensorrt-fp16    ONNX Runtime's TensorRT execution provider, FP16
#        torch-l6             the issue's ceiling's model, all six layers of MiniLM-L6: compile, CUDA graphs, eager
#        ort-cuda-fp16-graph  the CUDA execution provider with CUDA graphs
#        export-fp32, ort-tensorrt-int8   TensorRT INT8 from a calibration table (only where the TensorRT EP is)
#      each at batches of 32, 256 and 2048 pairs of 64 tokens: median and p95 ms a batch, pairs/s;
#   4. prints a table and, as its last line, one JSON object with every figure, each step's outcome, what was not
#      measured and why, and each result against the ceiling in issue 10 (111,000 pairs/s at batch 256, 162,500
#      at 2048, 2.9 ms a batch of 32); with $OUT set, also $OUT/gpu.json and the whole log as $OUT/gpu.log.
# A step that fails or runs out of time is reported and the next one runs; the exit code is 0 when anything was
# measured. The orchestrator's end-to-end latency is not measured (see END_TO_END below).
# --cpu-smoke runs the same steps on the CPU at batch 2, to test this script where there is no GPU; its figures
# say nothing about a GPU.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$(pwd)
HELPER=benchmarks/reranker_gpu.py
END_TO_END="the local tritonserver (nvidia-pytriton wheel) serves the cpu target through its Python backend on \
the CPU; a GPU Triton (NVIDIA's container, docker-compose.yml) cannot be started offline from this checkout"
RESERVE_S=40   # kept back from the budget for the summary and a step's kill grace
MIN_STEP_S=20  # a step with less time than this left is skipped

budget=480
batches=32,256,2048
smoke=0
explicit_pythons=()

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
        --batches) batches=${2:?--batches needs a list}; shift 2 ;;
        --python) explicit_pythons+=("${2:?--python needs a path}"); shift 2 ;;
        --cpu-smoke) smoke=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ! [[ $budget =~ ^[0-9]+$ ]]; then
    echo "gpu.sh: --budget must be whole seconds, not $budget" >&2
    exit 2
fi
if ((smoke)) && [[ $batches == 32,256,2048 ]]; then
    batches=2
fi

log() { printf '[gpu.sh %4ds] %s\n' "$SECONDS" "$*"; }

# The error as the run's JSON object, so whoever collects $OUT/gpu.json reads why there are no figures.
fail_json() {
    local message
    message=$(printf '%s' "$1" | tr '\n\t' '  ' | tr -d "\"\\\\")
    printf '{"benchmark":"reranker_gpu","error":"%s"}\n' "$message"
    if [[ -n ${OUT:-} ]]; then
        printf '{"benchmark": "reranker_gpu", "error": "%s"}\n' "$message" >"$OUT/gpu.json"
    fi
}

require_gpu() {
    local listing
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        listing="nvidia-smi is not on PATH"
    elif ! listing=$(timeout 30 nvidia-smi -L 2>&1) || ! grep -q '^GPU [0-9]' <<<"$listing"; then
        listing="nvidia-smi -L lists none: ${listing:-no output}"
    else
        printf '%s\n' "$listing"
        return 0
    fi
    echo "gpu.sh: no NVIDIA GPU is visible ($listing). This benchmark needs one; --cpu-smoke only tests the script." >&2
    fail_json "no NVIDIA GPU is visible ($listing)"
    exit 2
}

# Interpreters that run the helper's probe, one per environment (sys.prefix), and what each can measure.
pythons=()
capabilities=()

probe_interpreters() {
    local candidates=("${explicit_pythons[@]}") seen=" " python prefix output index=0
    [[ -x $ROOT/.venv/bin/python ]] && candidates+=("$ROOT/.venv/bin/python")
    command -v python3 >/dev/null 2>&1 && candidates+=("$(command -v python3)")
    for python in "${candidates[@]}"; do
        if ! prefix=$(timeout 30 "$python" -c 'import sys; print(sys.prefix)' 2>&1); then
            log "interpreter $python does not run: $prefix"
            continue
        fi
        [[ $seen == *" $prefix "* ]] && continue
        seen+="$prefix "
        index=$((index + 1))
        log "interpreter $python ($prefix)"
        if ! output=$(timeout 120 "$python" "$HELPER" probe --json-out "$parts/probe-$index.json" 2>&1); then
            printf '%s\n' "$output" | tail -5
            log "  its probe failed; not used"
            continue
        fi
        printf '%s\n' "$output" | grep -v '^CAPS '
        pythons+=("$python")
        capabilities+=("$(printf '%s\n' "$output" | sed -n 's/^CAPS //p')")
    done
}

# The first interpreter with capability $1, else with $2 (which then reports why it cannot measure).
pick() {
    local wanted index
    for wanted in "$@"; do
        for index in "${!pythons[@]}"; do
            if [[ " ${capabilities[$index]} " == *" $wanted "* ]]; then
                printf '%s\n' "${pythons[$index]}"
                return 0
            fi
        done
    done
    return 1
}

has() { pick "$1" >/dev/null; }

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$parts/steps.tsv"; }

# run_step NAME MAX_SECONDS PYTHON HELPER_ARGS...: one step under `timeout`, its outcome recorded.
run_step() {
    local name=$1 max=$2 python=$3 left limit started rc status
    shift 3
    left=$((deadline - SECONDS - RESERVE_S))
    if [[ -z $python ]]; then
        log "step $name: skipped: no interpreter can run it"
        record "$name" skipped "" 0 "" "no interpreter with the packages it needs"
        return
    fi
    if ((left < MIN_STEP_S)); then
        log "step $name: skipped: the ${budget}s budget is spent"
        record "$name" skipped "" 0 "$python" "time budget spent"
        return
    fi
    limit=$((max < left ? max : left))
    log "step $name (at most ${limit}s): $python $HELPER $*"
    started=$SECONDS
    timeout --kill-after=10 "$limit" "$python" "$HELPER" "$@"
    rc=$?
    case $rc in
        0) status=ok ;;
        3) status=not-measured ;;
        124 | 137) status=timed-out ;;
        *) status=failed ;;
    esac
    log "step $name: $status (exit $rc) in $((SECONDS - started))s"
    record "$name" "$status" "$rc" "$((SECONDS - started))" "$python" ""
}

main() {
    local work device timing served_layers python fp32
    log "reranker GPU benchmark: batches $batches, sequence 64, budget ${budget}s$( ((smoke)) && echo ', CPU SMOKE TEST')"
    deadline=$((SECONDS + budget))
    work=$(mktemp -d "${TMPDIR:-/tmp}/shoprank-gpu.XXXXXX") || exit 2
    # shellcheck disable=SC2064  # expand $work now: it is local
    trap "rm -rf '$work'" EXIT
    parts=$work/parts
    mkdir -p "$parts"
    # Nothing may be fetched: the Hugging Face libraries are told so, and the models are local files.
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export TORCHINDUCTOR_CACHE_DIR=$work/inductor TRITON_CACHE_DIR=$work/triton

    if ((smoke)); then
        log "CPU smoke test: no GPU is required and the figures below are the CPU's"
        device=cpu
        timing=(--iterations 3 --warmup 1 --warmup-seconds 0 --max-seconds 2)
    else
        require_gpu
        timeout 30 nvidia-smi
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
            --format=csv,noheader >"$parts/gpu.csv"
        device=cuda
        timing=()
    fi
    log "host: $(uname -srm), $(nproc) CPUs"

    probe_interpreters
    if ((${#pythons[@]} == 0)); then
        echo "gpu.sh: no Python interpreter could run $HELPER (tried --python, .venv/bin/python, python3)" >&2
        fail_json "no Python interpreter could run $HELPER"
        exit 2
    fi

    local ort_cuda ort_trt torch_py
    ort_cuda=$(pick ort-cuda onnxruntime) || ort_cuda=""
    ort_trt=$(pick ort-tensorrt onnxruntime) || ort_trt=""
    torch_py=$(pick torch-cuda torch) || torch_py=""
    if ((smoke)); then
        ort_cuda=$(pick onnxruntime) || ort_cuda=""
        torch_py=$(pick torch) || torch_py=""
    fi
    served_layers=$(sed -n 's/.*"layers": *\([0-9]*\).*/\1/p' models/reranker/cross_encoder.json 2>/dev/null)
    local common=(--batches "$batches" --work "$work" "${timing[@]}")
    local torch_common=(--batches "$batches" "${timing[@]}")
    local torch_modes=eager,compile,cudagraphs torch_l6_modes=compile,cudagraphs,eager
    if ((smoke)); then
        # torch.compile on a CPU costs minutes for nothing a smoke test needs.
        torch_modes=eager
        torch_l6_modes=eager
    fi

    run_step ort-cuda-fp16 90 "$ort_cuda" ort --provider "$([[ $device == cpu ]] && echo cpu || echo cuda)" \
        "${common[@]}" --json-out "$parts/ort-cuda-fp16.json"
    run_step torch-served 180 "$torch_py" torch --device "$device" --layers served --modes "$torch_modes" \
        "${torch_common[@]}" --json-out "$parts/torch-served.json"
    run_step ort-tensorrt-fp16 150 "$ort_trt" ort --provider tensorrt "${common[@]}" \
        --json-out "$parts/ort-tensorrt-fp16.json"
    if [[ $served_layers == 6 ]]; then
        log "step torch-l6: skipped: the served reranker has 6 layers, measured by torch-served"
        record torch-l6 skipped "" 0 "" "the served reranker has 6 layers: torch-served is the ceiling's model"
    else
        run_step torch-l6 150 "$torch_py" torch --device "$device" --layers 6 --modes "$torch_l6_modes" \
            "${torch_common[@]}" --json-out "$parts/torch-l6.json"
    fi
    run_step ort-cuda-fp16-graph 60 "$ort_cuda" ort --provider "$([[ $device == cpu ]] && echo cpu || echo cuda)" \
        --cuda-graph "${common[@]}" --json-out "$parts/ort-cuda-fp16-graph.json"
    fp32=""
    if has ort-tensorrt; then
        python=$(pick fp32-export) || python=""
        run_step export-fp32 120 "$python" export-fp32 --out "$work/model.fp32.onnx"
        [[ -f $work/model.fp32.onnx ]] && fp32=$work/model.fp32.onnx
    else
        log "step export-fp32: skipped: no interpreter has the TensorRT execution provider, which alone uses it"
        record export-fp32 skipped "" 0 "" "no TensorRT execution provider: INT8 is not measured"
    fi
    run_step ort-tensorrt-int8 150 "$ort_trt" ort --provider tensorrt --precision int8 ${fp32:+--fp32-model "$fp32"} \
        "${common[@]}" --json-out "$parts/ort-tensorrt-int8.json"

    local measured=1
    if ! cut -f2 "$parts/steps.tsv" | grep -qx ok; then
        measured=0
        echo "gpu.sh: nothing was measured; each step's reason is in the JSON below" >&2
    fi
    log "summary"
    local summary_args=(summary --parts "$parts" --end-to-end "$END_TO_END")
    ((smoke)) && summary_args+=(--smoke)
    [[ -n ${OUT:-} ]] && summary_args+=(--out "$OUT/gpu.json")
    if ! timeout 60 "${pythons[0]}" "$HELPER" "${summary_args[@]}"; then
        fail_json "the summary step failed; the steps' log above has the figures"
        exit 1
    fi
    ((measured)) || exit 1
}

if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    main 2>&1 | tee "$OUT/gpu.log"
    exit "${PIPESTATUS[0]}"
fi
main
