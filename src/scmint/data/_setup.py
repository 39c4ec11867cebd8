"""The one registration of a padded MuData that every scmint model reuses."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401  scvi-tools 1.4.2's view_anndata_setup uses it unimported
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.data.fields import (
    BaseAnnDataField,
    MuDataCategoricalObsField,
    MuDataLabelsWithUnlabeledObsField,
    MuDataLayerField,
    MuDataNumericalObsField,
)
from scvi.model.base._save_load import _load_saved_files

from .._quiet import quiet_libraries
from ._padding import INDICATOR_PREFIX, PADDING_UNS_KEY, check_padded, indicator_key
from ._validation import (
    check_cells,
    check_counts,
    check_features,
    check_in_memory,
    check_labels,
    check_modalities,
    check_nonempty_cells,
    check_values,
    get_matrix,
    resolve_layers,
)

LABELS_COLUMN = "_scmint_labels"
"""``mdata.obs`` column holding the labels with missing values set to the unlabeled category."""


def data_key(modality: str) -> str:
    """Registry key under which a modality's data matrix is registered."""
    return f"X_{modality}"


def mask_key(modality: str) -> str:
    """Registry key under which a modality's 0/1 indicator is registered."""
    return f"mask_{modality}"


def _obs_column_or_raise(mdata: md.MuData, key: str, what: str) -> None:
    if key in mdata.obs.columns:
        return
    in_mods = [m for m, a in mdata.mod.items() if key in a.obs.columns]
    hint = (
        f" It is a column of modalities {in_mods}: pad with scmint.data.pad_mudata, which "
        "carries modality obs columns to mdata.obs."
        if in_mods
        else ""
    )
    raise KeyError(
        f"{what} '{key}' is not a column of mdata.obs (columns: {list(mdata.obs.columns)})."
        f"{hint or ' Fix the name, or add the column to mdata.obs.'}"
    )


