#!/bin/sh
# examples/three-modalities/run.sh: a spec with three modalities trained end
# to end on real data, and each modality generated from each other one.
#
#   sh examples/three-modalities/run.sh [--quick] [--epochs N] [--out DIR]
#
# The modalities (halves.spec): the top half of a Fashion-MNIST image, its
# bottom half and its label; a joint encoder, an encoder per modality with a
# KL term pulling it towards the joint one (alpha = 0.1, as JMVAE-kl), a
# decoder per modality. convert.js splits the images into halves. The
# script trains the spec (default 100 epochs; 1,000 training images held
# out for the validation curves), evaluates it (K = 1000 on the first 2,000
# test images: every subset of the modalities and every conditional), and
# generates:
#   - both halves from the label alone (the same z ~ q(z|w) for both), whole
#     garments whose class an independent classifier (examples/tools/
#     classifier.c, trained on the whole training images) checks: coherence;
#   - the bottom half from the top half (z ~ q(z|top)) and the top from the
#     bottom, completing test images, classified the same way against the
#     test labels;
#   - the label from each half: eval's accuracy w|top and w|bottom.
# Then the same modalities as the field's models of experts (halves_mvae.spec,
# halves_mmvae.spec, halves_mopoe.spec: MVAE, MMVAE with K = 10 and DReG,
# MoPoE; --expert-epochs N, default 30 in the full mode, the --epochs of the
# quick one), each modality generated from every subset of the other two
# (and halves.spec's the same way: the zero-fed joint encoder stands in for
# a subset it has no encoder of), in a table of their own.
# Then incomplete data: MVAE and MoPoE (MISSING_MODELS) trained with each
# half hidden in half of the training examples (`train --drop top=0.5
# --drop bottom=0.5`, the label always there: a quarter of the examples
# complete), on every example (each trains what it observes) and on the
# complete quarter alone (`--complete-only`, the discard baseline), each
# modality generated from every subset as above (K = 100 for eval's
# figures in the full mode), and by how many standard errors using the
# incomplete examples pays.
# It writes RESULTS.md and the figures (default output
# examples/three-modalities/out; RESULTS.md and the figures are copied
# beside this script in the full mode). --quick: 2 epochs on 3,000 images,
# 200 test images, K = 50. An interrupted run resumes from its checkpoint.
#
# Variables (for tests): FASHION_MNIST, EXAMPLE_TRAIN_LIMIT, EXAMPLE_TEST_LIMIT,
# EXAMPLE_SAMPLES, EXAMPLE_PER_CLASS, EXAMPLE_CLASSIFIER_EPOCHS,
# EXAMPLE_PRIOR_SAMPLES, EXAMPLE_VALID, EXAMPLE_THREADS, MISSING_MODELS; CFLAGS and LDFLAGS.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
. "$ROOT/examples/lib/common.sh"
EXPERT_EPOCHS=
args=""
while [ $# -gt 0 ]; do # --expert-epochs N; the rest are example_options'
    case $1 in
    --expert-epochs) [ $# -ge 2 ] || { echo "run.sh: --expert-epochs needs a number" >&2; exit 2; }
                     EXPERT_EPOCHS=$2; shift ;;
    *) args="$args $1" ;;
    esac
    shift
done
# shellcheck disable=SC2086
example_options $args
[ -n "$EXPERT_EPOCHS" ] || EXPERT_EPOCHS=$([ $MODE = full ] && echo 30 || echo "$EPOCHS")
EXPERTS="halves_mvae halves_mmvae halves_mopoe"
MISSING_MODELS=${MISSING_MODELS:-halves_mvae halves_mopoe}
MISSING_SAMPLES=$([ $MODE = full ] && echo 100 || echo "$SAMPLES")
[ $MODE = full ] && TEST_LIMIT=2000 # K = 1000 on every subset and conditional of three modalities
COMPLETE=$([ "$TEST_LIMIT" -gt 0 ] && [ "$TEST_LIMIT" -lt 1000 ] && echo "$TEST_LIMIT" || echo 1000)
CLASSES="T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle-boot"
start=$(now)

