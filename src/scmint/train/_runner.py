"""scvi-tools' training runner, without library notices that do not apply to scmint."""

from __future__ import annotations

from typing import Any

from scvi.train import TrainRunner

from .._quiet import quiet_libraries

#: Lightning's DDP strategies and their variants that tolerate parameters without a
#: gradient in a step.
FIND_UNUSED_PARAMETERS: dict[str, str] = {
    name: f"{name}_find_unused_parameters_true" for name in ("ddp", "ddp_fork", "ddp_notebook")
}


def tolerant_strategy(strategy: Any) -> Any:
    """``strategy`` with DDP's detection of unused parameters on (other values unchanged).

    In every scmint model some parameters take no part in some steps: the encoder and
    decoder of a modality no cell of a minibatch was measured in, the discriminators in
    a generator step of the adversarial plans, optional heads. Plain ``"ddp"`` stops
    there ("parameters that were not used in producing the loss"); its
    ``*_find_unused_parameters_true`` variant, which this returns, skips them.

    ``"ddp_spawn"`` is refused: it pickles the model to start its processes, and
    scvi-tools' MuData registration holds objects that cannot be pickled.
    """
    if isinstance(strategy, str):
        if strategy.startswith("ddp_spawn"):
            raise ValueError(
                "strategy='ddp_spawn' cannot start its processes: it pickles the model, and "
                "scvi-tools' MuData registration cannot be pickled. Use strategy='ddp' in a "
                "script (Lightning starts one process per device) or 'ddp_fork' / "
                "'ddp_notebook' in a notebook."
            )
        return FIND_UNUSED_PARAMETERS.get(strategy, strategy)
    return strategy


class QuietTrainRunner(TrainRunner):
    """:class:`scvi.train.TrainRunner` run inside :func:`scmint._quiet.quiet_libraries`.

    Building the Lightning ``Trainer`` and fitting print no device banner, tips,
    logging-interval or deprecation notices; progress bars, early stopping messages and
    every warning about the data or the model are shown as before. A DDP ``strategy``
    given by name runs with unused-parameter detection (:func:`tolerant_strategy`).
    A model trained from data on disk (``backed=True``, epochs of minutes to hours)
    shows Lightning's per-minibatch progress bar, with the time left in the epoch,
    instead of scvi-tools' per-epoch bar (unless ``simple_progress_bar`` is given).
    A query model of :meth:`load_query_data <scmint.model.CLUE.load_query_data>` gets a
    callback that keeps the reference batches' parameters exact after every step.
    The ``callbacks`` list passed in is not modified.
    """

    @quiet_libraries()
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "strategy" in kwargs:
            kwargs["strategy"] = tolerant_strategy(kwargs["strategy"])
        model = args[0] if args else kwargs.get("model")
        if getattr(getattr(model, "adata", None), "isbacked", False):
            kwargs.setdefault("simple_progress_bar", False)
        # scvi-tools' Trainer appends its early-stopping and checkpoint callbacks to the
        # list it is given: a copy keeps the caller's list as it was (a second training
        # stage, as SCCROSS's, would otherwise inherit the first stage's early stopping)
        kwargs["callbacks"] = list(kwargs.get("callbacks") or [])
        slices = getattr(model, "_reference_slices", None)
        if slices is not None:  # a query update: the reference's parameters stay exact
            from scmint.model._query_update import KeepReferenceSlices

            kwargs["callbacks"].append(KeepReferenceSlices(slices))
        super().__init__(*args, **kwargs)

    @quiet_libraries()
    def __call__(self) -> Any:
        return super().__call__()
