#!/bin/sh
# Rewrites the golden files on purpose: generated/ (what jmvaec emits for
# each spec in specs/: the C trainer's files and the PyTorch module), tests/golden/<model>.<stage> (the text of each
# compiler stage for those specs and for examples/mvae, mmvae and mopoe.spec: model, ir, grad, tasks, plan, so that a change to
# one stage shows as a short diff of its own) and tests/bad/*.expected
# (transcripts of jmvaec on bad specs). Review `git diff` afterwards: every
# change must be intended.
set -eu
cd "$(dirname "$0")/.."
STAGES="model ir grad tasks plan" # tests/test_codegen.c names the same
for spec in specs/*.spec; do
    model=$(basename "$spec" .spec)
    mkdir -p "generated/$model"
    rm -f "generated/$model"/*.c "generated/$model"/*.h "generated/$model"/*.py "generated/$model/Makefile"
    ./jmvaec "$spec" -o "generated/$model"
    ./jmvaec --emit=torch "$spec" -o "generated/$model"
    mkdir -p tests/golden
    for stage in $STAGES; do
        ./jmvaec --emit="$stage" "$spec" > "tests/golden/$model.$stage"
    done
done
for model in mvae mmvae mopoe; do # the models of experts' stages too
    for stage in $STAGES; do
        ./jmvaec --emit="$stage" "examples/$model.spec" > "tests/golden/$model.$stage"
    done
done
for spec in tests/bad/*.spec; do
    sh tests/transcript.sh "$spec" > "${spec%.spec}.expected"
done
echo "golden files rewritten; review them with: git diff generated tests/golden tests/bad"