say "packages, the compiler and the runtime, the data split into halves"
example_setup
command -v node > /dev/null || { echo "run.sh: node (Node.js) is needed to split the images" >&2; exit 1; }
[ -f "$OUT/data/test_bottom_first.csv" ] && [ "$(wc -l < "$OUT/data/test_bottom_first.csv")" = "$COMPLETE" ] ||
    node "$HERE/convert.js" "$DATA" "$OUT/data" "$COMPLETE"
H=$OUT/data
TRAIN="--data top=$H/train_top.npy --data bottom=$H/train_bottom.npy --data w=$DATA/train-labels-idx1-ubyte.gz"
TRAIN="$TRAIN --limit $TRAIN_LIMIT"
TEST="--data top=$H/test_top.npy --data bottom=$H/test_bottom.npy --data w=$DATA/t10k-labels-idx1-ubyte.gz"
TEST="$TEST --limit $TEST_LIMIT"

say "compile halves.spec, build the trainer and the classifier"
"$ROOT/jmvaec" "$HERE/halves.spec" -o "$OUT/gen" > /dev/null
make -s -C "$OUT/gen" JMVAEC="$ROOT/jmvaec"
T=$OUT/gen/halves
classifier "$DATA/train-images-idx3-ubyte.gz" "$DATA/train-labels-idx1-ubyte.gz" "$DATA/t10k-images-idx3-ubyte.gz" \
    "$DATA/t10k-labels-idx1-ubyte.gz"

say "train to $EPOCHS epochs"
t=$(now)
if [ -f "$OUT/run/last.ckpt" ]; then
    "$T" train $TRAIN --valid "$VALID" --epochs "$EPOCHS" $THREADS --resume "$OUT/run/last.ckpt"
else
    rm -rf "$OUT/run"
    "$T" train $TRAIN --valid "$VALID" --epochs "$EPOCHS" $THREADS --out "$OUT/run"
fi
echo $(( $(now) - t )) >> "$OUT/train_seconds"
CK=$OUT/run/last.ckpt

say "evaluate (K = $SAMPLES)"
stamp="$EPOCHS $SAMPLES $PRIOR_SAMPLES $TEST_LIMIT $(cksum < "$CK")"
if [ ! -f "$OUT/eval.json" ] || [ "$(cat "$OUT/eval.stamp" 2>/dev/null)" != "$stamp" ]; then
    t=$(now)
    "$T" eval --checkpoint "$CK" $TEST --samples "$SAMPLES" --prior-samples "$PRIOR_SAMPLES" $THREADS \
        --json "$OUT/eval.json" > "$OUT/eval.txt"
    echo $(( $(now) - t )) > "$OUT/eval_seconds"
    echo "$stamp" > "$OUT/eval.stamp"
fi
cat "$OUT/eval.txt"

say "generate each modality from each other one"
# both halves from the label, the same z for both (the same seed and rows)
for half in top bottom; do
    "$T" sample --checkpoint "$CK" --mode conditional --draw $half --n "$PER_CLASS" --csv "$OUT/${half}_from_w.csv" \
        --csv-labels "$OUT/from_w_labels.csv" > /dev/null
    "$T" sample --checkpoint "$CK" --mode conditional --draw $half --n 10 --csv "$OUT/${half}_from_w_10.csv" > /dev/null
done
paste -d, "$OUT/top_from_w.csv" "$OUT/bottom_from_w.csv" > "$OUT/garments_from_w.csv"
"$OUT/classifier" test --model "$OUT/classifier.bin" --images "$OUT/garments_from_w.csv" \
    --labels "$OUT/from_w_labels.csv" --json "$OUT/coherence_from_w.json"
# one half from the other, for the first test images, classified against their labels
"$OUT/classifier" labels --labels "$DATA/t10k-labels-idx1-ubyte.gz" --limit "$COMPLETE" > "$OUT/completed_labels.csv"
"$T" sample --checkpoint "$CK" --mode reconstruct --data "top=$H/test_top.npy" --draw bottom --n "$COMPLETE" \
    --csv "$OUT/bottom_from_top.csv" > /dev/null
"$T" sample --checkpoint "$CK" --mode reconstruct --data "bottom=$H/test_bottom.npy" --draw top --n "$COMPLETE" \
    --csv "$OUT/top_from_bottom.csv" > /dev/null
