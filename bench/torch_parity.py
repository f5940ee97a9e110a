#!/usr/bin/python3
"""Same-weights parity between wcmi and the PyTorch reference (bench/torch_ref.py).

Two commands (full invocations in bench/README.md):

  run   --weights M.safetensors --input X.npy --out DIR [--dtype float64|float32] [--bn eval|train]
        Loads a safetensors file written by wcmi into the PyTorch modules with
        load_state_dict(strict=True), runs them on X (N, C, S, S) in [0,1] and writes to DIR:
          z.npy (N, 64)           encoder output g(x)
          local.npy (N, H, h, w)  local estimator features L(x)
          global.npy (N, H)       global estimator features G(g(x))
          dv_loss.npy ()          DV loss (MI estimate = -loss), diagonal excluded
          grad_encoder.npy        dLoss/dx, local estimator input detached (the code's path)
          grad_both.npy           dLoss/dx through encoder and local estimator (Algorithm 1)
          logits.npy (N, 10)      only when the file holds a classifier head
          reference.safetensors   all of the above (and the input as "input"), as F32
        and prints a JSON summary on stdout.

  make  --out DIR [--hsize 32] [--batch 8] [--seed 0] [--head mlp|linear|none] [--dataset ...]
        Builds a random-weight model in PyTorch (default init, then BN/LN affine parameters and
        running statistics made non-trivial so eval mode and scale handling are exercised),
        saves DIR/model.safetensors (own writer, entries sorted, header padded to 8 bytes),
        DIR/input.npy and the reference outputs of `run` (same file names).
        With --param-grads, also DIR/param_grads.safetensors: d(DV loss)/d(parameter) under
        the chosen BN mode, named like the parameters.

Reference outputs are computed in float64 by default (the weights and the input are float32
values, promoted exactly), so the comparison measures wcmi's own float32 error.

Exit status: 0 ok, 1 runtime failure (bad file...), 2 usage error, 77 PyTorch not installed.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref as ref  # noqa: E402  (re-executes under /usr/bin/python3 or exits 77 without torch)

torch, np = ref.torch, ref.np

ESTIMATOR_PREFIXES = ("dim_local.", "dim_global.")


def infer_architecture(tensors, metadata, dataset_arg):
    """(dataset, hsize, estimators, head) from tensor names/shapes and metadata."""
    if "encoder.layer0.0.weight" not in tensors:
        raise ValueError("no encoder.layer0.0.weight: not a wcmi/interchange model file")
    channels = tensors["encoder.layer0.0.weight"].shape[1]
    dataset = dataset_arg or str(metadata.get("dataset", "")).lower().replace("_", "-")
    if dataset not in ref.DATASETS:
        dataset = "fashion-mnist" if channels == 1 else "cifar10"
    if ref.DATASETS[dataset][0] != channels:
        raise ValueError("dataset %s has %d channels but encoder.layer0.0.weight has %d"
                         % (dataset, ref.DATASETS[dataset][0], channels))
    estimators = any(k.startswith(ESTIMATOR_PREFIXES) for k in tensors)
    hsize = tensors["dim_global.block_nonlinear.0.weight"].shape[0] if estimators else None
    if "classifier.layer1.0.weight" in tensors:
        head = "mlp"
    elif "classifier.layer0.weight" in tensors:
        head = "linear"
    else:
        head = "none"
    return dataset, hsize, estimators, head


def load_model(path, dataset_arg=None):
    tensors, metadata = ref.read_safetensors(path)
    dataset, hsize, estimators, head = infer_architecture(tensors, metadata, dataset_arg)
    model = ref.Model(dataset, hsize or 1, estimators=estimators, head=head)
    state = {k: torch.from_numpy(np.array(v, order="C")) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model, dict(dataset=dataset, hsize=hsize, estimators=estimators, head=head)


def input_gradient(model, x, grad_path):
    """(loss, dLoss/dx) for one gradient path."""
    xg = x.detach().clone().requires_grad_(True)
    loss = ref.dv_loss_of(model, xg, grad_path)
    (grad,) = torch.autograd.grad(loss, xg)
    return loss.detach(), grad


def reference_outputs(model, x, bn_mode):
    """Every output the C side compares, as numpy arrays in the model's dtype.
    In train mode each forward updates running statistics; the outputs use batch statistics and
    do not depend on that, so the model is restored afterwards from a copy of its state."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(bn_mode == "train")
    out = {}
    with torch.no_grad():
        z = model.encoder(x)
        out["z"] = z
        if hasattr(model, "classifier"):
            if bn_mode == "train":
                # Dropout would make train-mode logits random: compare logits in eval mode only.
                model.classifier.eval()
            out["logits"] = model.classifier(z)
        if hasattr(model, "dim_local"):
            lx = model.dim_local(x)  # (N, H, L)
            side = int(round(lx.shape[2] ** 0.5))
            out["local"] = lx.view(lx.shape[0], lx.shape[1], side, side)
            out["global"] = model.dim_global(z)
            out["dv_loss"] = ref.dv_loss(out["global"], lx)
    if hasattr(model, "dim_local"):
        loss_e, out["grad_encoder"] = input_gradient(model, x, "encoder")
        loss_b, out["grad_both"] = input_gradient(model, x, "both")
        for name, loss in (("encoder", loss_e), ("both", loss_b)):
            if not torch.allclose(loss, out["dv_loss"], rtol=1e-6, atol=1e-9):
                raise RuntimeError("DV loss differs between passes (%s path): %r vs %r"
                                   % (name, float(loss), float(out["dv_loss"])))
    model.load_state_dict(saved, strict=True)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def param_gradients(model, x, bn_mode):
    """d(DV loss)/d(parameter) for every parameter (the local estimator sees x; x has no grad)."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(bn_mode == "train")
    model.zero_grad(set_to_none=True)
    loss = ref.dv_loss_of(model, x.detach(), "encoder")
    loss.backward()
    grads = {name: p.grad.detach().cpu().numpy() for name, p in model.named_parameters()
             if p.grad is not None}
    model.load_state_dict(saved, strict=True)
    return grads


def write_outputs(outdir, x_np, outputs, extra_meta):
    os.makedirs(outdir, exist_ok=True)
    for name, arr in outputs.items():
        np.save(os.path.join(outdir, name + ".npy"), arr)
    as_f32 = {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}
    as_f32["input"] = np.asarray(x_np, dtype=np.float32)
    ref.write_safetensors(os.path.join(outdir, "reference.safetensors"), as_f32, extra_meta)


def summary(outputs):
    s = {}
    for name, arr in outputs.items():
        a = np.asarray(arr, dtype=np.float64)
        s[name] = {"shape": list(a.shape), "l2": float(np.sqrt((a * a).sum())),
                   "max_abs": float(np.abs(a).max()) if a.size else 0.0}
    if "dv_loss" in outputs:
        s["dv_loss"]["value"] = float(outputs["dv_loss"])
    return s


def cmd_run(args):
    model, arch = load_model(args.weights, args.dataset)
    x_np = np.load(args.input)
    channels, side = ref.DATASETS[arch["dataset"]][:2]
    if x_np.ndim != 4 or x_np.shape[1:] != (channels, side, side):
        raise ValueError("%s: input shape %s, expected (N, %d, %d, %d)"
                         % (args.input, x_np.shape, channels, side, side))
    if x_np.shape[0] < 2 and arch["estimators"]:
        raise ValueError("%s: the DV loss needs a batch of at least 2" % args.input)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    model = model.to(dtype)
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32)).to(dtype)
    outputs = reference_outputs(model, x, args.bn)
    meta = dict(arch, bn=args.bn, dtype=args.dtype, weights=os.path.basename(args.weights),
                torch_version=torch.__version__)
    write_outputs(args.out, x_np, outputs, meta)
    print(json.dumps({"weights": args.weights, "input": args.input, "out": args.out, "bn": args.bn,
                      "dtype": args.dtype, **arch, "outputs": summary(outputs)}))


def randomize_affine_and_stats(model, gen, calib_batches, x_shape):
    """Make BN/LN scales and shifts and BN running statistics non-trivial (defaults 1/0 would hide
    scale bugs). Running statistics come from train-mode forwards on random inputs, so
    num_batches_tracked is also > 0."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
        model.train()
        for _ in range(calib_batches):
            xc = torch.rand(x_shape, generator=gen)
            z = model.encoder(xc)
            if hasattr(model, "dim_local"):
                model.dim_local(xc)
                model.dim_global(z)
            if hasattr(model, "classifier"):
                model.classifier(z)