def validate_mudata(
    mdata: md.MuData,
    modalities: Sequence[str] | None = None,
    layer: str | Mapping[str, str | None] | None = None,
    batch_key: str | None = None,
    labels_key: str | None = None,
    count_modalities: Sequence[str] = (),
    labels_required: bool = False,
    unlabeled_category: str = "Unknown",
    on_disk: bool = False,
    every_modality: bool = True,
) -> tuple[list[str], dict[str, str | None], str]:
    """Check a MuData before registration; raise a clear error for each kind of bad input.

    Parameters
    ----------
    mdata
        The MuData to check (not modified).
    modalities
        Modalities the model uses; default all of ``mdata.mod``.
    layer
        Layer name, or ``{modality: layer}``; None uses ``X``.
    batch_key
        Column of ``mdata.obs`` with the batch of each cell.
    labels_key
        Column of ``mdata.obs`` with cell-type labels.
    count_modalities
        Modalities that will be fitted with a count likelihood: their values must be
        non-negative integers.
    labels_required
        Whether the model needs labelled cells.
    unlabeled_category
        Label value meaning "unknown".
    on_disk
        Whether the model reads a MuData read with ``backed=True`` (its matrices are
        then checked chunk by chunk from the file); otherwise such a MuData is refused.
    every_modality
        Require cells measured in every modality (training data); a query may lack some.

    Returns
    -------
    The modality list, the per-modality layers and the indicator prefix.
    """
    if not isinstance(mdata, md.MuData):
        raise TypeError(
            f"setup_mudata expects a mudata.MuData, got {type(mdata).__name__}. For one "
            "AnnData per modality build mudata.MuData({'rna': rna, 'atac': atac}) and pad it "
            "with scmint.data.pad_mudata."
        )
    if not on_disk:
        check_in_memory(mdata)
    names = check_modalities(mdata, list(mdata.mod.keys()) if modalities is None else modalities)
    prefix = mdata.uns.get(PADDING_UNS_KEY, {}).get("indicator_prefix", INDICATOR_PREFIX)
    check_cells(mdata)
    check_padded(mdata, names, prefix)
    layers = resolve_layers(names, layer)
    unknown_counts = [m for m in count_modalities if m not in names]
    if unknown_counts:
        raise KeyError(f"count_modalities {unknown_counts} are not among modalities {names}.")
    for m in names:
        check_features(mdata.mod[m], m)
        x = get_matrix(mdata.mod[m], layers[m])
        check_values(x, m, layers[m], kind="counts" if m in count_modalities else "any")
    check_nonempty_cells(mdata, names, layers, prefix, every_modality=every_modality)
    if batch_key is not None:
        _obs_column_or_raise(mdata, batch_key, "batch_key")
        if mdata.obs[batch_key].isna().any():
            n = int(mdata.obs[batch_key].isna().sum())
            raise ValueError(
                f"{n} cells have no value in batch_key '{batch_key}'; fill them in "
                "(e.g. with the name of their dataset) before setup."
            )
        column = mdata.obs[batch_key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            unused = [str(c) for c in column.cat.categories if c not in set(column.unique())]
            if unused:
                warnings.warn(
                    f"batch_key '{batch_key}' has categories without cells: {unused[:5]} (a "
                    "subset keeps the categories of the data it was cut from). Each gets "
                    "batch parameters that are never trained, and a query update "
                    "(load_query_data) would count them as reference batches. Drop them "
                    f"first: mdata.obs['{batch_key}'] = "
                    f"mdata.obs['{batch_key}'].cat.remove_unused_categories().",
                    UserWarning,
                    stacklevel=3,
                )
    if labels_key is not None:
        _obs_column_or_raise(mdata, labels_key, "labels_key")
    check_labels(mdata.obs, labels_key, unlabeled_category, required=labels_required)
    return names, layers, prefix


def mudata_fields(
    mdata: md.MuData,
    modalities: Sequence[str],
    layers: Mapping[str, str | None],
    indicator_prefix: str,
    batch_key: str | None = None,
    labels_key: str | None = None,
    unlabeled_category: str = "Unknown",
    count_modalities: Sequence[str] = (),
) -> list[BaseAnnDataField]:
    """The scvi-tools fields of a padded MuData: one data layer and one mask per modality.

    Adds the column ``_scmint_labels`` to ``mdata.obs`` when ``labels_key`` is given
    (labels with missing values replaced by ``unlabeled_category``), the way
    scvi-tools adds its own ``_scvi_*`` columns.
    """
    fields: list[BaseAnnDataField] = [
        MuDataCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=None),
    ]
    if labels_key is None:
        fields.append(MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None, mod_key=None))
    else:
        labels = mdata.obs[labels_key].astype(object)
        mdata.obs[LABELS_COLUMN] = pd.Categorical(
            np.where(labels.isna(), unlabeled_category, labels.astype(str))
        )
        fields.append(
            MuDataLabelsWithUnlabeledObsField(
                REGISTRY_KEYS.LABELS_KEY, LABELS_COLUMN, unlabeled_category, mod_key=None
            )
        )
    for m in modalities:
        fields.append(
            MuDataLayerField(
                data_key(m),
                layers[m],
                mod_key=m,
                is_count_data=m in count_modalities,
                mod_required=True,
            )
        )
        fields.append(
            MuDataNumericalObsField(mask_key(m), indicator_key(m, indicator_prefix), mod_key=None)
        )
    return fields