paste -d, "$H/test_top_first.csv" "$OUT/bottom_from_top.csv" > "$OUT/completed_from_top.csv"
paste -d, "$OUT/top_from_bottom.csv" "$H/test_bottom_first.csv" > "$OUT/completed_from_bottom.csv"
for from in top bottom; do
    "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$OUT/completed_from_$from.csv" \
        --labels "$OUT/completed_labels.csv" --json "$OUT/completed_from_$from.json"
done

# ------------------------------------------------------ models of experts --
# Each modality from every subset of the other two: for the halves, a completion
# (the given half with the generated one) or both halves (from w alone),
# classified; for w, eval's accuracy w|S.
from_subsets() { # trainer checkpoint folder
    "$1" sample --checkpoint "$2" --mode conditional --draw top --n "$PER_CLASS" --csv "$3/top_from_w.csv" \
        --csv-labels "$3/from_w_labels.csv" > /dev/null
    "$1" sample --checkpoint "$2" --mode conditional --draw bottom --n "$PER_CLASS" --csv "$3/bottom_from_w.csv" > /dev/null
    paste -d, "$3/top_from_w.csv" "$3/bottom_from_w.csv" > "$3/garments_from_w.csv"
    "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$3/garments_from_w.csv" \
        --labels "$3/from_w_labels.csv" --json "$3/from_w.json"
    rm -f "$3/top_from_w.csv" "$3/bottom_from_w.csv" "$3/garments_from_w.csv"
    W="w=$DATA/t10k-labels-idx1-ubyte.gz"
    for given in "top" "top w" "bottom" "bottom w"; do
        half=${given%% *}
        other=$([ "$half" = top ] && echo bottom || echo top)
        name=$(echo "$given" | tr ' ' '_')
        data="--data $half=$H/test_$half.npy"
        [ "$given" = "$half" ] || data="$data --data $W"
        "$1" sample --checkpoint "$2" --mode reconstruct $data --draw "$other" --n "$COMPLETE" \
            --csv "$3/${other}_from_$name.csv" > /dev/null
        if [ "$half" = top ]; then
            paste -d, "$H/test_top_first.csv" "$3/${other}_from_$name.csv" > "$3/completed_from_$name.csv"
        else
            paste -d, "$3/${other}_from_$name.csv" "$H/test_bottom_first.csv" > "$3/completed_from_$name.csv"
        fi
        "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$3/completed_from_$name.csv" \
            --labels "$OUT/completed_labels.csv" --json "$3/completed_from_$name.json"
        rm -f "$3/${other}_from_$name.csv" "$3/completed_from_$name.csv"
    done
}
mkdir -p "$OUT/halves"
from_subsets "$T" "$CK" "$OUT/halves"
cp "$OUT/eval.json" "$OUT/halves/eval.json"
# train_eval TRAINER DIR EPOCHS K [train options]: train into DIR/run (resuming), evaluate with K samples
train_eval() {
    tr=$1 d=$2 ep=$3 k=$4
    shift 4
    train_into "$tr" "$d" $TRAIN "$@" --valid "$VALID" --epochs "$ep" $THREADS
    if eval_due "$d" "$ep $k $PRIOR_SAMPLES $TEST_LIMIT"; then
        t=$(now)
        "$tr" eval --checkpoint "$d/run/last.ckpt" $TEST --samples "$k" --prior-samples "$PRIOR_SAMPLES" $THREADS \
            --json "$d/eval.json" > "$d/eval.txt"
        echo $(( $(now) - t )) > "$d/eval_seconds"
        mark_evaluated "$d" "$ep $k $PRIOR_SAMPLES $TEST_LIMIT"
    fi
}
for m in $EXPERTS; do
    say "$m: train to $EXPERT_EPOCHS epochs, evaluate (K = $SAMPLES), generate from every subset"
    "$ROOT/jmvaec" "$HERE/$m.spec" -o "$OUT/gen_$m" > /dev/null
    make -s -C "$OUT/gen_$m" JMVAEC="$ROOT/jmvaec"
    TM=$OUT/gen_$m/$m
    train_eval "$TM" "$OUT/$m" "$EXPERT_EPOCHS" "$SAMPLES"
    from_subsets "$TM" "$OUT/$m/run/last.ckpt" "$OUT/$m"
done

