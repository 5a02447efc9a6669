#!/usr/bin/env bash
# eval-prune.sh - the structured pruning tables of docs/benchmarks.md: prunes a model with each score and target
# mix, then eval-ppl of the base and every variant on text that is not the calibration text, layer removal
# (ShortGPT) beside width pruning at the same parameter count, prune -> GPTQ q4 -> eval with a chart, and the
# three scores (magnitude, activation, taylor) at --ratio 0.3 plus layer removal by the Taylor score.
#
#   scripts/eval-prune.sh stories260K      # ../shared/models/stories260K, calibrated on TinyStories train
#   scripts/eval-prune.sh smollm2          # models/smollm2-135m-f32.lmp (scripts/get-models.sh)
# Outputs go to build/prune-eval/NAME/ (tables in *.md beside the models). Env: CHUNKS (eval chunks per
# data set), CALIB_TOKENS, LMPRESS, SMOLLM2 (the f32 model file), PART=all (default) or scores (only the
# three-score comparison, eval-scores-*.md).
set -eu
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
L=${LMPRESS:-build/lmpress}
TRAIN=$SHARED/data/tinystories/train.txt
VALID=$SHARED/data/tinystories/valid.txt
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
name=${1:?usage: eval-prune.sh stories260K|smollm2}
O=build/prune-eval/$name
mkdir -p "$O"
case $name in
stories260K)
    "$L" import "$SHARED/models/stories260K/stories260K.bin" -f -o "$O/base.lmp" 2>/dev/null
    DATA=("$VALID"); CHUNKS=${CHUNKS:-0}; CALIB_TOKENS=${CALIB_TOKENS:-16384}
    RATIOS=(0.1 0.3); LAYERS=1 ;;
smollm2)
    cp "${SMOLLM2:-models/smollm2-135m-f32.lmp}" "$O/base.lmp"
    DATA=("$WIKI" "$VALID"); CHUNKS=${CHUNKS:-40}; CALIB_TOKENS=${CALIB_TOKENS:-16384}
    RATIOS=(0.1 0.3); LAYERS=7 ;;
*) echo "unknown model '$name'" >&2; exit 2 ;;
esac
B=$O/base.lmp
P=(prune "$B" --structured -q -f)
CAL=(--calib "$TRAIN" --calib-tokens "$CALIB_TOKENS")
run() { echo "+ lmpress $*" >&2; "$L" "$@"; }
ch=(); [ "$CHUNKS" != 0 ] && ch=(--chunks "$CHUNKS")
n_layers=$("$L" info "$B" --no-tensors | sed -n 's/^  llama\.block_count *//p')
lr=$(python3 -c "print(f'{$LAYERS / $n_layers:.4f}')")

# The three scores at 0.3 (default targets heads,ffn), and LAYERS whole blocks by the Taylor score beside
# ShortGPT's block influence at the same ratio.
scores() {
    local v=()
    for score in magnitude activation taylor; do
        c=(); [ $score != magnitude ] && c=("${CAL[@]}")
        run "${P[@]}" --ratio 0.3 --score $score "${c[@]}" -o "$O/$score-0.3.lmp"
        v+=("$O/$score-0.3.lmp")
    done
    run "${P[@]}" --ratio "$lr" --targets layers "${CAL[@]}" -o "$O/layers-$LAYERS.lmp"
    run "${P[@]}" --ratio "$lr" --targets layers --score taylor "${CAL[@]}" -o "$O/layers-taylor-$LAYERS.lmp"
    v+=("$O/layers-$LAYERS.lmp" "$O/layers-taylor-$LAYERS.lmp")
    run eval-ppl "$B" "${v[@]}" --data "${DATA[0]}" "${ch[@]}" >"$O/eval-scores-$(basename "${DATA[0]}" | cut -d. -f1).md"
    cat "$O/eval-scores-$(basename "${DATA[0]}" | cut -d. -f1).md"
}
if [ "${PART:-all}" = scores ]; then scores; exit 0; fi

variants=()
for r in "${RATIOS[@]}"; do
    for score in magnitude activation; do
        c=(); [ $score = activation ] && c=("${CAL[@]}")
        run "${P[@]}" --ratio "$r" --score $score "${c[@]}" -o "$O/$score-$r.lmp"
        variants+=("$O/$score-$r.lmp")
    done
    run "${P[@]}" --ratio "$r" --score activation "${CAL[@]}" --uniform -o "$O/activation-uniform-$r.lmp"
    variants+=("$O/activation-uniform-$r.lmp")
done
# Target mixes at the smaller ratio: heads alone, FFN alone.
r=${RATIOS[0]}
for t in heads ffn; do
    for score in magnitude activation; do
        c=(); [ $score = activation ] && c=("${CAL[@]}")
        run "${P[@]}" --ratio "$r" --targets $t --score $score "${c[@]}" -o "$O/$score-$t-$r.lmp"
        variants+=("$O/$score-$t-$r.lmp")
    done
done
# Layer removal (ShortGPT) of LAYERS blocks, then width pruning (activation) at exactly the same count.
run "${P[@]}" --ratio "$lr" --targets layers "${CAL[@]}" -o "$O/layers-$LAYERS.lmp"
removed=$("$L" info "$O/layers-$LAYERS.lmp" --no-tensors | sed -n 's/^  prune\.removed *//p')
run "${P[@]}" --ratio "$removed" --score activation "${CAL[@]}" -o "$O/width-as-layers-$LAYERS.lmp"
variants+=("$O/layers-$LAYERS.lmp" "$O/width-as-layers-$LAYERS.lmp")

for d in "${DATA[@]}"; do
    run eval-ppl "$B" "${variants[@]}" --data "$d" "${ch[@]}" >"$O/eval-$(basename "$d" | cut -d. -f1).md"
done

# Prune -> quantize (GPTQ 4-bit) -> eval: base, pruned, base-q4, pruned-q4 in one table and one chart.
pr=$O/activation-${RATIOS[0]}.lmp
run quantize "$B" --bits 4 --method gptq "${CAL[@]}" -q -o "$O/base-q4-gptq.lmp"
run quantize "$pr" --bits 4 --method gptq "${CAL[@]}" -q -o "$O/pruned-q4-gptq.lmp"
run eval-ppl "$B" "$pr" "$O/base-q4-gptq.lmp" "$O/pruned-q4-gptq.lmp" --data "${DATA[0]}" "${ch[@]}" \
    --plot "$O/prune-quant.svg" >"$O/eval-prune-quant.md"
scores
cat "$O"/eval-*.md
