"""Keep the weights of the best epoch and restore them when training ends."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback


class RestoreBestWeights(Callback):
    """Restore the module's weights of the epoch with the lowest monitored value.

    After every training epoch (the validation pass of that epoch has run by then) the
    monitored metric is read from ``trainer.callback_metrics``; when it is the lowest
    seen since ``warmup_epochs``, a copy of the module's ``state_dict`` is kept in
    memory. When training ends (at ``max_epochs`` or stopped early) the kept weights
    are loaded back, so the model returned is the best checkpoint rather than whatever
    the last minibatch updates left, as the published GLUE / CLUE trainers do
    (``scglue.models.plugins.EarlyStopping`` restores its best checkpoint).

    Parameters
    ----------
    monitor
        Name of the logged metric, e.g. ``"vae_loss_validation"``.
    warmup_epochs
        Epochs (from 0) that are never kept: during a burn-in the objective is not
        comparable with the one after it. If no epoch after the warm-up logged a
        finite value, nothing is restored.

    Attributes
    ----------
    best_epoch
        Epoch (0-based) whose weights were restored, or ``None``.
    best_score
        Its monitored value (``inf`` when none).
    """

    def __init__(self, monitor: str, warmup_epochs: int = 0) -> None:
        super().__init__()
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}.")
        self.monitor = monitor
        self.warmup_epochs = int(warmup_epochs)
        self.best_epoch: int | None = None
        self.best_score = math.inf
        self._state: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Forget the weights kept by an earlier ``fit``."""
        self.best_epoch, self.best_score, self._state = None, math.inf, None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Keep a copy of the weights if this epoch's monitored value is the best."""
        epoch = int(trainer.current_epoch)
        value = trainer.callback_metrics.get(self.monitor)
        if epoch < self.warmup_epochs or value is None:
            return
        score = float(value)
        if math.isfinite(score) and score < self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._state = {k: v.detach().clone() for k, v in pl_module.module.state_dict().items()}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Load the kept weights into the module."""
        if self._state is not None:
            pl_module.module.load_state_dict(self._state)
            self._state = None

    def state_dict(self) -> dict[str, Any]:
        """Best epoch and score (the weights are not part of Lightning checkpoints)."""
        return {"best_epoch": self.best_epoch, "best_score": self.best_score}
