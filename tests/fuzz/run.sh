#!/bin/sh
# tests/fuzz/run.sh DIR SECONDS TARGET...: runs each libFuzzer harness
# DIR/fuzz_TARGET for SECONDS on its working corpus DIR/corpus/TARGET, seeded
# from tests/fuzz/corpus/TARGET (and, for specs, specs/, examples/ and
# tests/bad/), with tests/fuzz/TARGET.dict when there is one. Stops at the
# first harness that finds something: its input is in DIR/artifacts/ and
# its log in DIR/TARGET.log.
set -u
dir=$1 seconds=$2
shift 2
mkdir -p "$dir/artifacts"
for t in "$@"; do
    mkdir -p "$dir/corpus/$t" "tests/fuzz/corpus/$t"
    seeds="tests/fuzz/corpus/$t"
    [ "$t" = spec ] && seeds="$seeds specs examples tests/bad"
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    echo "== fuzz_$t for $seconds s"
    # shellcheck disable=SC2086
    "$dir/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        $dict -artifact_prefix="$dir/artifacts/$t-" "$dir/corpus/$t" $seeds > "$dir/$t.log" 2>&1
    status=$?
    grep -E "^#[0-9]+.*(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb" "$dir/$t.log" | sed 's/^/   /'
    if [ $status -ne 0 ]; then
        echo "fuzz_$t found a problem (status $status); the end of $dir/$t.log:" >&2
        tail -40 "$dir/$t.log" >&2
        ls "$dir/artifacts/" >&2
        exit 1
    fi
done
echo "fuzz: nothing found"