def _features_in_training_order(
    model_name: str, dir_path: str, mdata: md.MuData, prefix: str | None = None
) -> md.MuData:
    """``mdata`` with each modality's features in the order a saved model was trained on.

    Returns ``mdata`` itself when every modality already matches, a reordered copy when
    only the order differs; raises when features are missing or extra.
    """
    if not isinstance(mdata, md.MuData):
        raise TypeError(
            f"{model_name}.load expects a padded mudata.MuData as adata, got "
            f"{type(mdata).__name__}. To embed cells of one modality, load the model and "
            "pass them as a query: model.get_latent_representation(adata, modality=...)."
        )
    saved = _load_saved_files(dir_path, load_adata=False, prefix=prefix, map_location="cpu")
    var_names = saved[1]
    if not isinstance(var_names, Mapping):
        return mdata  # a legacy save with one list of names: scvi-tools checks it
    modalities = saved[0]["registry_"][_SETUP_ARGS_KEY].get("modalities") or list(var_names)
    reordered: dict[str, ad.AnnData] = {}
    for m in modalities:
        if m not in mdata.mod:
            raise KeyError(
                f"The MuData passed to {model_name}.load has no modality '{m}' (it has "
                f"{list(mdata.mod)}); the model was trained on {list(modalities)}."
            )
        reference = pd.Index(np.asarray(var_names[m]).astype(str))
        names = pd.Index(np.asarray(mdata.mod[m].var_names).astype(str))
        if names.equals(reference):
            continue
        check_features(mdata.mod[m], m)
        missing = reference.difference(names, sort=False)
        extra = names.difference(reference, sort=False)
        if len(missing) or len(extra):
            raise ValueError(
                f"Modality '{m}' of the MuData passed to {model_name}.load does not hold the "
                f"{len(reference)} features the model was trained on: {len(missing)} are "
                f"missing (e.g. {missing[:3].tolist()}) and {len(extra)} are not the "
                f"model's (e.g. {extra[:3].tolist()}). load needs the training features; "
                f"subset or reorder them (mdata.mod['{m}'] = "
                f"mdata.mod['{m}'][:, features].copy()), or load the model with the "
                "MuData it was trained on and pass these cells as a query "
                "(get_latent_representation, translate, perturb), which matches "
                "features by name and zero-fills the missing ones."
            )
        reordered[m] = mdata.mod[m][:, mdata.mod[m].var_names[names.get_indexer(reference)]]
    if not reordered:
        return mdata
    if mdata.isbacked:
        raise ValueError(
            f"Modalities {list(reordered)} of the backed MuData passed to {model_name}.load "
            "hold the model's features in another order, and a MuData on disk is not "
            "reordered in memory. Write it with the features in training order "
            "(mdata.mod[m] = mdata.mod[m][:, features] on the MuData in memory, then "
            "mdata.write(path)) and read that backed."
        )
    warnings.warn(
        f"Modalities {list(reordered)} hold the model's features in another order; "
        f"{model_name}.load registers a copy of the MuData with them in training order "
        "(model.adata); the MuData passed in is left as it is.",
        UserWarning,
        stacklevel=3,
    )
    mods = {m: reordered[m].copy() if m in reordered else a for m, a in mdata.mod.items()}
    out = md.MuData(mods)
    out.obs = mdata.obs.copy()
    out.uns.update(deepcopy(dict(mdata.uns)))
    return out


