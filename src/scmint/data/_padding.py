"""Turn a paired, unpaired or mosaic MuData into the one padded form all models read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse

from .._quiet import quiet_libraries

INDICATOR_PREFIX = "has_"
"""Prefix of the 0/1 columns in ``mdata.obs`` that say which modalities a cell has."""

PADDING_UNS_KEY = "scmint_padding"
"""Key in ``mdata.uns`` where :func:`pad_mudata` records what it did."""


def indicator_key(modality: str, prefix: str = INDICATOR_PREFIX) -> str:
    """Name of the ``mdata.obs`` column that flags cells measured in ``modality``."""
    return f"{prefix}{modality}"


def check_unique_cells(
    obs_names: pd.Index,
    what: str,
    fix: str = "make them unique first (adata.obs_names_make_unique()).",
) -> None:
    """Raise if ``obs_names`` repeat a name: cells are matched across modalities by name."""
    if not obs_names.is_unique:
        dup = obs_names[obs_names.duplicated()].unique()[:3].tolist()
        raise ValueError(
            f"{what} has duplicated cell names (obs_names, e.g. {dup}); cells are matched "
            f"across modalities by name, so {fix}"
        )


def _union_of_cells(mods: Sequence[ad.AnnData], names: Sequence[str]) -> pd.Index:
    for name, adata in zip(names, mods, strict=True):
        check_unique_cells(adata.obs_names, f"Modality '{name}'")
    cells = pd.Index(np.concatenate([np.asarray(a.obs_names, dtype=object) for a in mods]))
    return cells[~cells.duplicated()]


def _row_embedding(rows: np.ndarray, n_total: int) -> sparse.csr_matrix:
    """Sparse 0/1 matrix ``P`` (n_total x len(rows)) with ``P[rows[j], j] = 1``."""
    n = len(rows)
    return sparse.csr_matrix(
        (np.ones(n, dtype=np.float32), (rows, np.arange(n))), shape=(n_total, n)
    )


def _pad_matrix(x, rows: np.ndarray, n_total: int):
    """Place the rows of ``x`` at positions ``rows`` of an all-zero ``n_total``-row matrix."""
    if x is None:
        return None
    if sparse.issparse(x):
        embed = _row_embedding(rows, n_total)
        out = (embed @ sparse.csr_matrix(x)).tocsr()
        return out.astype(x.dtype, copy=False)
    x = np.asarray(x)
    out = np.zeros((n_total, *x.shape[1:]), dtype=x.dtype)
    out[rows] = x
    return out


def _pad_obsm_value(value, rows: np.ndarray, n_total: int, cells: pd.Index):
    if isinstance(value, pd.DataFrame):
        out = value.copy()
        out.index = value.index
        return out.reindex(cells)
    if sparse.issparse(value):
        return _pad_matrix(value, rows, n_total)
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.floating):
        out = np.full((n_total, *value.shape[1:]), np.nan, dtype=value.dtype)
        out[rows] = value
        return out
    return _pad_matrix(value, rows, n_total)


def _pad_modality(adata: ad.AnnData, cells: pd.Index) -> ad.AnnData:
    rows = cells.get_indexer(adata.obs_names)
    n = len(cells)
    obs = adata.obs.reindex(cells)
    embed = _row_embedding(rows, n)
    obsp = {k: (embed @ sparse.csr_matrix(v) @ embed.T).tocsr() for k, v in adata.obsp.items()}
    return ad.AnnData(
        X=_pad_matrix(adata.X, rows, n),
        obs=obs,
        var=adata.var.copy(),
        layers={k: _pad_matrix(v, rows, n) for k, v in adata.layers.items()},
        obsm={k: _pad_obsm_value(v, rows, n, cells) for k, v in adata.obsm.items()},
        varm={k: deepcopy(v) for k, v in adata.varm.items()},
        obsp=obsp,
        uns=deepcopy(dict(adata.uns)),
    )


def _carry_obs_columns(
    padded: dict[str, ad.AnnData], global_obs: pd.DataFrame, cells: pd.Index
) -> pd.DataFrame:
    """Global obs: the MuData's own columns plus every modality column, first non-missing wins."""
    obs = pd.DataFrame(index=cells)
    for col in global_obs.columns:
        if ":" in col and col.split(":", 1)[0] in padded:
            continue  # mudata's prefixed copy of a modality column; carried below
        obs[col] = global_obs[col].reindex(cells)
    columns: list[str] = []
    for adata in padded.values():
        columns += [c for c in adata.obs.columns if c not in columns and c not in obs.columns]
    for col in columns:
        values = [a.obs[col] for a in padded.values() if col in a.obs.columns]
        merged = values[0]
        for other in values[1:]:
            merged = _combine_first(merged, other)
        obs[col] = merged
    return obs


