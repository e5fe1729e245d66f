# examples/lib/common.sh: what the examples' scripts share (sourced
# after HERE and ROOT are set): their options, the sizes of the quick and
# the full modes, the classifier, the gnuplot helpers.

say() { printf '\n== %s\n' "$*"; }
now() { date +%s; }

# example_setup: the packages, the compiler and the runtime; OUT made and
# made absolute.
example_setup() {
    sh "$ROOT/.ci/install-deps"
    make -s -C "$ROOT" all
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
}

# require_files FILE...: each data file there, or one message and exit 1.
require_files() {
    for f in "$@"; do
        [ -f "$f" ] || { echo "${SCRIPT:-run.sh}: $f is missing" >&2; exit 1; }
    done
}

# Numbers from eval's JSON, for the results' tables:
# jget FILE GROUP KEY: mean and s.e. of KEY in GROUP, "m s" ("- s" for a null mean)
jget() {
    sed -n "/\"$2\": {/,/^  }/p" "$1" | grep -m1 "\"$3\": {\"mean\"" |
        sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/' | sed 's/null/-/g'
}
# top FILE KEY: mean and s.e. of a top-level KEY
top() { grep -m1 "\"$2\": {" "$1" | sed 's/.*"mean": \([^,]*\), "se": \([^,}]*\).*/\1 \2/'; }
# fmt "m s": a log-likelihood's cell; pct "m s": a fraction's
fmt() { echo "$1" | awk '{ if ($1 == "-" || $1 == "") print "impossible"; else printf "%.2f ± %.2f", $1, $2 }'; }
pct() { echo "$1" | awk '{ printf "%.3f ± %.3f", $1, $2 }'; }
# quick_banner: in the quick mode, the lines a results file opens with that say so
quick_banner() {
    [ $MODE = quick ] || return 0
    echo "**QUICK MODE: $EPOCHS epochs on $TRAIN_LIMIT training images, $TEST_LIMIT test images, K = $SAMPLES.**"
    echo "These numbers only show that the chain works; the full mode is what the project reports."
    echo
}
# train_into TRAINER DIR OPTION...: `TRAINER train OPTION...` into DIR/run, resuming
# from DIR/run/last.ckpt when it is there; its output in DIR/train.log (shown,
# and exit 1, when it fails), its lines on the examples shown, its seconds added
# to DIR/train_seconds.
train_into() {
    _tr=$1 _d=$2
    shift 2
    mkdir -p "$_d"
    _t=$(now)
    if [ -f "$_d/run/last.ckpt" ]; then
        set -- "$@" --resume "$_d/run/last.ckpt"
    else
        rm -rf "$_d/run"
        set -- "$@" --out "$_d/run"
    fi
    "$_tr" train "$@" > "$_d/train.log" 2>&1 || { cat "$_d/train.log"; exit 1; }
    grep -E '^(--drop|--complete-only|training examples by|done)' "$_d/train.log" || true
    echo $(( $(now) - _t )) >> "$_d/train_seconds"
}
# eval_due DIR WHAT: 0 (true) when DIR's evaluation is to be made (again): its
# DIR/eval.stamp is not WHAT with DIR/run/last.ckpt's checksum; mark_evaluated
# DIR WHAT then writes that stamp.
eval_due() { [ ! -f "$1/eval.json" ] || [ "$(cat "$1/eval.stamp" 2>/dev/null)" != "$2 $(cksum < "$1/run/last.ckpt")" ]; }
mark_evaluated() { echo "$2 $(cksum < "$1/run/last.ckpt")" > "$1/eval.stamp"; }
# minutes FILE: the sum of a file of seconds, one a line, in minutes
minutes() { awk '{ s += $1 } END { printf "%.0f", s / 60 }' "$1"; }

