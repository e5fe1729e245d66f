# ----------------------------------------------------- jmvaec's PyTorch runtime --
# The part of every module `jmvaec --emit=torch` writes that does not depend
# on the spec (runtime/jv_torch.py in jmvaec's tree, copied into each module
# whole): jmvaec checkpoints read and written, the C trainer's
# initialisation, the networks' layers, and what the model class above and
# below shares. It reads the constants above (MODEL, FINGERPRINT,
# MODALITIES, LATENTS, TENSORS, N_PARAMS, TERMS, HYPERS, TRAIN, FAMILIES).


class CheckpointError(Exception):
    """A jmvaec checkpoint that cannot be read or written, or that belongs to
    another model. The message names the file and the problem."""


_MAGIC = b"JMVAECK1"
_VERSION = 4  # the format written; versions 1 to 3 are read too
_MAX_MODALITIES = 32  # the places of the drop fractions in format 4
_MAX_SUMS = 257
_ATTRIBUTE = {t[0]: t[5] for t in TENSORS}  # a tensor's spec name -> its attribute path


class _Reader:
    """Little-endian fields from a checkpoint's bytes, reporting truncation."""

    def __init__(self, raw, path):
        self.raw, self.path, self.pos = raw, path, 0

    def take(self, n, what):
        if n > len(self.raw) - self.pos:
            raise CheckpointError(f"{self.path}: truncated: expected {n} more bytes ({what}), "
                                  f"only {len(self.raw) - self.pos} remain")
        self.pos += n
        return self.raw[self.pos - n:self.pos]

    def u32(self, what):
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what):
        return struct.unpack("<Q", self.take(8, what))[0]

    def string(self, what):
        return self.take(self.u32(what), what).decode("utf-8", "replace")


