"""What a method returns: :class:`MethodResult` (shared by the registry and the peers).

Its own module so that :mod:`._methods` (the registry) and the peer modules it loads
lazily (:mod:`._scglue_clue`) both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ``translate(source, target) -> (prediction, space) | None``; see :class:`MethodResult`.
Translator = Callable[[str, str], "tuple[Any, str] | None"]


@dataclass
class MethodResult:
    """Output of one method on one split.

    Attributes
    ----------
    embeddings
        Per modality, one row per cell of ``split.query[modality]``, each computed from
        that modality's profile alone.
    n_epochs
        Training epochs actually run (``None`` for closed-form methods).
    train_time_s, inference_time_s
        Wall time of training and of embedding the scored cells.
    params
        Hyperparameters worth recording (go into the results row as JSON).
    translate
        ``None`` when the method does not translate between modalities. Otherwise
        ``translate(source, target)`` returns ``(prediction, space)`` or ``None`` (no
        translation in that direction): ``prediction`` holds one row per cell of
        ``split.query[source]``, in ``target``'s features (the order of
        ``split.train.mod[target].var_names``), predicted from the cell's ``source``
        profile alone; ``space`` is ``"counts"`` (counts or count-scale means: the
        scorer applies ``log1p(x / rowsum * 1e4)``) or ``"lognorm"`` (already that).
        The runner calls it after the embeddings, so its time and memory are recorded
        apart from training and embedding (see :func:`~harness.score_translation`).
    """

    embeddings: dict[str, np.ndarray]
    n_epochs: int | None
    train_time_s: float
    inference_time_s: float
    params: dict = field(default_factory=dict)
    translate: Translator | None = None
