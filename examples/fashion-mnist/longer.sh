#!/bin/sh
# examples/fashion-mnist/longer.sh: JMVAE on Fashion-MNIST trained longer
# than the authors' 100 epochs, measured against Wu & Goodman's -232.63.
#
#   sh examples/fashion-mnist/longer.sh [--quick] [--epochs N] [--out DIR]
#
# Two runs of JMVAE on the 60,000 training images (1,000 of them held out
# for the validation curves), grey levels as Bernoulli targets, batch 100,
# clipping at 5, each evaluated as run.sh evaluates (all 10,000 test images,
# K = 1000 importance samples, 100,000 prior samples):
#
#   plain  specs/jmvae.spec, 300 epochs (its first 100 are run.sh's run);
#   warm   examples/jmvae_warm.spec (the prior KL weight rising from 0 to 1
#          over the first 25 epochs, an option of the authors' setup), N
#          epochs (default 520): Adam's 1e-3 until 20 epochs before the end,
#          then 1e-4 (`--lr-after N-20=0.0001`); evaluated after 100, 300,
#          N-20 and N epochs.
#
# Writes LONGER_RUNS.md and a figure of both runs' loss per epoch into the
# output folder (default examples/fashion-mnist/out-longer); the full mode
# with the default folder also copies them beside this script
# (LONGER_RUNS.md, figures/longer_curves.png), and run.sh's RESULTS.md links
# them. About 70 minutes of training and 35 of evaluation on 2 cores; an
# interrupted run resumes where it stopped when started again, and a
# finished step is not redone.
#
# --quick: the chain on a slice (3,000 training images, 200 test images,
# K = 50): the plain run 2 epochs, the warm one 4 (the drop after the 3rd),
# evaluated after 1, 2, 3 and 4.
#
# Variables (for tests): FASHION_MNIST and the EXAMPLE_* of run.sh.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCRIPT=longer.sh
. "$HERE/dataset.sh"
PUBLISHED=-232.63
. "$ROOT/examples/lib/common.sh"
example_options "$@"
[ "$OUT" = "$HERE/out" ] && OUT=$HERE/out-longer
if [ $MODE = quick ]; then
    LONG=$([ -n "$EPOCHS_GIVEN" ] && echo "$EPOCHS" || echo 4) DROP=$((LONG - 1)) PLAIN=2 EARLY="1 2"
else
    LONG=$([ -n "$EPOCHS_GIVEN" ] && echo "$EPOCHS" || echo 520) DROP=$((LONG - 20)) PLAIN=300 EARLY="100 300"
fi
[ "$DROP" -ge 1 ] || { echo "$SCRIPT: --epochs $LONG leaves no epoch before the drop of the learning rate" >&2; exit 2; }
# the warm run's evaluated epochs: the early ones before the drop, the drop, the end
EARLY_FIRST=${EARLY%% *}
# the epochs of the warm-up, as examples/jmvae_warm.spec says them
WARMUP=$(sed -n 's/^hyper beta = .* over \([0-9]*\) epochs.*/\1/p' "$ROOT/examples/jmvae_warm.spec")
AT=$(for e in $EARLY; do [ "$e" -lt "$DROP" ] && echo "$e"; done; echo "$DROP $LONG")
LR_AFTER="--lr-after $DROP=0.0001"
start=$(now)

say "packages, the compiler and the runtime"
example_setup
require_files "$TRAIN_X" "$TRAIN_W" "$TEST_X" "$TEST_W"
TRAIN="--data x=$TRAIN_X --data w=$TRAIN_W --limit $TRAIN_LIMIT --valid $VALID"
TEST="--data x=$TEST_X --data w=$TEST_W --limit $TEST_LIMIT"

say "compile specs/jmvae.spec and examples/jmvae_warm.spec"
for spec in specs/jmvae.spec examples/jmvae_warm.spec; do
    m=$(basename "$spec" .spec)
    mkdir -p "$OUT/gen"
    "$ROOT/jmvaec" "$ROOT/$spec" -o "$OUT/gen/$m" > /dev/null
    make -s -C "$OUT/gen/$m" JMVAEC="$ROOT/jmvaec"
done

