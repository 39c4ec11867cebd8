"""Reading MuData files without notices that do not apply to scmint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import mudata as md

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
        Passed to :func:`mudata.read_h5mu` (``"r"`` keeps ``X`` on disk).

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