for m in $MISSING_MODELS; do
    TM=$OUT/gen_$m/$m
    [ -x "$TM" ] || { "$ROOT/jmvaec" "$HERE/$m.spec" -o "$OUT/gen_$m" > /dev/null; make -s -C "$OUT/gen_$m" JMVAEC="$ROOT/jmvaec"; }
    for kind in all discard; do
        say "$m, each half hidden in half of the training examples, $kind: train to $EXPERT_EPOCHS epochs, evaluate"
        only=$([ $kind = discard ] && echo --complete-only || true)
        train_eval "$TM" "$OUT/missing/$m-$kind" "$EXPERT_EPOCHS" "$MISSING_SAMPLES" --drop top=0.5 --drop bottom=0.5 $only
        from_subsets "$TM" "$OUT/missing/$m-$kind/run/last.ckpt" "$OUT/missing/$m-$kind"
    done
done

say "figures (gnuplot)"
paste -d, "$OUT/top_from_w_10.csv" "$OUT/bottom_from_w_10.csv" | csv_grid 10 28 28 > "$OUT/from_w.matrix"
{ paste -d, "$H/test_top_first.csv" "$H/test_bottom_first.csv" | head -n 10
  head -n 10 "$OUT/completed_from_top.csv"; head -n 10 "$OUT/completed_from_bottom.csv"; } |
    csv_grid 10 28 28 > "$OUT/completed.matrix"
ytics=$(i=0; for c in $CLASSES; do printf '%s"%s" %d' "$([ $i -gt 0 ] && echo ', ')" "$c" $((29 * i + 15)); i=$((i + 1)); done)
{
    echo "reset; set terminal pngcairo noenhanced size 640,600 font 'sans,11'; set output '$OUT/from_w.png'"
    echo "set palette grey; unset colorbox; set size ratio -1; unset xtics; set yrange [*:*] reverse; set border 0"
    echo "set ytics ($ytics) scale 0"
    echo "set title 'from the label alone, 10 a class (both halves from one z ~ q(z|w))'"
    echo "plot '$OUT/from_w.matrix' matrix with image notitle"
    echo "reset; set terminal pngcairo noenhanced size 900,380 font 'sans,11'; set output '$OUT/completed.png'"
    echo "set palette grey; unset colorbox; set size ratio -1; unset xtics; set yrange [*:*] reverse; set border 0"
    echo "set ytics ('test image' 15, 'top given, bottom generated' 44, 'bottom given, top generated' 73) scale 0"
    echo "set title 'one half generated from the other: z ~ q(z|top) or q(z|bottom)'"
    echo "plot '$OUT/completed.matrix' matrix with image notitle"
    curves_gp halves "$OUT/run/train.csv" "$OUT/curves.png" "$VALID"
} > "$OUT/figures.gp"
gnuplot "$OUT/figures.gp"

say "RESULTS.md"
acc() { grep -m1 '"accuracy": {' "$1" | sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/' |
        awk '{ printf "%.3f ± %.3f", $1, $2 }'; }
