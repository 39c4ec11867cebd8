"""Checks that fail before training, each with a message that says what to do."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
from scipy import sparse

from ._backed import OnDiskRows, is_on_disk, stored_value_chunks
from ._padding import indicator_key


def get_matrix(adata: ad.AnnData, layer: str | None = None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for an unknown layer."""
    if layer is None or layer == "X":
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the layer with the data.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer '{layer}' not found; available layers: {list(adata.layers.keys())}. "
            "Use layer=None for X."
        )
    return adata.layers[layer]


def _dtype(x) -> np.dtype:
    """Type of the values of a dense, sparse or on-disk matrix."""
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


class _ValueCounts:
    """Counts of the stored values of a matrix that break each rule, read chunk by chunk.

    Only the rules ``kind`` needs are counted: finiteness for ``"any"``, also negative
    values for ``"nonnegative"``, also non-integer ones for ``"counts"``.
    """

    def __init__(self, x, kind: ValueKind = "counts") -> None:
        self.not_finite = self.negative = self.non_integer = 0
        self.example = None
        for values in stored_value_chunks(x):
            if not values.size:
                continue
            self.not_finite += int(values.size - np.isfinite(values).sum())
            if kind == "any":
                continue
            self.negative += int((values < 0).sum())
            if kind == "nonnegative":
                continue
            fractional = values != np.round(values)
            self.non_integer += int(fractional.sum())
            if self.example is None and fractional.any():
                self.example = values[fractional][0]


def _where(modality: str | None, layer: str | None) -> str:
    place = "X" if layer is None else f"layers['{layer}']"
    return place if modality is None else f"modality '{modality}' ({place})"


def check_modalities(mdata: md.MuData, modalities: Sequence[str]) -> list[str]:
    """Check the modality names exist in ``mdata`` and return them as a list."""
    if isinstance(modalities, str):
        raise TypeError(
            f"modalities must be a list of names, got the string '{modalities}'; "
            f"write modalities=['{modalities}', ...]."
        )
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in mdata.mod]
    if unknown:
        raise KeyError(
            f"Unknown modalities {unknown}: the MuData has {list(mdata.mod.keys())}. "
            "Check the spelling or pass modalities= with names from mdata.mod."
        )
    if len(modalities) < 2:
        raise ValueError(f"scmint models need two or more modalities, got {modalities}.")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"Modalities are listed more than once: {modalities}.")
    return modalities


def check_in_memory(data: md.MuData | ad.AnnData, what: str = "The MuData") -> None:
    """Raise if ``data`` (or one of its modalities) was read with ``backed=True``.

    For the steps that need the data in memory (padding, query cells); an on-disk
    MuData would otherwise fail later with a misleading message about non-numeric
    values. The models themselves train and infer from a padded on-disk MuData.
    """
    parts = [data] if isinstance(data, ad.AnnData) else [data, *data.mod.values()]
    if any(getattr(part, "isbacked", False) for part in parts):
        raise ValueError(
            f"{what} is backed (read with backed=True, its matrices stay on disk), and this "
            "step reads data held in memory (the models read a padded MuData from disk, "
            "but padding and query cells do not). Read it without backed "
            "(mudata.read_h5mu(path) or scmint.data.read_h5mu(path)), or, for an AnnData, "
            "call adata.to_memory()."
        )


def check_features(adata: ad.AnnData, modality: str) -> None:
    """Raise if a modality has no features, or features with the same name."""
    if adata.n_vars == 0:
        raise ValueError(
            f"Modality '{modality}' has no features (0 columns), so there is nothing to "
            f"learn from it. Drop it (modalities=[...] without '{modality}') or fix the "
            "feature selection that emptied it."
        )
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()].unique()[:3].tolist()
        raise ValueError(
            f"Modality '{modality}' has duplicated feature names (e.g. {dup}); features are "
            f"matched by name, so make them unique first: "
            f"mdata.mod['{modality}'].var_names_make_unique()."
        )


def check_cells(mdata: md.MuData, what: str = "The MuData") -> None:
    """Raise if ``mdata`` holds no cells (duplicated names: :func:`check_padded`)."""
    if mdata.n_obs == 0:
        raise ValueError(
            f"{what} holds no cells (0 observations); check the filtering or subsetting "
            "that produced it."
        )


