"""Optimisers with the fastest implementation PyTorch has for the parameters' device."""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.Adam, torch.optim.AdamW)
"""Optimisers built with ``fused=True`` (one kernel for every parameter) where supported."""


def make_optimizer(
    cls: type[torch.optim.Optimizer], params: Iterable[torch.nn.Parameter], **kwargs
) -> torch.optim.Optimizer:
    """``cls(params, **kwargs)``, fused for Adam / AdamW on CPU and CUDA parameters.

    PyTorch's default Adam on a CPU updates one parameter tensor at a time; the fused
    kernel does the same arithmetic about ten times faster (0.26 s vs 0.024 s a step
    for a 768 x 25,700 first layer on one core), which matters for the wide input
    layers of peak modalities. Other optimisers, other devices and an explicit
    ``fused`` / ``foreach`` keyword are left as they are.

    Parameters
    ----------
    cls
        The optimiser class.
    params
        Parameters (or parameter groups) to optimise.
    **kwargs
        Arguments of ``cls``.
    """
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    fusable = (
        cls in FUSED_OPTIMIZERS
        and "fused" not in kwargs
        and "foreach" not in kwargs
        and tensors
        and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)
        and len({p.device for p in tensors}) == 1
    )
    if fusable:
        kwargs["fused"] = True
    return cls(params, **kwargs)
