"""One log line per training epoch for benchmark runs (instead of a progress bar)."""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback


class EpochLog(Callback):
    """Print one line per epoch: epoch, elapsed seconds, seconds per epoch, losses.

    The benchmark runner writes to log files, where a progress bar redraws itself into
    thousands of lines; this callback writes one line per epoch to ``stderr`` instead.
    Pass it with ``enable_progress_bar=False`` to any scvi-tools or scmint ``train``
    (``callbacks=[EpochLog("clue")]``).

    Parameters
    ----------
    name
        Prefix of every line (the method's name).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._start = 0.0
        self._epoch_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: D102
        self._start = self._epoch_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
        now = time.perf_counter()
        losses = " ".join(
            f"{k}={float(v):.4g}"
            for k, v in sorted(trainer.callback_metrics.items())
            if k.endswith("loss") or k.endswith("loss_epoch")
        )
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(
            f"[{self.name}] epoch {trainer.current_epoch + 1}/{total} "
            f"{now - self._epoch_start:.1f} s/epoch, {now - self._start:.0f} s in all {losses}",
            file=sys.stderr,
            flush=True,
        )


def quiet_progress(name: str, train_kwargs: dict | None = None) -> dict:
    """``train_kwargs`` with the progress bar replaced by one :class:`EpochLog` line per epoch.

    An explicit ``enable_progress_bar`` in ``train_kwargs`` is kept as given.
    """
    kw = dict(train_kwargs or {})
    if "enable_progress_bar" not in kw:
        kw["enable_progress_bar"] = False
        kw["callbacks"] = [*kw.get("callbacks", []), EpochLog(name)]
    return kw
