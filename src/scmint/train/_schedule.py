"""Training length from optimisation progress (the GLUE family's epoch schedule)."""

from __future__ import annotations

from math import ceil

AUTO_EPOCH_CAP = 1000
"""Upper bound of an automatic number of epochs."""


def progress_epochs(progress: float, lr: float, n_batches: int, cap: int = AUTO_EPOCH_CAP) -> int:
    """Epochs for a fixed amount of optimisation progress: GLUE's schedule.

    GLUE, scCross and CLUE size burn-in, training and patience in "progress" units,
    ``lr * minibatch updates``, so small datasets (few minibatches per epoch) run more
    epochs: ``max(ceil(progress / (lr * n_batches)), ceil(progress))``. scmint caps the
    result at ``cap`` epochs, because on a few hundred cells the uncapped rule asks for
    thousands.

    Parameters
    ----------
    progress
        Progress units (e.g. CLUE's 72 for training, 12 for the burn-in).
    lr
        Learning rate.
    n_batches
        Minibatches per epoch.
    cap
        Largest number of epochs returned.

    Returns
    -------
    Number of epochs.
    """
    epochs = max(ceil(progress / (lr * max(n_batches, 1))), ceil(progress))
    return int(min(epochs, cap))
