# examples/lib/experiment.sh: the papers' experiments on one dataset, for the
# examples' run.sh scripts, which set, before sourcing it:
#   HERE, ROOT        the example's folder and the repository
#   TITLE             the dataset's name, for RESULTS.md
#   CLASSES           the ten class names (no spaces in a name)
#   TRAIN_X, TRAIN_W, TEST_X, TEST_W   the data files (any format the trainers read)
#   TRAIN_TEXT, TEST_TEXT              "all 60,000 training images", ...
#   TARGETS_TEXT      how the pixels are used ("grey levels as Bernoulli targets")
#   PUBLISHED_ROW     the published figures as a row of the table
#   NOTE              a paragraph for RESULTS.md (may be empty)
#   and a function prepare_data, run once the packages are installed.
# What it does, its options (--quick, --epochs N, --out DIR) and its
# variables are described in examples/fashion-mnist/run.sh; common.sh
# parses them.
. "$ROOT/examples/lib/common.sh"
example_options "$@"
# the default output folder: out/, or the script's own (experts.sh: out-experts/)
DEFAULT_OUT=$HERE/${DEFAULT_OUT_NAME:-out}
[ "$OUT" = "$HERE/out" ] && OUT=$DEFAULT_OUT
# the three reference specs, and JMVAE-h with unimodal encoders (examples/);
# or, with EXPERT_MODELS set (examples/fashion-mnist/experts.sh), JMVAE-kl
# beside the field's models of experts (examples/mvae.spec, ...), into
# RESULTS_NAME (default RESULTS.md)
EXPERT_MODELS=${EXPERT_MODELS:-}
RESULTS_NAME=${RESULTS_NAME:-RESULTS.md}
if [ -n "$EXPERT_MODELS" ]; then
    MODELS="jmvae_kl $EXPERT_MODELS"
else
    MODELS="jmvae jmvae_kl jmvae_h jmvae_h_kl"
fi
N_MODELS=$(echo $MODELS | wc -w)
has_model() { case " $MODELS " in *" $1 "*) return 0 ;; esac; return 1; }
spec_of() { [ -f "$ROOT/specs/$1.spec" ] && echo "$ROOT/specs/$1.spec" || echo "$ROOT/examples/$1.spec"; }
# ten distinguishable colours, one a class (matplotlib's tab10)
PALETTE="#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf"

start=$(now)

# ------------------------------------------------------------ set up --
say "packages, the compiler and the runtime"
example_setup
prepare_data
require_files "$TRAIN_X" "$TRAIN_W" "$TEST_X" "$TEST_W"
TRAIN="--data x=$TRAIN_X --data w=$TRAIN_W --limit $TRAIN_LIMIT"
TEST="--data x=$TEST_X --data w=$TEST_W --limit $TEST_LIMIT"

say "compile the specs and their 2-D latent variants"
mkdir -p "$OUT/specs" "$OUT/gen"
for m in $MODELS; do
    sed -e 's/^model \([a-z_]*\)/model \1_2d/' -e 's/^latent z\[64\]/latent z[2]/' \
        -e 's/^latent z1\[64\]/latent z1[2]/' -e 's/^latent z2\[32\]/latent z2[2]/' \
        "$(spec_of $m)" > "$OUT/specs/${m}_2d.spec"
    cp "$(spec_of $m)" "$OUT/specs/$m.spec"
    for s in $m ${m}_2d; do
        "$ROOT/jmvaec" "$OUT/specs/$s.spec" -o "$OUT/gen/$s" > /dev/null
        make -s -C "$OUT/gen/$s" JMVAEC="$ROOT/jmvaec"
    done
done
# A run folder trained to `epochs`, resumed where it stopped.
train() { # model out epochs
    if [ -f "$2/last.ckpt" ]; then
        "$OUT/gen/$1/$1" train $TRAIN --valid "$VALID" --epochs "$3" $THREADS --resume "$2/last.ckpt"
    else
        rm -rf "$2"
        "$OUT/gen/$1/$1" train $TRAIN --valid "$VALID" --epochs "$3" $THREADS --out "$2"
    fi
}