# measure DIR WHAT: "mean se" of a classifier's JSON (WHAT: its name) or of eval's accuracy (WHAT: w:SUBSET)
measure() {
    case $2 in
    w:*) sed -n '/"accuracy": {/,/^  }/p' "$OUT/$1/eval.json" | grep -m1 "\"w|${2#w:}\": {" ;;
    *) grep -m1 '"accuracy": {' "$OUT/$1/$2.json" ;;
    esac | sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/'
}
model_name() { case $1 in halves_mvae) echo MVAE ;; halves_mmvae) echo MMVAE ;; halves_mopoe) echo MoPoE ;; *) echo "$1" ;; esac; }
{
    echo "# Three modalities: the top half, the bottom half and the label of Fashion-MNIST images"
    echo
    echo "Written by \`examples/three-modalities/run.sh$([ $MODE = quick ] && echo ' --quick') --epochs $EPOCHS\` on $(date -u +%Y-%m-%d),"
    echo "jmvaec $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '(no git)'); the spec is [halves.spec](halves.spec)."
    echo
    quick_banner
    echo "Training: $EPOCHS epochs (batch 100, Adam 1e-3, clipping 5), $([ "$TRAIN_LIMIT" = 0 ] && echo "the 60,000 training images" || echo "the first $TRAIN_LIMIT training images") less $VALID held out"
    echo "for the validation curves, grey levels as Bernoulli targets, in $(awk '{ s += $1 } END { printf "%.0f", s / 60 }' "$OUT/train_seconds") min."
    echo "Evaluation: $([ "$TEST_LIMIT" = 0 ] && echo "all test images" || echo "the first $TEST_LIMIT test images"), K = $SAMPLES, in $(awk '{ printf "%.0f", $1 / 60 }' "$OUT/eval_seconds") min."
    echo
    echo "| generated | from | measure | value |"
    echo "|---|---|---|---|"
    echo "| top and bottom (one garment) | w | coherence: the classifier gives w ($PER_CLASS a class) | $(acc "$OUT/coherence_from_w.json") |"
    echo "| bottom | top | the completed image's class is the test label ($COMPLETE images) | $(acc "$OUT/completed_from_top.json") |"
    echo "| top | bottom | the completed image's class is the test label ($COMPLETE images) | $(acc "$OUT/completed_from_bottom.json") |"
    for from in top bottom; do
        echo "| w | $from | accuracy of argmax p(w\\|z), z ~ q(z\\|$from) | $(sed -n '/"accuracy": {/,/^  }/p' "$OUT/eval.json" |
            grep -m1 "\"w|$from\": {" |
            sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/' | awk '{ printf "%.3f ± %.3f", $1, $2 }') |"
    done
    echo "| (the classifier on real test images) | | accuracy | $(acc "$OUT/classifier.json") |"
    echo
    echo "Each value ± its standard error. The classifier is examples/tools/classifier.c, trained on the whole"
    echo "training images; a completed image is the given half above (or below) the generated one."
    echo
    echo "## Every subset, four models"
    echo
    echo "Each modality generated from every subset of the other two, by halves.spec (JMVAE-kl, $EPOCHS epochs) and"
    echo "by the models of experts (MVAE, MMVAE with K = 10 and DReG, MoPoE: halves_mvae.spec, halves_mmvae.spec,"
    echo "halves_mopoe.spec, $EXPERT_EPOCHS epochs each). A half is scored by the classifier on the completed garment"
    echo "(the given half with the generated one; both generated from w alone, $PER_CLASS a class), the label by"
    echo "eval's accuracy of argmax p(w|z). halves.spec has an encoder for the whole set and for each modality"
    echo "alone: from (top, w) or (bottom, w) it uses the joint encoder with the missing half fed as zeros (the"
    echo "JMVAE-zero rule); a model of experts uses the product or mixture of the subset's experts."
    echo
    echo "| generated | from | halves (JMVAE-kl) | MVAE | MMVAE | MoPoE |"
    echo "|---|---|---|---|---|---|"
    cell() { [ -f "$OUT/$1/$2.json" ] && acc "$OUT/$1/$2.json" || echo "-"; }
    wcell() { sed -n '/"accuracy": {/,/^  }/p' "$OUT/$1/eval.json" | grep -m1 "\"w|$2\": {" |
              sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/' | awk '{ printf "%.3f ± %.3f", $1, $2 }'; }
    for row in "top and bottom|w|from_w" "bottom|top|completed_from_top" "bottom|top, w|completed_from_top_w" \
               "top|bottom|completed_from_bottom" "top|bottom, w|completed_from_bottom_w"; do
        what=${row%%|*} rest=${row#*|}
        echo "| $what | ${rest%%|*} | $(cell halves "${rest#*|}") | $(for m in $EXPERTS; do printf '%s | ' "$(cell $m "${rest#*|}")"; done)"
    done
    for from in top bottom top,bottom; do
        echo "| w | $(echo $from | sed 's/,/, /') | $(wcell halves $from) | $(for m in $EXPERTS; do printf '%s | ' "$(wcell $m $from)"; done)"
    done
    echo
    for m in $EXPERTS; do
        echo "$m: log p(top,bottom,w) $(fmt "$(jget "$OUT/$m/eval.json" log_p top,bottom,w)"), trained in $(minutes "$OUT/$m/train_seconds") min."
        echo
    done
    echo "## Half of each half missing: training on incomplete examples, or discarding them"
    echo
    echo "The models of experts again ($EXPERT_EPOCHS epochs each), with each half hidden in half of the training"
    echo "examples (\`train --drop top=0.5 --drop bottom=0.5\`, chosen by the seed; the label always there), so that"
    echo "a quarter of them are complete, a quarter have each half alone with the label, a quarter the label alone."
    echo "*all*: every example trains the part of the objective it observes (the product or mixture of its own"
    echo "experts, the reconstruction of what it has); *discard*: the complete quarter alone (\`--complete-only\`)."
    echo "Measures as in the table above (eval with K = $MISSING_SAMPLES); *z* is (all − discard) / sqrt(se² + se²)."
    echo
    printf "| generated | from |"
    for m in $MISSING_MODELS; do printf " %s: all | discard | z |" "$(model_name $m)"; done
    echo
    printf "|---|---|"
    for m in $MISSING_MODELS; do printf -- "---|---|---|"; done
    echo
    for row in "top and bottom|w|from_w" "bottom|top|completed_from_top" "bottom|top, w|completed_from_top_w" \
               "top|bottom|completed_from_bottom" "top|bottom, w|completed_from_bottom_w" "w|top|w:top" \
               "w|bottom|w:bottom" "w|top, bottom|w:top,bottom"; do
        what=${row%%|*} rest=${row#*|}
        printf "| %s | %s |" "$what" "${rest%%|*}"
        for m in $MISSING_MODELS; do
            a=$(measure "missing/$m-all" "${rest#*|}") d=$(measure "missing/$m-discard" "${rest#*|}")
            printf " %s | %s | %s |" "$(pct "$a")" "$(pct "$d")" "$(echo "$a $d" | awk '{ s = sqrt($2 * $2 + $4 * $4); printf "%+.1f", (s > 0 ? ($1 - $3) / s : 0) }')"
        done
        echo
    done
    echo
    for m in $MISSING_MODELS; do
        for kind in all discard; do
            echo "$(model_name $m), $kind: $(grep -m1 -E '^(training examples by|--complete-only:)' "$OUT/missing/$m-$kind/train.log");" \
                "log p(top,bottom,w) $(fmt "$(jget "$OUT/missing/$m-$kind/eval.json" log_p top,bottom,w)"), trained in" \
                "$(minutes "$OUT/missing/$m-$kind/train_seconds") min."
            echo
        done
    done
    echo "eval's table (every subset of the modalities, every conditional, the proposals):"
    echo
    sed 's/^/    /' "$OUT/eval.txt"
    echo
    echo "## Figures"
    echo
    echo "![both halves generated from the label](from_w.png)"
    echo
    echo "![one half generated from the other](completed.png)"
    echo
    echo "![learning curves](curves.png)"
    echo
    echo "## Commands"
    echo
    echo "    node examples/three-modalities/convert.js $DATA out/data $COMPLETE"
    echo "    jmvaec examples/three-modalities/halves.spec -o gen && make -C gen"
    echo "    gen/halves train $TRAIN --valid $VALID --epochs $EPOCHS --out run" | sed "s|$H|out/data|g"
    echo "    gen/halves eval --checkpoint run/last.ckpt $TEST --samples $SAMPLES --json eval.json" | sed "s|$H|out/data|g"
    echo "    gen/halves sample --checkpoint run/last.ckpt --mode conditional --draw top --n $PER_CLASS --csv top_from_w.csv --csv-labels from_w_labels.csv"
    echo "    gen/halves sample --checkpoint run/last.ckpt --mode reconstruct --data top=out/data/test_top.npy --draw bottom --n $COMPLETE --csv bottom_from_top.csv"
} > "$OUT/RESULTS.md"
[ $MODE = full ] && [ "$OUT" = "$HERE/out" ] && {
    mkdir -p "$HERE/figures"
    cp "$OUT/from_w.png" "$OUT/completed.png" "$OUT/curves.png" "$HERE/figures/"
    sed -e 's|](from_w.png)|](figures/from_w.png)|' -e 's|](completed.png)|](figures/completed.png)|' \
        -e 's|](curves.png)|](figures/curves.png)|' "$OUT/RESULTS.md" > "$HERE/RESULTS.md"
}
cat "$OUT/RESULTS.md"
say "done in $(( $(now) - start )) s; everything is in $OUT"
