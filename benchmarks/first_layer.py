"""First layer over a peak modality: densified minibatch vs sparse CSR matmul.

The speed issue asks whether count modalities should reach the first layer sparse. This
measures one first-layer training step (forward, and the backward pass to the weights)
on real minibatches of SNARE-seq's 25.7k peaks cut from the device-resident CSR of
:class:`scmint.data.CSRRows`, both ways:

- ``dense``: ``CSRRows.dense_rows`` (scatter into a zero block on the device), then
  ``F.linear`` (what the models do today);
- ``sparse``: ``CSRRows.sparse_rows`` (a torch CSR tensor), ``torch.sparse.mm`` with the
  weights, autograd for the weight gradient.

Run from the repository root (CPU, or the GPU when there is one)::

    .venv/bin/python benchmarks/first_layer.py           # prints a markdown table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _time(step, device: torch.device, repeats: int) -> float:
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snare_mouse_cortex")
    parser.add_argument("--modality", default="atac")
    parser.add_argument("--batch-sizes", default="128,512,2048")
    parser.add_argument("--hidden", default="256,768")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from harness import load_dataset
    from scmint.data import CSRRows

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = load_dataset(args.dataset).mod[args.modality].X
    rows = CSRRows.from_matrix(x, device)
    rng = np.random.default_rng(0)
    n_features = x.shape[1]
    density = x.nnz / (x.shape[0] * x.shape[1])
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(
        f"{args.dataset} {args.modality}: {x.shape[0]} cells x {n_features} features, "
        f"{density:.1%} non-zero; {name}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| batch | hidden | dense ms | sparse ms | sparse / dense |")
    print("|---|---|---|---|---|")
    for hidden in map(int, args.hidden.split(",")):
        weight = torch.nn.Parameter(torch.randn(hidden, n_features, device=device) * 0.01)
        for batch in map(int, args.batch_sizes.split(",")):
            index = torch.as_tensor(rng.choice(x.shape[0], batch, replace=False), device=device)

            def dense(index=index, weight=weight):
                out = F.linear(rows.dense_rows(index), weight)
                (grad,) = torch.autograd.grad(out.sum(), weight)
                return grad

            def sparse(index=index, weight=weight):
                out = torch.sparse.mm(rows.sparse_rows(index), weight.t())
                (grad,) = torch.autograd.grad(out.sum(), weight)
                return grad

            t_dense = _time(dense, device, args.repeats)
            t_sparse = _time(sparse, device, args.repeats)
            print(
                f"| {batch} | {hidden} | {t_dense * 1e3:.2f} | {t_sparse * 1e3:.2f} | "
                f"{t_sparse / t_dense:.2f} |"
            )


if __name__ == "__main__":
    main()
