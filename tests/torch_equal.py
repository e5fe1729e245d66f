"""torch_equal.py: the C back end checked against the PyTorch back end
(tests/test_torch.c runs it; run by hand: /usr/bin/python3 tests/torch_equal.py
--jmvaec ./jmvaec --work /tmp/w SPEC...).

For each spec, jmvaec writes both back ends into one folder and builds the C
trainer; then, in double precision on the same parameters, data and noise:

  1. initialisation: the module's init_parameters gives the C trainer's
     parameters exactly (C's gradcheck --dump at fresh parameters);
  2. equality: at random parameters (weights and biases, written by the module
     as a checkpoint that the C trainer reads), the C trainer's
     `gradcheck --checkpoint --dump` gives the loss, every term, the whole
     gradient, each posterior family's samples and log q, log_joint, decode and
     sample_prior, and the loss, terms and gradient of the step of examples
     that observe only some modalities (each subset the model has a step for,
     on those modalities' data alone); the module, with autograd for the gradient, must agree to a
     relative 1e-6 (tensor by tensor, in the largest entry);
  3. checkpoints: a checkpoint of a real C training run (random data, 2 epochs)
     loaded by the module and saved again is the same bytes, also through
     torch.optim.Adam's state; a fresh checkpoint of the module, resumed by the
     C trainer, gives the bytes of the C trainer's own fresh run; a checkpoint
     the module writes with progress within an epoch is resumed by the C
     trainer; the C trainer evaluates a checkpoint the module wrote.

--refusals SPEC checks the module's refusals instead: checkpoints of another
model, truncated, damaged or of an unknown version, and a foreign file where a
checkpoint would be written.

Exit status 0 when everything agrees; otherwise the differences are printed.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

TOLERANCE = 1e-6
failures = []


def fail(spec, what):
    failures.append(f"{spec}: {what}")
    print(f"FAIL {spec}: {what}", flush=True)


def run(cmd, ok=True, env=None, cwd=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    if ok and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}")
    return p


def model_name(spec):
    with open(spec) as f:
        for line in f:
            words = line.split("#")[0].split()
            if len(words) >= 2 and words[0] == "model":
                return words[1]
    raise RuntimeError(f"{spec}: no 'model NAME' line")


def build(args, spec):
    """The C trainer and the module of spec in a folder of their own."""
    name = model_name(spec)
    d = os.path.join(args.work, os.path.basename(spec)[:-5])
    shutil.rmtree(d, ignore_errors=True)
    run([args.jmvaec, spec, "-o", d] + args.jmvaec_flags)
    run([args.jmvaec, "--emit=torch", spec, "-o", d])
    run(["make", "-s", "-C", d, f"JMVAEC={os.path.abspath(args.jmvaec)}"] + args.make_flags)
    loader = importlib.util.spec_from_file_location(f"{name}_{os.getpid()}_{len(failures)}", os.path.join(d, name + ".py"))
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return d, os.path.join(d, name), module


def relative(a, b):
    """The largest difference over the largest entry of b (1 for tiny b)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30 if np.max(np.abs(b)) > 0 else 1.0))


def compare(spec, what, mine, theirs, worst):
    err = relative(mine, theirs)
    worst[0] = max(worst[0], err)
    if not err <= TOLERANCE:
        fail(spec, f"{what}: PyTorch and C differ by {err:.3g} (relative)")


def as_module(array, model, name):
    """A tensor of the C trainer's dump ([rows x cols]) in the shape of the
    module's parameter: a convolution's [out, in, k, k] is the same values."""
    shape = tuple(model.parameter_of(name).shape)
    return array.reshape(shape) if array.size == int(np.prod(shape)) else array


def numpy_of(t):
    return t.detach().cpu().numpy()


