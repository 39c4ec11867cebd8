"""Query update for new batches (scArches), shared by the models with batch parameters.

:meth:`QueryUpdateMixin.load_query_data` follows scvi-tools'
:meth:`~scvi.model.base.ArchesMixin.load_query_data` (Lotfollahi et al. 2022, scArches):
the query's batches are added to the reference's batch categories, every parameter with a
slice per batch grows by the new batches' slices, and only those new slices are trained;
the reference's parameters, its batch-norm statistics and so its embedding of the
reference cells stay as they are.

Module contract (checked up front): ``module.batch_parameters() -> {name: dim}``, the
parameters with one slice per batch and the dimension holding the batches, each batch's
slice at the end of that dimension in registry order (the layout of scvi-tools'
``FCLayers`` one-hot columns and of per-batch rows).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from functools import partial
from types import MethodType
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from scvi import REGISTRY_KEYS
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY
from scvi.model.base._archesmixin import _get_loaded_data
from scvi.model.base._save_load import _initialize_model
from torch import nn

from scmint._quiet import quiet_libraries
from scmint._threads import keep_torch_threads
from scmint.data import prepare_query_mudata
from scmint.nn import FeatureScalerLayer

_REFERENCE_ATTRIBUTES: ContextVar[dict | None] = ContextVar("reference_attributes", default=None)


def reference_attributes() -> dict | None:
    """The reference model's fitted attributes while a query model is built, else None.

    A model whose construction fits transforms on its data (SCCROSS's PCA / LSI, gene-set
    scores) takes the reference's instead when this is set: the query cells are
    transformed exactly like the reference cells (and may lack a modality).
    """
    return _REFERENCE_ATTRIBUTES.get()


def extend_batch_slices(
    new_state: Mapping[str, torch.Tensor],
    reference_state: Mapping[str, torch.Tensor],
    n_reference_batches: int,
    n_new_batches: int,
) -> dict[str, torch.Tensor]:
    """The reference's state dict grown to the new batch count.

    Where a tensor of the new module is larger along a dimension, the reference tensor
    is extended there by the missing slices. Usually the new batches' slices are
    missing; each is set to the mean of the reference batches' slices (the last
    ``n_reference_batches`` entries of that dimension), so a new batch starts as the
    average reference batch. A reference of one batch may hold no slice at all (scvi-tools'
    ``FCLayers`` adds no one-hot column for a single batch): then every batch's slice is
    missing and all are zero, which is what the reference computed. Tensors of equal
    shape are the reference's.
    """
    out = {}
    for key, ref in reference_state.items():
        if key not in new_state:
            raise KeyError(f"The reference holds '{key}', which this model has not.")
        target = new_state[key]
        tensor = ref.to(target.device)
        for dim in range(tensor.dim()):
            extra = target.shape[dim] - tensor.shape[dim]
            shape = list(tensor.shape)
            shape[dim] = extra
            if extra == 0:
                continue
            if extra == n_new_batches:
                size = tensor.shape[dim]
                batches = tensor.narrow(dim, size - n_reference_batches, n_reference_batches)
                fill = batches.float().mean(dim, keepdim=True).to(tensor.dtype).expand(shape)
            elif extra == n_reference_batches + n_new_batches:
                fill = tensor.new_zeros(shape)
            else:
                raise ValueError(
                    f"'{key}' is {tuple(target.shape)} in the query model and "
                    f"{tuple(ref.shape)} in the reference: only batches can be added."
                )
            tensor = torch.cat([tensor, fill], dim=dim)
        out[key] = tensor
    return out


class ReferenceSlices:
    """The reference batches' slices of a query model's batch parameters, kept exact.

    :func:`freeze_reference` gives the new batches' slices the only gradient; an
    optimiser's weight decay (Adam's L2 term, AdamW's decay) would still move the
    reference slices, so after every optimiser step :meth:`restore` copies them back
    (registered by :class:`KeepReferenceSlices`).
    """

    def __init__(self, module: nn.Module, n_new: int) -> None:
        self.saved = []
        parameters = dict(module.named_parameters())
        for name, dim in module.batch_parameters().items():
            parameter = parameters[name]
            keep = parameter.shape[dim] - n_new
            value = parameter.detach().narrow(dim, 0, keep).clone()
            self.saved.append((parameter, dim, keep, value))

    @torch.no_grad()
    def restore(self, *_: Any) -> None:
        """Copy the saved reference slices back into the parameters."""
        for parameter, dim, keep, value in self.saved:
            parameter.narrow(dim, 0, keep).copy_(value.to(parameter.device))


class KeepReferenceSlices(Callback):
    """Lightning callback: restore a query model's reference slices after every step."""

    def __init__(self, slices: ReferenceSlices) -> None:
        self.slices = slices
        self._handles: list = []

    def on_train_start(self, trainer, pl_module) -> None:
        for optimizer in trainer.optimizers:
            self._handles.append(optimizer.register_step_post_hook(self.slices.restore))

    def on_train_end(self, trainer, pl_module) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.slices.restore()


