#!/usr/bin/python3
"""make bench-epoch and make bench-torch: a real epoch of each generated trainer
on Fashion-MNIST, on 1 and 2 threads; with --torch, the PyTorch models of
tests/bench_torch.py on the same data, batch, threads and BLAS kernel, in the
same run, and the ratio of epoch times.

Every run is a fresh process. The order interleaves the programs (jmvaec,
PyTorch, jmvaec, ...) so that a slow spell of a shared machine falls on both;
with --reps R each time is the median of R runs. Epoch times are the training
loop alone, as each program measures it (loading the data and starting up are
left out of both; the trainer reports them on their own, and so does this
table).

PyTorch is given its best configuration: on one thread, one intra-op thread and
one OpenBLAS thread; on two, the faster of (1 intra-op thread, 2 OpenBLAS
threads) and (2 intra-op threads, 1 OpenBLAS thread), each measured (letting
both pools have two threads is several times slower still). OPENBLAS_CORETYPE
is the kernel the trainers choose for this CPU, for both.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env, cwd=None):
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("bench-epoch: %s failed (%d):\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


# The models beyond the reference specs (generated/): each compiled from a
# spec of examples/ into build/bench-epoch/ with jmvaec's flags, its PyTorch
# twin's name in tests/bench_torch.py, and the targets (one thread, two).
EXTRA = {
    "mvae": ("examples/mvae.spec", [], "mvae", (0.5, 0.3)),
    "mmvae_k1": ("examples/mmvae.spec", ["--samples", "1", "--gradient", "reparam"], "mmvae", (0.5, 0.3)),
    "mmvae": ("examples/mmvae.spec", [], "mmvae_k10", (0.5, 0.3)),
    "mopoe": ("examples/mopoe.spec", [], "mopoe", (0.5, 0.3)),
    "jmvae_kl_semi": ("examples/semi-supervised/jmvae_kl.spec", [], None, None),
    "conv_jmvae_kl": ("examples/fashion-mnist/conv/conv_jmvae_kl.spec", [], "conv_jmvae_kl", (0.6, 0.35)),
    "conv_mvae": ("examples/fashion-mnist/conv/conv_mvae.spec", [], "conv_mvae", (0.6, 0.35)),
}
# Convolutional models: PyTorch is also timed with its oneDNN convolutions off.
CONV = ("conv_jmvae_kl", "conv_mvae")
# Incomplete data (--missing): each model's epoch with that fraction of the
# labels hidden (train --drop w=P), against its epoch with all of them; the
# targets on the ratio at 90%: no more than 1 for every model, and <= 0.85
# for MVAE (its label encoder and decoder then run on a tenth of the images).
MISSING_MODELS = "mvae,jmvae_kl_semi"
MISSING_TARGETS = {"mvae": 0.85}
TARGETS = {"jmvae": (0.6, 0.5), "jmvae_kl": (0.6, 0.5), "jmvae_h": (0.6, 0.5)}


def trainer_of(model, env):
    """The trainer of a model: generated/'s, or one built from examples/ once."""
    if model not in EXTRA:
        return os.path.join(ROOT, "generated", model, model)
    spec, flags, _, _ = EXTRA[model]
    d = os.path.join(ROOT, "build", "bench-epoch", model)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(ROOT, spec)) as f:
        text = f.read()
    text = re.sub(r"^model \w+", "model " + model, text, count=1, flags=re.M)
    path = os.path.join(d, model + ".spec")
    with open(path, "w") as f:
        f.write(text)
    run([os.path.join(ROOT, "jmvaec"), path, "-o", d] + flags, env)
    run(["make", "-s", "-C", d, "JMVAEC=" + os.path.join(ROOT, "jmvaec")], env)
    return os.path.join(d, model)


