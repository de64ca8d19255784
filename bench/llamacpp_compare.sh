#!/usr/bin/env bash
# llamacpp_compare.sh — this runtime's CPU path against llama.cpp on the same models, precisions and threads,
# paired in one run (not part of CI; docs/BENCHMARKS.md "Against llama.cpp" has the results and commands).
#
#   bench/llamacpp_compare.sh [--reps R] [--threads N] [--models demo,synthetic] [--precisions bf16,bf16a,f32,int8,w8a8]
#                             [--no-transformers] [--prepare-only]
#
# Everything it fetches, builds and converts stays under build/llamacpp/ (ignored by git; override with
# LLAMACPP_WORK): PyPI's llama-cpp-python sdist (version LLAMA_CPP_PYTHON_VERSION), whose vendored llama.cpp
# is built CPU-only (Release, GGML_NATIVE) for llama-bench and llama-completion; the models as Hugging Face
# folders (models/demo, widened to f32; the synthetic MoE Jamba of tools/make_synthetic_hf.py, bf16 and f32)
# and as GGUF (BF16, F32, Q8_0) made by llama.cpp's own convert_hf_to_gguf.py with its bundled gguf-py (run
# through bench/llamacpp_compare.py convert, which also writes tokenizer.ggml.add_space_prefix = false: the
# tokenizers here have no dummy prefix).
#
# Then per model and precision, R paired repetitions at N threads (default 2), alternating which runtime
# goes first: prefill of a 512-token prompt and decode of 128 tokens after it —
#   this runtime: bench_cpu --model DIR --threads N --prompt 512 --decode 128 --reps 1 --no-bandwidth
#                 (+ --weights int8 for int8, + --activations int8 too for w8a8, --activations bf16 for
#                 bf16a), under /usr/bin/time -v;
#   llama.cpp:    llama-bench -m GGUF -t N -p 512 -n 0 -r 1, then -p 0 -n 128 -d 512 -r 1 (decode after a
#                 512-token context, as ours), each under /usr/bin/time -v;
# peak RSS (the larger of llama.cpp's two processes), greedy agreement on a fixed prompt (`jamba generate
# --temperature 0 --json` against llama-completion --temp 0, 32 tokens), transformers' f32 prefill and decode
# at N threads, and the table of medians (bench/llamacpp_compare.py table).
#
# Precisions: bf16 = the bf16 checkpoint / GGUF BF16; f32 = the checkpoint widened to f32 / GGUF F32; int8 =
# this runtime's --weights int8 (every projection matrix — experts, dense MLPs, Mamba and attention
# projections, LM head — as int8 with one fp32 scale per output row, activations fp32; the embedding, norms,
# conv and routers as stored) / GGUF Q8_0 (every 2-D weight but the router and the conv as int8 in blocks of
# 32 with an f16 scale each, embedding included, activations quantized to 8 bits for the products); w8a8 = the
# same int8 weights multiplying int8 activations (--activations int8: one scale per activation row, integer
# dot products) / the same GGUF Q8_0; bf16a = the bf16 checkpoint multiplying activations rounded to bf16
# (--activations bf16, as llama.cpp does for BF16) / the same GGUF BF16.
#
# Environment: PYTHON (default build/fixenv/bin/python: torch, transformers, safetensors, sentencepiece),
# JAMBA_BUILD (default build/cpu: bench_cpu and jamba, a Release build), LLAMA_CPP_PYTHON_VERSION.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${LLAMACPP_WORK:-$ROOT/build/llamacpp}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
PY=${PYTHON:-$ROOT/build/fixenv/bin/python}
OURS=${JAMBA_BUILD:-$ROOT/build/cpu}
HELPER="$ROOT/bench/llamacpp_compare.py"
REPS=5 THREADS=2 MODELS=demo,synthetic PRECISIONS=bf16,bf16a,f32,int8,w8a8 TRANSFORMERS=1 PREPARE_ONLY=0
PROMPT_TOKENS=512 DECODE_TOKENS=128 AGREE_TOKENS=32
AGREE_PROMPT=$'ROMEO:\nBut soft, what light'

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --precisions) PRECISIONS=$2; shift 2 ;;
    --no-transformers) TRANSFORMERS=0; shift ;;
    --prepare-only) PREPARE_ONLY=1; shift ;;
    *) usage ;;
    esac
done