# The epochs a run folder holds (the last line of its train.csv).
epochs_done() { [ -f "$1/train.csv" ] && tail -n 1 "$1/train.csv" | cut -d, -f1 | grep -E '^[0-9]+$' || echo 0; }

# ----------------------------------------------------------- classifier --
classifier "$TRAIN_X" "$TRAIN_W" "$TEST_X" "$TEST_W"

# --------------------------------------------------------------- models --
for m in $MODELS; do
    d=$OUT/$m
    mkdir -p "$d"
    say "$m: train to $EPOCHS epochs"
    t=$(now)
    train "$m" "$d/run" "$EPOCHS"
    echo $(( $(now) - t )) >> "$d/train_seconds"

    say "$m: evaluate (K = $SAMPLES)"
    stamp="$EPOCHS $SAMPLES $PRIOR_SAMPLES $TEST_LIMIT $(cksum < "$d/run/last.ckpt")"
    if [ ! -f "$d/eval.json" ] || [ "$(cat "$d/eval.stamp" 2>/dev/null)" != "$stamp" ]; then
        t=$(now)
        "$OUT/gen/$m/$m" eval --checkpoint "$d/run/last.ckpt" $TEST --samples "$SAMPLES" \
            --prior-samples "$PRIOR_SAMPLES" $THREADS \
            --json "$d/eval.json" > "$d/eval.txt"
        echo $(( $(now) - t )) > "$d/eval_seconds"
        echo "$stamp" > "$d/eval.stamp"
    fi
    cat "$d/eval.txt"

    say "$m: coherence of x generated from w ($PER_CLASS images a class), and the pictures"
    "$OUT/gen/$m/$m" sample --checkpoint "$d/run/last.ckpt" --mode conditional --n "$PER_CLASS" \
        --csv "$d/generated.csv" --csv-labels "$d/generated_labels.csv" > /dev/null
    "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$d/generated.csv" \
        --labels "$d/generated_labels.csv" --json "$d/coherence.json"
    rm -f "$d/generated.csv"
    "$OUT/gen/$m/$m" sample --checkpoint "$d/run/last.ckpt" --mode conditional --n 10 --png "$d/conditional.png"
    "$OUT/gen/$m/$m" sample --checkpoint "$d/run/last.ckpt" --mode reconstruct --n 20 --data "x=$TEST_X" \
        --png "$d/reconstruct.png"

    say "$m: the 2-D latent variant, $EPOCHS_2D epochs"
    train "${m}_2d" "$d/run_2d" "$EPOCHS_2D"
    "$OUT/gen/${m}_2d/${m}_2d" encode --checkpoint "$d/run_2d/last.ckpt" --data "x=$TEST_X" --limit "$TEST_LIMIT" \
        --csv "$d/z2d.csv"
done
"$OUT/classifier" labels --labels "$TEST_W" --limit "$TEST_LIMIT" > "$OUT/test_labels.txt"

# -------------------------------------------------------------- figures --
say "figures (gnuplot)"
# The posterior a model generates from w alone, and encodes x alone with: its
# own family, or the joint one with the other fed as zeros (eval's JSON says which).
from_w() { grep -q '"proposal": "q(z|x,w) with x fed as zeros' "$OUT/$1/eval.json" && echo 'q(z|x=0,w)' || echo 'q(z|w)'; }
from_x() { grep -q '"proposal": "q(z|x,w) with w fed as zeros' "$OUT/$1/eval.json" && echo 'q(z|x,w=0)' || echo 'q(z|x)'; }
label_of() { case $1 in jmvae) echo "JMVAE-zero: $(from_w $1)" ;; jmvae_kl) echo "JMVAE-kl: $(from_w $1)" ;;
             jmvae_h) echo "JMVAE-h: $(from_w $1)" ;; jmvae_h_kl) echo "JMVAE-h-kl: $(from_w $1)" ;;
             mvae) echo "MVAE: q(z|w) = p(z) q~(z|w)" ;; mmvae) echo "MMVAE: q(z|w)" ;; mopoe) echo "MoPoE: q(z|w)" ;; esac; }
