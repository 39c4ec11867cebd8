"""Bring query data of any accepted shape into the reference's padded form."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse

from .._quiet import quiet_libraries
from ._padding import (
    INDICATOR_PREFIX,
    check_unique_cells,
    indicator_key,
    is_padded,
    pad_mudata,
)
from ._validation import align_features, check_in_memory


def _empty_modality(obs_names: pd.Index, features: pd.Index, dtype=np.float32) -> ad.AnnData:
    return ad.AnnData(
        X=sparse.csr_matrix((len(obs_names), len(features)), dtype=dtype),
        obs=pd.DataFrame(index=obs_names.copy()),
        var=pd.DataFrame(index=features.copy()),
    )


def infer_modality(adata: ad.AnnData, reference_features: Mapping[str, pd.Index]) -> str:
    """The reference modality whose features ``adata``'s feature names clearly belong to.

    A modality is chosen when it holds at least half of ``adata``'s feature names and
    every other modality less than half as many as it (a few protein names that are also
    gene names do not make a CITE-seq protein query ambiguous). Otherwise this raises,
    and the caller must say which with ``modality=``.
    """
    names = pd.Index(np.asarray(adata.var_names).astype(str))
    shared = {
        m: int(names.isin(pd.Index(np.asarray(f).astype(str))).sum())
        for m, f in reference_features.items()
    }
    best = max(shared, key=shared.get)
    others = [n for m, n in shared.items() if m != best]
    if (
        names.size
        and shared[best] >= 0.5 * names.size
        and all(n < 0.5 * shared[best] for n in others)
    ):
        return best
    found = ", ".join(f"'{m}': {n}" for m, n in shared.items())
    raise ValueError(
        f"The query is an AnnData of one modality, and its feature names do not say which "
        f"(features shared with each modality: {found}). Say which with modality= "
        f"(one of {list(reference_features)})."
    )


@quiet_libraries()
def prepare_query_mudata(
    query: md.MuData | ad.AnnData,
    reference_features: Mapping[str, pd.Index],
    modality: str | None = None,
    layer: str | Mapping[str, str | None] | None = None,
    align: bool = True,
    indicator_prefix: str = INDICATOR_PREFIX,
) -> md.MuData:
    """Return query cells as a padded MuData with the reference's modalities and features.

    Parameters
    ----------
    query
        Any of: a padded MuData with the model's modalities; a MuData holding only some
        of them (for example RNA-only cells of a new donor), or modalities with
        different cell sets; an AnnData of one modality, with ``modality`` naming it.
        Not modified.
    reference_features
        ``{modality: feature names}`` the model was trained on, in order.
    modality
        Name of the modality when ``query`` is an AnnData; default: the one reference
        modality sharing feature names with it (:func:`infer_modality`).
    layer
        Layer holding the data (one name, or ``{modality: layer}``); None uses ``X``.
        The returned MuData holds the values in ``X``.
    align
        Match features by name, zero-filling reference features the query lacks (with
        a warning that says how many). If False, mismatched features raise.
    indicator_prefix
        Prefix of the indicator columns in the result.

    Returns
    -------
    A padded MuData: every reference modality, in reference order and features; cells of
    a modality the query lacks are all-zero with indicator 0. The query's ``obs`` columns
    are carried to ``mdata.obs``.
    """
    check_in_memory(query, "The query")
    names = list(reference_features)
    if isinstance(query, ad.AnnData) and not isinstance(query, md.MuData):
        if modality is None:
            modality = infer_modality(query, reference_features)
        if modality not in reference_features:
            raise KeyError(f"Unknown modality '{modality}': the model has {names}.")
        query = md.MuData({modality: query})
    if not isinstance(query, md.MuData):
        raise TypeError(f"Query must be a MuData or an AnnData, got {type(query).__name__}.")
    unknown = [m for m in query.mod if m not in reference_features]
    if unknown:
        warnings.warn(
            f"Query modalities {unknown} are not among the model's {names} and are ignored.",
            UserWarning,
            stacklevel=2,
        )
    present = [m for m in names if m in query.mod]
    if not present:
        raise ValueError(
            f"The query holds none of the model's modalities {names} (it has {list(query.mod)})."
        )
    for m in present:
        check_unique_cells(query.mod[m].obs_names, f"The query's modality '{m}'")
    if all(query.mod[m].n_obs == 0 for m in present):
        raise ValueError("The query holds no cells (0 observations).")
    layers = dict.fromkeys(names, layer) if not isinstance(layer, Mapping) else dict(layer)
    padded_already = set(present) == set(names) and is_padded(query, names)
    mods: dict[str, ad.AnnData] = {}
    for m in present:
        mods[m] = align_features(
            query.mod[m], reference_features[m], modality=m, align=align, layer=layers.get(m)
        )
    if padded_already:
        obs = query.obs.copy()
        out_mods = {m: mods[m] for m in names}
    else:
        tmp = (
            pad_mudata(md.MuData(mods), indicator_prefix=indicator_prefix)
            if len(mods) > 1
            else None
        )
        if tmp is not None:
            out_mods = {m: tmp.mod[m] for m in present}
            obs = tmp.obs
        else:
            (only,) = present
            out_mods = {only: mods[only]}
            obs = mods[only].obs.copy()
            obs[indicator_key(only, indicator_prefix)] = np.int8(1)
        cells = obs.index
        for m in names:
            if m not in out_mods:
                out_mods[m] = _empty_modality(
                    cells, pd.Index(reference_features[m]), dtype=np.float32
                )
                obs[indicator_key(m, indicator_prefix)] = np.int8(0)
        for col in query.obs.columns:
            if col not in obs.columns and ":" not in col:
                obs[col] = query.obs[col].reindex(cells)
        out_mods = {m: out_mods[m] for m in names}
    out = md.MuData(out_mods)
    out.obs = obs.loc[out.obs_names]
    out.uns["scmint_padding"] = {"modalities": names, "indicator_prefix": indicator_prefix}
    return out