def cmd_make(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    model = ref.Model(args.dataset, args.hsize, estimators=True, head=args.head)
    channels, side = ref.DATASETS[args.dataset][:2]
    shape = (args.batch, channels, side, side)
    randomize_affine_and_stats(model, gen, args.calib_batches, shape)
    # Inputs strictly inside (0,1): clamp's gradient at exactly 0 or 1 is a convention
    # (torch passes it) that a test should not hinge on.
    x = (0.01 + 0.98 * torch.rand(shape, generator=gen)).float()
    os.makedirs(args.out, exist_ok=True)
    meta = {"architecture": "wcmi-dim-encoder+estimators" + ("+" + args.head if args.head != "none" else ""),
            "dataset": args.dataset, "hsize": args.hsize, "seed": args.seed, "writer": "bench/torch_parity.py",
            "torch_version": torch.__version__}
    ref.write_safetensors(os.path.join(args.out, "model.safetensors"), ref.state_dict_numpy(model), meta)
    np.save(os.path.join(args.out, "input.npy"), x.numpy())
    # Reload through the reader, exactly as `run` would: checks the writer/reader round trip.
    loaded, arch = load_model(os.path.join(args.out, "model.safetensors"), args.dataset)
    for k, v in model.state_dict().items():
        if not torch.equal(v, loaded.state_dict()[k]):
            raise RuntimeError("safetensors round trip changed %s" % k)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    loaded = loaded.to(dtype)
    outputs = reference_outputs(loaded, x.to(dtype), args.bn)
    write_outputs(args.out, x.numpy(), outputs, dict(arch, bn=args.bn, dtype=args.dtype))
    result = {"out": args.out, "bn": args.bn, "dtype": args.dtype, **arch, "outputs": summary(outputs)}
    if args.param_grads:
        grads = param_gradients(loaded, x.to(dtype), args.bn)
        ref.write_safetensors(os.path.join(args.out, "param_grads.safetensors"),
                              {k: v.astype(np.float32) for k, v in grads.items()},
                              dict(arch, bn=args.bn, dtype=args.dtype, loss="dv", grad_path="params"))
        result["param_grads"] = len(grads)
    print(json.dumps(result))


def naive_dv_loss(gz, lx):
    """Loop form of PAPER.md section 2 (float64), independent of ref.dv_loss's GEMM/LSE layout."""
    n, _, locs = lx.shape
    total = 0.0
    for loc in range(locs):
        u = [[float(gz[i] @ lx[j, :, loc]) for j in range(n)] for i in range(n)]
        e_pos = sum(u[i][i] for i in range(n)) / n
        off = [u[i][j] for i in range(n) for j in range(n) if i != j]
        shift = max(off)
        e_neg = shift + np.log(sum(np.exp(v - shift) for v in off) / (n * (n - 1)))
        total += e_neg - e_pos
    return total / locs


def cmd_selfcheck(args):
    """Checks the reference against independent formulas; prints one line per check."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    model = ref.Model("fashion-mnist", args.hsize, estimators=True, head="mlp")
    randomize_affine_and_stats(model, gen, 2, (args.batch, 1, 28, 28))
    model = model.double().eval()
    x = (0.01 + 0.98 * torch.rand((args.batch, 1, 28, 28), generator=gen)).double()
    failures = []

    def check(name, ok, detail):
        print("%-44s %s  %s" % (name, "ok  " if ok else "FAIL", detail))
        if not ok:
            failures.append(name)

    with torch.no_grad():
        z = model.encoder(x)
        gz, lx = model.dim_global(z), model.dim_local(x)
        loss = float(ref.dv_loss(gz, lx))
    naive = naive_dv_loss(gz.numpy(), lx.numpy())
    check("dv_loss == loop formula", abs(loss - naive) <= 1e-10 * max(1.0, abs(naive)),
          "%.12g vs %.12g" % (loss, naive))

    # Residual block by hand: LN_H(conv3(relu(bn(conv0 x))) + shortcut x), LN at each location.
    blk = model.dim_global
    with torch.no_grad():
        bn = blk.block_nonlinear[1]
        h = z @ blk.block_nonlinear[0].weight[:, :, 0, 0].T
        h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        h = torch.relu(h) @ blk.block_nonlinear[3].weight[:, :, 0, 0].T + blk.block_nonlinear[3].bias
        s = h + z @ blk.linear_shortcut.weight[:, :, 0, 0].T
        ln = blk.block_ln[1]
        mu, var = s.mean(1, keepdim=True), s.var(1, unbiased=False, keepdim=True)
        manual = (s - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
    err = float((manual - gz).abs().max())
    check("global block == hand-written formula", err < 1e-10, "max abs err %.2e" % err)

    # Input gradients against central finite differences on a few coordinates (float64).
    for path in ("encoder", "both"):
        _, grad = input_gradient(model, x, path)
        idx = torch.randint(0, x.numel(), (args.fd_points,), generator=gen)
        worst = 0.0
        for flat in idx.tolist():
            hstep = 1e-5
            xp, xm = x.clone().view(-1), x.clone().view(-1)
            xp[flat] += hstep
            xm[flat] -= hstep
            with torch.no_grad():
                if path == "encoder":
                    # Local estimator input stays at x: only the encoder sees the perturbation.
                    lp = lm = model.dim_local(x)
                else:
                    lp, lm = model.dim_local(xp.view_as(x)), model.dim_local(xm.view_as(x))
                fp = float(ref.dv_loss(model.dim_global(model.encoder(xp.view_as(x))), lp))
                fm = float(ref.dv_loss(model.dim_global(model.encoder(xm.view_as(x))), lm))
            fd = (fp - fm) / (2 * hstep)
            an = float(grad.view(-1)[flat])
            # Error relative to the largest gradient entry: FD round-off (~1e-16 * loss scale / h)
            # swamps a per-entry relative error for entries near zero.
            worst = max(worst, abs(fd - an) / float(grad.abs().max()))
            if args.verbose:
                print("  coord %6d analytic %.6e fd %.6e" % (flat, an, fd))
        check("input grad (%s path) == finite differences" % path, worst < 1e-5,
              "max abs err / max abs grad %.2e over %d coords" % (worst, args.fd_points))

    # How far float32 PyTorch is from the float64 reference: what the C side can expect.
    m32 = ref.Model("fashion-mnist", args.hsize, estimators=True, head="mlp")
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    m32.eval()
    o64 = reference_outputs(model, x, "eval")
    o32 = reference_outputs(m32, x.float(), "eval")
    for name in sorted(o64):
        a, b = o64[name].astype(np.float64), o32[name].astype(np.float64)
        rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
        rel2 = float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))
        check("float32 torch vs float64: %s" % name, rel2 < 1e-4,
              "||err||/||ref|| %.2e, max|err|/max|ref| %.2e" % (rel2, rel))
    return 1 if failures else 0


def load_outputs(path):
    """name -> float64 array from a directory of .npy files or a .safetensors file."""
    if os.path.isdir(path):
        return {f[:-4]: np.load(os.path.join(path, f)).astype(np.float64)
                for f in sorted(os.listdir(path)) if f.endswith(".npy")}
    tensors, _ = ref.read_safetensors(path)
    return {k: v.astype(np.float64) for k, v in tensors.items()}


def cmd_compare(args):
    """Relative errors of `got` against `ref` for every output both hold (by name).
    rel_l2 = ||got - ref|| / ||ref||; rel_max = max|got - ref| / max|ref|. Fails when a compared
    output's rel_l2 exceeds --rtol or a required output is missing."""
    want, got = load_outputs(args.ref), load_outputs(args.got)
    names = args.names.split(",") if args.names else sorted(set(want) & set(got) - {"input"})
    report, ok = {}, True
    for name in names:
        if name not in want or name not in got:
            report[name] = {"error": "missing in %s" % (args.ref if name not in want else args.got)}
            ok = False
            continue
        a, b = want[name], got[name]
        if a.size != b.size:
            report[name] = {"error": "shape %s vs %s" % (list(a.shape), list(b.shape))}
            ok = False
            continue
        b = b.reshape(a.shape)
        rel2 = float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))
        relm = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)) if a.size else 0.0
        report[name] = {"rel_l2": rel2, "rel_max": relm, "pass": rel2 <= args.rtol}
        ok = ok and rel2 <= args.rtol
    print(json.dumps({"ref": args.ref, "got": args.got, "rtol": args.rtol, "pass": ok, "outputs": report}))
    return 0 if ok else 1


