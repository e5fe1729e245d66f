#!/bin/sh
# examples/semi-supervised/run.sh: Fashion-MNIST with most labels missing.
#
#   sh examples/semi-supervised/run.sh [--quick] [--epochs N] [--out DIR]
#
# For each fraction f of the training labels kept (1%, 10%, 50%, 100%: the
# others hidden by `train --drop w=1-f`, chosen by the seed, the same images
# for every model) and each model -- JMVAE-kl with the unimodal ELBO of an
# unlabelled image (jmvae_kl.spec beside this script), MVAE, MMVAE (K = 10,
# DReG) and MoPoE (examples/mvae.spec, mmvae.spec, mopoe.spec) -- two runs:
#   all:     every training image, labelled or not (each trains the part of
#            the loss it observes);
#   discard: the labelled images alone (`train --complete-only`), the
#            baseline that throws the others away (at 100% the two are one).
# Each is evaluated on the test images: accuracy w|x (argmax p(w|z),
# z ~ q(z|x): eval), coherence x|w (the independent classifier,
# examples/tools/classifier.c, on images generated from labels alone) and
# log p(x) (eval, K importance samples), each with its standard error. It
# writes RESULTS.md (the table, and by how many standard errors using the
# unlabelled images pays) and a figure of each measure against the fraction
# into the output folder (default examples/semi-supervised/out; RESULTS.md
# and the figure are copied beside this script in the full mode).
#
# Full mode: 30 epochs a run (--epochs N), the 60,000 training images (1,000
# held out for validation, always labelled), the first 2,000 test images
# with K = 100, 1,000 images generated a class; 28 runs. --quick: 2 epochs
# on 3,000 images, 200 test images, K = 50. An interrupted run resumes from
# its checkpoints; finished steps are not redone.
#
# Variables (for tests): those of examples/fashion-mnist/run.sh, and
# SEMI_MODELS (default "jmvae_kl mvae mmvae mopoe"), SEMI_FRACTIONS (default
# "0.01 0.1 0.5 1").
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
. "$ROOT/examples/lib/common.sh"
example_options "$@"
if [ $MODE = full ]; then
    [ -n "$EPOCHS_GIVEN" ] || EPOCHS=30
    TEST_LIMIT=2000 SAMPLES=100
fi
ALL_MODELS="jmvae_kl mvae mmvae mopoe" ALL_FRACTIONS="0.01 0.1 0.5 1"
MODELS=${SEMI_MODELS:-$ALL_MODELS}
FRACTIONS=${SEMI_FRACTIONS:-$ALL_FRACTIONS}
start=$(now)

say "packages, the compiler and the runtime"
example_setup
TRAIN_X=$DATA/train-images-idx3-ubyte.gz TRAIN_W=$DATA/train-labels-idx1-ubyte.gz
TEST_X=$DATA/t10k-images-idx3-ubyte.gz TEST_W=$DATA/t10k-labels-idx1-ubyte.gz
require_files "$TRAIN_X" "$TRAIN_W" "$TEST_X" "$TEST_W"
TRAIN="--data x=$TRAIN_X --data w=$TRAIN_W --limit $TRAIN_LIMIT --valid $VALID"
TEST="--data x=$TEST_X --data w=$TEST_W --limit $TEST_LIMIT"

spec_of() { [ "$1" = jmvae_kl ] && echo "$HERE/jmvae_kl.spec" || echo "$ROOT/examples/$1.spec"; }
bin_of() { [ "$1" = jmvae_kl ] && echo jmvae_kl_semi || echo "$1"; }
say "compile the specs"
mkdir -p "$OUT/gen"
for m in $MODELS; do
    "$ROOT/jmvaec" "$(spec_of $m)" -o "$OUT/gen/$m" > /dev/null
    make -s -C "$OUT/gen/$m" JMVAEC="$ROOT/jmvaec"
done
classifier "$TRAIN_X" "$TRAIN_W" "$TEST_X" "$TEST_W"

# run MODEL FRACTION KIND: train (resuming), evaluate, measure coherence, into $OUT/MODEL/FRACTION-KIND
run() {
    d=$OUT/$1/$2-$3 T=$OUT/gen/$1/$(bin_of $1)
    mkdir -p "$d"
    drop=$(awk -v f="$2" 'BEGIN { if (f < 1) printf "--drop w=%g", 1 - f }')
    only=$([ "$3" = discard ] && echo --complete-only || true)
    say "$1, $2 of the labels, $3: train to $EPOCHS epochs"
    train_into "$T" "$d" $TRAIN $drop $only --epochs "$EPOCHS" $THREADS
    stamp="$EPOCHS $SAMPLES $TEST_LIMIT"
    if eval_due "$d" "$stamp"; then
        "$T" eval --checkpoint "$d/run/last.ckpt" $TEST --samples "$SAMPLES" --prior-samples "$PRIOR_SAMPLES" $THREADS \
            --json "$d/eval.json" > "$d/eval.txt"
        "$T" sample --checkpoint "$d/run/last.ckpt" --mode conditional --n "$PER_CLASS" --csv "$d/generated.csv" \
            --csv-labels "$d/generated_labels.csv" > /dev/null
        "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$d/generated.csv" \
            --labels "$d/generated_labels.csv" --json "$d/coherence.json"
        rm -f "$d/generated.csv"
        mark_evaluated "$d" "$stamp"
    fi
}
for m in $MODELS; do
    for f in $FRACTIONS; do
        run "$m" "$f" all
        [ "$f" = 1 ] || run "$m" "$f" discard
    done
