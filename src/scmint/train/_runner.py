"""scvi-tools' training runner, without library notices that do not apply to scmint."""

from __future__ import annotations

from typing import Any

from scvi.train import TrainRunner

from .._quiet import quiet_libraries


class QuietTrainRunner(TrainRunner):
    """:class:`scvi.train.TrainRunner` run inside :func:`scmint._quiet.quiet_libraries`.

    Building the Lightning ``Trainer`` and fitting print no device banner, tips,
    logging-interval or deprecation notices; progress bars, early stopping messages and
    every warning about the data or the model are shown as before.
    """

    @quiet_libraries()
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    @quiet_libraries()
    def __call__(self) -> Any:
        return super().__call__()
