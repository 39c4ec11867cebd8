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
import scipy.sparse as sp
from anndata import AnnData

from scmint.data._validation import check_counts
from scmint.pp._transforms import (
    FittedTransform,
    _clamp_n_comps,
    _scale_statistics,
    _size_factor_target,
)
from scmint.pp._utils import as_float_matrix, get_matrix, log_normalize_rows, to_csr


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
        X = log_normalize_rows(X, _size_factor_target(X, target_sum))
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


class GeneSetScorePCA(FittedTransform):
    """Per-cell gene-set scores reduced by PCA, fitted once and stored (scCross's extra input).

    The score of a set is the mean over its genes of the standardised log-normalised
    expression (each gene centred and scaled with the training cells' statistics), so a
    cell's score depends on that cell alone and new or perturbed cells are scored on the
    same scale. The ``cells x sets`` scores are standardised and reduced to ``n_comps``
    principal components (:func:`scanpy.pp.pca`), fitted on the training cells.

    Parameters
    ----------
    gene_sets
        Dict set name -> genes, or the path to a GMT file (:func:`read_gmt`). Genes absent
        from the data are ignored; sets with fewer than ``min_genes`` genes present are
        dropped (with a warning).
    n_comps
        Principal components of the scores (5, as scCross appends).
    target_sum
        Library-size normalisation target (default: the training cells' median).
    min_genes
        Smallest number of a set's genes that must be in the data.
    random_state
        Seed of the PCA solver.

    Attributes
    ----------
    set_names_
        The sets kept.
    membership_
        ``genes x sets`` weights (1 / set size for member genes), CSR.
    """

    def __init__(
        self,
        gene_sets: Mapping[str, Iterable[str]] | str | Path,
        n_comps: int = 5,
        target_sum: float | None = None,
        min_genes: int = 3,
        random_state: int = 0,
    ) -> None:
        self.gene_sets = read_gmt(gene_sets) if isinstance(gene_sets, str | Path) else gene_sets
        self.n_comps = n_comps
        self.target_sum = target_sum
        self.min_genes = min_genes
        self.random_state = random_state
        if not self.gene_sets:
            raise ValueError("no gene sets given")
        for name, genes in self.gene_sets.items():
            if isinstance(genes, str):
                raise TypeError(f"gene set {name!r}: expected a list of genes, got a string")

    def _fit_and_store(self, adata, layer, feature_names, return_output=True):
        # the sets are matched to the gene names, which the base class reads from adata
        names = adata.var_names if isinstance(adata, AnnData) else feature_names
        if names is None:
            raise ValueError("GeneSetScorePCA needs gene names: pass an AnnData or feature_names")
        self._names_for_fit = np.asarray(names).astype(str)
        try:
            return super()._fit_and_store(adata, layer, feature_names, return_output)
        finally:
            del self._names_for_fit

    def _fit(self, X: sp.csr_matrix | np.ndarray, obs: pd.DataFrame | None) -> np.ndarray:
        check_counts(X, what="GeneSetScorePCA input", fractional="warn")
        index = {g: i for i, g in enumerate(self._names_for_fit)}
        kept, rows, cols, vals = [], [], [], []
        too_small = []
        for name, genes in self.gene_sets.items():
            present = sorted({index[str(g)] for g in genes if str(g) in index})
            if len(present) < self.min_genes:
                too_small.append(name)
                continue
            rows += present
            cols += [len(kept)] * len(present)
            vals += [1.0 / len(present)] * len(present)
            kept.append(str(name))
        if not kept:
            raise ValueError(
                f"none of the {len(self.gene_sets)} gene sets has {self.min_genes} or more "
                "genes in the data; check that the sets use the data's gene names"
            )
        if too_small:
            warnings.warn(
                f"{len(too_small)} of {len(self.gene_sets)} gene sets have fewer than "
                f"{self.min_genes} genes in the data and are dropped (e.g. {too_small[:5]})",
                UserWarning,
                stacklevel=4,
            )
        X = to_csr(X)
        self.target_sum_ = _size_factor_target(X, self.target_sum)
        L = log_normalize_rows(X, self.target_sum_)
        self.gene_mean_, self.gene_std_ = _scale_statistics(L)
        self.membership_ = sp.csr_matrix(
            (vals, (rows, cols)), shape=(X.shape[1], len(kept)), dtype=np.float64
        )
        self.set_names_ = np.asarray(kept)
        raw = self._raw_scores(L)
        self.score_mean_, self.score_std_ = _scale_statistics(raw)
        M = (raw - self.score_mean_) / self.score_std_
        n_comps = _clamp_n_comps(self.n_comps, M.shape, "GeneSetScorePCA")
        tmp = AnnData(M)
        sc.pp.pca(tmp, n_comps=n_comps, random_state=self.random_state, dtype="float64")
        self.pca_mean_ = M.mean(axis=0)
        self.components_ = np.asarray(tmp.varm["PCs"], dtype=np.float64).T.copy()
        return np.asarray(tmp.obsm["X_pca"])

    def _raw_scores(self, L: sp.csr_matrix) -> np.ndarray:
        """Mean standardised log expression of each set's genes (dense ``cells x sets``)."""
        # (L - mean) / std @ W == L @ (W / std) - (mean / std) @ W, which keeps L sparse
        weights = self.membership_.multiply(1.0 / self.gene_std_[:, None]).tocsr()
        shift = np.asarray(weights.T @ self.gene_mean_).ravel()
        product = L @ weights
        product = product.toarray() if sp.issparse(product) else np.asarray(product)
        return product - shift

    def scores(
        self,
        data: AnnData | np.ndarray | sp.spmatrix,
        layer: str | None = None,
        allow_missing: bool = False,
    ) -> pd.DataFrame:
        """The (unreduced) gene-set scores of new cells, on the training scale.

        Parameters
        ----------
        data, layer, allow_missing
            As in :meth:`transform`.

        Returns
        -------
        DataFrame ``n_cells x len(set_names_)``.
        """
        X = to_csr(self.prepare(data, layer, allow_missing))
        raw = self._raw_scores(log_normalize_rows(X, self.target_sum_))
        index = data.obs_names if isinstance(data, AnnData) else None
        return pd.DataFrame(raw, index=index, columns=self.set_names_)

    def _transform(self, X: sp.csr_matrix | np.ndarray) -> np.ndarray:
        L = log_normalize_rows(to_csr(X), self.target_sum_)
        M = (self._raw_scores(L) - self.score_mean_) / self.score_std_
        return (M - self.pca_mean_) @ self.components_.T