log() { printf '[llamacpp_compare] %s\n' "$*" >&2; }
for tool in "$OURS/bench_cpu" "$OURS/jamba" "$PY" /usr/bin/time; do
    [ -x "$tool" ] || { log "missing $tool (build this runtime in $OURS, or set JAMBA_BUILD / PYTHON)"; exit 1; }
done

# ---- llama.cpp from PyPI's llama-cpp-python sdist -------------------------------------------------------------
mkdir -p "$W"
SDIST="$W/llama_cpp_python-$VERSION.tar.gz"
SRC="$W/llama_cpp_python-$VERSION/vendor/llama.cpp"
LBUILD="$W/build-$VERSION"
if [ ! -f "$SDIST" ]; then
    log "downloading the llama-cpp-python $VERSION sdist"
    "$PY" -m pip download --no-binary :all: --no-deps -d "$W" "llama-cpp-python==$VERSION" >&2
fi
[ -d "$SRC" ] || tar -xzf "$SDIST" -C "$W"
if [ ! -x "$LBUILD/bin/llama-bench" ] || [ ! -x "$LBUILD/bin/llama-completion" ]; then
    log "building llama.cpp (CPU, Release, native) in $LBUILD"
    cmake -S "$SRC" -B "$LBUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_APP=OFF >&2
    cmake --build "$LBUILD" -j"$(nproc)" --target llama-bench llama-completion >&2
fi
# the converter's Python dependencies beyond $PY's: protobuf (sentencepiece's model proto); gguf is its own
if [ ! -d "$W/pydeps/google/protobuf" ]; then
    "$PY" -m pip install -q --target "$W/pydeps" "protobuf>=4.21.0,<5.0.0" >&2
fi
CONVERT=(env "PYTHONPATH=$W/pydeps" "$PY" "$HELPER" convert "$SRC")

# ---- the models ------------------------------------------------------------------------------------------------
M="$W/models"
mkdir -p "$M"
hf_dir() { # model precision -> the Hugging Face folder this runtime loads
    case "$1-$2" in
    demo-f32) echo "$M/demo-f32" ;;
    demo-*) echo "$ROOT/models/demo" ;;
    synthetic-f32) echo "$M/synthetic-f32" ;;
    synthetic-*) echo "$M/synthetic-bf16" ;;
    esac
}
gguf_type() { case "$1" in bf16 | bf16a) echo bf16 ;; f32) echo f32 ;; int8 | w8a8) echo q8_0 ;; esac; }
our_flags() { # precision -> this runtime's options for it
    case "$1" in
    int8) echo --weights int8 ;;
    w8a8) echo --weights int8 --activations int8 ;;
    bf16a) echo --activations bf16 ;;
    esac
}
gguf_file() { echo "$M/$1-$(gguf_type "$2").gguf"; }

prepare_model() { # model
    local model=$1
    if [ "$model" = synthetic ] && [ ! -f "$M/synthetic-bf16/model.safetensors" ]; then
        log "making the synthetic MoE Jamba (tools/make_synthetic_hf.py)"
        PYTHONPATH="$W/pydeps" "$PY" "$ROOT/tools/make_synthetic_hf.py" --out "$M/synthetic-bf16" >&2
    fi
    local bf16_dir; bf16_dir=$(hf_dir "$model" bf16)
    if [ ! -f "$M/$model-f32/model.safetensors" ]; then
        log "widening $model to f32"
        "$PY" "$HELPER" widen "$bf16_dir" "$M/$model-f32"
    fi
    local p
    for p in bf16 f32 int8; do
        local out; out=$(gguf_file "$model" "$p")
        [ -f "$out" ] && continue
        log "converting $model to GGUF $(gguf_type "$p")"
        # Q8_0 and BF16 from the bf16 weights (exact), F32 from the widened copy (the same values)
        local from=$bf16_dir; [ "$p" = f32 ] && from="$M/$model-f32"
        "${CONVERT[@]}" "$from" --outtype "$(gguf_type "$p")" --outfile "$out.tmp" >&2
        mv "$out.tmp" "$out"
    done
}

IFS=, read -r -a model_list <<<"$MODELS"
IFS=, read -r -a precision_list <<<"$PRECISIONS"
for model in "${model_list[@]}"; do prepare_model "$model"; done
[ "$PREPARE_ONLY" = 1 ] && exit 0