def freeze_reference(
    module: nn.Module, n_reference_batches: int, n_batches: int
) -> ReferenceSlices:
    """Freeze ``module`` except the new batches' slices of its batch parameters.

    Every parameter stops taking gradients except those named by
    ``module.batch_parameters()``, of which only the new batches' slices get a gradient
    (a hook), and batch norm stays in evaluation mode with the reference's running
    statistics, so the reference embedding is unchanged. Returns the reference slices,
    which training restores after every optimiser step (weight decay would move them).
    """
    batch_parameters = module.batch_parameters()
    n_new = n_batches - n_reference_batches
    for name, parameter in module.named_parameters():
        if name not in batch_parameters:
            parameter.requires_grad_(False)
            continue
        parameter.requires_grad_(True)
        parameter.register_hook(partial(_new_slices_only, dim=batch_parameters[name], n_new=n_new))
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            _hold_in_eval(layer)
    return ReferenceSlices(module, n_new)


def _hold_in_eval(layer: nn.Module) -> None:
    """Keep ``layer`` in evaluation mode, also when its model is set to train.

    A frozen batch norm then normalises the query's minibatches with the reference's
    running statistics, in training as at inference; in training mode it would use
    each query minibatch's own statistics, which removes a batch's shift before the new
    batch parameters can act on it.
    """
    layer.eval()
    layer.train = MethodType(_train_held_in_eval, layer)


def _train_held_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def _new_slices_only(grad: torch.Tensor, dim: int, n_new: int) -> torch.Tensor:
    """Gradient on the new batches' slices (the last ``n_new`` along ``dim``) only."""
    out = torch.zeros_like(grad)
    size = grad.shape[dim]
    out.narrow(dim, size - n_new, n_new).copy_(grad.narrow(dim, size - n_new, n_new))
    return out