done

# ------------------------------------------------------------- results --
# measure MODEL FRACTION KIND WHAT: "mean se" of accuracy w|x (acc), coherence (coh) or log p(x) (lpx)
measure() {
    d=$OUT/$1/$2-$([ "$2" = 1 ] && echo all || echo "$3")
    case $4 in
    acc) sed -n '/"accuracy": {/,/^  }/p' "$d/eval.json" | grep -m1 '"w|x": {' ;;
    coh) grep -m1 '"accuracy": {' "$d/coherence.json" ;;
    lpx) sed -n '/"log_p": {/,/^  }/p' "$d/eval.json" | grep -m1 '"x": {' ;;
    esac | sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/'
}
cell() { echo "$1" | awk -v d="$2" '{ printf "%." d "f ± %." d "f", $1, $2 }'; }
# zdiff "m1 s1" "m2 s2": (m1 - m2) / sqrt(s1^2 + s2^2), the difference in standard errors
zdiff() { echo "$1 $2" | awk '{ s = sqrt($2 * $2 + $4 * $4); printf "%+.1f", (s > 0 ? ($1 - $3) / s : 0) }'; }
name_of() { case $1 in jmvae_kl) echo JMVAE-kl ;; mvae) echo MVAE ;; mmvae) echo MMVAE ;; mopoe) echo MoPoE ;;
            *) echo "$1" ;; esac; }

say "figure (gnuplot)"
for m in $MODELS; do
    for kind in all discard; do
        for f in $FRACTIONS; do
            echo "$f $(measure $m $f $kind acc) $(measure $m $f $kind coh) $(measure $m $f $kind lpx)"
        done > "$OUT/$m-$kind.dat"
    done