def read_checkpoint(path):
    """Reads a jmvaec checkpoint (formats 1 to 4) of any model, checking its
    structure and checksum as the C trainer does. Returns a dict: version,
    fingerprint, model, tensors [(name, rows, cols, offset)], params, m, v
    (float32 arrays of the parameter block, Adam's first and second
    moments), rng_seed, rng_position, epoch (completed), step (optimiser
    steps taken), and the progress within the next epoch: batches,
    batch_size, n_train, chunks and sums (the loss and terms summed over
    those batches), and the choice of the training examples: complete_only
    (train --complete-only) and drop (train --drop: the fraction hidden, per
    modality in the model's order, 32 places). Raises CheckpointError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) < 8 or raw[:8] != _MAGIC:
        raise CheckpointError(f"{path}: not a jmvaec checkpoint (bad magic number)")
    r = _Reader(raw, path)
    r.take(8, "magic")
    version = r.u32("version")
    r.u32("reserved field")
    if not 1 <= version <= _VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, but this module reads "
                              f"versions 1 to {_VERSION}")
    ck = {"version": version, "fingerprint": r.u64("model fingerprint"), "model": r.string("model name")}
    count = r.u32("tensor count")
    ck["tensors"] = [(r.string("tensor name"), r.u32("tensor rows"), r.u32("tensor columns"),
                      r.u64("tensor offset")) for _ in range(count)]
    n = r.u64("parameter count")
    head, body = r.pos, len(raw) - r.pos
    # the tail: the generator and progress (32 bytes), then from version 2 on
    # the progress within an epoch, whose count of sums the file's size gives
    progress = 36 + 8 + 8 * _MAX_MODALITIES if version >= 4 else 36 if version >= 3 else 28
    tail = 32
    if version >= 2:
        fixed = 32 + progress + 4
        tail = 32 + progress
        if 12 * n <= body and body - 12 * n >= fixed:
            rest = body - 12 * n - fixed
            if rest % 8 or rest // 8 > _MAX_SUMS:
                raise CheckpointError(f"{path}: the progress at its end is damaged ({rest} bytes of sums)")
            tail += rest
    left = body
    for what, size in (("parameters", 4 * n), ("Adam m", 4 * n), ("Adam v", 4 * n),
                       ("generator and progress", tail), ("checksum", 4)):
        if size > left:
            raise CheckpointError(f"{path}: truncated: expected {size} more bytes ({what}), only {left} remain")
        left -= size
    if left:
        raise CheckpointError(f"{path}: {left} unexpected bytes after the checksum (file damaged)")
    if zlib.crc32(raw[:-4]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
        raise CheckpointError(f"{path}: checksum mismatch (file damaged)")
    for i, key in enumerate(("params", "m", "v")):
        ck[key] = np.frombuffer(raw, "<f4", n, head + 4 * n * i).astype(np.float32)
    at = head + 12 * n
    ck["rng_seed"], ck["rng_position"], ck["epoch"], ck["step"] = struct.unpack_from("<QQqq", raw, at)
    ck.update(batches=0, batch_size=0, n_train=0, chunks=0, sums=[], complete_only=0, drop=[0.0] * _MAX_MODALITIES)
    if tail > 32:
        at += 32
        ck["batches"], ck["batch_size"], ck["n_train"] = struct.unpack_from("<qqq", raw, at)
        if version >= 3:
            ck["chunks"] = struct.unpack_from("<q", raw, at + 24)[0]
        if version >= 4:
            ck["complete_only"] = struct.unpack_from("<Q", raw, at + 32)[0]
            ck["drop"] = list(struct.unpack_from(f"<{_MAX_MODALITIES}d", raw, at + 40))
            if ck["complete_only"] > 1 or not all(0 <= d < 1 for d in ck["drop"]):
                raise CheckpointError(f"{path}: the choice of training examples at its end is damaged")
        sums = struct.unpack_from("<I", raw, at + progress - 4)[0]
        if sums != (tail - 32 - progress) // 8:
            raise CheckpointError(f"{path}: the progress at its end is damaged (its count of sums)")
        ck["sums"] = list(struct.unpack_from(f"<{sums}d", raw, at + progress))
    return ck


def check_checkpoint(path, ck):
    """Raises CheckpointError unless ck (read_checkpoint's) is a checkpoint of
    this model: its name, fingerprint and tensor table."""
    if ck["fingerprint"] != FINGERPRINT:
        raise CheckpointError(f"{path}: checkpoint of model '{ck['model']}' (fingerprint {ck['fingerprint']:016x}), "
                              f"not of '{MODEL}' (fingerprint {FINGERPRINT:016x})")
    if ck["model"] != MODEL:
        raise CheckpointError(f"{path}: checkpoint of model '{ck['model']}', not of '{MODEL}'")
    if len(ck["tensors"]) != len(TENSORS):
        raise CheckpointError(f"{path}: the checkpoint has {len(ck['tensors'])} parameter tensors, "
                              f"model '{MODEL}' has {len(TENSORS)}")
    for i, (have, want) in enumerate(zip(ck["tensors"], TENSORS)):
        if tuple(have) != tuple(want[:4]):
            raise CheckpointError(f"{path}: tensor {i} is '{have[0]}' ({have[1]} x {have[2]} at offset {have[3]}) "
                                  f"in the checkpoint, but '{want[0]}' ({want[1]} x {want[2]} at offset {want[3]}) "
                                  f"in model '{MODEL}'")
    if len(ck["params"]) != N_PARAMS:
        raise CheckpointError(f"{path}: the checkpoint holds {len(ck['params'])} parameters, "
                              f"model '{MODEL}' has {N_PARAMS}")


def _string(s):
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def write_checkpoint(path, ck):
    """Writes ck (the fields read_checkpoint returns, for this model) as a
    checkpoint of format 4, the bytes the C trainer writes for the same
    state. Replaces only a file that is a jmvaec checkpoint; written to a
    temporary file, synced and renamed, so a failure leaves what was there."""
    if os.path.lexists(path):
        ok = os.path.isfile(path)
        if ok:
            with open(path, "rb") as f:
                ok = f.read(8) == _MAGIC
        if not ok:
            raise CheckpointError(f"{path} exists and is not a jmvaec checkpoint; it is left as it is "
                                  f"(remove it or pick another path)")
    blocks = []
    for key in ("params", "m", "v"):
        a = np.ascontiguousarray(ck[key], dtype="<f4").reshape(-1)
        if a.size != N_PARAMS:
            raise CheckpointError(f"{path}: '{key}' holds {a.size} values, model '{MODEL}' has {N_PARAMS}")
        blocks.append(a.tobytes())
    sums = list(ck.get("sums") or [])
    if not 0 < len(sums) <= _MAX_SUMS:
        sums = []
    head = (_MAGIC + struct.pack("<II", _VERSION, 0) + struct.pack("<Q", FINGERPRINT) + _string(MODEL)
            + struct.pack("<I", len(TENSORS))
            + b"".join(_string(t[0]) + struct.pack("<IIQ", t[1], t[2], t[3]) for t in TENSORS)
            + struct.pack("<Q", N_PARAMS))
    tail = struct.pack("<QQqqqqqq", ck["rng_seed"], ck["rng_position"], ck["epoch"], ck["step"],
                       ck.get("batches", 0), ck.get("batch_size", 0), ck.get("n_train", 0), ck.get("chunks", 0))
    drop = list(ck.get("drop") or [])[:_MAX_MODALITIES]
    drop += [0.0] * (_MAX_MODALITIES - len(drop))
    tail += struct.pack("<Q", 1 if ck.get("complete_only") else 0) + struct.pack(f"<{_MAX_MODALITIES}d", *drop)
    tail += struct.pack("<I", len(sums)) + struct.pack(f"<{len(sums)}d", *sums)
    crc = zlib.crc32(tail, zlib.crc32(blocks[2], zlib.crc32(blocks[1], zlib.crc32(blocks[0], zlib.crc32(head)))))
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for part in (head, *blocks, tail, struct.pack("<I", crc)):
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise CheckpointError(f"{path}: cannot write: {e.strerror}") from None


# The C trainer's generator (runtime/jv_model.h): Philox4x32-10, a pure
# function of (seed, stream, index), so that init_parameters gives the C
# trainer's parameters to the bit.
_M32 = np.uint64(0xFFFFFFFF)


def _philox(seed, stream, index):
    c0, c1 = index & _M32, index >> np.uint64(32)
    c2 = np.full_like(index, stream & 0xFFFFFFFF)
    c3 = np.full_like(index, stream >> 32)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c2 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)
        c1, c3 = p1 & _M32, p0 & _M32
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


def uniform_at(seed, stream, count):
    """The first `count` uniforms in (0, 1) of a stream of the C trainer's
    generator (jv_uniform_at), as float64."""
    r = _philox(seed, stream, np.arange(count, dtype=np.uint64))
    bits = ((r[0] << np.uint64(21)) ^ (r[1] >> np.uint64(11))) & np.uint64((1 << 53) - 1)
    return (bits.astype(np.float64) + 0.5) / 9007199254740992.0


class Layer(torch.nn.Module):
    """One affine map of a network, x W + b, with W [fan_in x fan_out] as in
    the C code and jmvaec checkpoints. Several inputs are concatenated (they
    read W's row blocks in order)."""

    def __init__(self, fan_in, fan_out, dtype=torch.float32, bias=True):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(fan_in, fan_out, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.zeros(fan_out, dtype=dtype)) if bias else None

    def forward(self, *inputs):
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
        return x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)


class Conv(torch.nn.Module):
    """A 2-D convolution of the image [c, h, w] each row holds (flat, as
    every value of the model), or a transposed one: F.conv2d or
    F.conv_transpose2d, with PyTorch's weights ([out, in, k, k]; transposed
    [in, out, k, k]) as jmvaec checkpoints store them. Gives flat rows."""

    def __init__(self, in_shape, out_channels, kernel, stride, pad, transposed, dtype=torch.float32, bias=True):
        super().__init__()
        self.in_shape, self.stride, self.pad, self.transposed = tuple(in_shape), stride, pad, transposed
        shape = (in_shape[0], out_channels) if transposed else (out_channels, in_shape[0])
        self.weight = torch.nn.Parameter(torch.zeros(*shape, kernel, kernel, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels, dtype=dtype)) if bias else None

    def forward(self, x):
        x = x.reshape(-1, *self.in_shape)
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.pad)
        else:
            y = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.pad)
        return y.flatten(1)


