#!/usr/bin/python3
"""PyTorch reference for wcmi's benchmark and parity checks.

The networks and training steps of ../shared/PAPER.md section 3-5, written the way a careful
PyTorch user would write them, with module attribute names chosen so that state_dict() keys are
the interchange names of PAPER.md section 3 (encoder.layer0.0.weight, dim_local.block_ln.1.weight,
classifier.layer1.0.bias, ...). bench/torch_parity.py imports the models and the safetensors
reader/writer from here.

Benchmark rows (one row per process, so peak RSS is per row):
  worst   one worst-case encoder training iteration: PGD-10 l-inf on the input maximizing the DV
          loss (BN in eval mode, gradient to x' through the encoder only, no random start,
          use-best off), then one Adam step (train mode) on encoder + local + global estimator
          minimizing the DV loss on the adversarial batch;
  normal  one normal encoder training iteration: forward + backward + Adam step on the clean batch;
  attack  PGD-10 against the cross-entropy of an MLP head on a frozen encoder (eval mode) plus the
          evaluation forward on the adversarial batch.
See bench/README.md for invocations and the FLOP-count derivation (--flops).

Run with Debian's /usr/bin/python3 (python3-torch); if the python3 on PATH lacks torch this script
re-executes itself under /usr/bin/python3. Exit status 77 means PyTorch is not installed (a test
runner can report the check as skipped).
"""
import argparse
import json
import math
import os
import resource
import statistics
import struct
import sys
import time

SKIP_EXIT = 77  # "PyTorch not installed": ctest's SKIP_RETURN_CODE convention


def pin_threads_from_argv():
    """Set the thread-count environment before torch (and its BLAS) load. Debian's torch calls
    OpenBLAS (openblas-pthread) for matmul/linear, and torch.set_num_threads does not reach
    OpenBLAS's own pool: without OPENBLAS_NUM_THREADS a "1-thread" run still uses every core
    inside GEMMs (seen here: cpu/wall 1.97 for torch.mm after set_num_threads(1))."""
    threads = "1"
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            threads = sys.argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    if threads.isdigit() and int(threads) > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = threads


def import_torch_or_reexec():
    """Return the torch module, re-executing under Debian's python3 when this one lacks it."""
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        debian = "/usr/bin/python3"
        here = os.path.realpath(sys.executable)
        if (os.path.exists(debian) and os.path.realpath(debian) != here
                and not os.environ.get("WCMI_TORCH_REEXEC")):
            os.environ["WCMI_TORCH_REEXEC"] = "1"
            os.execv(debian, [debian] + sys.argv)
        sys.stderr.write("%s: PyTorch not found (install Debian's python3-torch); skipped\n"
                         % os.path.basename(sys.argv[0]))
        sys.exit(SKIP_EXIT)


pin_threads_from_argv()
torch = import_torch_or_reexec()
import numpy as np  # noqa: E402  (after the torch check: Debian's numpy comes with it)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Datasets: shapes, normalization (PAPER.md section 3) and attack settings (section 4)
# ---------------------------------------------------------------------------------------------
DATASETS = {
    # name: (channels, side, mean, std, eps, step, steps)
    "fashion-mnist": (1, 28, (0.0,), (1.0,), 0.1, 0.02, 10),
    "mnist": (1, 28, (0.0,), (1.0,), 0.3, 0.1, 10),
    "cifar10": (3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 8 / 255, 0.01, 7),
    "svhn": (3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4 / 255, 0.005, 10),
}


def conv_out(side):
    """Output side of a k4 s2 p1 convolution."""
    return (side + 2 * 1 - 4) // 2 + 1