# example_options "$@": MODE (quick|full), EPOCHS (default 100; 2 when quick;
# EPOCHS_GIVEN is 1 when --epochs was given) and OUT (default $HERE/out), then the sizes of the mode, which the
# EXAMPLE_* variables override in the quick mode:
#   TRAIN_LIMIT TEST_LIMIT SAMPLES EPOCHS_2D PER_CLASS CLASSIFIER_EPOCHS VALID
#   PRIOR_SAMPLES, and THREADS (--threads T when EXAMPLE_THREADS is set).
example_options() {
    MODE=full EPOCHS=100 EPOCHS_GIVEN= OUT=$HERE/out
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) MODE=quick ;;
        --epochs) [ $# -ge 2 ] || { echo "${SCRIPT:-run.sh}: --epochs needs a number" >&2; exit 2; }
                  EPOCHS=$2 EPOCHS_GIVEN=1; shift ;;
        --out) [ $# -ge 2 ] || { echo "${SCRIPT:-run.sh}: --out needs a folder" >&2; exit 2; }
               OUT=$2; shift ;;
        -h|--help) sed -n '2,/^set -eu$/s/^# \{0,1\}//p' "$HERE/${SCRIPT:-run.sh}"; exit 0 ;;
        *) echo "${SCRIPT:-run.sh}: unknown option '$1' (see --help)" >&2; exit 2 ;;
        esac
        shift
    done
    case $EPOCHS in ''|*[!0-9]*) echo "${SCRIPT:-run.sh}: --epochs '$EPOCHS' is not a number" >&2; exit 2 ;; esac
    if [ $MODE = quick ]; then
        [ "$EPOCHS" = 100 ] && EPOCHS=2
        TRAIN_LIMIT=${EXAMPLE_TRAIN_LIMIT:-3000} TEST_LIMIT=${EXAMPLE_TEST_LIMIT:-200} SAMPLES=${EXAMPLE_SAMPLES:-50}
        EPOCHS_2D=${EXAMPLE_EPOCHS_2D:-2} PER_CLASS=${EXAMPLE_PER_CLASS:-50}
        CLASSIFIER_EPOCHS=${EXAMPLE_CLASSIFIER_EPOCHS:-2} VALID=${EXAMPLE_VALID:-100}
        PRIOR_SAMPLES=${EXAMPLE_PRIOR_SAMPLES:-10000}
    else
        TRAIN_LIMIT=0 TEST_LIMIT=0 SAMPLES=1000 EPOCHS_2D=20 PER_CLASS=1000 CLASSIFIER_EPOCHS=10 VALID=1000
        PRIOR_SAMPLES=100000
    fi
    THREADS=${EXAMPLE_THREADS:+--threads $EXAMPLE_THREADS}
}

# classifier TRAIN_IMAGES TRAIN_LABELS TEST_IMAGES TEST_LABELS: builds
# examples/tools/classifier.c into $OUT/classifier (with CFLAGS and LDFLAGS
# if set: the tests pass the sanitizers' flags), trains it into
# $OUT/classifier.bin and tests it into $OUT/classifier.json, unless done.
classifier() {
    cc -std=c11 ${CFLAGS:--O2} $("$ROOT/jmvaec" --cflags) "$ROOT/examples/tools/classifier.c" \
        $("$ROOT/jmvaec" --libs) ${LDFLAGS:-} -o "$OUT/classifier"
    say "the independent classifier: an MLP on the training images, $CLASSIFIER_EPOCHS epochs"
    [ -f "$OUT/classifier.json" ] && return 0
    rm -f "$OUT/classifier.bin"
    "$OUT/classifier" train --images "$1" --labels "$2" --epochs "$CLASSIFIER_EPOCHS" --limit "$TRAIN_LIMIT" \
        --out "$OUT/classifier.bin"
    "$OUT/classifier" test --model "$OUT/classifier.bin" --images "$3" --labels "$4" --limit "$TEST_LIMIT" \
        --json "$OUT/classifier.json.tmp"
    mv "$OUT/classifier.json.tmp" "$OUT/classifier.json"
}

# curves_gp NAME TRAIN_CSV OUT_PNG VALID: the commands for a figure of every
# term of a train.csv per epoch, training and validation, one panel a term.
curves_gp() {
    terms=$(head -n 1 "$2" | tr ',' '\n' | sed -n 's/^train_//p' | tr '\n' ' ')
    n=$(echo $terms | wc -w)
    echo "reset; set terminal pngcairo noenhanced size $((330 * n)),330 font 'sans,10'; set output '$3'"
    echo "set datafile separator ','; set key top right; set xlabel 'epoch'; set grid"
    echo "set multiplot layout 1,$n title '$1: each term of the loss per epoch, training and validation ($4 held-out examples)'"
    for t in $terms; do
        echo "set title '$t'; plot '$2' using 'epoch':'train_$t' with linespoints lw 2 pt 7 ps 0.4 title 'train', \
'' using 'epoch':'valid_$t' with linespoints lw 2 pt 7 ps 0.4 title 'validation'"
    done
    echo "unset multiplot"
}

# csv_grid COLS HEIGHT WIDTH < CSV > MATRIX: images (one a CSV line, values in
# [0,1], row-major HEIGHT x WIDTH) laid out COLS to a row with 1-pixel grey
# gaps, as a whitespace-separated matrix for gnuplot's `matrix with image`.
csv_grid() {
    awk -F, -v cols="$1" -v h="$2" -v w="$3" '
        { for (j = 1; j <= NF; j++) v[NR - 1, j - 1] = $j; n = NR }
        END {
            rows = int((n + cols - 1) / cols)
            for (y = 0; y <= rows * (h + 1); y++) {
                line = ""
                for (x = 0; x <= cols * (w + 1); x++) {
                    r = int(y / (h + 1)); c = int(x / (w + 1)); py = y % (h + 1) - 1; px = x % (w + 1) - 1
                    i = r * cols + c
                    p = (py < 0 || px < 0 || i >= n) ? 0.5 : v[i, py * w + px]
                    line = line (x ? " " : "") p
                }
                print line
            }
        }'
}