# stage MODEL RUNDIR EPOCHS [FLAGS]: the run trained to EPOCHS (resumed where
# it stopped; one run, whatever its stages) and its checkpoint kept as
# RUNDIR/epoch-EPOCHS.ckpt.
stage() {
    m=$1 dir=$2 e=$3
    shift 3
    [ -f "$dir/epoch-$e.ckpt" ] && { echo "$dir: epoch $e done"; return 0; }
    if [ -f "$dir/last.ckpt" ]; then
        "$OUT/gen/$m/$m" train $TRAIN --epochs "$e" $THREADS "$@" --resume "$dir/last.ckpt"
    else
        rm -rf "$dir"
        "$OUT/gen/$m/$m" train $TRAIN --epochs "$e" $THREADS "$@" --out "$dir"
    fi
    cp "$dir/last.ckpt" "$dir/epoch-$e.ckpt.tmp"
    mv "$dir/epoch-$e.ckpt.tmp" "$dir/epoch-$e.ckpt"
}

# evaluate MODEL DIR EPOCH: DIR/eval-EPOCH.json from DIR/run/epoch-EPOCH.ckpt, unless done.
evaluate() {
    ck=$2/run/epoch-$3.ckpt
    stamp="$SAMPLES $PRIOR_SAMPLES $TEST_LIMIT $(cksum < "$ck")"
    if [ ! -f "$2/eval-$3.json" ] || [ "$(cat "$2/eval-$3.stamp" 2>/dev/null)" != "$stamp" ]; then
        t=$(now)
        "$OUT/gen/$1/$1" eval --checkpoint "$ck" $TEST --samples "$SAMPLES" --prior-samples "$PRIOR_SAMPLES" \
            $THREADS --json "$2/eval-$3.json" > "$2/eval-$3.txt"
        echo $(( $(now) - t )) >> "$2/eval_seconds"
        echo "$stamp" > "$2/eval-$3.stamp"
    else
        echo "$2: the evaluation after epoch $3 done"
    fi
    sed -n '/^  log p(x,w)/,/^  accuracy/p' "$2/eval-$3.txt"
}

say "plain: JMVAE to $PLAIN epochs"
mkdir -p "$OUT/plain" "$OUT/warm"
stage jmvae "$OUT/plain/run" "$PLAIN"
say "warm: JMVAE with the warm-up to $LONG epochs, the learning rate 1e-4 after $DROP"
for e in $AT; do stage jmvae_warm "$OUT/warm/run" "$e" $LR_AFTER; done
say "evaluate (K = $SAMPLES)"
evaluate jmvae "$OUT/plain" "$PLAIN"
for e in $AT; do evaluate jmvae_warm "$OUT/warm" "$e"; done

# ------------------------------------------------------------- figure --
say "figure (gnuplot)"
# the loss axis: from just below the lowest training loss after the warm-up
# (during it the KL weight is below 1), 12 nats high
lo=$(for r in plain warm; do tail -n +2 "$OUT/$r/run/train.csv"; done | awk -F, -v w="$WARMUP" '$1 > w' |
    cut -d, -f3 | sort -g | head -n 1 | awk '{ printf "%d", $1 - 1 }')
# the full mode's window shows the plateau (the first epochs are far above it)
yrange=$([ $MODE = full ] && [ -n "$lo" ] && echo "set yrange [$lo:$((lo + 12))]" || echo "set autoscale y")
from=$((DROP > 40 ? DROP - 40 : 1))
plot_runs="plot '$OUT/plain/run/train.csv' using 'epoch':'train_loss' with lines lw 2 lc rgb '#1f77b4' title 'plain, training', \\
     '' using 'epoch':'valid_loss' with lines lw 2 dt 2 lc rgb '#1f77b4' title 'plain, validation', \\
     '$OUT/warm/run/train.csv' using 'epoch':'train_loss' with lines lw 2 lc rgb '#d62728' title 'warm, training', \\
     '' using 'epoch':'valid_loss' with lines lw 2 dt 2 lc rgb '#d62728' title 'warm, validation'"
cat > "$OUT/longer_curves.gp" <<EOF
reset; set terminal pngcairo noenhanced size 1300,520 font 'sans,11'; set output '$OUT/longer_curves.png'
set datafile separator ','; set grid; set key bottom left; set xlabel 'epoch'; set ylabel 'loss (nats an image)'
set multiplot layout 1,2 title 'JMVAE on Fashion-MNIST: the loss per epoch, training and validation ($VALID held-out images)'
$yrange
set arrow 1 from $DROP, graph 0 to $DROP, graph 1 nohead dt 2 lc rgb '#555555'
set label 1 'warm: learning rate 1e-3 -> 1e-4' at $DROP, graph 0.95 right offset -1,0
set title 'every epoch'; set xrange [1:$LONG]
$plot_runs
set title 'epochs $from to $LONG'; set xrange [$from:$LONG]; set autoscale y
$plot_runs
unset multiplot
EOF
gnuplot "$OUT/longer_curves.gp"

