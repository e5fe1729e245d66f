#!/usr/bin/python3
"""make bench-mpi: the reference trainers on MPI against one process, and the
scaling model the README gives.

1. Epochs on Fashion-MNIST (60,000 images, batch 100, one thread a process),
   each the median of --reps fresh runs, interleaved so that a slow spell of
   a shared machine falls on all of them:
     plain   the trainer of generated/ (one part, one process)
     1 x C2  the MPI build under mpirun -np 1, --chunks 2 (the arithmetic of the
             two-process run, on one)
     2 x C2  mpirun -np 2, --chunks 2
   The speed-up is 1 x C2 over 2 x C2 (the same results) and, beside it, plain
   over 2 x C2. Their checkpoints are compared: 1 x C2 and 2 x C2 must be the
   same bytes.
2. The exchange of a gradient block between two processes (bench_exchange):
   the parts' sum (reduce-scatter by recursive doubling) and the parameters'
   segments (allgather), for 1, 2 and 3 million reals.
3. The scaling model: from the measured compute per example (plain) and the
   optimiser's cost, the predicted efficiency at 8, 64 and 512 processes over
   10 and 100 Gbit/s networks for batches of 100, 1000 and 10000, with the
   assumptions printed beside it.
"""
import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["jmvae", "jmvae_kl", "jmvae_h"]
DATA = "/usr/share/datasets/fashion-mnist"


