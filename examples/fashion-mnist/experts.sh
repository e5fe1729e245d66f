#!/bin/sh
# examples/fashion-mnist/experts.sh: the field's models of experts on
# Fashion-MNIST, beside JMVAE-kl, as run.sh runs the JMVAE family.
#
#   sh examples/fashion-mnist/experts.sh [--quick] [--epochs N] [--out DIR]
#
# Compiles specs/jmvae_kl.spec and examples/mvae.spec (MVAE: a product of
# experts with the prior, Wu & Goodman's sub-sampled objective),
# examples/mmvae.spec (MMVAE: a mixture of experts, the stratified bound
# with K = 10 importance samples and the doubly-reparameterised gradient,
# MultiVae's settings) and examples/mopoe.spec (MoPoE: a mixture of products
# of experts, the mean over subsets of their ELBOs), all with the reference
# specs' MLP networks; trains each 100 epochs on the 60,000 training images
# (1,000 held out for the validation curves), evaluates each on the 10,000
# test images with K = 1000 importance samples (each subset's own posterior
# as its proposal), measures the coherence of images generated from the
# label alone with the independent classifier, trains the 2-D latent
# variants, and writes EXPERTS.md and its figures into the output folder
# (default examples/fashion-mnist/out-experts; EXPERTS.md, beside this
# script, and figures/experts/ in the full mode). run.sh's RESULTS.md links
# it. --quick: as run.sh's. An interrupted run resumes from its last
# checkpoints when started again; finished steps are not redone.
#
# Variables (for tests): those of run.sh.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCRIPT=experts.sh
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
TITLE=Fashion-MNIST
CLASSES="T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle-boot"
TRAIN_X=$DATA/train-images-idx3-ubyte.gz TRAIN_W=$DATA/train-labels-idx1-ubyte.gz
TEST_X=$DATA/t10k-images-idx3-ubyte.gz TEST_W=$DATA/t10k-labels-idx1-ubyte.gz
TRAIN_TEXT="all 60,000 training images" TEST_TEXT="all 10,000 test images"
TARGETS_TEXT="grey levels as Bernoulli targets (as Wu & Goodman)"
PUBLISHED_ROW="| JMVAE, Wu & Goodman 2018 (long runs) | −232.63 | −232.95 | −230.40 | | |"
NOTE=""
prepare_data() { :; } # Debian's dataset-fashion-mnist, installed with the packages
EXPERT_MODELS="mvae mmvae mopoe"
RESULTS_NAME=EXPERTS.md
DEFAULT_OUT_NAME=out-experts

. "$ROOT/examples/lib/experiment.sh"