def _combine_first(a: pd.Series, b: pd.Series) -> pd.Series:
    if isinstance(a.dtype, pd.CategoricalDtype) or isinstance(b.dtype, pd.CategoricalDtype):
        cats = pd.Index(_categories(a)).append(pd.Index(_categories(b)))
        cats = cats[~cats.duplicated()]
        out = a.astype(object).where(a.notna(), b.astype(object))
        return pd.Series(pd.Categorical(out, categories=cats), index=a.index)
    return a.combine_first(b)


def _categories(s: pd.Series) -> list:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return list(s.cat.categories)
    return list(pd.unique(s.dropna()))


@quiet_libraries()
def pad_mudata(
    mdata: md.MuData | Mapping[str, ad.AnnData],
    modalities: Sequence[str] | None = None,
    indicator_prefix: str = INDICATOR_PREFIX,
) -> md.MuData:
    """Pad a paired, unpaired or mosaic MuData so every modality holds every cell.

    scvi-tools' ``AnnDataManager`` needs every modality to hold the same cells in the
    same order. This function builds that form without guessing: the union of all
    cells, all-zero rows where a modality was not measured (sparse rows stay sparse and
    cost nothing), and one explicit 0/1 indicator column per modality in ``mdata.obs``
    that every scmint model uses as its mask. Never infer "missing" from an all-zero row.

    Parameters
    ----------
    mdata
        MuData with two or more modalities, or a dict ``{modality: AnnData}`` (read as
        ``mudata.MuData(mdata)``). Cells with the same ``obs_names`` in two
        modalities were measured together; the modalities may hold identical
        (paired), disjoint (unpaired) or overlapping (mosaic) cell sets.
    modalities
        Modalities to keep, in this order. Default: all of ``mdata.mod``.
    indicator_prefix
        Prefix of the indicator columns: ``f"{indicator_prefix}{modality}"``.

    Returns
    -------
    A new padded :class:`~mudata.MuData`; the input is not modified.

    Notes
    -----
    What the padded MuData holds:

    - ``mdata.mod[m]`` holds every cell, in the same order for all modalities; ``X``
      and ``layers`` of absent cells are all-zero (sparse stays sparse, dense stays
      dense); float ``obsm`` entries of absent cells are NaN; ``var``, ``varm`` and
      ``uns`` are copied;
    - ``mdata.obs[f"{indicator_prefix}{m}"]``: 1 where the cell was measured in ``m``,
      else 0 (``int8``);
    - the modalities' ``obs`` columns (cell type, batch, ...) are carried to
      ``mdata.obs`` unprefixed; where a paired cell has different values in two
      modalities the first modality's value is kept;
    - ``mdata.uns["scmint_padding"]`` records the modalities and the prefix.

    Examples
    --------
    >>> import scmint
    >>> mosaic = scmint.data.simulate_multiome(n_cells=300, paired_fraction=0.5)
    >>> padded = scmint.data.pad_mudata(mosaic)
    >>> int(padded.obs["has_rna"].sum()) == mosaic["rna"].n_obs
    True
    >>> padded = scmint.data.pad_mudata({"rna": mosaic["rna"], "atac": mosaic["atac"]})
    """
    if isinstance(mdata, Mapping) and not isinstance(mdata, md.MuData):
        bad = {m: type(a).__name__ for m, a in mdata.items() if not isinstance(a, ad.AnnData)}
        if bad:
            raise TypeError(f"pad_mudata's dict must map modality names to AnnData; got {bad}.")
        mdata = md.MuData(dict(mdata))
    if not isinstance(mdata, md.MuData):
        raise TypeError(
            f"pad_mudata expects a mudata.MuData or a dict of AnnData, got "
            f"{type(mdata).__name__}; e.g. pad_mudata({{'rna': adata_rna, 'atac': adata_atac}})."
        )
    from ._validation import check_in_memory  # _validation imports this module

    check_in_memory(mdata)
    names = list(mdata.mod.keys()) if modalities is None else list(modalities)
    unknown = [m for m in names if m not in mdata.mod]
    if unknown:
        raise KeyError(f"Unknown modalities {unknown}; the MuData has {list(mdata.mod.keys())}.")
    if len(names) < 2:
        raise ValueError(
            f"scmint integrates two or more modalities; got {names}. "
            "Pass a MuData with at least two modalities."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"Modalities are listed more than once: {names}.")

    mods = [mdata.mod[m] for m in names]
    cells = _union_of_cells(mods, names)
    if len(cells) == 0:
        raise ValueError(
            f"The MuData holds no cells: modalities {names} have 0 observations. Check the "
            "filtering or subsetting that produced it."
        )
    padded = {name: _pad_modality(adata, cells) for name, adata in zip(names, mods, strict=True)}
    obs = _carry_obs_columns(padded, mdata.obs, cells)
    for name, adata in zip(names, mods, strict=True):
        obs[indicator_key(name, indicator_prefix)] = cells.isin(adata.obs_names).astype(np.int8)

    out = md.MuData(padded)
    out.obs = obs
    out.uns.update(deepcopy(dict(mdata.uns)))
    out.uns[PADDING_UNS_KEY] = {"modalities": names, "indicator_prefix": indicator_prefix}
    return out