# the width of a figure of one panel per model
panels() { echo $((500 * N_MODELS)); }
# row r's centre of a 10-row grid of 29-pixel rows, counted from the top (gnuplot's y grows upwards)
ytics=$(i=0; for c in $CLASSES; do printf '%s"%s" %d' "$([ $i -gt 0 ] && echo ', ')" "$c" $((291 - 29 * i - 15)); i=$((i + 1)); done)
{
    echo "reset; set terminal pngcairo noenhanced size $(panels),560 font 'sans,11'; set output '$OUT/conditional.png'"
    echo "set multiplot layout 1,$N_MODELS title 'x generated from the label alone, 10 samples per class (one row per class)'"
    echo "unset xtics; set ytics ($ytics) scale 0; set size ratio -1; unset key; set border 0"
    for m in $MODELS; do
        echo "set title '$(label_of $m)'; plot '$OUT/$m/conditional.png' binary filetype=png with rgbimage"
    done
    echo "unset multiplot"
    echo "reset; set terminal pngcairo noenhanced size $(panels),420 font 'sans,11'; set output '$OUT/reconstruct.png'"
    echo "unset xtics; set size ratio -1; unset key; set border 0"
    echo "set multiplot layout 1,$N_MODELS title 'test images (rows 1 and 3) and their reconstructions from x alone (rows 2 and 4)'"
    echo "unset ytics"
    for m in $MODELS; do
        path=$(from_x $m)
        echo "set title '${m} (through $path)'; plot '$OUT/$m/reconstruct.png' binary filetype=png with rgbimage"
    done
    echo "unset multiplot"
} > "$OUT/figures.gp"
for m in $MODELS; do
    curves_gp "$m" "$OUT/$m/run/train.csv" "$OUT/$m/curves.png" "$VALID" >> "$OUT/figures.gp"
    { echo label; cat "$OUT/test_labels.txt"; } | paste -d, "$OUT/$m/z2d.csv" - | head -n "$(wc -l < "$OUT/$m/z2d.csv")" \
        > "$OUT/$m/z2d_labelled.csv"
done
{
    echo "reset; set terminal pngcairo noenhanced size $(panels),520 font 'sans,11'; set output '$OUT/latent2d.png'"
    echo "set datafile separator ','; set size square"
    echo "set multiplot layout 1,$N_MODELS margins 0.04,0.9,0.12,0.86 spacing 0.05 title 'test images encoded from x alone: posterior means of a 2-D latent, coloured by class'"
    for m in $MODELS; do
        path=$(from_x $m)
        case $m in jmvae_h*) path="$path, z1" latent=z1 ;; *) latent=z ;; esac
        key=$([ $m = "${MODELS##* }" ] && echo "set key at screen 0.998,0.8 right top" || echo "unset key")
        # the columns of the latent's two coordinates, and of the label
        cx=$(head -n 1 "$OUT/$m/z2d.csv" | tr ',' '\n' | grep -n "^${latent}_0\$" | cut -d: -f1)
        cl=$(head -n 1 "$OUT/$m/z2d.csv" | tr ',' '\n' | wc -l | awk '{print $1 + 1}')
        echo "$key; set title '${m} ($path)'; set xlabel '${latent}_0'; set ylabel '${latent}_1'"
        printf "plot "
        i=0
        for c in $CLASSES; do
            printf "%s'%s' using %d:(\$%d==%d ? \$%d : NaN) every ::1 with points pt 7 ps 0.5 lc rgb '%s' title '%s'" \
                "$([ $i -gt 0 ] && echo ', ')" "$OUT/$m/z2d_labelled.csv" "$cx" "$cl" $i $((cx + 1)) \
                "$(echo $PALETTE | cut -d' ' -f$((i + 1)))" "$c"
            i=$((i + 1))
        done
        echo
    done
    echo "unset multiplot"
} >> "$OUT/figures.gp"
gnuplot "$OUT/figures.gp"