def run(cmd, env, cwd=None):
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("bench-mpi: %s failed (%d):\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


def epoch(cmd, env, out_dir):
    out = run(cmd + ["--out", out_dir], env)
    m = re.search(r"^epoch 1/1 .* ([0-9.]+) s$", out, re.M)
    if not m:
        sys.exit("bench-mpi: no epoch time in:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench", "mpi"))
    ap.add_argument("--kernel", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if a.kernel:
        env["OPENBLAS_CORETYPE"] = a.kernel
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    models = a.models.split(",")
    for m in models:  # the MPI builds of the committed trainers
        d = os.path.join(a.build, m)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(os.path.join(ROOT, "generated", m)):
            if f.endswith((".c", ".h")) or f == "Makefile":
                shutil.copy2(os.path.join(ROOT, "generated", m, f), d)
        run(["make", "-s", "-C", d, "JMVAEC=" + os.path.join(ROOT, "jmvaec"), "MPI=1"], env)
    data = ["--data", "x=" + os.path.join(DATA, "train-images-idx3-ubyte.gz"),
            "--data", "w=" + os.path.join(DATA, "train-labels-idx1-ubyte.gz")]
    common = ["train"] + data + ["--epochs", "1", "--threads", "1", "--ckpt-minutes", "0"]
    if a.limit:
        common += ["--limit", str(a.limit)]
    kernel = run([os.path.join(ROOT, "build", "tests", "blas_kernel")], env).strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    say("# make bench-mpi: %s, %d cores; OpenBLAS kernel %s; one thread a process; medians of %d runs (seconds)"
        % (cpu, os.cpu_count(), kernel, a.reps))
    say()
    say("    model      params    plain   1 x C2   2 x C2  speed-up  vs plain  target  same bytes")
    per_example, n_params = {}, {}
    work = tempfile.mkdtemp(prefix="jmvaec-bench-mpi-")
    try:
        for m in models:
            plain_bin = os.path.join(ROOT, "generated", m, m)
            mpi_bin = os.path.join(a.build, m, m)
            info = run([plain_bin, "help"], env)
            n_params[m] = int(re.search(r"([0-9]+) parameters", info).group(1))
            t = {"plain": [], "one": [], "two": []}
            same = True
            for r in range(a.reps):
                t["plain"].append(epoch([plain_bin] + common, env, os.path.join(work, "%s-p%d" % (m, r))))
                t["one"].append(epoch(["mpirun", "-np", "1", mpi_bin] + common + ["--chunks", "2"], env,
                                      os.path.join(work, "%s-o%d" % (m, r))))
                t["two"].append(epoch(["mpirun", "-np", "2", mpi_bin] + common + ["--chunks", "2"], env,
                                      os.path.join(work, "%s-t%d" % (m, r))))
                a_ck = open(os.path.join(work, "%s-o%d" % (m, r), "last.ckpt"), "rb").read()
                b_ck = open(os.path.join(work, "%s-t%d" % (m, r), "last.ckpt"), "rb").read()
                same = same and a_ck == b_ck
            med = {k: statistics.median(v) for k, v in t.items()}
            n_ex = a.limit if a.limit else 60000
            per_example[m] = med["plain"] / n_ex
            speed = med["one"] / med["two"]
            say("    %-9s %8d %8.2f %8.2f %8.2f %8.3fx %8.3fx  %s  %s"
                % (m, n_params[m], med["plain"], med["one"], med["two"], speed, med["plain"] / med["two"],
                   "met    " if speed >= 1.7 else "not met", "yes" if same else "NO"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say()
    say("    speed-up: 1 x C2 / 2 x C2, the same arithmetic (target 1.7x); vs plain: plain / 2 x C2")
    say()
    ex = run(["mpirun", "-np", "2", os.path.join(ROOT, "build", "bench", "bench_exchange"), "--reps", "40"], env)
    say("The exchange of a block between two processes on this machine (bench_exchange, medians of 40):")
    say()
    for l in ex.splitlines():
        say("    " + l)
    say()
    model(say, per_example, n_params)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")


def model(say, per_example, n_params):
    """Predicted parallel efficiency of data-parallel steps."""
    alpha = 5e-6             # seconds a message: one hop's latency on a cluster network
    opt = 1.0e-9             # seconds a parameter for clipping and Adam on one core (README: 0.8-1.3)
    say("The scaling model (predictions, not measurements). Per step, on N processes of one core:")
    say("  compute  t_ex * B / N      t_ex: the measured plain epoch / 60000 (one core, batch 100); assumes a")
    say("                             process's rows cost what they cost at batch 100 (fewer rows cost more:")
    say("                             the 1 x C2 column above), and no overlap of compute and exchange")
    say("  adam     t_opt * P / N     t_opt = 1 ns a parameter; each process updates its segment")
    say("  exchange 2 log2(N) a + 2 (N-1)/N * 4P / BW   reduce-scatter then allgather of P floats, by recursive")
    say("                             doubling; a = 5 us a message; BW the network's, all of it for the job")
    say("  efficiency = (t_ex B + t_opt P) / (N * step time); '-': more processes than rows in a batch")
    say()
    say("    model      P       t_ex ms  batch   N   10 Gbit/s  100 Gbit/s")
    for m, t_ex in per_example.items():
        P = n_params[m]
        for B in (100, 1000, 10000):
            for N in (8, 64, 512):
                if N > B:  # a process needs one row of the batch at least
                    say("    %-9s %8d %6.3f %6d %4d %11s %11s" % (m, P, 1e3 * t_ex, B, N, "-", "-"))
                    continue
                eff = []
                for gbit in (10, 100):
                    bw = gbit * 1e9 / 8
                    serial = t_ex * B + opt * P
                    step = t_ex * B / N + opt * P / N + 2 * math.log2(N) * alpha + 2 * (N - 1) / N * 4 * P / bw
                    eff.append(serial / (N * step))
                say("    %-9s %8d %6.3f %6d %4d %10.0f%% %10.0f%%" % (m, P, 1e3 * t_ex, B, N, 100 * eff[0], 100 * eff[1]))
    say()
    say("  Where the efficiency is low at batch 100, a larger batch is what makes more processes pay: the")
    say("  results are then those of that batch (fewer, larger steps; the learning rate and epochs may need")
    say("  retuning), not those of the papers' batch of 100.")


if __name__ == "__main__":
    main()