def resolve_layers(
    modalities: Sequence[str], layer: str | Mapping[str, str | None] | None
) -> dict[str, str | None]:
    """Expand ``layer`` (None, one name, or a mapping per modality) into a full mapping."""
    if layer is None or isinstance(layer, str):
        return dict.fromkeys(modalities, layer)
    unknown = [m for m in layer if m not in modalities]
    if unknown:
        raise KeyError(f"layer= names modalities {unknown} that are not among {list(modalities)}.")
    return {m: layer.get(m) for m in modalities}


ValueKind = Literal["any", "nonnegative", "counts"]
"""What a matrix must hold: any finite numbers, non-negative ones, or raw integer counts."""

Context = Literal["setup", "query"]
"""Where a matrix is checked: training data at setup (or load), or query cells."""


def value_kind(x) -> ValueKind:
    """The strictest :data:`ValueKind` that the finite matrix ``x`` satisfies."""
    counts = _ValueCounts(x)
    if counts.negative:
        return "any"
    if counts.non_integer:
        return "nonnegative"
    return "counts"


def check_values(
    x,
    modality: str | None = None,
    layer: str | None = None,
    kind: ValueKind = "any",
    context: Context = "setup",
    what: str | None = None,
    fractional: Literal["raise", "warn"] = "raise",
) -> None:
    """Raise unless the matrix holds finite numbers of the required kind.

    The one validator of data values, for training data (at setup and at load) and for
    query cells, so that both are refused for the same reasons.

    Parameters
    ----------
    x
        Dense or sparse cells x features matrix (not modified, never densified).
    modality
        Modality name used in messages.
    layer
        Layer name used in messages (None: ``X``).
    kind
        ``"any"``: finite numbers; ``"nonnegative"``: finite and >= 0 (data a model
        log-normalises); ``"counts"``: non-negative integers (a count likelihood, or a
        model trained on raw counts).
    context
        ``"setup"`` for training data, ``"query"`` for cells embedded by a trained model;
        only the advice in the messages differs.
    what
        What the matrix is, for messages (e.g. ``"TfidfLSI input"``); default the
        modality and layer.
    fractional
        With ``kind="counts"``: ``"raise"`` for non-integer values, or ``"warn"`` (for
        transforms that treat any non-negative values as counts, such as TF-IDF).
    """
    if kind not in ("any", "nonnegative", "counts"):
        raise ValueError(f"kind must be 'any', 'nonnegative' or 'counts', got {kind!r}.")
    where = _where(modality, layer) if what is None else what
    if context == "query":
        where = f"The query's {where}"
    dtype = _dtype(x)
    if not np.issubdtype(dtype, np.number):
        raise TypeError(
            f"{where} holds non-numeric values ({dtype}); pass a numeric matrix "
            "(e.g. adata.X = adata.X.astype('float32'))."
        )
    counts = _ValueCounts(x, kind)
    if counts.not_finite:
        when = "before setup" if context == "setup" else "before embedding the query"
        raise ValueError(
            f"{where} holds {counts.not_finite} NaN or infinite values. "
            f"Remove or impute them {when} (for example set them to 0 for counts)."
        )
    if kind == "any":
        return
    if counts.negative:
        if context == "query":
            fix = (
                "the model was trained on non-negative values (counts or normalised "
                "counts) in this modality, so negative values (e.g. scaled or centred "
                "data) would be embedded wrongly. Pass the same kind of values as the "
                "training data (the same layer, unscaled)."
            )
        elif kind == "counts":
            fix = (
                "a count likelihood (negative binomial, Poisson) needs raw non-negative "
                "counts. Pass the layer with raw counts (layer=...) or choose a Normal "
                "likelihood."
            )
        else:
            fix = "this model log-normalises it and needs non-negative values."
        raise ValueError(f"{where} holds {counts.negative} negative values, but {fix}")
    if kind == "nonnegative":
        return
    if counts.non_integer and fractional == "warn":
        warnings.warn(
            f"{where} does not look like raw counts ({counts.non_integer} non-integer "
            "values); it is normalised and log-transformed as if it were counts.",
            UserWarning,
            stacklevel=3,
        )
        return
    if counts.non_integer:
        example = counts.example
        if context == "query":
            fix = (
                "the model was trained on raw integer counts in this modality, and "
                "normalised or log-transformed data would be embedded wrongly. Pass the "
                "query's raw counts (in the layer the model was set up with)."
            )
        else:
            fix = (
                "a count likelihood (negative binomial, Poisson) needs raw integer counts. "
                "Normalised or log-transformed data are not counts: pass the layer with "
                "raw counts (layer=...) or choose a Normal likelihood."
            )
        raise ValueError(
            f"{where} holds {counts.non_integer} non-integer values (e.g. {example:g}), but {fix}"
        )


