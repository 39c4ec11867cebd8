"""Logging of a module's loss and its parts, shared by scmint's training plans."""

from __future__ import annotations

import torch
from scvi.module.base import LossOutput


class LossLoggingMixin:
    """Log a :class:`~scvi.module.base.LossOutput` the way scmint's plans do.

    For a :class:`~scvi.train.TrainingPlan` subclass: logs ``train_loss`` (shown in the
    progress bar) or ``<mode>_loss`` (``validation_loss``, ...) and every 0-d entry of
    ``extra_metrics`` as ``<key>_<mode>``, per epoch by default (``on_step`` /
    ``on_epoch`` of the plan), weighted by ``n_obs_minibatch``. Everything logged lands in
    ``model.history`` and can be monitored for early stopping.
    """

    def _log_loss_output(self, loss_output: LossOutput, mode: str) -> None:
        n = int(loss_output.n_obs_minibatch)
        name = "train_loss" if mode == "train" else f"{mode}_loss"
        self.log(
            name,
            loss_output.loss.detach(),
            on_step=self.on_step,
            on_epoch=self.on_epoch,
            prog_bar=mode == "train",
            batch_size=n,
            sync_dist=self.use_sync_dist,
        )
        for key, value in (loss_output.extra_metrics or {}).items():
            self._log_metric(key, value, mode, n)

    def _log_metric(self, key: str, value, mode: str, n: int) -> None:
        """Log one scalar as ``<key>_<mode>`` (tensors that are not 0-d are skipped)."""
        if torch.is_tensor(value):
            if value.dim() != 0:
                return
            value = value.detach()
        self.log(
            f"{key}_{mode}",
            value,
            on_step=self.on_step,
            on_epoch=self.on_epoch,
            batch_size=n,
            sync_dist=self.use_sync_dist,
        )