def jmvaec_epoch(model, data, threads, env, limit, extra=()):
    trainer = trainer_of(model, env)
    work = tempfile.mkdtemp(prefix="jmvaec-bench-")
    try:
        args = [trainer, "train", "--data", "x=" + os.path.join(data, "train-images-idx3-ubyte.gz"),
                "--data", "w=" + os.path.join(data, "train-labels-idx1-ubyte.gz"), "--epochs", "1",
                "--threads", str(threads), "--out", os.path.join(work, "run")]
        if limit:
            args += ["--limit", str(limit)]
        args += list(extra)
        start = time.perf_counter()
        out = run(args, env)
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    epoch = re.search(r"^epoch 1/1 .* ([0-9.]+) s$", out, re.M)
    done = re.search(r"checkpoints ([0-9.]+) s, the rest ([0-9.]+) s .* loading the data took ([0-9.]+) s", out)
    if not epoch or not done:
        sys.exit("bench-epoch: cannot read the epoch time of %s in:\n%s" % (model, out))
    return {"epoch": float(epoch.group(1)), "ckpt": float(done.group(1)), "rest": float(done.group(2)),
            "load": float(done.group(3)), "wall": wall}


def torch_epoch(model, data, threads, blas_threads, env, limit, onednn="on"):
    e = dict(env, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(blas_threads))
    args = ["/usr/bin/python3", os.path.join(ROOT, "tests", "bench_torch.py"), "--data", data, "--threads",
            str(threads), "--onednn", onednn, EXTRA[model][2] if model in EXTRA else model]
    if limit:
        args += ["--limit", str(limit)]
    out = run(args, e)
    m = re.search(r"^torch \S+ epoch ([0-9.]+) .* kernel (\S+)", out, re.M)
    if not m:
        sys.exit("bench-torch: cannot read the epoch time in:\n" + out)
    return float(m.group(1)), m.group(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--models", default="jmvae,jmvae_kl,jmvae_h,mvae,mmvae_k1,mmvae,mopoe,conv_jmvae_kl,conv_mvae")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all 60,000)")
    ap.add_argument("--torch", action="store_true", help="also run the PyTorch models and give the ratios")
    ap.add_argument("--kernel", default="", help="OPENBLAS_CORETYPE for both programs (default: the trainers' choice)")
    ap.add_argument("--missing", default="0,0.5,0.9",
                    help="fractions of the labels hidden for the incomplete-data table ('' for none)")
    ap.add_argument("--missing-models", default=MISSING_MODELS)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    thread_counts = [int(t) for t in a.threads.split(",")]
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        if not os.path.exists(os.path.join(a.data, f)):
            sys.exit("bench-epoch: %s is missing (Debian package dataset-fashion-mnist; 'make deps')" % f)
    env = dict(os.environ)
    if a.kernel:
        env["OPENBLAS_CORETYPE"] = a.kernel
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    say("jmvaec %s, %s, %s, %d cores; %s images, batch 100, %d run(s) each (median)" % (
        "against PyTorch (make bench-torch)" if a.torch else "epochs (make bench-epoch)",
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu, os.cpu_count() or 1,
        a.limit or 60000, a.reps))
    say("BLAS kernel: %s" % (env.get("OPENBLAS_CORETYPE") or "the trainers' choice (see their first lines)"))
    say()
    header = "%-13s %2s %8s %8s %8s %8s" % ("model", "T", "epoch", "load", "ckpt", "other")
    if a.torch:
        header += " %9s %13s %7s %7s" % ("torch", "config", "ratio", "target")
    say(header)
    results = {}
    for model in models:
        for t in thread_counts:
            ours, theirs, configs = [], [], {}
            torch_configs = [(1, 1, "on")] if t == 1 else [(1, t, "on"), (t, 1, "on")]
            if model in CONV:
                torch_configs += [(i, b, "off") for i, b, _ in torch_configs]
            for r in range(a.reps):
                ours.append(jmvaec_epoch(model, a.data, t, env, a.limit))
                if a.torch:
                    best = None
                    for intra, blas, onednn in torch_configs:
                        seconds, kernel = torch_epoch(model, a.data, intra, blas, env, a.limit, onednn)
                        configs.setdefault((intra, blas, onednn), []).append(seconds)
                        best = seconds if best is None else min(best, seconds)
                    theirs.append(best)
            epoch = statistics.median(x["epoch"] for x in ours)
            row = "%-13s %2d %8.2f %8.2f %8.2f %8.2f" % (
                model, t, epoch, statistics.median(x["load"] for x in ours),
                statistics.median(x["ckpt"] for x in ours), statistics.median(x["rest"] for x in ours))
            results[(model, t)] = epoch
            if a.torch:
                torch_s = statistics.median(theirs)
                cfg = min(configs, key=lambda c: statistics.median(configs[c]))
                target = (EXTRA[model][3] if model in EXTRA else TARGETS[model])[0 if t == 1 else 1]
                ratio = epoch / torch_s
                row += " %9.2f %4dx%-4d%4s %7.3f %7s" % (torch_s, cfg[0], cfg[1], "" if model not in CONV else
                                                          "dnn" if cfg[2] == "on" else "-", ratio,
                                                          "met" if ratio <= target else "missed")
            say(row)
    say()
    say("epoch = the training loop of one epoch, in seconds; load = reading and decoding the data files, once")
    say("per run; ckpt = writing last.ckpt; other = shuffles, logs and the rest of the loop outside the steps")
    if a.torch:
        say("torch = PyTorch's epoch; config = its intra-op threads x OpenBLAS threads (the faster one), and for")
        say("the convolutional models whether its oneDNN convolutions were on (dnn) or off (-);")
        say("ratio = jmvaec / PyTorch; targets: <= 0.6 on one thread, <= 0.5 on two (the JMVAE family),")
        say("<= 0.5 and <= 0.3 (the models of experts), <= 0.6 and <= 0.35 (the convolutional ones, Wu & Goodman's")
        say("networks: examples/fashion-mnist/conv); mmvae_k1 is examples/mmvae.spec with K = 1, mmvae its K = 10")
        say("with DReG")
    if len(thread_counts) > 1 and models:
        say()
        for model in models:
            base = results[(model, thread_counts[0])]
            say("%-13s speed-up over %d thread%s: %s" % (model, thread_counts[0], "" if thread_counts[0] == 1 else "s",
                "  ".join("T=%d %.2fx (target >= %.1f)" % (t, base / results[(model, t)], 1.8 if model in EXTRA else 1.7)
                          for t in thread_counts[1:])))
    fractions = [float(x) for x in a.missing.split(",") if x] if not a.torch else []
    if fractions:
        say()
        say("incomplete data: an epoch with a fraction of the labels hidden (train --drop w=P), against all of them")
        say("%-13s %2s %6s %8s %8s %7s" % ("model", "T", "hidden", "epoch", "ratio", "target"))
        for model in a.missing_models.split(","):
            for t in thread_counts:
                base = None
                for frac in fractions:
                    extra = ["--drop", "w=%g" % frac] if frac > 0 else []
                    epoch = statistics.median(jmvaec_epoch(model, a.data, t, env, a.limit, extra)["epoch"]
                                              for _ in range(a.reps))
                    base = epoch if base is None else base
                    target = MISSING_TARGETS.get(model, 1.0) if frac >= 0.9 else None
                    ratio = epoch / base
                    say("%-13s %2d %5.0f%% %8.2f %8.3f %7s" % (
                        model, t, 100 * frac, epoch, ratio,
                        "" if target is None else ("met" if ratio <= target else "missed") + " (<= %.2f)" % target))
        say("ratio = the epoch over the same model's epoch with every label (the first row of each block); the")
        say("examples without a label run the step of what they observe (MVAE: ELBO(x); JMVAE-kl: the ELBO of")
        say("the image, examples/semi-supervised/jmvae_kl.spec), grouped within each batch")
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("written: " + a.out)


if __name__ == "__main__":
    main()