def check_finite(x, modality: str | None = None, layer: str | None = None) -> None:
    """Raise if the matrix holds NaN, infinite or non-numeric values (training data)."""
    check_values(x, modality, layer, kind="any")


def check_counts(
    x,
    modality: str | None = None,
    layer: str | None = None,
    what: str | None = None,
    fractional: Literal["raise", "warn"] = "raise",
) -> None:
    """Raise unless the matrix holds non-negative integers, as a count likelihood needs.

    With ``fractional="warn"``, non-integer values only warn (negative ones still
    raise); see :func:`check_values`.
    """
    check_values(x, modality, layer, kind="counts", what=what, fractional=fractional)


def _row_sums(x) -> np.ndarray:
    """Sum of absolute values per row (chunk by chunk for an on-disk matrix)."""
    if is_on_disk(x):
        out = np.empty(x.shape[0])
        for rows, block in OnDiskRows(x).chunks():
            out[rows] = np.asarray(abs(block).sum(axis=1)).ravel()
        return out
    return np.asarray(abs(x).sum(axis=1)).ravel()


def check_nonempty_cells(
    mdata: md.MuData,
    modalities: Sequence[str],
    layers: Mapping[str, str | None],
    indicator_prefix: str,
    every_modality: bool = True,
) -> None:
    """Raise if a cell has no counts in any modality it was measured in.

    With ``every_modality`` (training data) also if no cell was measured in a modality;
    a query (e.g. RNA-only cells of a new batch) may lack modalities.
    """
    total = np.zeros(mdata.n_obs)
    present = np.zeros(mdata.n_obs, dtype=bool)
    for m in modalities:
        has = mdata.obs[indicator_key(m, indicator_prefix)].to_numpy().astype(bool)
        present |= has
        total += np.where(has, _row_sums(get_matrix(mdata.mod[m], layers[m])), 0.0)
    for m in modalities if every_modality else ():
        if not mdata.obs[indicator_key(m, indicator_prefix)].to_numpy().astype(bool).any():
            raise ValueError(
                f"No cell was measured in modality '{m}' (its indicator column is all 0); "
                f"drop it from modalities= or add the cells measured in it."
            )
    absent = ~present
    if absent.any():
        names = mdata.obs_names[absent][:3].tolist()
        raise ValueError(
            f"{int(absent.sum())} cells (e.g. {names}) are measured in none of the modalities "
            f"{list(modalities)} according to the indicator columns. Drop them, e.g. "
            "mdata = mdata[mask].copy(), or pad again with scmint.data.pad_mudata."
        )
    empty = total == 0
    if empty.any():
        names = mdata.obs_names[empty][:3].tolist()
        raise ValueError(
            f"{int(empty.sum())} cells (e.g. {names}) have no counts in any modality they "
            "were measured in. Filter them out before setup, e.g. with "
            "muon.pp.filter_obs or scanpy.pp.filter_cells(min_counts=1) per modality, "
            "then pad again."
        )


def check_labels(
    obs: pd.DataFrame,
    labels_key: str | None,
    unlabeled_category: str = "Unknown",
    required: bool = False,
) -> None:
    """Raise if labels are required but missing, or the column is absent or all unknown."""
    if labels_key is None:
        if required:
            raise ValueError(
                "This model trains on cell-type labels: pass labels_key= naming the obs column "
                "with them (in mdata.obs or a modality's obs before padding)."
            )
        return
    if labels_key not in obs.columns:
        raise KeyError(
            f"labels_key '{labels_key}' is not a column of mdata.obs (columns: "
            f"{list(obs.columns)}). Pad the MuData with scmint.data.pad_mudata to carry "
            "modality obs columns to mdata.obs, or fix the name."
        )
    labels = obs[labels_key]
    known = labels.notna() & (labels.astype(str) != str(unlabeled_category))
    if required and not known.any():
        raise ValueError(
            f"Every cell's label in '{labels_key}' is missing or '{unlabeled_category}'; "
            "this model needs labelled cells to train on."
        )