def randomise(module, model, seed):
    """Random weights and biases (rounded to float32, as a checkpoint holds them)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, rows, cols, _, is_bias, _ in module.TENSORS:
            p = model.parameter_of(name)
            scale = 0.3 if is_bias else 1.3 / np.sqrt(rows)
            values = rng.normal(0.0, scale, size=tuple(p.shape)).astype(np.float32)
            p.copy_(torch.from_numpy(values))


def check_initialisation(args, spec, module, trainer, d):
    dump = os.path.join(d, "init.npz")
    run([trainer, "gradcheck", "--batch", "2", "--entries", "1", "--quiet", "--dump", dump], ok=False)
    c = np.load(dump)
    model = module.Model(torch.float64)
    for name, *_ in module.TENSORS:
        if not np.array_equal(numpy_of(model.parameter_of(name)), as_module(c["params/" + name], model, name)):
            fail(spec, f"init_parameters: {name} is not the C trainer's initialisation")


def check_equality(args, spec, module, trainer, d):
    ckpt, dump = os.path.join(d, "random.ckpt"), os.path.join(d, "random.npz")
    writer = module.Model()
    randomise(module, writer, args.seed)
    writer.save_checkpoint(ckpt)
    run([trainer, "gradcheck", "--checkpoint", ckpt, "--batch", "6", "--seed", str(args.seed), "--entries", "1",
         "--quiet", "--dump", dump], ok=False)
    c = np.load(dump)
    model = module.Model(torch.float64)
    model.load_checkpoint(ckpt)
    worst = [0.0]
    for name, *_ in module.TENSORS:
        if not np.array_equal(numpy_of(model.parameter_of(name)), as_module(c["params/" + name], model, name)):
            fail(spec, f"{name}: the C trainer read other parameters from the module's checkpoint")
    data = {m: torch.from_numpy(c["data/" + m]) for m in module.MODALITIES}
    noise = {l: torch.from_numpy(c["noise/" + l]) for l in module.LATENTS}
    for l in module.LATENTS:  # a mixture's choices
        if f"choice/{l}" in c.files:
            noise[f"{l}/choice"] = torch.from_numpy(c[f"choice/{l}"])
    step_noise = {key: torch.from_numpy(c[f"step_noise/{d}"]) for d, key in enumerate(module.DRAWS)}
    loss, terms = model.loss(data, step_noise)
    loss.backward()
    compare(spec, "loss", numpy_of(loss).reshape(1), c["loss"], worst)
    for i, t in enumerate(module.TERMS):
        compare(spec, f"term {t}", numpy_of(terms[t]).reshape(1), c["terms"][i:i + 1], worst)
    for name, *_ in module.TENSORS:
        p = model.parameter_of(name)
        mine = numpy_of(p.grad) if p.grad is not None else np.zeros(tuple(p.shape))
        compare(spec, f"gradient of {name}", mine, as_module(c["grad/" + name], model, name), worst)
    # the step of examples that observe only some modalities: data of those alone
    for sub in sorted({f.split("/")[1] for f in c.files if f.startswith("observed/")}):
        observed = set(sub.split(","))
        model.zero_grad(set_to_none=True)
        loss, terms = model.loss({m: data[m] for m in observed}, step_noise, observed=observed)
        loss.backward()
        compare(spec, f"loss observing only {sub}", numpy_of(loss).reshape(1), c[f"observed/{sub}/loss"], worst)
        for i, t in enumerate(module.TERMS):
            mine = numpy_of(terms[t]).reshape(1) if torch.is_tensor(terms[t]) else np.array([terms[t]])
            compare(spec, f"term {t} observing only {sub}", mine, c[f"observed/{sub}/terms"][i:i + 1], worst)
        for name, *_ in module.TENSORS:
            p = model.parameter_of(name)
            mine = numpy_of(p.grad) if p.grad is not None else np.zeros(tuple(p.shape))
            compare(spec, f"gradient of {name} observing only {sub}", mine,
                    as_module(c[f"observed/{sub}/grad/{name}"], model, name), worst)
    with torch.no_grad():
        for key, method in module.FAMILIES.items():
            family = ",".join(key)
            calls = [(family, lambda: getattr(model, method)(data, noise))]
            if method == "posterior_given":  # a family given any subset: each one the C trainer dumped
                subsets = sorted({f.split("/")[2] for f in c.files if f.startswith(f"posterior/{family}/")})
                calls = [(f"{family}/{sub}", lambda sub=sub: model.posterior_given(data, set(sub.split(",")), noise))
                         for sub in subsets]
                if not subsets:
                    fail(spec, "the C trainer dumped no subset of the family given any subset")
            for name, call in calls:
                latents, log_q = call()
                for l in module.LATENTS:
                    compare(spec, f"posterior {name}: {l}", numpy_of(latents[l]), c[f"posterior/{name}/{l}"], worst)
                compare(spec, f"posterior {name}: log q", numpy_of(log_q), c[f"posterior/{name}/log_q"], worst)
        train = ",".join(module.TRAINING_FAMILY)
        if module.FAMILIES[module.TRAINING_FAMILY] == "posterior_given":
            train = f"{train}/{train}"
        sample = {l: torch.from_numpy(c[f"posterior/{train}/{l}"]) for l in module.LATENTS}
        log_prior, log_lik = model.log_joint(data, sample)
        compare(spec, "log_joint: log p(z)", numpy_of(log_prior), c["log_joint/log_prior"], worst)
        decoded = [m for m in module.MODALITIES if module.MODALITIES[m][3]]
        if sorted(log_lik) != sorted(decoded):
            fail(spec, f"log_joint gave {sorted(log_lik)}, not every decoded modality {sorted(decoded)}")
        for m in decoded:
            compare(spec, f"log_joint: log p({m} | z)", numpy_of(log_lik[m]), c["log_joint/" + m], worst)
        means = model.decode(sample)
        for m in decoded:
            compare(spec, f"decode: {m}", numpy_of(means[m]), c["decode/" + m], worst)
        prior = model.sample_prior(noise)
        for l in module.LATENTS:
            compare(spec, f"sample_prior: {l}", numpy_of(prior[l]), c["sample_prior/" + l], worst)
    return worst[0]


def write_data(module, d, rows, seed):
    """Random data of every modality as NPY files; returns train's --data options."""
    rng = np.random.default_rng(seed)
    options = []
    for m, (size, likelihood, _, _) in module.MODALITIES.items():
        if likelihood == "bernoulli":
            x = rng.uniform(0, 1, (rows, size)).astype(np.float32)
        elif likelihood == "categorical":
            x = rng.integers(0, size, rows).astype(np.uint8)
        else:
            x = rng.normal(0, 1, (rows, size)).astype(np.float32)
        path = os.path.join(d, f"data_{m}.npy")
        np.save(path, x)
        options += ["--data", f"{m}={path}"]
    return options


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_checkpoints(args, spec, module, trainer, d):
    data = write_data(module, d, 40, args.seed)
    common = data + ["--batch", "8", "--threads", "1"]
    run_dir = os.path.join(d, "run")
    run([trainer, "train"] + common + ["--epochs", "2", "--out", run_dir])
    last = os.path.join(run_dir, "last.ckpt")
    model = module.Model()
    model.load_checkpoint(last)
    model.save_checkpoint(os.path.join(d, "copy.ckpt"))
    if not same_bytes(last, os.path.join(d, "copy.ckpt")):
        fail(spec, "a C checkpoint loaded and saved by the module is not the same bytes")
    model = module.Model(torch.float64)
    optimizer = model.make_optimizer()
    model.load_checkpoint(last, optimizer)
    model.save_checkpoint(os.path.join(d, "copy_adam.ckpt"), optimizer)
    if not same_bytes(last, os.path.join(d, "copy_adam.ckpt")):
        fail(spec, "a C checkpoint through torch.optim.Adam's state and back is not the same bytes")

    # a fresh checkpoint of the module, resumed by the C trainer, is the C trainer's own fresh run
    own, fresh = os.path.join(d, "own"), os.path.join(d, "fresh")
    run([trainer, "train"] + common + ["--epochs", "1", "--seed", "5", "--out", own])
    os.makedirs(fresh)
    module.Model(seed=5).save_checkpoint(os.path.join(fresh, "last.ckpt"))
    run([trainer, "train"] + common + ["--epochs", "1", "--resume", os.path.join(fresh, "last.ckpt")])
    if not same_bytes(os.path.join(own, "last.ckpt"), os.path.join(fresh, "last.ckpt")):
        fail(spec, "the C trainer resuming the module's fresh checkpoint did not give its own fresh run")

    # progress within an epoch, written by the module, resumed by the C trainer
    ck = module.read_checkpoint(last)
    ck.update(epoch=1, batches=2, batch_size=8, n_train=40, chunks=1,
              sums=[float(x) for x in range(len(module.TERMS) + 1)])
    mid = os.path.join(d, "mid")
    os.makedirs(mid)
    module.write_checkpoint(os.path.join(mid, "last.ckpt"), ck)
    again = module.read_checkpoint(os.path.join(mid, "last.ckpt"))
    if again["sums"] != ck["sums"] or again["batches"] != 2:
        fail(spec, "the progress within an epoch did not survive write_checkpoint and read_checkpoint")
    p = run([trainer, "train"] + common + ["--epochs", "2", "--resume", os.path.join(mid, "last.ckpt")], ok=False)
    if p.returncode != 0 or "resuming epoch 2 after 2 batches" not in p.stdout:
        fail(spec, f"the C trainer did not resume the module's checkpoint within an epoch:\n{p.stdout}")

    # the C trainer evaluates a checkpoint the module wrote
    p = run([trainer, "eval", "--checkpoint", os.path.join(d, "random.ckpt")] + data +
            ["--samples", "3", "--limit", "6", "--prior-samples", "50", "--class-samples", "2"], ok=False)
    if p.returncode != 0:
        fail(spec, f"the C trainer did not evaluate the module's checkpoint:\n{p.stdout}")


