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
. "$HERE/dataset.sh"
EXPERT_MODELS="mvae mmvae mopoe"
RESULTS_NAME=EXPERTS.md
DEFAULT_OUT_NAME=out-experts

. "$ROOT/examples/lib/experiment.sh"