class QueryUpdateMixin:
    """``load_query_data``: map cells of new batches onto a trained reference (scArches)."""

    _per_cell_attributes: tuple[str, ...] = ()
    """Fitted attributes with a row per reference cell, which a query model does not take."""
    _query_attributes: tuple[str, ...] = ()
    """Fitted attributes a query model computes at construction (from the reference's,
    read through :func:`reference_attributes`), which the reference's do not overwrite."""

    @classmethod
    @quiet_libraries()
    def load_query_data(
        cls,
        mdata: md.MuData | ad.AnnData,
        reference_model: Any,
        modality: str | None = None,
        unfrozen: bool = False,
    ):
        """A copy of a trained reference model extended to the query's new batches.

        scArches as in scvi-tools' :meth:`~scvi.model.base.ArchesMixin.load_query_data`:
        the query's batches are added to the reference's batch categories; every
        parameter with a slice per batch (decoder batch parameters; with
        ``encode_batch=True`` the encoders' batch biases) grows by the new batches'
        slices, which start as the mean of the reference batches' (input centres that
        a model takes off each batch are the new batches' own means); everything else is
        frozen, batch norm keeps the reference's statistics, and the reference batches'
        slices get no gradient. Train the returned model on the query cells
        (``model.train(max_epochs=...)``): only the new batches' parameters change, so
        the reference cells' embedding is exactly the reference model's.

        Parameters
        ----------
        mdata
            Query cells in any shape :meth:`get_latent_representation` accepts (a padded
            MuData, a MuData of some modalities, an AnnData of one modality), with the
            reference's batch column in ``obs``. Features are matched by name to the
            reference's. Not modified: the model holds its own padded copy
            (``model.adata``). Query labels are not used in training (every query cell
            is registered unlabelled); they stay in ``model.adata.obs``.
        reference_model
            The trained reference model (an instance of this class) or the folder it was
            saved to (a string or path).
        modality
            Modality of an AnnData query (default: inferred from its feature names).
        unfrozen
            Train every parameter instead (the reference embedding then changes too).

        Returns
        -------
        The query model, untrained (``is_trained_`` False); its batches are the
        reference's followed by the new ones. Its freezing holds for the training that
        follows; a query model saved and loaded again trains every parameter. A model
        whose only batch-dependent part is its input centring (no
        ``batch_parameters``) is ready at once: the new batches' centres are their
        cells' means and nothing is trained.
        """
        if isinstance(reference_model, os.PathLike):
            reference_model = os.fspath(reference_model)
        attr_dict, var_names, reference_state, _ = _get_loaded_data(reference_model, device="cpu")
        registry = attr_dict.pop("registry_")
        name = registry.get(_MODEL_NAME_KEY)
        if name is not None and name != cls.__name__:
            raise TypeError(
                f"The reference model is a {name}; load its query with {name}.load_query_data."
            )
        setup_args = dict(registry[_SETUP_ARGS_KEY])
        batch_key = setup_args.get("batch_key")
        if batch_key is None:
            raise ValueError(
                "The reference model was set up without batch_key, so it has no batch "
                "parameters to extend. Embed the query cells directly "
                "(model.get_latent_representation(query, modality=...)), or set the "
                "reference up with batch_key= and train it again."
            )
        modalities = list(setup_args["modalities"])
        features = {m: pd.Index(np.asarray(var_names[m]).astype(str)) for m in modalities}
        query = prepare_query_mudata(
            mdata,
            features,
            modality=modality,
            layer=setup_args.get("layer"),
        )
        _check_query_batches(query.obs, batch_key)
        reference_batches = [
            str(c)
            for c in registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"][
                "categorical_mapping"
            ]
        ]
        labels_key = setup_args.get("labels_key")
        labels = query.obs.get(labels_key) if labels_key is not None else None
        if labels_key is not None:
            query.obs[labels_key] = np.nan  # registered unlabelled: no new label classes
        setup = {
            key: setup_args.get(key)
            for key in ("batch_key", "labels_key", "unlabeled_category", "count_modalities")
        }
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*fewer than 3 cells")
            warnings.filterwarnings("ignore", message=r".*categories without cells")
            cls.setup_mudata(
                query,
                modalities=modalities,
                layer=None,  # the padded query holds its values in X
                source_registry=registry,
                extend_categories=True,
                allow_missing_labels=True,
                _query_update=True,
                **{k: v for k, v in setup.items() if v is not None},
            )
            for name in cls._per_cell_attributes:  # fitted over the reference's cells
                attr_dict.pop(name, None)
            token = _REFERENCE_ATTRIBUTES.set(dict(attr_dict))
            # the reference's attributes are set on the model after its construction,
            # except those the query model computes itself from them
            restored = {k: v for k, v in attr_dict.items() if k not in cls._query_attributes}
            try:
                model = _initialize_model(cls, query, registry, restored, None)
            finally:
                _REFERENCE_ATTRIBUTES.reset(token)
        if labels is not None:
            query.obs[labels_key] = labels  # the registered labels stay unlabelled
        module = model.module
        if not callable(getattr(module, "batch_parameters", None)):
            raise TypeError(
                f"{type(module).__name__} has no batch_parameters(); a query update needs a "
                "module that names its parameters with a slice per batch."
            )
        n_reference = len(reference_batches)
        n_batches = model.summary_stats.n_batch
        _centre_as_the_reference(module, reference_state)
        state = extend_batch_slices(
            module.state_dict(), reference_state, n_reference, n_batches - n_reference
        )
        module.load_state_dict(state)
        module.eval()
        # inputs centred per batch: the new batches' centres are their own cells' means
        with keep_torch_threads():
            model._fit_input_centers(first_batch=n_reference)
        trainable = bool(module.batch_parameters())
        if not unfrozen and trainable:
            model._reference_slices = freeze_reference(module, n_reference, n_batches)
        # cells per batch and modality: the reference's (its saved attribute, restored on
        # the model; 1 each when the reference did not save it) plus the query's own
        saved = getattr(model, "batch_cells_", None)
        own = model._batch_cells()
        cells = {}
        for m in modalities:
            reference_cells = np.ones(n_reference, dtype=np.int64)
            if saved is not None and len(saved[m]) == n_reference:
                reference_cells = np.asarray(saved[m], dtype=np.int64)
            padded = np.pad(reference_cells, (0, n_batches - n_reference))
            cells[m] = (padded + np.asarray(own[m], dtype=np.int64)).tolist()
        model.batch_cells_ = cells
        new = [b for b in model._batch_names() if b not in reference_batches]
        if not new:
            warnings.warn(
                f"The query holds no new batch (its batches are all among the reference's "
                f"{reference_batches}), so nothing will be trained"
                f"{'' if unfrozen else ' (every parameter is frozen)'}.",
                UserWarning,
                stacklevel=2,
            )
        if not model._encodes_batch:
            warnings.warn(
                f"This {cls.__name__}'s encoders do not read the batch, so the update fits "
                "the new batches' decoder parameters only and the query cells' embedding "
                "does not change. Train the reference with center_batches=True or "
                "encode_batch=True to map new batches onto it.",
                UserWarning,
                stacklevel=2,
            )
        model.reference_batches_ = reference_batches
        model.is_trained_ = not trainable  # nothing to train without batch parameters
        return model


def _centre_as_the_reference(module: nn.Module, reference_state: Mapping) -> None:
    """Input layers of the query module centre batches only where the reference's did.

    A reference of one batch (or one trained without centring) has no centres; its
    query model then has none either, so reference and query cells are scaled alike.
    """
    for name, layer in module.named_modules():
        if not isinstance(layer, FeatureScalerLayer):
            continue
        saved = reference_state.get(f"{name}.batch_center")
        if saved is None or saved.shape[0] == 0:
            layer.batch_center = layer.batch_center.new_zeros(0, layer.batch_center.shape[1])


def _check_query_batches(obs: pd.DataFrame, batch_key: str) -> None:
    if batch_key not in obs.columns:
        raise KeyError(
            f"The query has no '{batch_key}' column in obs; the reference was set up with "
            f"batch_key='{batch_key}'. Add obs['{batch_key}'] naming each query cell's batch."
        )
    missing = obs[batch_key].isna()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} query cells have no '{batch_key}' value (e.g. "
            f"{obs.index[missing][:3].tolist()}); give every cell its batch."
        )