def expect_refusal(spec, what, call, needle):
    try:
        call()
    except Exception as e:  # the module's CheckpointError, or KeyError/ValueError for bad input
        if needle not in str(e):
            fail(spec, f"{what}: refused with '{e}', expected '{needle}'")
        return
    fail(spec, f"{what}: accepted")


def check_refusals(args, spec, module, trainer, d):
    data = write_data(module, d, 16, args.seed)
    run([trainer, "train"] + data + ["--batch", "8", "--threads", "1", "--epochs", "1", "--out", os.path.join(d, "run")])
    good = os.path.join(d, "run", "last.ckpt")
    raw = open(good, "rb").read()
    model = module.Model()
    before = [numpy_of(p).copy() for p in model.parameters()]

    def bad(name, content):
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    other = os.path.join(args.work, "other")
    shutil.rmtree(other, ignore_errors=True)
    run([args.jmvaec, os.path.join(args.root, "examples", "fan_in_one.spec"), "-o", other])
    run(["make", "-s", "-C", other, f"JMVAEC={os.path.abspath(args.jmvaec)}"] + args.make_flags)
    run([os.path.join(other, "fan_in_one"), "train", "--data",
         f"x={write_other_data(d)}", "--epochs", "1", "--threads", "1", "--out", os.path.join(other, "run")])
    expect_refusal(spec, "another model's checkpoint",
                   lambda: model.load_checkpoint(os.path.join(other, "run", "last.ckpt")), "not of 'tiny'")
    expect_refusal(spec, "a truncated checkpoint", lambda: model.load_checkpoint(bad("short.ckpt", raw[:-100])),
                   "truncated")
    damaged = bytearray(raw)
    damaged[len(raw) - 20] ^= 0x40  # in the tail: the structure holds, the checksum does not
    expect_refusal(spec, "a damaged checkpoint", lambda: model.load_checkpoint(bad("damaged.ckpt", bytes(damaged))),
                   "checksum mismatch")
    future = bytearray(raw)
    future[8] = 9
    expect_refusal(spec, "a checkpoint of a later format",
                   lambda: model.load_checkpoint(bad("future.ckpt", bytes(future))), "format version 9")
    expect_refusal(spec, "a file that is not a checkpoint", lambda: model.load_checkpoint(bad("text.ckpt", b"hello")),
                   "not a jmvaec checkpoint")
    expect_refusal(spec, "a missing checkpoint", lambda: model.load_checkpoint(os.path.join(d, "none.ckpt")),
                   "cannot read")
    if any(not np.array_equal(a, numpy_of(p)) for a, p in zip(before, model.parameters())):
        fail(spec, "a refused checkpoint changed the parameters")
    mine = bad("notes.txt", b"my notes\n")
    expect_refusal(spec, "saving over a file that is not a checkpoint", lambda: model.save_checkpoint(mine),
                   "is not a jmvaec checkpoint")
    if open(mine, "rb").read() != b"my notes\n":
        fail(spec, "save_checkpoint changed a file that is not a checkpoint")
    expect_refusal(spec, "data of the wrong width", lambda: model.loss({"x": torch.zeros(3, 5)}), "takes [batch x 2]")
    expect_refusal(spec, "a missing modality", lambda: model.loss({}), "no data for modality 'x'")
    expect_refusal(spec, "an unknown family", lambda: model.posterior("y", {"x": torch.zeros(3, 2)}),
                   "no family of posteriors")
    # the C trainer refuses a checkpoint the module damaged in writing? (it cannot: the CRC is the same
    # zlib CRC-32): a module checkpoint with a flipped byte is refused by the C trainer too
    model.save_checkpoint(os.path.join(d, "mine.ckpt"))
    flipped = bytearray(open(os.path.join(d, "mine.ckpt"), "rb").read())
    flipped[-10] ^= 1
    p = run([trainer, "eval", "--checkpoint", bad("flipped.ckpt", bytes(flipped))] + data, ok=False)
    if p.returncode != 1 or "checksum mismatch" not in p.stdout:
        fail(spec, f"the C trainer took a damaged checkpoint of the module:\n{p.stdout}")