def is_padded(mdata: md.MuData, modalities: Sequence[str] | None = None) -> bool:
    """Whether ``mdata`` has the padded form that :func:`pad_mudata` produces."""
    try:
        check_padded(mdata, modalities)
    except ValueError:
        return False
    return True


def check_padded(
    mdata: md.MuData,
    modalities: Sequence[str] | None = None,
    indicator_prefix: str | None = None,
) -> None:
    """Raise a clear error unless ``mdata`` is padded for ``modalities``.

    Padded means: every modality holds exactly ``mdata.obs_names`` in the same order,
    and ``mdata.obs`` has a 0/1 indicator column per modality.
    """
    fix = "Pad it first: mdata = scmint.data.pad_mudata(mdata)."
    names = list(mdata.mod.keys()) if modalities is None else list(modalities)
    if indicator_prefix is None:
        indicator_prefix = mdata.uns.get(PADDING_UNS_KEY, {}).get(
            "indicator_prefix", INDICATOR_PREFIX
        )
    check_unique_cells(
        mdata.obs_names,
        "The MuData",
        "make them unique in each modality (adata.obs_names_make_unique()) and pad again: "
        "mdata = scmint.data.pad_mudata(mdata).",
    )
    for name in names:
        mod = mdata.mod[name]
        if mod.n_obs != mdata.n_obs or not mod.obs_names.equals(mdata.obs_names):
            raise ValueError(
                f"The MuData is not padded: modality '{name}' holds {mod.n_obs} of the "
                f"{mdata.n_obs} cells (or in another order); every scmint model needs every "
                f"modality to hold every cell, with explicit indicator columns. {fix}"
            )
        key = indicator_key(name, indicator_prefix)
        if key not in mdata.obs.columns:
            raise ValueError(
                f"The MuData is not padded: mdata.obs has no indicator column '{key}' saying "
                f"which cells were measured in '{name}'. {fix}"
            )
        values = pd.to_numeric(mdata.obs[key], errors="coerce").to_numpy()
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"Indicator column mdata.obs['{key}'] must hold only 0 and 1. {fix}")