# ---------------------------------------------------------------------------------------------
# Networks (PAPER.md section 3). Attribute names give the interchange state_dict keys.
# ---------------------------------------------------------------------------------------------
class Normalize(nn.Module):
    """clamp to [0,1], then (x - mean) / std. mean/std are non-persistent: not in state_dict."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        # torch.clamp passes the gradient where 0 <= x <= 1 (both ends inclusive).
        return (x.clamp(0.0, 1.0) - self.mean) / self.std


def conv_bn_relu(cin, cout):
    """conv k4 s2 p1 without bias -> BatchNorm2d -> ReLU (indices 0, 1, 2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Encoder(nn.Module):
    """The "basic encoder": x (N, C, S, S) in [0,1] -> z (N, 64)."""

    def __init__(self, channels, side, mean, std, zdim=64):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.layer0 = conv_bn_relu(channels, 64)
        self.layer1 = conv_bn_relu(64, 128)
        self.layer2 = conv_bn_relu(128, 256)
        self.layer3 = nn.Flatten()  # no parameters: keeps layer4/layer5 numbering of the code
        s = conv_out(conv_out(conv_out(side)))
        self.layer4 = nn.Sequential(nn.Linear(256 * s * s, 1024), nn.BatchNorm1d(1024), nn.ReLU())
        self.layer5 = nn.Linear(1024, zdim)

    def forward(self, x):
        h = self.normalize(x)
        for layer in (self.layer0, self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            h = layer(h)
        return h


class Permute(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def add_residual_block(module, cin, hsize):
    """Give `module` the residual 1x1 block cin -> hsize as attributes block_nonlinear, block_ln,
    linear_shortcut (the names the interchange format uses for both estimators)."""
    module.block_nonlinear = nn.Sequential(
        nn.Conv2d(cin, hsize, 1, bias=False), nn.BatchNorm2d(hsize), nn.ReLU(),
        nn.Conv2d(hsize, hsize, 1, bias=True))
    # LayerNorm over channels at each location: NCHW -> NHWC -> LN(H) -> NCHW; LN is index 1.
    module.block_ln = nn.Sequential(Permute(0, 2, 3, 1), nn.LayerNorm(hsize), Permute(0, 3, 1, 2))
    module.linear_shortcut = nn.Conv2d(cin, hsize, 1, bias=False)
    with torch.no_grad():
        w = module.linear_shortcut.weight  # (hsize, cin, 1, 1)
        w.uniform_(-0.01, 0.01)
        if hsize >= cin:
            idx = torch.arange(cin)
            w[idx, idx, 0, 0] = 1.0


def residual_block(module, x):
    """x (N, cin, h, w) -> LayerNorm_H(nonlinear(x) + shortcut(x)): (N, H, h, w)."""
    return module.block_ln(module.block_nonlinear(x) + module.linear_shortcut(x))


class LocalEstimator(nn.Module):
    """x (N, C, S, S) in [0,1] -> local features Lx (N, H, L) with L = 7x7 (28) or 8x8 (32)."""

    def __init__(self, channels, mean, std, hsize):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.layer0 = conv_bn_relu(channels, 64)
        self.layer1 = conv_bn_relu(64, 128)
        add_residual_block(self, 128, hsize)

    def forward(self, x):
        h = self.layer1(self.layer0(self.normalize(x)))
        y = residual_block(self, h)
        return y.flatten(2)


class GlobalEstimator(nn.Module):
    """z (N, 64) -> Gz (N, H): the residual block applied to z as an (N, 64, 1, 1) map."""

    def __init__(self, zdim, hsize):
        super().__init__()
        add_residual_block(self, zdim, hsize)

    def forward(self, z):
        return residual_block(self, z.view(z.shape[0], z.shape[1], 1, 1)).flatten(1)


class MLPHead(nn.Module):
    """64 -> 200 -> Dropout 0.1 -> BN1d -> ReLU -> 200 -> 10."""

    def __init__(self, zdim=64, hidden=200, classes=10):
        super().__init__()
        self.layer0 = nn.Sequential(nn.Linear(zdim, hidden), nn.Dropout(0.1), nn.BatchNorm1d(hidden), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Linear(hidden, classes))

    def forward(self, z):
        return self.layer1(self.layer0(z))


class LinearHead(nn.Module):
    def __init__(self, zdim=64, classes=10):
        super().__init__()
        self.layer0 = nn.Linear(zdim, classes)

    def forward(self, z):
        return self.layer0(z)


class Model(nn.Module):
    """Container whose state_dict() keys are the interchange names (encoder., dim_local.,
    dim_global., classifier.). Parts not asked for are absent."""

    def __init__(self, dataset="fashion-mnist", hsize=2048, estimators=True, head="none"):
        super().__init__()
        channels, side, mean, std = DATASETS[dataset][:4]
        self.encoder = Encoder(channels, side, mean, std)
        if estimators:
            self.dim_local = LocalEstimator(channels, mean, std, hsize)
            self.dim_global = GlobalEstimator(64, hsize)
        if head == "mlp":
            self.classifier = MLPHead()
        elif head == "linear":
            self.classifier = LinearHead()
        elif head != "none":
            raise ValueError("head must be mlp, linear or none")


# ---------------------------------------------------------------------------------------------
# DV loss (PAPER.md section 2): diagonal excluded, max-shifted log-sum-exp
# ---------------------------------------------------------------------------------------------
def dv_loss(gz, lx):
    """gz: (N, H) global features; lx: (N, H, L) local features. Returns the scalar DV loss
    mean_loc(E_neg - E_pos) with u[i,j,loc] = <gz_i, lx_j[loc]>; MI estimate = -loss."""
    n, hsize, locs = lx.shape
    # u: (N, N*L) = gz (N, H) @ lx^T arranged (H, N*L) -> (N, N, L)
    u = torch.matmul(gz, lx.permute(1, 0, 2).reshape(hsize, n * locs)).view(n, n, locs)
    diag = torch.eye(n, dtype=torch.bool, device=u.device).unsqueeze(2)  # (N, N, 1)
    e_pos = torch.diagonal(u, dim1=0, dim2=1).mean(dim=1)  # (L,)
    # logsumexp is max-shifted; -inf on the diagonal excludes it (exp(-inf) = 0, zero gradient).
    off = u.masked_fill(diag, float("-inf")).reshape(n * n, locs)
    e_neg = torch.logsumexp(off, dim=0) - math.log(n * (n - 1))  # (L,)
    return (e_neg - e_pos).mean()


def dv_loss_of(model, x, grad_path="encoder"):
    """DV loss of the model on x. grad_path "encoder": the local estimator sees x.detach() (the
    authors' code; the gradient reaches x only through g); "both": it sees x (Algorithm 1)."""
    z = model.encoder(x)
    gz = model.dim_global(z)
    if grad_path == "encoder":
        # Same values as local(x.detach()); no_grad skips saving a graph nobody differentiates
        # when x is the attack variable. In a training step x carries no gradient anyway.
        if x.requires_grad:
            with torch.no_grad():
                lx = model.dim_local(x)
        else:
            lx = model.dim_local(x)
    elif grad_path == "both":
        lx = model.dim_local(x)
    else:
        raise ValueError("grad_path must be encoder or both")
    return dv_loss(gz, lx)


# ---------------------------------------------------------------------------------------------
# Attacks and training steps (PAPER.md sections 4-5)
# ---------------------------------------------------------------------------------------------
def pgd_linf(loss_fn, x, eps, step, steps):
    """PGD l-inf maximizing loss_fn(x'), no random start, no restarts, use-best off:
    x' <- clip_[0,1](clip_[x-eps, x+eps](x' + step * sign(grad))). Returns (x', first loss output)."""
    x_adv = x.detach().clone()
    lo, hi = x - eps, x + eps
    first = None
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss, aux = loss_fn(x_adv)
        if first is None:
            first = aux
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + step * grad.sign(), lo), hi).clamp_(0.0, 1.0)
    return x_adv.detach(), first


def set_mode(modules, train):
    for m in modules:
        m.train(train)


class Bench:
    """State for one benchmark row: model, optimizer, a fixed random batch."""

    def __init__(self, row, dataset, hsize, batch, seed, grad_path):
        channels, side, _, _, eps, step, steps = DATASETS[dataset]
        torch.manual_seed(seed)
        self.row, self.grad_path = row, grad_path
        self.eps, self.step, self.steps = eps, step, steps
        head = "mlp" if row == "attack" else "none"
        self.model = Model(dataset, hsize, estimators=(row != "attack"), head=head)
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.rand(batch, channels, side, side, generator=gen)  # inputs in [0,1)
        self.y = torch.randint(0, 10, (batch,), generator=gen)
        if row == "attack":
            # Frozen encoder and head: evaluation only.
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()
            self.opt = None
        else:
            self.nets = [self.model.encoder, self.model.dim_local, self.model.dim_global]
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.phase = {}

    def update(self, x):
        """One Adam step (train mode) on encoder + local + global minimizing the DV loss on x."""
        set_mode(self.nets, True)
        self.opt.zero_grad(set_to_none=True)
        loss = dv_loss_of(self.model, x, "encoder")
        loss.backward()
        self.opt.step()
        return loss.item()

    def worst_iteration(self):
        t0 = time.perf_counter()
        set_mode(self.nets, False)  # BN on running statistics while the attack searches

        def mi_loss(xa):
            loss = dv_loss_of(self.model, xa, self.grad_path)
            return loss, None

        x_adv, _ = pgd_linf(mi_loss, self.x, self.eps, self.step, self.steps)
        t1 = time.perf_counter()
        self.update(x_adv)
        t2 = time.perf_counter()
        self.phase = {"attack_s": t1 - t0, "update_s": t2 - t1}

    def normal_iteration(self):
        self.update(self.x)

    def attack_iteration(self):
        """PGD against CE of h(g(x)) on a frozen encoder, then the evaluation forward on x'.
        The natural logits come free from the attack's first forward (no random start: x' = x)."""
        model = self.model

        def ce_loss(xa):
            logits = model.classifier(model.encoder(xa))
            return F.cross_entropy(logits, self.y), logits.detach()

        t0 = time.perf_counter()
        x_adv, nat_logits = pgd_linf(ce_loss, self.x, self.eps, self.step, self.steps)
        t1 = time.perf_counter()
        with torch.no_grad():
            adv_logits = model.classifier(model.encoder(x_adv))
        self.nat_correct = int((nat_logits.argmax(1) == self.y).sum())
        self.adv_correct = int((adv_logits.argmax(1) == self.y).sum())
        t2 = time.perf_counter()
        self.phase = {"attack_s": t1 - t0, "eval_s": t2 - t1}

    def iteration(self):
        {"worst": self.worst_iteration, "normal": self.normal_iteration,
         "attack": self.attack_iteration}[self.row]()


# ---------------------------------------------------------------------------------------------
# Analytic FLOP count (GEMM FLOPs only; see bench/README.md)
# ---------------------------------------------------------------------------------------------
def gemm_layers(dataset, hsize, batch):
    """Every conv/linear as a GEMM (M rows, K reduction, O outputs): forward = 2*M*K*O FLOPs,
    and the input-gradient (dgrad) and weight-gradient (wgrad) GEMMs cost the same."""
    channels, side = DATASETS[dataset][:2]
    s1 = conv_out(side)
    s2 = conv_out(s1)
    s3 = conv_out(s2)
    n, h, locs = batch, hsize, s2 * s2
    enc = [("encoder.layer0.0", n * s1 * s1, channels * 16, 64),
           ("encoder.layer1.0", n * s2 * s2, 64 * 16, 128),
           ("encoder.layer2.0", n * s3 * s3, 128 * 16, 256),
           ("encoder.layer4.0", n, 256 * s3 * s3, 1024),
           ("encoder.layer5", n, 1024, 64)]
    loc = [("dim_local.layer0.0", n * s1 * s1, channels * 16, 64),
           ("dim_local.layer1.0", n * locs, 64 * 16, 128),
           ("dim_local.block_nonlinear.0", n * locs, 128, h),
           ("dim_local.block_nonlinear.3", n * locs, h, h),
           ("dim_local.linear_shortcut", n * locs, 128, h)]
    glb = [("dim_global.block_nonlinear.0", n, 64, h),
           ("dim_global.block_nonlinear.3", n, h, h),
           ("dim_global.linear_shortcut", n, 64, h)]
    head = [("classifier.layer0.0", n, 64, 200), ("classifier.layer1.0", n, 200, 10)]
    score = 2 * n * h * n * locs  # u = Gz (N,H) @ Lx^T (H, N*L); dGz and dLx cost the same
    return enc, loc, glb, head, score


def flop_count(dataset, hsize, batch, grad_path="encoder", steps=None):
    enc, loc, glb, head, score = gemm_layers(dataset, hsize, batch)
    if steps is None:
        steps = DATASETS[dataset][6]

    def fwd(layers):
        return sum(2 * m * k * o for _, m, k, o in layers)

    # dgrad/wgrad GEMMs have the same M*K*O as the forward, so their counts equal fwd(...).
    # The attack needs dx' so the first conv's dgrad is counted; a training step does not.
    attack_step = fwd(enc) + fwd(glb) + fwd(loc) + score  # forward
    attack_step += score + fwd(glb) + fwd(enc)  # backward: dGz, global dgrad, encoder dgrad
    if grad_path == "both":
        attack_step += score + fwd(loc)  # dLx and local dgrad down to x'
    update = fwd(enc) + fwd(glb) + fwd(loc) + score  # forward
    update += 2 * score  # dGz, dLx
    update += fwd(enc) + fwd(glb) + fwd(loc)  # wgrad of every layer
    update += fwd(enc[1:]) + fwd(glb) + fwd(loc[1:])  # dgrad except the two first convs
    head_attack_step = 2 * (fwd(enc) + fwd(head))  # forward + dgrad (incl. first conv)
    head_eval = fwd(enc) + fwd(head)
    per_layer = {name: 2 * m * k * o for name, m, k, o in enc + loc + glb + head}
    per_layer["dv_score"] = score
    return {
        "dataset": dataset, "hsize": hsize, "batch": batch, "grad_path": grad_path, "steps": steps,
        "forward_flops_per_layer": per_layer,
        "worst": {"attack_step": attack_step, "attack": steps * attack_step, "update": update,
                  "total": steps * attack_step + update},
        "normal": {"total": update},
        "attack": {"attack_step": head_attack_step, "eval": head_eval,
                   "total": steps * head_attack_step + head_eval},
    }


# ---------------------------------------------------------------------------------------------
# safetensors (own reader/writer: 8-byte LE header length, JSON header, raw little-endian data)
# ---------------------------------------------------------------------------------------------
ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
NP_TO_ST = {np.dtype(v): k for k, v in ST_DTYPES.items()}


def read_safetensors(path):
    """Returns (dict name -> numpy array (copies), metadata dict). Checks every offset."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (hlen,) = struct.unpack("<Q", blob[:8])
    if hlen > len(blob) - 8:
        raise ValueError("%s: header length %d exceeds file size %d" % (path, hlen, len(blob)))
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        dtype = ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * np.dtype(dtype).itemsize:
            raise ValueError("%s: tensor %s has bad data_offsets %s" % (path, name, info["data_offsets"]))
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(dtype).newbyteorder("<"), count=count)
        tensors[name] = arr.astype(dtype).reshape(shape)
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array (F32/F64/I32/I64). Entries sorted by name, data laid out in
    that order; the JSON header is padded with spaces to a multiple of 8 bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.array(tensors[name], copy=False, order="C")  # keeps 0-d shapes (num_batches_tracked)
        st = NP_TO_ST.get(arr.dtype.newbyteorder("="))
        if st is None:
            raise ValueError("tensor %s: unsupported numpy dtype %s" % (name, arr.dtype))
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def state_dict_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Benchmark CLI
# ---------------------------------------------------------------------------------------------
def peak_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def run_bench(args):
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    bench = Bench(args.row, args.dataset, args.hsize, args.batch, args.seed, args.grad_path)
    times, cpu_times, phases = [], [], []
    with torch.autograd.set_grad_enabled(True):
        for i in range(args.warmup + args.iters):
            c0, t0 = time.process_time(), time.perf_counter()
            bench.iteration()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times.append(dt)
                cpu_times.append(dc)
                phases.append(dict(bench.phase))
            if args.verbose:
                sys.stderr.write("iter %d%s: %.4f s\n" % (i, " (warm-up)" if i < args.warmup else "", dt))
    result = {
        "impl": "pytorch", "torch_version": torch.__version__, "row": args.row, "dataset": args.dataset,
        "hsize": args.hsize if args.row != "attack" else None, "batch": args.batch,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "grad_path": args.grad_path if args.row == "worst" else None,
        "warmup": args.warmup, "iters": args.iters,
        "median_s": statistics.median(times), "mean_s": statistics.fmean(times),
        "min_s": min(times), "max_s": max(times), "times_s": times,
        # process CPU seconds per iteration: cpu/wall near `threads` means the threads really ran
        "median_cpu_s": statistics.median(cpu_times),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")},
        "loadavg_1min": os.getloadavg()[0],
        "peak_rss_kib": peak_rss_kib(), "peak_rss_mib": peak_rss_kib() / 1024.0,
    }
    for key in sorted(phases[0]) if phases and phases[0] else []:
        result["median_" + key] = statistics.median(p[key] for p in phases)
    flops = flop_count(args.dataset, args.hsize, args.batch, args.grad_path)[args.row]["total"]
    result["gemm_flops"] = flops
    result["achieved_gflops"] = flops / result["median_s"] / 1e9
    if args.row == "attack":
        result["nat_correct"], result["adv_correct"] = bench.nat_correct, bench.adv_correct
    if args.json:
        print(json.dumps(result))
    else:
        print("pytorch %s row=%s H=%s threads=%d: median %.4f s/iter (min %.4f, max %.4f, %d iters), "
              "%.1f GFLOP/s, cpu/wall %.2f, peak RSS %.1f MiB, load %.1f" % (
                  torch.__version__, args.row, result["hsize"], result["threads"], result["median_s"],
                  result["min_s"], result["max_s"], args.iters, result["achieved_gflops"],
                  result["median_cpu_s"] / result["median_s"], result["peak_rss_mib"], result["loadavg_1min"]))


def main(argv=None):
    p = argparse.ArgumentParser(description="PyTorch reference timings for wcmi (bench/README.md)")
    p.add_argument("--row", choices=["worst", "normal", "attack"], default="worst")
    p.add_argument("--hsize", type=int, default=2048, help="estimator width H (2048 or 256)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10, help="timed iterations (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist")
    p.add_argument("--grad-path", choices=["encoder", "both"], default="encoder",
                   help="worst row: gradient to x' through the encoder only (code) or both (Alg. 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--flops", action="store_true", help="print the analytic GEMM FLOP counts and exit")
    p.add_argument("--verbose", action="store_true", help="per-iteration times on stderr")
    args = p.parse_args(argv)
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.batch < 2 or args.hsize < 1:
        p.error("need --threads >= 1, --iters >= 1, --warmup >= 0, --batch >= 2, --hsize >= 1")
    if args.flops:
        print(json.dumps(flop_count(args.dataset, args.hsize, args.batch, args.grad_path), indent=1))
        return 0
    run_bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