def align_matrix(
    x,
    var_names: Sequence[str] | pd.Index,
    reference_features: Sequence[str] | pd.Index,
    modality: str = "data",
    align: bool = True,
    hint: str = "pass align_features=True",
):
    """Columns of ``x`` (named ``var_names``) reordered to ``reference_features``.

    Parameters
    ----------
    x
        Dense or sparse cells x features matrix.
    var_names
        Names of the columns of ``x``.
    reference_features
        The feature names and order wanted (e.g. those a model or transform was fitted on).
    modality
        Name used in messages.
    align
        If True, drop unknown features and zero-fill reference features the input lacks,
        warning how many. If False, missing reference features raise an error.
    hint
        What the error message tells the user to do to allow zero-filling.

    Returns
    -------
    ``x`` itself when the names already match, else a new matrix with
    ``len(reference_features)`` columns; sparse stays sparse.
    """
    reference = pd.Index(np.asarray(reference_features).astype(str))
    names = pd.Index(np.asarray(var_names).astype(str))
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} feature names for a matrix with {x.shape[1]} columns.")
    if names.equals(reference):
        return x
    if not names.is_unique:
        dup = names[names.duplicated()].unique()[:3].tolist()
        raise ValueError(
            f"Features of '{modality}' are not unique (e.g. {dup}); "
            "run adata.var_names_make_unique()."
        )
    src = names.get_indexer(reference)
    found = src >= 0
    n_missing = int((~found).sum())
    n_extra = len(names) - int(found.sum())
    if n_missing == len(reference):
        raise ValueError(
            f"None of the {len(reference)} reference features of '{modality}' is in the "
            "input; check that it uses the same feature names (e.g. gene symbols versus "
            "Ensembl IDs)."
        )
    summary = (
        f"{n_missing} of the {len(reference)} reference features of '{modality}' are absent "
        f"from the input (e.g. {reference[~found][:3].tolist()}) and {n_extra} input "
        "features are not in the reference"
    )
    if n_missing and not align:
        raise ValueError(f"Features do not match the reference: {summary}; {hint} to zero-fill.")
    if n_missing or n_extra:
        warnings.warn(
            f"Aligning features by name: {summary}; absent features are zero-filled.",
            UserWarning,
            stacklevel=3,
        )
    if not n_missing:
        return x[:, src]
    select = sparse.csr_matrix(
        (np.ones(found.sum(), dtype=np.float32), (src[found], np.flatnonzero(found))),
        shape=(len(names), len(reference)),
    )
    if sparse.issparse(x):
        return (sparse.csr_matrix(x) @ select).tocsr().astype(x.dtype, copy=False)
    out = np.zeros((x.shape[0], len(reference)), dtype=np.asarray(x).dtype)
    out[:, found] = np.asarray(x)[:, src[found]]
    return out


def align_features(
    adata: ad.AnnData,
    reference_features: Sequence[str] | pd.Index,
    modality: str = "data",
    align: bool = True,
    layer: str | None = None,
) -> ad.AnnData:
    """Return ``adata`` with exactly ``reference_features``, in their order.

    Parameters
    ----------
    adata
        Query data of one modality. Not modified.
    reference_features
        The feature names the model was trained on.
    modality
        Name used in messages.
    align
        If True, reorder features by name, drop unknown ones and zero-fill reference
        features the query lacks, warning how many. If False, missing features raise.
    layer
        Layer to take the values from (None: ``X``); the result holds them in ``X``.

    Returns
    -------
    ``adata`` itself when nothing has to change, else a new AnnData with ``var_names``
    equal to ``reference_features``; sparse input stays sparse.
    """
    x = get_matrix(adata, layer)
    if adata.var_names.equals(pd.Index(reference_features)) and layer is None:
        return adata
    new_x = align_matrix(x, adata.var_names, reference_features, modality, align)
    var = adata.var.reindex(pd.Index(reference_features))
    return ad.AnnData(X=new_x, obs=adata.obs.copy(), var=var)