done
{
    echo "reset; set terminal pngcairo noenhanced size 1500,420 font 'sans,11'; set output '$OUT/fractions.png'"
    echo "set logscale x; set xlabel 'fraction of the training labels kept'; set grid; set key bottom right"
    echo "set multiplot layout 1,3 title 'Fashion-MNIST, $EPOCHS epochs: every image (solid) against the labelled ones alone (dashed)'"
    for panel in "2:3|accuracy w|x" "4:5|coherence x|w" "6:7|log p(x)"; do
        cols=${panel%%|*} title=${panel#*|}
        printf "set title '%s'; plot " "$title"
        i=1 sep=""
        for m in $MODELS; do
            for kind in all discard; do
                printf "%s'%s' using 1:%s:%s with yerrorlines lw 2 pt 7 lc %d dt %d title '%s, %s'" "$sep" \
                    "$OUT/$m-$kind.dat" "${cols%%:*}" "${cols#*:}" "$i" "$([ $kind = all ] && echo 1 || echo 2)" \
                    "$(name_of $m)" "$kind"
                sep=", "
            done
            i=$((i + 1))
        done
        echo
    done
    echo "unset multiplot"
} > "$OUT/figures.gp"
gnuplot "$OUT/figures.gp"

say "RESULTS.md"
{
    echo "# Semi-supervised Fashion-MNIST: training on the unlabelled images, or discarding them"
    echo
    echo "Written by \`examples/semi-supervised/run.sh$([ $MODE = quick ] && echo ' --quick') --epochs $EPOCHS\` on $(date -u +%Y-%m-%d),"
    echo "jmvaec $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '(no git)')."
    echo
    quick_banner
    echo "Each model trained $EPOCHS epochs (batch 100, Adam 1e-3) on $([ "$TRAIN_LIMIT" = 0 ] && echo "the 60,000 training images" || echo "the first $TRAIN_LIMIT training images")"
    echo "less $VALID held out (labelled) for validation, with the labels of a fraction of them kept and the others"
    echo "hidden (\`train --drop w=P\`: the same images for every model); *all* uses every image, each training the"
    echo "part of the loss it observes (an unlabelled image: ELBO(x) in MVAE, the mixture or product of its own"
    echo "expert in MMVAE and MoPoE, the \`given (x)\` block of [jmvae_kl.spec](jmvae_kl.spec) for JMVAE-kl), *discard*"
    echo "the labelled ones alone (\`train --complete-only\`). Test: $([ "$TEST_LIMIT" = 0 ] && echo "all 10,000 test images" || echo "the first $TEST_LIMIT test images");"
    echo "accuracy w|x is argmax p(w|z) with z ~ q(z|x); coherence x|w the independent classifier's accuracy on"
    echo "$PER_CLASS images generated from each label; log p(x) with K = $SAMPLES. Each value ± its standard error;"
    echo "*z* is (all − discard) / sqrt(se² + se²)."
    echo
    echo "| model | labels | accuracy w\\|x: all | discard | z | coherence x\\|w: all | discard | z | log p(x): all | discard |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for m in $MODELS; do
        for f in $FRACTIONS; do
            a=$(measure $m $f all acc) ad=$(measure $m $f discard acc)
            c=$(measure $m $f all coh) cd=$(measure $m $f discard coh)
            l=$(measure $m $f all lpx) ld=$(measure $m $f discard lpx)
            pc=$(awk -v f="$f" 'BEGIN { printf "%g%%", 100 * f }')
            if [ "$f" = 1 ]; then
                echo "| $(name_of $m) | $pc | $(cell "$a" 3) | (the same) | – | $(cell "$c" 3) | (the same) | – | $(cell "$l" 2) | (the same) |"
            else
                echo "| $(name_of $m) | $pc | $(cell "$a" 3) | $(cell "$ad" 3) | $(zdiff "$a" "$ad") | $(cell "$c" 3) | $(cell "$cd" 3) | $(zdiff "$c" "$cd") | $(cell "$l" 2) | $(cell "$ld" 2) |"
            fi
        done
    done
    echo
    left=$(for m in $ALL_MODELS; do echo " $MODELS " | grep -q " $m " || printf '%s, ' "$(name_of $m)"; done)
    [ -z "$left" ] || { echo "Not in this run (SEMI_MODELS=\"$MODELS\"): ${left%, }."; echo; }
    [ "$FRACTIONS" = "$ALL_FRACTIONS" ] || { echo "Fractions of this run: $FRACTIONS (SEMI_FRACTIONS)."; echo; }
    echo "## With 10% of the labels"
    echo
    if echo " $FRACTIONS " | grep -q ' 0.1 ' && echo " $FRACTIONS " | grep -q ' 1 '; then
        echo "Each model's accuracy and coherence with 10% of the labels against its own with all of them, and against"
        echo "the discard baseline at 10% (the target: within 0.05 of 100%, above discard by more than 4 standard errors):"
        echo
        for m in $MODELS; do
            a10=$(measure $m 0.1 all acc) a100=$(measure $m 1 all acc) ad=$(measure $m 0.1 discard acc)
            c10=$(measure $m 0.1 all coh) c100=$(measure $m 1 all coh) cd=$(measure $m 0.1 discard coh)
            echo "$(name_of $m) $a10 $a100 $ad $c10 $c100 $cd" | awk '{ # name, then (mean, se) six times
                sa = sqrt($3 * $3 + $7 * $7); sc = sqrt($9 * $9 + $13 * $13)
                za = (sa > 0 ? ($2 - $6) / sa : 0); zc = (sc > 0 ? ($8 - $12) / sc : 0)
                printf "- %s: accuracy %.3f at 10%%, %.3f at 100%% (%+.3f), %+.1f s.e. over discard; coherence %.3f at 10%%, %.3f at 100%% (%+.3f), %+.1f s.e. over discard\n",
                    $1, $2, $4, $2 - $4, za, $8, $10, $8 - $10, zc }'
        done
    else
        echo "(needs the fractions 0.1 and 1)"
    fi
    echo
    echo "![each measure against the fraction of labels kept](fractions.png)"
    echo
    echo "## Commands"
    echo
    echo "    jmvaec examples/semi-supervised/jmvae_kl.spec -o gen && make -C gen"
    echo "    gen/jmvae_kl_semi train $TRAIN --drop w=0.9 --epochs $EPOCHS --out all"
    echo "    gen/jmvae_kl_semi train $TRAIN --drop w=0.9 --complete-only --epochs $EPOCHS --out discard"
    echo "    gen/jmvae_kl_semi eval --checkpoint all/last.ckpt $TEST --samples $SAMPLES --json eval.json"
    echo
    echo "Training took $(cat "$OUT"/*/*/train_seconds | awk '{ s += $1 } END { printf "%.0f", s / 60 }') min in all."
} > "$OUT/RESULTS.md"
[ $MODE = full ] && [ "$OUT" = "$HERE/out" ] && {
    mkdir -p "$HERE/figures"
    cp "$OUT/fractions.png" "$HERE/figures/"
    sed -e 's|](fractions.png)|](figures/fractions.png)|' "$OUT/RESULTS.md" > "$HERE/RESULTS.md"
}
cat "$OUT/RESULTS.md"
say "done in $(( $(now) - start )) s; everything is in $OUT"
