"""Quiet by default: scmint's calls show no library notices meant for other uses.

On the CITE-seq starter (a gene and a protein share names, so mudata warns about
non-unique var_names) every step a tutorial takes, from reading the file to loading a
saved model and embedding a query, is recorded with every warning enabled and every
log record of the quietened loggers captured. None of the library notices may appear;
scvi-tools' and scmint's own advice about the data still does, and the user's warning
filters and logger levels are as they were.
"""

import logging
import warnings

import mudata as md
import pytest

import scmint
from scmint._quiet import HARMLESS_WARNINGS, QUIET_LOGGERS
from scmint.model import CONAAE


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records():
    """Capture records of the quietened loggers at the level their owners set."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.messages
    for logger in loggers:
        logger.removeHandler(handler)


def _library_notices(records) -> list[str]:
    import re

    return [
        str(w.message)
        for w in records
        if any(
            issubclass(w.category, category) and re.match(pattern, str(w.message))
            for category, pattern, _ in HARMLESS_WARNINGS
        )
    ]


def test_tutorial_steps_show_no_library_notices(data_dir, tmp_path, log_records):
    path = data_dir / "bmmc_cite_starter" / "bmmc_cite_starter.h5mu"
    if not path.exists():
        pytest.skip(f"{path} not found")
    filters_before = list(warnings.filters)
    levels_before = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}

    # without the tests' global pull_on_update=False, as a user's session starts
    with md.set_options(pull_on_update=None), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        # the same file through mudata directly shows the notices this test looks for
        md.read_h5mu(path)
        assert _library_notices(seen), "mudata no longer warns here: the test cannot fail"
        del seen[:]

        mdata = scmint.data.read_h5mu(path)
        padded = scmint.data.pad_mudata(mdata)
        CONAAE.setup_mudata(padded, labels_key="cell_type")
        rare_label_notices = [w for w in seen if "fewer than 3 cells" in str(w.message)]
        model = CONAAE(padded)
        model.train(max_epochs=1, batch_size=256)
        model.get_latent_representation(modality="rna")
        model.get_latent_representation(mdata["adt"][:50].copy())
        model.save(tmp_path / "model", overwrite=True)
        CONAAE.load(tmp_path / "model", padded)

    assert not _library_notices(seen)
    assert not any("already downloaded" in m for m in log_records), log_records
    assert not any("GPU available" in m for m in log_records), log_records
    # scvi-tools' advice about the data (rare labels) is kept at setup, once per field
    assert rare_label_notices
    assert sum("fewer than 3 cells" in str(w.message) for w in seen) == len(rare_label_notices)
    assert warnings.filters == filters_before
    assert {name: logging.getLogger(name).level for name in QUIET_LOGGERS} == levels_before


def test_scmint_advice_is_still_shown(bmmc_cite):
    padded = scmint.data.pad_mudata(bmmc_cite)
    CONAAE.setup_mudata(padded)
    with pytest.warns(UserWarning, match="without labels_key"):
        CONAAE(padded).train(max_epochs=1, batch_size=256)


def test_read_h5mu_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass a .h5mu file"):
        scmint.data.read_h5mu(tmp_path / "missing.h5mu")