def write_other_data(d):
    path = os.path.join(d, "other_x.npy")
    np.save(path, np.random.default_rng(3).uniform(0, 1, (8, 6)).astype(np.float32))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jmvaec", default="./jmvaec")
    ap.add_argument("--work", required=True, help="a folder for the builds and files")
    ap.add_argument("--make-flags", default="", help="extra make arguments for the trainers (CFLAGS=...)")
    ap.add_argument("--jmvaec-flags", default="", help="extra jmvaec options for the C back end (--split-mflop 0)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--refusals", action="store_true")
    ap.add_argument("specs", nargs="+")
    args = ap.parse_args()
    args.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import shlex
    args.make_flags = shlex.split(args.make_flags)
    args.jmvaec_flags = shlex.split(args.jmvaec_flags)
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    for spec in args.specs:
        try:
            d, trainer, module = build(args, spec)
            before = len(failures)
            if args.refusals:
                check_refusals(args, spec, module, trainer, d)
                if len(failures) == before:
                    print(f"ok {spec}: refusals", flush=True)
                continue
            check_initialisation(args, spec, module, trainer, d)
            worst = check_equality(args, spec, module, trainer, d)
            check_checkpoints(args, spec, module, trainer, d)
            if len(failures) == before:
                print(f"ok {spec}: largest relative difference {worst:.2e}", flush=True)
        except Exception as e:  # a step that could not run: report it with the spec
            fail(spec, f"{type(e).__name__}: {e}")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
