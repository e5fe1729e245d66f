#!/bin/sh
# The transcript of `jmvaec --check SPEC`: the command, all it printed, and
# its exit status. tests/bad/*.expected hold these.
spec=$1
echo "\$ jmvaec --check $spec"
./jmvaec --check "$spec" 2>&1
echo "[exit $?]"
