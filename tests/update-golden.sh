#!/bin/sh
# Rewrites the golden files on purpose: generated/ (what jmvaec emits for
# each spec in specs/) and tests/bad/*.expected (transcripts of jmvaec on bad
# specs). Review `git diff` afterwards: every change must be intended.
set -eu
cd "$(dirname "$0")/.."
for spec in specs/*.spec; do
    model=$(basename "$spec" .spec)
    mkdir -p "generated/$model"
    rm -f "generated/$model"/*.c "generated/$model"/*.h "generated/$model/Makefile"
    ./jmvaec "$spec" -o "generated/$model"
done
for spec in tests/bad/*.spec; do
    sh tests/transcript.sh "$spec" > "${spec%.spec}.expected"
done
echo "golden files rewritten; review them with: git diff generated tests/bad"