def main(argv=None):
    p = argparse.ArgumentParser(description="wcmi <-> PyTorch same-weights parity (bench/README.md)")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="load a wcmi safetensors model, write PyTorch outputs")
    r.add_argument("--weights", required=True)
    r.add_argument("--input", required=True, help=".npy (N, C, S, S) float32 in [0,1]")
    r.add_argument("--out", required=True, help="output directory")
    m = sub.add_parser("make", help="random-weight model + input + reference outputs")
    m.add_argument("--out", required=True, help="output directory")
    m.add_argument("--hsize", type=int, default=32)
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--head", choices=["mlp", "linear", "none"], default="mlp")
    m.add_argument("--calib-batches", type=int, default=3, help="train-mode forwards for BN statistics")
    m.add_argument("--param-grads", action="store_true", help="also write param_grads.safetensors")
    c = sub.add_parser("selfcheck", help="check the reference against independent formulas")
    c.add_argument("--hsize", type=int, default=16)
    c.add_argument("--batch", type=int, default=6)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--fd-points", type=int, default=12)
    c.add_argument("--verbose", action="store_true")
    k = sub.add_parser("compare", help="relative errors between two output sets")
    k.add_argument("--ref", required=True, help="directory of .npy or a .safetensors (the reference)")
    k.add_argument("--got", required=True, help="directory of .npy or a .safetensors (e.g. wcmi's)")
    k.add_argument("--rtol", type=float, default=1e-4, help="bound on ||got-ref||/||ref||")
    k.add_argument("--names", default="", help="comma-separated outputs to require (default: common)")
    for q in (r, m):
        q.add_argument("--dataset", choices=sorted(ref.DATASETS), default=None if q is r else "fashion-mnist")
        q.add_argument("--bn", choices=["eval", "train"], default="eval")
        q.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = p.parse_args(argv)
    if args.cmd == "make" and (args.batch < 2 or args.hsize < 1):
        p.error("need --batch >= 2 and --hsize >= 1")
    torch.set_num_threads(1)
    try:
        if args.cmd == "selfcheck":
            return cmd_selfcheck(args)
        if args.cmd == "compare":
            return cmd_compare(args)
        (cmd_run if args.cmd == "run" else cmd_make)(args)
    except (ValueError, RuntimeError, OSError, KeyError) as e:
        sys.stderr.write("torch_parity %s: %s\n" % (args.cmd, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
