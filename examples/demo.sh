#!/bin/sh
# The demo behind `make demo` (which first installs what is missing and
# builds ./jmvaec and the runtime): compiles specs/jmvae_kl.spec into
# build/demo/gen, trains it on Fashion-MNIST (grey levels as Bernoulli
# targets, as Wu & Goodman do), evaluates it on part of the test set, draws
# PNGs, and leaves everything in demo-out/.
#
# The variables below change the run, e.g. `make demo DEMO_EPOCHS=10`:
#   DEMO_EPOCHS   training epochs over the 60,000 training images (5)
#   DEMO_LIMIT    test examples evaluated (1000 of 10,000)
#   DEMO_SAMPLES  importance samples per test example (1000, as in the papers)
#   DEMO_THREADS  threads (default: the cores this machine gives the process)
#   DEMO_OUT      the output folder (demo-out); replaced only if a demo made it
#   FASHION_MNIST the folder of the IDX files (/usr/share/datasets/fashion-mnist)
set -eu
cd "$(dirname "$0")/.."

EPOCHS=${DEMO_EPOCHS:-5}
LIMIT=${DEMO_LIMIT:-1000}
SAMPLES=${DEMO_SAMPLES:-1000}
THREADS=${DEMO_THREADS:-}
THREAD_ARGS=${THREADS:+--threads $THREADS}
OUT=${DEMO_OUT:-demo-out}
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
BUILD=${BUILD:-build}
GEN=$BUILD/demo/gen
JMVAEC=${JMVAEC:-$PWD/jmvaec}
MARK=.made-by-jmvaec-demo
MODEL=jmvae_kl

say() { printf '\n== %s\n' "$*"; }
now() { date +%s; }

for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    if [ ! -f "$DATA/$f" ]; then
        echo "demo: $DATA/$f is missing (Debian package dataset-fashion-mnist; 'make deps' installs it)" >&2
        exit 1
    fi
done

# The output folder is replaced only when an earlier demo made it.
if [ -e "$OUT" ] && [ ! -f "$OUT/$MARK" ]; then
    echo "demo: $OUT exists and was not made by the demo; move it away or set DEMO_OUT" >&2
    exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
echo "made by 'make demo'; the next demo replaces this folder" > "$OUT/$MARK"

start=$(now)
say "compile specs/$MODEL.spec into $GEN and build the trainer"
t=$(now)
rm -rf "$GEN"
mkdir -p "$GEN"
"$JMVAEC" "specs/$MODEL.spec" -o "$GEN"
make -s -C "$GEN" JMVAEC="$JMVAEC"
TRAINER=$GEN/$MODEL
build_s=$(( $(now) - t ))

say "train on the 60,000 training images for $EPOCHS epochs (batch 100, ${THREADS:-every core's} thread(s))"
t=$(now)
"$TRAINER" train --data "x=$DATA/train-images-idx3-ubyte.gz" --data "w=$DATA/train-labels-idx1-ubyte.gz" \
    --epochs "$EPOCHS" $THREAD_ARGS --ckpt-every 1 --out "$OUT/run"
train_s=$(( $(now) - t ))

say "evaluate on the first $LIMIT of the 10,000 test images, $SAMPLES importance samples each"
t=$(now)
"$TRAINER" eval --checkpoint "$OUT/run/last.ckpt" --data "x=$DATA/t10k-images-idx3-ubyte.gz" \
    --data "w=$DATA/t10k-labels-idx1-ubyte.gz" --limit "$LIMIT" --samples "$SAMPLES" $THREAD_ARGS \
    --json "$OUT/eval.json" > "$OUT/eval.txt"
eval_s=$(( $(now) - t ))

say "draw"
t=$(now)
"$TRAINER" sample --checkpoint "$OUT/run/last.ckpt" --png "$OUT/conditional.png" --mode conditional --n 10
"$TRAINER" sample --checkpoint "$OUT/run/last.ckpt" --png "$OUT/prior.png" --mode prior --n 10
"$TRAINER" sample --checkpoint "$OUT/run/last.ckpt" --png "$OUT/reconstruct.png" --mode reconstruct --n 30 \
    --data "x=$DATA/t10k-images-idx3-ubyte.gz"
"$TRAINER" encode --checkpoint "$OUT/run/last.ckpt" --data "x=$DATA/t10k-images-idx3-ubyte.gz" \
    --limit "$LIMIT" --csv "$OUT/z_given_x.csv"
draw_s=$(( $(now) - t ))

say "test-set evaluation (REDUCED: $LIMIT of the 10,000 test examples, K = $SAMPLES importance samples)"
cat "$OUT/eval.txt"
cat <<EOF

For comparison, Wu & Goodman (2018) report for JMVAE on Fashion-MNIST after
full training: log p(x) -232.63, log p(x,w) -232.95, log p(x|w) -230.40.
These numbers come from $EPOCHS epochs, not the papers' 100 to 500, and from
$LIMIT of the test images (with K = 1000 samples each, as in the papers).

== done in $(( $(now) - start )) s (build $build_s s, train $train_s s, eval $eval_s s, draw $draw_s s)
Everything is in $OUT/:
  run/train.csv      the loss and its terms per epoch
  run/last.ckpt      the trained model (run/epoch-<N>.ckpt after each epoch)
  eval.txt           the table above; eval.json: every number with its standard error
  conditional.png    x generated from w, one row per class: T-shirt/top, trouser, pullover,
                     dress, coat, sandal, shirt, sneaker, bag, ankle boot (z ~ q(z|w))
  prior.png          10 x 10 images decoded from z ~ N(0, I)
  reconstruct.png    30 test images (rows 1, 3, 5) above their reconstructions from q(z|x)
  z_given_x.csv      posterior means of q(z|x) for the first $LIMIT test images (64-D, so no scatter)
The PNGs:
  $OUT/conditional.png
  $OUT/prior.png
  $OUT/reconstruct.png
EOF