# -------------------------------------------------------------- results --
say "RESULTS.md"
diff_se() { # "m1 s1" "m2 s2": m1 - m2 and its s.e. (independent), and how many s.e. that is
    echo "$1 $2" | awk '{ d = $1 - $3; s = sqrt($2 * $2 + $4 * $4); printf "%+.3f ± %.3f (%.1f s.e.)", d, s, (s > 0 ? d / s : 0) }'
}
coh() { top "$OUT/$1/coherence.json" accuracy; }
row() { # label model group-suffix
    e=$OUT/$2/eval.json
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$(jget "$e" "log_p$3" x)")" \
        "$(fmt "$(jget "$e" log_p x,w)")" "$(fmt "$(jget "$e" "log_p_cond$3" 'x|w')")" \
        "$(pct "$(coh "$2")")" "$(pct "$(jget "$e" accuracy 'w|x')")"
}
classifier_acc=$(top "$OUT/classifier.json" accuracy)
{
    if [ -n "$EXPERT_MODELS" ]; then
        echo "# $TITLE: the field's models of experts (MVAE, MMVAE, MoPoE) beside JMVAE-kl"
    else
        echo "# $TITLE: JMVAE, JMVAE-zero, JMVAE-kl, JMVAE-h and JMVAE-h-kl"
    fi
    echo
    echo "Written by \`examples/$(basename "$HERE")/${SCRIPT:-run.sh}$([ $MODE = quick ] && echo ' --quick')$([ $MODE = full ] && [ "$EPOCHS" != 100 ] && echo " --epochs $EPOCHS")\` on $(date -u +%Y-%m-%d),"
    echo "jmvaec $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '(no git)'), $(sed -n 's/^threads.*; \(OpenBLAS.*\)$/\1/p' "$OUT/jmvae_kl/eval.txt" | head -n 1)."
    echo
    quick_banner
    if [ -n "$EXPERT_MODELS" ]; then
        echo "Training: $EPOCHS epochs of specs/jmvae_kl.spec and of examples/mvae.spec, mmvae.spec and mopoe.spec (batch 100, Adam 1e-3, clipping 5),"
    else
        echo "Training: $EPOCHS epochs of each spec in specs/ and of examples/jmvae_h_kl.spec (batch 100, Adam 1e-3, clipping 5),"
    fi
    echo "$([ "$TRAIN_LIMIT" = 0 ] && echo "$TRAIN_TEXT less $VALID held out" || echo "the first $TRAIN_LIMIT training images less $VALID held out") for the validation curves,"
    echo "$TARGETS_TEXT. Evaluation: $([ "$TEST_LIMIT" = 0 ] && echo "$TEST_TEXT" || echo "the first $TEST_LIMIT test images"), K = $SAMPLES importance samples"
    echo "(the proposals are named in each model's eval.txt). Coherence: $PER_CLASS images generated"
    echo "from each label alone, classified by an independent MLP trained on the training images"
    echo "(its own test accuracy: $(pct "$classifier_acc")); accuracy w|x: argmax p(w|z), z ~ q(z|x)."
    echo "Each value is a mean over the test examples ± its standard error."
    echo
    echo "| model | log p(x) | log p(x,w) | log p(x\\|w) | coherence x\\|w | accuracy w\\|x |"
    echo "|---|---|---|---|---|---|"
    if has_model jmvae; then
        row "JMVAE" jmvae ""
        row "JMVAE-zero (papers' protocol)" jmvae "_family_rule"
    fi
    row "JMVAE-kl" jmvae_kl ""
    if has_model jmvae_h; then
        row "JMVAE-h" jmvae_h ""
        row "JMVAE-h-kl (JMVAE-h with unimodal encoders)" jmvae_h_kl ""
    fi
    for m in $EXPERT_MODELS; do
        case $m in
        mvae) row "MVAE (product of experts with the prior; sub-sampled ELBOs)" mvae "" ;;
        mmvae) row "MMVAE (mixture of experts; K = 10, DReG)" mmvae "" ;;
        mopoe) row "MoPoE (mixture of products of experts)" mopoe "" ;;
        esac
    done
    echo "$PUBLISHED_ROW"
    echo
    if [ -z "$EXPERT_MODELS" ]; then
    [ -f "$HERE/LONGER_RUNS.md" ] && { echo "Longer runs of JMVAE (written by longer.sh): [LONGER_RUNS.md](LONGER_RUNS.md)."; echo; }
    [ -f "$HERE/EXPERTS.md" ] && { echo "The field's models of experts (written by experts.sh): [EXPERTS.md](EXPERTS.md)."; echo; }
    [ -n "$NOTE" ] && { echo "$NOTE"; echo; }
    echo "JMVAE and JMVAE-zero are one trained model. The JMVAE row uses sound estimators:"
    echo "log p(x) sums p(x, w = c) over the ten classes, log p(w) averages p(w | z) over"
    echo "100,000 prior samples. The JMVAE-zero row uses the zero-fed joint encoder as the"
    echo "proposal for a missing modality, as the papers do; JMVAE has no other path from w"
    echo "alone, so its coherence and accuracy are JMVAE-zero's. specs/jmvae_h.spec has no"
    echo "q(z|w) either: like JMVAE-zero, JMVAE-h generates from w through the zero-fed joint"
    echo "encoder; JMVAE-h-kl (examples/jmvae_h_kl.spec) adds the unimodal encoders and"
    echo "JMVAE-kl's KL terms at both levels of JMVAE-h."
    echo
    echo "Differences (a - b ± the standard error of the difference, the two taken as independent):"
    echo
    for m in jmvae_kl jmvae_h jmvae_h_kl; do
        echo "- $m − JMVAE-zero: coherence $(diff_se "$(coh $m)" "$(coh jmvae)");" \
            "log p(x|w) $(diff_se "$(jget "$OUT/$m/eval.json" log_p_cond 'x|w')" "$(jget "$OUT/jmvae/eval.json" log_p_cond 'x|w')")" \
            "(against the papers' protocol: $(diff_se "$(jget "$OUT/$m/eval.json" log_p_cond 'x|w')" "$(jget "$OUT/jmvae/eval.json" log_p_cond_family_rule 'x|w')"));" \
            "log p(x,w) $(diff_se "$(jget "$OUT/$m/eval.json" log_p x,w)" "$(jget "$OUT/jmvae/eval.json" log_p x,w)")"
    done
    else # the models of experts against JMVAE-kl, all of one run
    echo "Differences (a - b ± the standard error of the difference, the two taken as independent):"
    echo
    fi
    for m in $EXPERT_MODELS; do
        echo "- $m − JMVAE-kl: log p(x) $(diff_se "$(jget "$OUT/$m/eval.json" log_p x)" "$(jget "$OUT/jmvae_kl/eval.json" log_p x)");" \
            "log p(x,w) $(diff_se "$(jget "$OUT/$m/eval.json" log_p x,w)" "$(jget "$OUT/jmvae_kl/eval.json" log_p x,w)");" \
            "coherence $(diff_se "$(coh $m)" "$(coh jmvae_kl)");" \
            "accuracy w|x $(diff_se "$(jget "$OUT/$m/eval.json" accuracy 'w|x')" "$(jget "$OUT/jmvae_kl/eval.json" accuracy 'w|x')")"
    done
    echo
    if [ -n "${EXPERT_MODELS:-}" ]; then
        echo "MVAE, MMVAE and MoPoE build every posterior from one expert per modality (examples/mvae.spec, mmvae.spec,"
        echo "mopoe.spec: Wu & Goodman's and MultiVae's settings with the reference specs' MLP networks): q(z|w) is"
        echo "w's expert alone (MVAE: its product with p(z)), and eval's proposal for each subset is that subset's own"
        echo "posterior (a mixture's for MMVAE and MoPoE, sampled from a component chosen at random). MVAE trains"
        echo "ELBO(x,w) + ELBO(x) + ELBO(w) with the label's reconstruction weighted by 10 and the KL weight warmed"
        echo "up over 40 epochs; MMVAE the stratified importance-weighted bound with K = 10 and DReG; MoPoE the mean"
        echo "over subsets of each subset's ELBO."
        echo
    fi
    echo "Coherence per class (the fraction of images generated from a label that the classifier gives that label):"
    echo
    echo "| model | $(echo $CLASSES | sed 's/ / | /g') |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for m in $MODELS; do
        echo "| $m | $(sed -n 's/.*"per_class": \[\(.*\)\].*/\1/p' "$OUT/$m/coherence.json" | tr -d ' ' | tr ',' '\n' |
            awk '{ printf "%s%.2f", (NR > 1 ? " | " : ""), $1 }') |"
    done
    echo
    echo "Time on this machine (2 cores): training $(for m in $MODELS; do printf '%s %s min, ' $m "$(minutes "$OUT/$m/train_seconds")"; done | sed 's/, $//');"
    echo "evaluation $(for m in $MODELS; do printf '%s %s min, ' $m "$(minutes "$OUT/$m/eval_seconds")"; done | sed 's/, $//')."
    echo "The whole script: $(( ($(now) - start) / 60 )) min in its last invocation."
    echo
    echo "## Figures"
    echo
    echo "![x generated from each label](conditional.png)"
    echo
    echo "![reconstructions](reconstruct.png)"
    echo
    echo "![the 2-D latent space of the test set](latent2d.png)"
    echo
    echo "2-D variants: the same specs with 2-D latents, trained $EPOCHS_2D epochs."
    echo
    for m in $MODELS; do echo "![learning curves of $m]($m/curves.png)"; echo; done
    echo "## Commands"
    echo
    echo "    sh examples/$(basename "$HERE")/${SCRIPT:-run.sh}$([ $MODE = quick ] && echo ' --quick') --epochs $EPOCHS"
    echo
    echo "which runs, for each model M (output in out/M/):"
    echo
    echo "    jmvaec specs/M.spec -o gen/M && make -C gen/M         # examples/M.spec for jmvae_h_kl${EXPERT_MODELS:+, mvae, mmvae, mopoe}"
    echo "    gen/M/M train $TRAIN --valid $VALID --epochs $EPOCHS --out M/run"
    echo "    gen/M/M eval --checkpoint M/run/last.ckpt $TEST --samples $SAMPLES --prior-samples $PRIOR_SAMPLES --json M/eval.json"
    echo "    gen/M/M sample --checkpoint M/run/last.ckpt --mode conditional --n $PER_CLASS --csv M/generated.csv --csv-labels M/generated_labels.csv"
    echo "    classifier test --model classifier.bin --images M/generated.csv --labels M/generated_labels.csv"
} > "$OUT/$RESULTS_NAME"
# the full mode in the default folder: the results and figures beside the script
# (the models of experts' figures under figures/experts/)
FIGS=figures${EXPERT_MODELS:+/experts}
[ $MODE = full ] && [ "$OUT" = "$DEFAULT_OUT" ] && {
    sed -e "s|$OUT/||g" "$OUT/$RESULTS_NAME" > "$HERE/$RESULTS_NAME"
    mkdir -p "$HERE/$FIGS" "$HERE/figures/curves"
    cp "$OUT/conditional.png" "$OUT/reconstruct.png" "$OUT/latent2d.png" "$HERE/$FIGS/"
    for m in $MODELS; do cp "$OUT/$m/curves.png" "$HERE/figures/curves/$m.png"; done
    sed -i -e "s|](conditional.png)|]($FIGS/conditional.png)|" -e "s|](reconstruct.png)|]($FIGS/reconstruct.png)|" \
        -e "s|](latent2d.png)|]($FIGS/latent2d.png)|" -e 's|](\([a-z_]*\)/curves.png)|](figures/curves/\1.png)|' \
        "$HERE/$RESULTS_NAME"
}
cat "$OUT/$RESULTS_NAME"
say "done in $(( $(now) - start )) s; everything is in $OUT"