# ---- paired runs ----------------------------------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$W/results/$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
{
    echo "date: $STAMP"
    echo "this runtime: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "llama.cpp: llama-cpp-python $VERSION sdist; $("$LBUILD/bin/llama-bench" --version 2>&1 | head -n 2 | tr '\n' ' ')"
    echo "compiler: $(cc --version | head -n 1)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'); $(nproc) CPUs; flags: $(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_bf16|avx512_vnni|avx512vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "load before: $(uptime)"
} | tee "$OUT/machine.txt" >&2

load1() { cut -d' ' -f1 /proc/loadavg; }
run_ours() { # model precision rep
    local dir extra=() load; dir=$(hf_dir "$1" "$2"); load=$(load1)
    read -r -a extra <<<"$(our_flags "$2")"
    /usr/bin/time -v -o "$OUT/ours.time" "$OURS/bench_cpu" --model "$dir" --threads "$THREADS" \
        --prompt "$PROMPT_TOKENS" --decode "$DECODE_TOKENS" --reps 1 --no-bandwidth "${extra[@]}" >"$OUT/ours.json"
    "$PY" "$HELPER" record "$RESULTS" --runtime jamba --model "$1" --precision "$2" --rep "$3" --load "$load" \
        --time "$OUT/ours.time" "$OUT/ours.json"
}
run_theirs() { # model precision rep
    local gguf load; gguf=$(gguf_file "$1" "$2"); load=$(load1)
    /usr/bin/time -v -o "$OUT/pp.time" "$LBUILD/bin/llama-bench" -m "$gguf" -t "$THREADS" -p "$PROMPT_TOKENS" -n 0 \
        -r 1 -o jsonl >"$OUT/pp.jsonl" 2>"$OUT/pp.err"
    /usr/bin/time -v -o "$OUT/tg.time" "$LBUILD/bin/llama-bench" -m "$gguf" -t "$THREADS" -p 0 -n "$DECODE_TOKENS" \
        -d "$PROMPT_TOKENS" -r 1 -o jsonl >"$OUT/tg.jsonl" 2>"$OUT/tg.err"
    "$PY" "$HELPER" record "$RESULTS" --runtime llama.cpp --model "$1" --precision "$2" --rep "$3" --load "$load" \
        --time "$OUT/pp.time" --time "$OUT/tg.time" "$OUT/pp.jsonl" "$OUT/tg.jsonl"
}
agree() { # model precision
    local dir extra=(); dir=$(hf_dir "$1" "$2")
    read -r -a extra <<<"$(our_flags "$2")"
    "$OURS/jamba" generate --model "$dir" --prompt "$AGREE_PROMPT" -n "$AGREE_TOKENS" --temperature 0 --json \
        --threads "$THREADS" "${extra[@]}" >"$OUT/agree-ours.json" 2>/dev/null
    "$LBUILD/bin/llama-completion" -m "$(gguf_file "$1" "$2")" -p "$AGREE_PROMPT" -n "$AGREE_TOKENS" --temp 0 \
        -no-cnv --no-display-prompt -t "$THREADS" -c 256 >"$OUT/agree-theirs.txt" 2>"$OUT/agree-theirs.err" </dev/null
    "$PY" "$HELPER" agree "$OUT/agree-ours.json" "$OUT/agree-theirs.txt" "$dir/tokenizer.model" \
        --append "$RESULTS" --model "$1" --precision "$2" >&2
}

for model in "${model_list[@]}"; do
    for p in "${precision_list[@]}"; do
        log "$model $p: greedy agreement"
        agree "$model" "$p"
        for rep in $(seq 1 "$REPS"); do
            log "$model $p: pair $rep of $REPS ($(cut -d' ' -f1-3 /proc/loadavg) load)"
            if [ $((rep % 2)) = 1 ]; then
                run_ours "$model" "$p" "$rep"; run_theirs "$model" "$p" "$rep"
            else
                run_theirs "$model" "$p" "$rep"; run_ours "$model" "$p" "$rep"
            fi
        done
    done
    if [ "$TRANSFORMERS" = 1 ]; then
        log "$model: transformers f32"
        "$PY" "$HELPER" transformers "$M/$model-f32" --prompt "$PROMPT_TOKENS" --decode 32 --threads "$THREADS" \
            --reps 3 --append "$RESULTS" --model "$model" --precision f32 2>/dev/null >&2
    fi
done
echo "load after: $(uptime)" | tee -a "$OUT/machine.txt" >&2
"$PY" "$HELPER" table "$RESULTS" | tee "$OUT/table.md"
log "results in $OUT"
