#!/bin/sh
# examples/fashion-mnist/run.sh: the papers' experiments on Fashion-MNIST.
#
#   sh examples/fashion-mnist/run.sh [--quick] [--epochs N] [--out DIR]
#
# Compiles the three reference specs (JMVAE, JMVAE-kl, JMVAE-h) and
# examples/jmvae_h_kl.spec (JMVAE-h with unimodal encoders), trains each
# on the 60,000 training images (grey levels as Bernoulli targets, 1,000 of
# them held out for the validation curves) with the authors' setup (the
# specs' defaults: Adam 1e-3, batch 100, clipping at 5), evaluates each on
# the 10,000 test images with K = 1000 importance samples, measures the
# coherence of images generated from the label alone with an independent
# classifier (examples/tools/classifier.c, trained on the training images),
# trains 2-D latent variants of the four specs for the latent-space
# picture, and writes RESULTS.md and the figures into the output folder
# (default examples/fashion-mnist/out; RESULTS.md is also copied beside this
# script in the full mode).
#
# JMVAE-zero is JMVAE with the zero-fed joint encoder q(z|x,w=0) standing in
# where the image is missing: the same trained model, evaluated with the
# papers' protocol.
#
# --quick: 2 epochs on the first 3,000 training images, 200 test images,
# K = 50, 2-D variants for 2 epochs: a few minutes, for checking the chain
# (make test runs an even smaller slice through EXAMPLE_* variables).
# An interrupted run resumes from its last checkpoints when started again
# with the same options; finished steps are not redone.
#
# The work itself is examples/lib/experiment.sh, shared with examples/mnist.
# longer.sh, beside this script, trains JMVAE further (LONGER_RUNS.md);
# experts.sh runs the field's models of experts (EXPERTS.md).
#
# Variables (for tests): FASHION_MNIST (the IDX folder), EXAMPLE_TRAIN_LIMIT,
# EXAMPLE_TEST_LIMIT, EXAMPLE_SAMPLES, EXAMPLE_EPOCHS_2D, EXAMPLE_PER_CLASS,
# EXAMPLE_CLASSIFIER_EPOCHS, EXAMPLE_PRIOR_SAMPLES, EXAMPLE_VALID, EXAMPLE_THREADS;
# CFLAGS and LDFLAGS for the trainers' and the classifier's builds.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/dataset.sh"

. "$ROOT/examples/lib/experiment.sh"