class Net(torch.nn.Module):
    """A network of the spec: its layers h1, h2, ... and its head, in order."""

    def __init__(self, **layers):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class ModelBase(torch.nn.Module):
    """What every generated model shares: its inputs, noise and weights,
    initialisation, and checkpoints."""

    def __init__(self):
        super().__init__()
        self.checkpoint_state = None  # what load_checkpoint read besides the parameters
        self.seed = TRAIN["seed"]  # of init_parameters, and of the training run a fresh checkpoint starts

    # ------------------------------------------------------------ parameters --
    def parameter_of(self, name):
        """The Parameter of tensor `name`, a name of TENSORS ("enc_x.h1.weight")."""
        if name not in _ATTRIBUTE:
            raise KeyError(f"{MODEL}: no parameter tensor '{name}'")
        return self.get_parameter(_ATTRIBUTE[name])

    def init_parameters(self, seed=None):
        """The C trainer's initialisation, to the bit: every weight
        Glorot-uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
        element i of tensor t from position i of stream t of the generator
        seeded with `seed` (default: the spec's); every bias 0."""
        seed = TRAIN["seed"] if seed is None else int(seed)
        self.seed = seed
        with torch.no_grad():
            for t, (name, rows, cols, _, is_bias, _) in enumerate(TENSORS):
                p = self.parameter_of(name)
                if is_bias:
                    p.zero_()
                    continue
                # a convolution's fans are (in + out) k k (its [rows x cols] is [out x in k k])
                fans = (p.shape[0] + p.shape[1]) * p.shape[2] * p.shape[3] if p.dim() == 4 else rows + cols
                a = math.sqrt(6.0 / fans)
                w = (2 * uniform_at(seed, t, rows * cols) - 1) * a
                p.copy_(torch.from_numpy(w.reshape(p.shape)))

    def make_optimizer(self):
        """torch.optim.Adam with the spec's settings (TRAIN: lr, beta1, beta2,
        eps), whose moments load_checkpoint and save_checkpoint carry. The C
        trainer also scales the gradient to norm TRAIN["clip"] when it is
        longer (torch.nn.utils.clip_grad_norm_ does nearly the same)."""
        return torch.optim.Adam(self.parameters(), lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]),
                                eps=TRAIN["eps"])

    def hyper_values(self, epoch_progress):
        """Each hyperparameter's value after `epoch_progress` epochs of
        training (batch b of n in epoch e is at e - 1 + b / n), warm-ups
        included, as the C trainer sets them: a dict for loss(hyper=...)."""
        values = {}
        for name, (value, start, epochs) in HYPERS.items():
            if epochs > 0:
                value = start + (value - start) * min(max(epoch_progress / epochs, 0.0), 1.0)
            values[name] = value
        return values

    def draw_noise(self, batch, generator=None):
        """Standard normal noise for every latent: {latent: [batch x size]}."""
        p = next(self.parameters())
        return {name: torch.randn(batch, size, generator=generator, dtype=p.dtype, device=p.device)
                for name, size in LATENTS.items()}

    def draw_step_noise(self, batch, generator=None):
        """Standard normal noise for every draw of the training step (DRAWS):
        {key: [batch * SAMPLES x size]}, for loss()."""
        p = next(self.parameters())
        return {key: torch.randn(batch * SAMPLES, size, generator=generator, dtype=p.dtype, device=p.device)
                for key, (latent, size) in DRAWS.items()}

    def posterior(self, given, data, noise=None):
        """The family of posteriors conditioned on the modalities `given`
        (names: ("x", "w") or "x,w"): samples every latent from it and
        returns ({latent: [batch x size]}, log q of the sample [batch]); with
        noise None, each posterior's mean."""
        names = given.split(",") if isinstance(given, str) else list(given)
        key = tuple(m for m in MODALITIES if m in names)
        if "posterior_given" in FAMILIES.values() and len(key) == len(names) and self.covers(set(key)):
            return self.posterior_given(data, set(key), noise)
        if key not in FAMILIES or len(key) != len(names):
            families = "; ".join(", ".join(k) for k in FAMILIES)
            raise KeyError(f"{MODEL}: no family of posteriors conditioned on exactly {', '.join(names)} "
                           f"(the families: {families})")
        return getattr(self, FAMILIES[key])(data, noise)

    @staticmethod
    def covers(given):
        """Whether every latent built from experts has a posterior given the set of
        modality names `given`: it must be a union of the modalities of its experts."""
        if not given:
            return False
        for experts in EXPERTS.values():
            made = set()
            for read in experts:
                if set(read) <= given:
                    made |= set(read)
            if made != given:
                return False
        return bool(EXPERTS)

    # ---------------------------------------------------------------- inputs --
    def _input(self, data, name, batch=None):
        if data is None or name not in data:
            raise KeyError(f"{MODEL}: no data for modality '{name}'")
        size, likelihood = MODALITIES[name][0], MODALITIES[name][1]
        x = torch.as_tensor(data[name])
        if likelihood == "categorical" and x.dim() == 1 and not x.is_floating_point():
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= size):
                raise ValueError(f"{MODEL}: a class of modality '{name}' is out of range 0..{size - 1}")
            x = F.one_hot(x.long(), size)
        p = next(self.parameters())
        x = x.to(dtype=p.dtype, device=p.device)
        if x.dim() != 2 or x.shape[1] != size:
            raise ValueError(f"{MODEL}: modality '{name}' takes [batch x {size}] values, not {list(x.shape)}")
        return self._rows(x, f"modality '{name}'", batch)

    def _rows(self, x, what, batch):
        if batch is not None and x.shape[0] != batch:
            raise ValueError(f"{MODEL}: {what} has {x.shape[0]} rows, the batch {batch}")
        return x

    def _latent(self, values, name, batch=None):
        if values is None or name not in values:
            raise KeyError(f"{MODEL}: no value for latent '{name}'")
        p = next(self.parameters())
        z = torch.as_tensor(values[name]).to(dtype=p.dtype, device=p.device)
        if z.dim() != 2 or z.shape[1] != LATENTS[name]:
            raise ValueError(f"{MODEL}: latent '{name}' takes [batch x {LATENTS[name]}] values, not {list(z.shape)}")
        return self._rows(z, f"latent '{name}'", batch)

    def _noise(self, noise, key, size, rows, draw):
        """noise[key], [rows x size]; when noise is None, fresh noise if `draw`,
        else None (the mean)."""
        p = next(self.parameters())
        if noise is None:
            if not draw:
                return None
            return torch.randn(rows, size, dtype=p.dtype, device=p.device)
        if key not in noise:
            raise KeyError(f"{MODEL}: no noise '{key}'")
        x = torch.as_tensor(noise[key]).to(dtype=p.dtype, device=p.device).reshape(rows, size)
        return x

    def _hyper(self, hyper, name):
        return HYPERS[name][0] if hyper is None or name not in hyper else hyper[name]

    def _which(self, which, data):
        if which is None:
            which = [m for m in MODALITIES if MODALITIES[m][3] and data is not None and m in data]
        which = set(which.split(",") if isinstance(which, str) else which)
        for m in which:
            if m not in MODALITIES:
                raise KeyError(f"{MODEL}: no modality '{m}'")
        return which

    # ----------------------------------------------------------- checkpoints --
    def load_checkpoint(self, path, optimizer=None):
        """Loads a jmvaec checkpoint (of the C trainer, or save_checkpoint's):
        the parameters, and Adam's moments and step into `optimizer` (a
        torch.optim.Adam over this model's parameters, make_optimizer's) when
        given. Refuses a damaged checkpoint or one of another spec or version
        (CheckpointError), changing nothing. Returns what it holds
        (read_checkpoint's dict), which save_checkpoint writes back."""
        ck = read_checkpoint(path)
        check_checkpoint(path, ck)
        if optimizer is not None:
            self._optimizer_params(optimizer)
        with torch.no_grad():
            for name, rows, cols, offset, _, _ in TENSORS:
                p = self.parameter_of(name)
                p.copy_(torch.from_numpy(ck["params"][offset:offset + rows * cols]).reshape(p.shape))
        if optimizer is not None:
            for name, rows, cols, offset, _, _ in TENSORS:
                p = self.parameter_of(name)
                block = slice(offset, offset + rows * cols)
                optimizer.state[p] = {
                    "step": torch.tensor(float(ck["step"])),
                    "exp_avg": torch.from_numpy(ck["m"][block]).reshape(p.shape).to(p.device, p.dtype, copy=True),
                    "exp_avg_sq": torch.from_numpy(ck["v"][block]).reshape(p.shape).to(p.device, p.dtype, copy=True),
                }
        self.checkpoint_state = ck
        return ck

    def save_checkpoint(self, path, optimizer=None):
        """Writes a jmvaec checkpoint (format 4) that the C trainer resumes
        (train --resume) or evaluates: the parameters as float32; Adam's
        moments and step from `optimizer` when given, else those
        load_checkpoint read, else zeros at step 0; and the rest of the
        training state load_checkpoint read, else a run's start (epoch 0,
        init_parameters' seed). Loading a checkpoint and saving it gives its bytes
        back. Replaces only a jmvaec checkpoint."""
        ck = dict(self.checkpoint_state) if self.checkpoint_state else {
            "m": np.zeros(N_PARAMS, np.float32), "v": np.zeros(N_PARAMS, np.float32),
            "rng_seed": self.seed, "rng_position": 0, "epoch": 0, "step": 0}
        params = np.zeros(N_PARAMS, np.float32)
        m, v = np.array(ck["m"], np.float32), np.array(ck["v"], np.float32)
        if optimizer is not None:
            self._optimizer_params(optimizer)
        for name, rows, cols, offset, _, _ in TENSORS:
            p = self.parameter_of(name)
            block = slice(offset, offset + rows * cols)
            params[block] = p.detach().to("cpu", torch.float32).reshape(-1).numpy()
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            if "exp_avg" in state:
                m[block] = state["exp_avg"].detach().to("cpu", torch.float32).reshape(-1).numpy()
                v[block] = state["exp_avg_sq"].detach().to("cpu", torch.float32).reshape(-1).numpy()
                ck["step"] = int(float(state["step"]))
        ck.update(params=params, m=m, v=v)
        write_checkpoint(path, ck)

    def _optimizer_params(self, optimizer):
        mine = {id(p) for p in self.parameters()}
        theirs = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not mine <= theirs:
            raise ValueError(f"{MODEL}: the optimizer does not hold every parameter of this model "
                             f"(make it with make_optimizer())")
