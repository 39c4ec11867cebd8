"""Library notices that do not apply to scmint's calls, kept out of the user's output.

scmint calls mudata, scvi-tools and Lightning in ways that make them print notices
meant for other uses of those libraries. :func:`quiet_libraries` hides exactly those,
and only while an scmint function runs: the user's warning filters and logger levels
are restored afterwards, and every other warning (including scvi-tools' and scmint's
own advice about the data) is shown as usual.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        FutureWarning,
        r"From 0\.4 \.update\(\) will not pull",
        "mudata's pull-on-update notice: scmint reads modality obs / var itself and never "
        "relies on columns being pulled into the global tables",
    ),
    (
        UserWarning,
        r"var_names are not unique|Cannot join columns with the same name because var_names",
        "a CITE-seq gene and protein sharing a name (CD4): scmint addresses features per "
        "modality, never through the MuData's global var_names",
    ),
    (
        FutureWarning,
        r"The method mod_names is deprecated",
        "scvi-tools 1.4 calls a mudata method that mudata 0.3 deprecates",
    ),
    (
        FutureWarning,
        r".*isinstance\(treespec, LeafSpec\)",
        "Lightning's use of a torch pytree class that torch deprecates",
    ),
    (
        Warning,
        r"The number of training batches .* is smaller than the logging interval",
        "Lightning's logging interval on small data: scmint logs once per epoch",
    ),
)
"""``(category, message regex, why it does not apply)`` of each notice hidden."""

QUIET_LOGGERS: dict[str, int] = {
    "lightning.pytorch": logging.WARNING,  # "GPU available: ...", tips
    "lightning.fabric": logging.WARNING,
    "scvi.data._download": logging.WARNING,  # "File .../model.pt already downloaded" on load
}
"""Logger name -> level while an scmint function runs (raised only, never lowered)."""


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide the library notices in :data:`HARMLESS_WARNINGS` and :data:`QUIET_LOGGERS`.

    Usable as a context manager or a decorator. Warning filters and logger levels are
    restored on exit, so code outside scmint sees the libraries' notices as before.
    """
    loggers = {name: logging.getLogger(name) for name in QUIET_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    with warnings.catch_warnings():
        for category, message, _ in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for name, logger in loggers.items():
            if logger.getEffectiveLevel() < QUIET_LOGGERS[name]:
                logger.setLevel(QUIET_LOGGERS[name])
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.setLevel(levels[name])
