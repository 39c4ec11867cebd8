"""Gene-set scores per cell (:func:`scanpy.tl.score_genes`) and GMT reading."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from ._transforms import _normalize_rows, _size_factor_target
from ._utils import as_float_matrix, get_matrix, log1p, to_csr


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file (``name<TAB>description<TAB>gene1<TAB>gene2...``).

    Parameters
    ----------
    path
        GMT file, plain or gzipped (``.gz``).

    Returns
    -------
    Dict set name -> list of genes (order kept, duplicates and empty fields dropped).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    sets: dict[str, list[str]] = {}
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 3:
                raise ValueError(f"{path}:{lineno}: a GMT line needs name, description and genes")
            genes = [g.strip() for g in fields[2:] if g.strip()]
            sets[fields[0]] = list(dict.fromkeys(genes))
    return sets


def gene_set_scores(
    adata: AnnData,
    gene_sets: Mapping[str, Iterable[str]] | str | Path,
    layer: str | None = None,
    normalize: bool = True,
    target_sum: float | None = 1e4,
    ctrl_size: int = 50,
    n_bins: int = 25,
    random_state: int = 0,
    on_empty: Literal["warn", "raise"] = "warn",
) -> pd.DataFrame:
    """Score gene sets per cell with :func:`scanpy.tl.score_genes`, without modifying ``adata``.

    Scores are computed on a log-normalised copy of the counts (or on the data as
    given with ``normalize=False``): mean expression of the set minus that of a random
    reference set with matched expression bins.

    Parameters
    ----------
    adata
        Cells x genes; raw counts unless ``normalize=False``.
    gene_sets
        Dict set name -> genes, or the path to a GMT file (:func:`read_gmt`).
    layer
        Layer to read.
    normalize
        Library-size normalise and ``log1p`` before scoring.
    target_sum
        Normalisation target.
    ctrl_size, n_bins, random_state
        As in :func:`scanpy.tl.score_genes`.
    on_empty
        What to do with a set none of whose genes is in ``adata.var_names``:
        ``"warn"`` gives it a NaN column, ``"raise"`` raises ``ValueError``.
        Sets with only some genes missing are scored on the genes present (with a
        warning giving the number missing). If no set has any gene in the data,
        ``ValueError`` is raised either way.

    Returns
    -------
    DataFrame ``n_cells x n_sets`` indexed by ``adata.obs_names``.
    """
    if isinstance(gene_sets, str | Path):
        gene_sets = read_gmt(gene_sets)
    if not gene_sets:
        raise ValueError("no gene sets given")
    if on_empty not in ("warn", "raise"):
        raise ValueError(f"unknown on_empty {on_empty!r}")
    X = get_matrix(adata, layer)
    if normalize:
        X = to_csr(X)
        X = log1p(_normalize_rows(X, _size_factor_target(X, target_sum)))
    else:
        X = as_float_matrix(X)
    tmp = AnnData(X)
    tmp.obs_names = adata.obs_names.astype(str)
    tmp.var_names = adata.var_names.astype(str)
    var_names = set(tmp.var_names)

    scores = pd.DataFrame(index=adata.obs_names.copy())
    empty = []
    for name, genes in gene_sets.items():
        if isinstance(genes, str):
            raise TypeError(f"gene set {name!r}: expected a list of genes, got a string")
        genes = list(dict.fromkeys(str(g) for g in genes))
        present = [g for g in genes if g in var_names]
        n_missing = len(genes) - len(present)
        if not present:
            empty.append(name)
            scores[name] = np.nan
            continue
        if n_missing:
            warnings.warn(
                f"gene set {name!r}: {n_missing} of {len(genes)} genes not found; "
                f"scored on the {len(present)} present",
                UserWarning,
                stacklevel=2,
            )
        key = "__scmint_score__"
        sc.tl.score_genes(
            tmp,
            present,
            ctrl_size=ctrl_size,
            n_bins=n_bins,
            score_name=key,
            random_state=random_state,
            use_raw=False,
        )
        scores[name] = tmp.obs[key].to_numpy()
    if empty:
        msg = (
            f"{len(empty)} of {len(gene_sets)} gene sets have no gene in the data "
            f"(e.g. {empty[:5]})"
        )
        if on_empty == "raise" or len(empty) == len(gene_sets):
            raise ValueError(msg)
        warnings.warn(msg + "; their scores are NaN", UserWarning, stacklevel=2)
    return scores
