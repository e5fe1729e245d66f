# examples/lib/plots.sh: gnuplot commands the examples share (sourced).

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