# ------------------------------------------------------------ results --
say "LONGER_RUNS.md"
row() { # label dir epoch
    e=$2/eval-$3.json
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$(fmt "$(jget "$e" log_p x)")" "$(fmt "$(jget "$e" log_p x,w)")" \
        "$(fmt "$(jget "$e" log_p_cond 'x|w')")" "$(pct "$(jget "$e" accuracy 'w|x')")"
}
# a column of train.csv at an epoch
at() { awk -F, -v e="$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; next }
       $1 == e { printf "%.2f", $k[c] }' "$1"; }
# the lowest validation loss of a run over epochs FROM to TO, and its epoch
lowest() { awk -F, -v f="$2" -v e="$3" 'NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; next }
           $1 >= f && $1 <= e && (b == "" || $k["valid_loss"] < b) { b = $k["valid_loss"]; at = $1 }
           END { printf "%.2f at epoch %d", b, at }' "$1"; }
# the minutes a run's epochs took (train.csv's seconds column)
train_minutes() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; next } { s += $k["seconds"] }
                  END { printf "%.0f", s / 60 }' "$1"; }
best=$(jget "$OUT/warm/eval-$LONG.json" log_p x)
verdict=$(echo "$best" | awk -v p="$PUBLISHED" '{
    d = $1 - p; n = (d < 0 ? -d : d) / $2
    if (d >= 0) printf "%.2f nat above the published %s", d, p
    else printf "%.2f nat (%.1f standard errors) below the published %s: %s", -d, n, p,
        (n <= 1 ? "within one standard error of it" : "further than one standard error from it") }')
pcsv=$OUT/plain/run/train.csv wcsv=$OUT/warm/run/train.csv
{
    echo "# Fashion-MNIST: JMVAE trained longer"
    echo
    echo "Written by \`examples/fashion-mnist/longer.sh$([ $MODE = quick ] && echo ' --quick')$([ -n "$EPOCHS_GIVEN" ] && echo " --epochs $LONG")\` on $(date -u +%Y-%m-%d),"
    echo "jmvaec $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '(no git)'), $(sed -n 's/^threads.*; \(OpenBLAS.*\)$/\1/p' "$OUT/warm/eval-$LONG.txt" | head -n 1)."
    echo
    if [ $MODE = quick ]; then
        echo "**QUICK MODE: $TRAIN_LIMIT training images, $TEST_LIMIT test images, K = $SAMPLES.**"
        echo "These numbers only show that the chain works; the full mode is what the project reports."
        echo
    fi
    echo "[RESULTS.md](RESULTS.md) trains each model for the authors' 100 epochs at Adam's constant"
    echo "learning rate 1e-3. Wu & Goodman's figure comes from longer runs. Here JMVAE is trained"
    echo "further, $([ "$TRAIN_LIMIT" = 0 ] && echo "on all 60,000 training images" || echo "on the first $TRAIN_LIMIT training images") less $VALID held out, batch 100, clipping 5,"
    echo "and evaluated as RESULTS.md evaluates ($([ "$TEST_LIMIT" = 0 ] && echo "all 10,000 test images" || echo "the first $TEST_LIMIT test images"), K = $SAMPLES, $PRIOR_SAMPLES prior samples):"
    echo
    echo "- plain: specs/jmvae.spec, $PLAIN epochs at 1e-3 (for its first 100 epochs the same run as run.sh's);"
    echo "- warm: examples/jmvae_warm.spec, JMVAE with the prior KL weight rising from 0 to 1 over the"
    echo "  first $WARMUP epochs (an option of the authors' setup), $DROP epochs at 1e-3, then $((LONG - DROP)) at 1e-4"
    echo "  (\`--lr-after $DROP=0.0001\`), evaluated on the way."
    echo
    echo "| run | epochs | log p(x) | log p(x,w) | log p(x\\|w) | accuracy w\\|x |"
    echo "|---|---|---|---|---|---|"
    row "plain" "$OUT/plain" "$PLAIN"
    for e in $AT; do
        row "warm$([ "$e" -gt "$DROP" ] && echo ", learning rate 1e-4 after epoch $DROP")" "$OUT/warm" "$e"
    done
    echo "| JMVAE, Wu & Goodman 2018 | long runs | −232.63 | −232.95 | −230.40 | |"
    echo
    echo "JMVAE's log p(x) after $LONG epochs is $(fmt "$best"), $verdict."
    echo
    echo "The loss per epoch (the figure below), from train.csv: the plain run's validation loss is lowest"
    echo "($(lowest "$pcsv" 1 "$PLAIN")) and $(at "$pcsv" "$PLAIN" valid_loss) at epoch $PLAIN, its training loss"
    echo "$(at "$pcsv" "$EARLY_FIRST" train_loss) at epoch $EARLY_FIRST and $(at "$pcsv" "$PLAIN" train_loss) at $PLAIN."
    if [ "$DROP" -gt "$WARMUP" ]; then
        # during the warm-up the KL weight is below 1 and the loss not comparable
        before=$(lowest "$wcsv" $((WARMUP + 1)) "$DROP")
        echo "The warm run's validation loss, once its KL weight has reached 1 (after epoch $WARMUP), is lowest"
        echo "($before) before the drop and $(at "$wcsv" "$DROP" valid_loss) at epoch $DROP."
        if [ "$(awk -v a="$(at "$wcsv" "$LONG" valid_loss)" -v b="${before%% *}" 'BEGIN { print (a < b) }')" = 1 ]; then
            echo "At a tenth of the rate it falls to $(at "$wcsv" "$LONG" valid_loss) by epoch $LONG, below anything the constant"
            echo "rate reached (the training loss from $(at "$wcsv" "$DROP" train_loss) to $(at "$wcsv" "$LONG" train_loss)): what one expects when Adam's steps"
            echo "at 1e-3 are too large for the weights to settle."
        else
            echo "At a tenth of the rate it is $(at "$wcsv" "$LONG" valid_loss) at epoch $LONG, no lower than the constant rate"
            echo "reached (the training loss from $(at "$wcsv" "$DROP" train_loss) to $(at "$wcsv" "$LONG" train_loss))."
        fi
    else
        echo "The warm run is inside its $WARMUP-epoch warm-up throughout, its loss not comparable across epochs."
    fi
    echo
    echo "For comparison: Wu & Goodman's public code (github.com/mhw32/multimodal-vae-public, folder"
    echo "fashionmnist/) trains its Fashion-MNIST models with convolutional image networks (two stride-2"
    echo "convolutions of 64 and 128 channels, Swish) for 500 epochs with the KL weight annealed over"
    echo "200; the repository holds no JMVAE. jmvaec's JMVAE here is the MLP of models.md."
    echo
    echo "Time on this machine (2 cores): training plain $(train_minutes "$pcsv") min, warm $(train_minutes "$wcsv") min"
    echo "(the epochs' time in train.csv), evaluation"
    echo "$(minutes "$OUT/plain/eval_seconds") and $(minutes "$OUT/warm/eval_seconds") min. Every number above comes from this script as committed."
    echo
    echo "![the loss per epoch of both runs](longer_curves.png)"
    echo
    echo "## Commands"
    echo
    echo "    sh examples/fashion-mnist/longer.sh$([ $MODE = quick ] && echo ' --quick')$([ -n "$EPOCHS_GIVEN" ] && echo " --epochs $LONG")"
    echo
    echo "which runs (output in out-longer/; each \`train\` resumes the run where the last one stopped,"
    echo "and a run in stages is the same run to the bit as one uninterrupted):"
    echo
    echo "    jmvaec specs/jmvae.spec -o gen/jmvae && make -C gen/jmvae"
    echo "    jmvaec examples/jmvae_warm.spec -o gen/jmvae_warm && make -C gen/jmvae_warm"
    echo "    gen/jmvae/jmvae train $TRAIN --epochs $PLAIN --out plain/run"
    for e in $AT; do
        echo "    gen/jmvae_warm/jmvae_warm train $TRAIN --epochs $e $LR_AFTER $([ "$e" = "$(echo $AT | cut -d' ' -f1)" ] && echo "--out warm/run" || echo "--resume warm/run/last.ckpt")"
    done
    echo "    gen/M/M eval --checkpoint R/run/epoch-E.ckpt $TEST --samples $SAMPLES --prior-samples $PRIOR_SAMPLES --json R/eval-E.json"
} > "$OUT/LONGER_RUNS.md"
[ $MODE = full ] && [ "$OUT" = "$HERE/out-longer" ] && {
    sed -e "s|$OUT/||g" -e 's|](longer_curves.png)|](figures/longer_curves.png)|' "$OUT/LONGER_RUNS.md" > "$HERE/LONGER_RUNS.md"
    mkdir -p "$HERE/figures"
    cp "$OUT/longer_curves.png" "$HERE/figures/"
}
cat "$OUT/LONGER_RUNS.md"
say "done in $(( $(now) - start )) s; everything is in $OUT"
