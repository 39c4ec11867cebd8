"""Reading MuData files without notices that do not apply to scmint."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Literal

import anndata as ad
import mudata as md
import numpy as np

from .._quiet import quiet_libraries


@quiet_libraries()
def read_h5mu(path: str | Path, backed: Literal["r", "r+"] | bool | None = None) -> md.MuData:
    """Read a ``.h5mu`` file with :func:`mudata.read_h5mu`, quietly.

    The same MuData as :func:`mudata.read_h5mu`, without two of mudata's notices that do
    not apply to scmint: the pull-on-update ``FutureWarning`` (scmint never relies on
    modality columns being pulled into ``mdata.obs`` / ``mdata.var``) and the
    non-unique ``var_names`` warning of CITE-seq data, where a gene and a protein share a
    name (``CD4``): scmint addresses features per modality, never through the MuData's
    global ``var_names``. Every other warning is shown.

    Parameters
    ----------
    path
        The ``.h5mu`` file.
    backed
        Passed to :func:`mudata.read_h5mu` (``"r"`` or ``True`` keeps the matrices on
        disk). Every model (CLUE, CONAAE, MINNET, SCCROSS) trains and infers from such
        a MuData when it is padded (write one once:
        ``scmint.data.write_h5mu(scmint.data.pad_mudata(mdata), path)``), reading cells
        chunk by chunk (:class:`~scmint.data.OnDiskRows`).

    Returns
    -------
    The MuData, as :func:`mudata.read_h5mu` returns it.

    Examples
    --------
    >>> import scmint
    >>> mdata = scmint.data.read_h5mu("pbmc_mosaic.h5mu")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; pass a .h5mu file.")
    return md.read_h5mu(path, backed=backed)


def write_h5mu(
    mdata: md.MuData, path: str | Path, shuffle_cells: bool = False, seed: int = 0
) -> Path:
    """Write a MuData to a ``.h5mu`` file, e.g. a padded one to train from disk.

    :meth:`mudata.MuData.write`, with pandas 3's string columns and indexes allowed
    (anndata writes them only when ``anndata.settings.allow_write_nullable_strings`` is
    set; older anndata writes them anyway). Read the file back with
    :func:`read_h5mu` (``backed=True`` keeps its matrices on disk).

    Parameters
    ----------
    mdata
        The MuData to write (not modified).
    path
        The ``.h5mu`` file to write (replaced if it exists).
    shuffle_cells
        Write the cells in a random order (every modality alike). Recommended for a file
        to train from disk: minibatches are drawn from a few blocks of consecutive cells
        (:mod:`scmint.data._backed`), which then mix batches and measured modalities
        even when ``mdata`` is sorted by them (as :func:`pad_mudata` leaves a mosaic).
    seed
        Seed of the random order.

    Returns
    -------
    ``path``, as a :class:`~pathlib.Path`.

    Examples
    --------
    >>> import scmint
    >>> padded = scmint.data.pad_mudata(mdata)  # doctest: +SKIP
    >>> scmint.data.write_h5mu(padded, "padded.h5mu")  # doctest: +SKIP
    """
    path = Path(path)
    if shuffle_cells:
        mdata = mdata[np.random.default_rng(seed).permutation(mdata.n_obs)]
    try:
        allow = ad.settings.override(allow_write_nullable_strings=True)
    except (AttributeError, KeyError, TypeError, ValueError):  # anndata without the setting
        allow = contextlib.nullcontext()
    with allow, warnings.catch_warnings():
        # writing the shuffled view fills mudata's per-modality varm of the view
        warnings.filterwarnings("ignore", category=ad.ImplicitModificationWarning)
        mdata.write(path)
    return path