class MuDataSetupMixin:
    """``setup_mudata`` shared by all scmint models.

    A model class lists what it needs in two class attributes and inherits the rest:

    - ``_labels_required``: whether training needs cell-type labels (MINNET);
    - ``_count_modalities_default``: ``"all"`` when every modality is fitted with a count
      likelihood by default, else an empty tuple. Models with per-modality likelihood
      choices check counts again at construction with :meth:`_check_count_modalities`;
    - ``_reads_from_disk``: whether the model trains from a padded MuData read with
      ``backed=True`` (:mod:`scmint.data._backed`), else such a MuData is refused.
    """

    _labels_required: bool = False
    _count_modalities_default: str | tuple[str, ...] = ()
    _reads_from_disk: bool = False
    """Whether the model trains and infers from a MuData read with ``backed=True``."""

    @classmethod
    @quiet_libraries()
    def setup_mudata(
        cls,
        mdata: md.MuData,
        modalities: Sequence[str] | None = None,
        layer: str | Mapping[str, str | None] | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        unlabeled_category: str = "Unknown",
        count_modalities: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register a padded MuData with the model class.

        Parameters
        ----------
        mdata
            Padded MuData (see :func:`scmint.data.pad_mudata`). Registration adds
            scvi-tools' bookkeeping columns (``_scvi_batch``, ``_scvi_labels``,
            ``_scmint_labels``) to ``mdata.obs`` and ``uns["_scvi_*"]``; nothing else of
            it changes. Every model (``_reads_from_disk``) also takes one read with
            ``mudata.read_h5mu(path, backed=True)``: its matrices stay in the file and are
            read chunk by chunk (pad and write it first:
            ``scmint.data.write_h5mu(scmint.data.pad_mudata(mdata), path)``).
        modalities
            Modality names to use, in order; default all of ``mdata.mod``.
        layer
            Layer name for all modalities, or ``{modality: layer}``; None uses ``X``.
        batch_key
            Column of ``mdata.obs`` with the batch (donor, library) of each cell.
        labels_key
            Column of ``mdata.obs`` with cell-type labels; missing values count as
            unlabelled.
        unlabeled_category
            Label value that means "unknown".
        count_modalities
            Modalities whose values must be raw integer counts (a count likelihood is
            fitted to them). Default: the model's own default.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        # a query update (QueryUpdateMixin) registers cells that may lack a modality
        query = kwargs.pop("_query_update", False)
        setup_method_args = cls._get_setup_method_args(**locals())
        setup_method_args["setup_args"].pop("query", None)
        if query:  # load() registers the saved query model's data the same way
            setup_method_args["setup_args"]["_query_update"] = True
        names = list(mdata.mod.keys()) if modalities is None else list(modalities)
        if count_modalities is None:
            default = cls._count_modalities_default
            count_modalities = names if default == "all" else list(default)
        names, layers, prefix = validate_mudata(
            mdata,
            names,
            layer,
            batch_key=batch_key,
            labels_key=labels_key,
            count_modalities=count_modalities,
            labels_required=cls._labels_required and not query,
            unlabeled_category=unlabeled_category,
            on_disk=cls._reads_from_disk,
            every_modality=not query,
        )
        setup_method_args["setup_args"]["modalities"] = names
        setup_method_args["setup_args"]["count_modalities"] = list(count_modalities)
        fields = mudata_fields(
            mdata,
            names,
            layers,
            prefix,
            batch_key=batch_key,
            labels_key=labels_key,
            unlabeled_category=unlabeled_category,
            count_modalities=count_modalities,
        )
        fields += cls._extra_fields(mdata)
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(mdata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    @quiet_libraries()
    def load(cls, dir_path: str, adata: md.MuData | None = None, **kwargs: Any):
        """Load a saved model, registering ``adata`` (or the MuData saved with it).

        As :meth:`scvi.model.base.BaseModelClass.load`, with two checks first: ``adata``
        passes the same validation as at setup, and each modality's features are matched
        by name to those the model was trained on. When a modality holds the model's
        features in another order, the model holds a copy of ``adata`` with them
        reordered (with a warning; the MuData passed in is not modified, except for the
        registration columns that setup adds). Missing or extra features raise an error
        that says how to fix them.

        Parameters
        ----------
        dir_path
            Folder the model was saved to.
        adata
            Padded MuData to register with the model; default the one saved with it.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (``accelerator``,
            ``device``, ``prefix``, ``backup_url``).
        """
        if adata is not None:
            if not cls._reads_from_disk:
                check_in_memory(adata, "The MuData passed to load")
            adata = _features_in_training_order(cls.__name__, dir_path, adata, kwargs.get("prefix"))
        with warnings.catch_warnings():
            # scvi-tools' rare-label notice concerns training; setup showed it already
            warnings.filterwarnings("ignore", message=r"Category .* has fewer than 3 cells")
            try:
                return super().load(dir_path, adata=adata, **kwargs)
            except ValueError as error:
                if "not found in source registry" not in str(error):
                    raise
                raise ValueError(
                    f"{error} The MuData passed to {cls.__name__}.load holds categories "
                    "(batches or labels) the model was not trained with. For cells of new "
                    "batches, load the model with the MuData it was trained on and embed "
                    "them as a query (get_latent_representation(query)), or add the "
                    f"batches with {cls.__name__}.load_query_data(query, dir_path) "
                    "(scArches) where the model has it."
                ) from error

    @classmethod
    def _extra_fields(cls, mdata: md.MuData) -> list[BaseAnnDataField]:
        """Fields a model registers beyond the shared ones (default none)."""
        return []

    # ------------------------------------------------------------------ helpers
    @property
    def modalities(self) -> list[str]:
        """Modalities the model was set up with, in order."""
        return list(self.adata_manager.registry["setup_args"]["modalities"])

    def _modality_var_names(self) -> dict[str, pd.Index]:
        """The reference features of each modality, as registered."""
        return {m: pd.Index(self.adata.mod[m].var_names) for m in self.modalities}

    def _check_count_modalities(self, modalities: Sequence[str]) -> None:
        """Check that ``modalities`` hold integer counts (for models choosing likelihoods)."""
        args = self.adata_manager.registry["setup_args"]
        layers = resolve_layers(self.modalities, args.get("layer"))
        for m in modalities:
            check_counts(get_matrix(self.adata.mod[m], layers[m]), m, layers[m])
