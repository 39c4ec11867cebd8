"""The one data path of every scmint model: registered matrices held once as tensors.

Training minibatches and every inference pass read cells from the same structures:

- :class:`CSRRows`: one matrix as a compressed-sparse-row triple of torch tensors
  (``crow``, ``col`` int64; ``values`` float32) on one device. A minibatch is cut by
  row index on that device (no per-batch AnnData, pandas or scipy work) and handed to
  the network dense (:meth:`CSRRows.dense_rows`) or sparse (:meth:`CSRRows.sparse_rows`).
- :class:`RegisteredTensors`: every field an :class:`~scvi.data.AnnDataManager`
  registered (CSR float32 for the modality matrices, dense for masks, batches, labels,
  indices), built once per training run and shared by the training, validation and
  test loaders.
- :class:`TensorDataLoader` / :class:`RegisteredDataSplitter`: drop-in replacements of
  scvi-tools' :class:`~scvi.dataloaders.AnnDataLoader` / :class:`~scvi.dataloaders.DataSplitter`
  (same split, same samplers, so the same minibatches in the same order under a seed);
  a model uses them by setting ``_data_splitter_cls = RegisteredDataSplitter``. scvi-tools'
  ``TrainRunner``, early stopping, save / load and ``history`` work unchanged.
- :func:`row_batches`: consecutive row blocks of any (query) matrix, dense on the device,
  for inference.

Where the data live (the memory rule). On a CPU the tensors share the host memory of
the registered matrices where the dtypes already match (float32 values) and otherwise
hold one float32 / int64 copy. On an accelerator the whole registered data move to the
device, field by field, while each takes at most :data:`DEVICE_FRACTION` of the device's
free memory at that moment (``12 * nnz + 8 * n_cells`` bytes per sparse matrix: int64
column indices and float32 values; ``4 * n_cells * n_features`` per dense one);
a field that does not fit stays in pinned host memory, and its minibatches are cut on
the host and copied asynchronously (``non_blocking=True``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scvi
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data._utils import registry_key_to_default_dtype
from scvi.dataloaders import DataSplitter
from scvi.dataloaders._samplers import BatchDistributedSampler
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from scmint.nn._sparse import csr_row_positions

from ._backed import (
    BlockShuffleBatchSampler,
    DiskCSRRows,
    OnDiskRows,
    check_block_mixing,
    chunk_rows_for,
    is_on_disk,
)

DEVICE_FRACTION = 0.5
"""Largest share of an accelerator's free memory the registered data may take there."""

SPARSE_MAX_DENSITY = 0.1
"""Largest fraction of non-zero entries for which a matrix's minibatches may stay sparse.

Above it (or for a few hundred features) a dense first layer is as fast
(:class:`scmint.nn.SparseInputLinear`)."""


class CSRRows:
    """A cells x features matrix as CSR torch tensors, cut into minibatches by row index.

    Parameters
    ----------
    crow, col, values
        Row pointers (``n_rows + 1``), column indices and values (``nnz``), all on one
        device (or in pinned host memory).
    n_cols
        Number of columns.
    target
        Device of the minibatches (default: where the tensors are).
    """

    def __init__(
        self,
        crow: torch.Tensor,
        col: torch.Tensor,
        values: torch.Tensor,
        n_cols: int,
        target: torch.device | str | None = None,
    ) -> None:
        self.crow = crow
        self.col = col
        self.values = values
        self.n_rows = int(crow.shape[0]) - 1
        self.n_cols = int(n_cols)
        self.target = values.device if target is None else torch.device(target)

    @classmethod
    def from_matrix(cls, x, device: torch.device | str = "cpu") -> CSRRows:
        """Hold a scipy sparse or dense numpy matrix as float32 CSR tensors for ``device``.

        The tensors go to ``device`` when they fit there (see the memory rule above),
        else they stay in pinned host memory and minibatches are copied asynchronously.
        """
        csr = x if sparse.isspmatrix_csr(x) else sparse.csr_matrix(x)
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        parts = (
            torch.from_numpy(np.asarray(csr.indptr, dtype=np.int64)),
            torch.from_numpy(np.asarray(csr.indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(csr.data, dtype=np.float32)),
        )
        return cls(*parts, n_cols=csr.shape[1]).to(device)

    def to(self, device: torch.device | str) -> CSRRows:
        """The same matrix for minibatches on ``device`` (resident there, or pinned)."""
        device = torch.device(device)
        parts = (self.crow, self.col, self.values)
        if place_on(device, self.nbytes):
            parts = tuple(p.to(device) for p in parts)
        elif device.type == "cuda":
            parts = tuple(p.cpu().pin_memory() for p in parts)
        return CSRRows(*parts, n_cols=self.n_cols, target=device)

    @property
    def device(self) -> torch.device:
        """Where the tensors are (the minibatches go to :attr:`target`)."""
        return self.values.device

    @property
    def density(self) -> float:
        """Fraction of the matrix's entries that are stored (non-zero)."""
        cells = (self.crow.numel() - 1) * self.n_cols
        return self.values.numel() / cells if cells else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the three tensors."""
        return sum(t.numel() * t.element_size() for t in (self.crow, self.col, self.values))

    def _gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row pointers, the positions of the rows' entries, and their row in the batch."""
        return csr_row_positions(self.crow, rows)

    def dense_rows(
        self, rows: torch.Tensor, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Rows ``rows`` as a dense float32 ``(len(rows), n_cols)`` tensor on ``device``.

        ``device`` defaults to :attr:`target`.
        """
        _, position, row_of = self._gather(rows)
        target = self.target if device is None else torch.device(device)
        if target != self.device:  # cut on the host, copy the small parts, scatter there
            row_of = row_of.to(target, non_blocking=True)
            col = self.col[position].to(target, non_blocking=True)
            values = self.values[position].to(target, non_blocking=True)
        else:
            col, values = self.col[position], self.values[position]
        out = torch.zeros((int(rows.numel()), self.n_cols), dtype=torch.float32, device=target)
        out[row_of, col] = values
        return out

    def sparse_rows(
        self, rows: torch.Tensor, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Rows ``rows`` as a sparse CSR float32 tensor on ``device`` (default :attr:`target`)."""
        crow, position, _ = self._gather(rows)
        target = self.target if device is None else torch.device(device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used here
            warnings.filterwarnings(
                "ignore", message="Sparse CSR tensor support", category=UserWarning
            )
            return torch.sparse_csr_tensor(
                crow.to(target, non_blocking=True),
                self.col[position].to(target, non_blocking=True),
                self.values[position].to(target, non_blocking=True),
                size=(int(rows.numel()), self.n_cols),
                check_invariants=False,  # valid by construction (cut from a canonical CSR)
            )


Field = CSRRows | DiskCSRRows | torch.Tensor


def place_on(device: torch.device | str, nbytes: int) -> bool:
    """Whether ``nbytes`` of data should live on ``device`` (see the memory rule above)."""
    device = torch.device(device)
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= DEVICE_FRACTION * free
    return True


class RegisteredTensors:
    """The registered fields of an :class:`~scvi.data.AnnDataManager` as tensors, held once.

    Sparse matrices become :class:`CSRRows`; dense matrices and obs columns become
    tensors of the dtype scvi-tools' data loaders give them (``float32``; ``int64`` for
    categorical codes such as batches and labels), on the device when they fit there
    and pinned otherwise.

    Parameters
    ----------
    adata_manager
        The model's data manager (after ``setup_mudata``).
    device
        Device of the minibatches.
    keys
        Registry keys to hold (default: every registered key).
    sparse_keys
        Registry keys of sparse matrices whose minibatches are handed out as sparse CSR
        tensors (:meth:`CSRRows.sparse_rows`) for a module whose layers read them, when
        at most :data:`SPARSE_MAX_DENSITY` of their entries are non-zero; every other
        matrix comes dense.
    """

    def __init__(
        self,
        adata_manager,
        device: torch.device | str = "cpu",
        keys: Sequence[str] | Mapping[str, Any] | None = None,
        sparse_keys: Sequence[str] = (),
    ) -> None:
        self.device = torch.device(device)
        if keys is None:
            keys = list(adata_manager.data_registry.keys())
        dtypes = (
            dict(keys)
            if isinstance(keys, Mapping)
            else {k: registry_key_to_default_dtype(k) for k in keys}
        )
        self.n_obs = int(adata_manager.adata.n_obs)
        self.fields: dict[str, Field] = {}
        matrices = {key: adata_manager.get_from_registry(key) for key in dtypes}
        on_disk = [x for x in matrices.values() if is_on_disk(x)]
        self.block_rows = min(map(chunk_rows_for, on_disk)) if on_disk else None
        """Cells per block of the matrices that stay on disk (``None``: all in memory)."""
        for key, dtype in dtypes.items():
            x = matrices[key]
            if is_on_disk(x):
                self.fields[key] = DiskCSRRows(x, self.device, self.block_rows)
                continue
            if sparse.issparse(x):
                self.fields[key] = CSRRows.from_matrix(x, self.device)
                continue
            values = x.to_numpy() if isinstance(x, pd.DataFrame) else np.asarray(x)
            t = torch.from_numpy(np.ascontiguousarray(values.astype(dtype, copy=False)))
            if place_on(self.device, t.numel() * t.element_size()):
                t = t.to(self.device)
            elif self.device.type == "cuda":
                t = t.pin_memory()
            self.fields[key] = t
        if on_disk:
            check_block_mixing(self._cell_kinds(), self.block_rows)
        self.sparse_keys = frozenset(
            key
            for key in sparse_keys
            if isinstance(self.fields.get(key), CSRRows | DiskCSRRows)
            and self.fields[key].density <= SPARSE_MAX_DENSITY
        )

    def _cell_kinds(self) -> dict[str, np.ndarray]:
        """Per-cell batch codes and measured-modality combinations, for the mixing check."""
        kinds = {}
        if isinstance(self.fields.get(REGISTRY_KEYS.BATCH_KEY), torch.Tensor):
            kinds["batch"] = self.fields[REGISTRY_KEYS.BATCH_KEY].cpu().numpy().ravel()
        masks = [f for k, f in self.fields.items() if k.startswith("mask_")]
        if masks and all(isinstance(m, torch.Tensor) for m in masks):
            bits = [
                (m.cpu().numpy().ravel() > 0.5).astype(np.int64) << i for i, m in enumerate(masks)
            ]
            kinds["measured modalities"] = np.sum(bits, axis=0)
        return kinds

    def batch(self, rows: torch.Tensor | Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """The minibatch of registered rows ``rows``: ``{registry key: tensor on the device}``."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        out = {}
        for key, field in self.fields.items():
            if isinstance(field, CSRRows | DiskCSRRows):
                cut = field.sparse_rows if key in self.sparse_keys else field.dense_rows
                out[key] = cut(rows)
            else:
                out[key] = field[rows.to(field.device)].to(self.device, non_blocking=True)
        return out


class _RowSubset(torch.utils.data.Dataset):
    """Rows ``indices`` of :class:`RegisteredTensors`; item ``[positions]`` is one minibatch."""

    def __init__(self, tensors: RegisteredTensors, indices: np.ndarray) -> None:
        self.tensors = tensors
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:
        if isinstance(positions, int | np.integer):
            positions = [positions]
        return self.tensors.batch(self.indices[np.asarray(positions, dtype=np.int64)])


class TensorDataLoader(DataLoader):
    """scvi-tools' :class:`~scvi.dataloaders.AnnDataLoader`, reading :class:`RegisteredTensors`.

    Same arguments and the same samplers as ``AnnDataLoader`` (a ``BatchSampler`` over a
    random or sequential sampler of the ``indices``, or scvi-tools'
    ``BatchDistributedSampler``), so under one seed it yields the same cells in the same
    order; each minibatch is cut from tensors already on the device, in the main
    process.

    Parameters
    ----------
    adata_manager
        The model's data manager.
    indices
        Registered rows to iterate over (default all; boolean masks accepted).
    batch_size
        Cells per minibatch.
    shuffle
        Draw the rows in a random order each epoch.
    sampler
        A sampler of positions in ``indices`` yielding lists (overrides ``shuffle``).
    drop_last
        Drop the last, smaller minibatch.
    drop_dataset_tail, distributed_sampler
        As in ``AnnDataLoader`` (several devices).
    data_and_attributes
        Registry keys (or ``{key: dtype}``) to load (default all).
    tensors
        Prebuilt :class:`RegisteredTensors` to share between loaders.
    device
        Device of the minibatches when ``tensors`` is not given.
    sparse_keys
        Matrices whose minibatches stay sparse when ``tensors`` is not given
        (:class:`RegisteredTensors`).
    **kwargs
        Ignored loader options of ``AnnDataLoader`` that do not apply here
        (``num_workers``, ``pin_memory``, ``load_sparse_tensor``, ...).
    """

    def __init__(
        self,
        adata_manager,
        indices: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 128,
        shuffle: bool = False,
        sampler=None,
        drop_last: bool = False,
        drop_dataset_tail: bool = False,
        data_and_attributes: Sequence[str] | Mapping[str, Any] | None = None,
        distributed_sampler: bool = False,
        tensors: RegisteredTensors | None = None,
        device: torch.device | str = "cpu",
        sparse_keys: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        if indices is None:
            indices = np.arange(adata_manager.adata.n_obs)
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        self.indices = indices.astype(np.int64)
        if tensors is None:
            tensors = RegisteredTensors(adata_manager, device, data_and_attributes, sparse_keys)
        self.dataset_ = _RowSubset(tensors, self.indices)
        if sampler is not None and distributed_sampler:
            raise ValueError("Cannot specify both `sampler` and `distributed_sampler`.")
        if sampler is None:
            if shuffle and tensors.block_rows is not None:  # on disk: block by block
                processes = {}
                if distributed_sampler:  # each process its own blocks
                    processes = {
                        "num_replicas": torch.distributed.get_world_size(),
                        "rank": torch.distributed.get_rank(),
                        "seed": scvi.settings.seed or 0,
                    }
                sampler = BlockShuffleBatchSampler(
                    self.indices, tensors.block_rows, batch_size, drop_last, **processes
                )
            elif distributed_sampler:
                sampler = BatchDistributedSampler(
                    self.dataset_,
                    batch_size=batch_size,
                    drop_last=drop_last,
                    drop_dataset_tail=drop_dataset_tail,
                    shuffle=shuffle,
                )
            else:
                base = RandomSampler(self.dataset_) if shuffle else SequentialSampler(self.dataset_)
                sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
        super().__init__(
            self.dataset_, sampler=sampler, batch_size=None, shuffle=False, num_workers=0
        )


class RegisteredDataSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter` over :class:`RegisteredTensors`.

    The same train / validation / test split as ``DataSplitter`` (same arguments, same
    seeded permutation); its loaders are :class:`TensorDataLoader` over one
    :class:`RegisteredTensors` built on the trainer's device when the first loader is
    asked for, so the data are converted once per training run. A ``sparse_keys``
    entry of ``datasplitter_kwargs`` names the matrices whose minibatches stay sparse
    (:class:`RegisteredTensors`); models whose first layers read sparse input set it.
    """

    _OWN_KWARGS = ("data_and_attributes", "sparse_keys")

    def _tensors(self) -> RegisteredTensors:
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        cached = getattr(self, "_registered_tensors", None)
        if cached is None or cached.device != device:
            cached = RegisteredTensors(
                self.adata_manager,
                device,
                self.data_loader_kwargs.get("data_and_attributes"),
                self.data_loader_kwargs.get("sparse_keys", ()),
            )
            self._registered_tensors = cached
        return cached

    def _loader(self, indices: np.ndarray, shuffle: bool, drop_last: bool) -> TensorDataLoader:
        kwargs = {k: v for k, v in self.data_loader_kwargs.items() if k not in self._OWN_KWARGS}
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # DDP: each process its share
            kwargs["distributed_sampler"] = True
        return TensorDataLoader(
            self.adata_manager,
            indices=indices,
            shuffle=shuffle,
            drop_last=drop_last,
            tensors=self._tensors(),
            **kwargs,
        )

    def train_dataloader(self) -> TensorDataLoader:
        """Minibatches of the training cells, reshuffled every epoch."""
        return self._loader(self.train_idx, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> TensorDataLoader | None:
        """Minibatches of the validation cells, in order (``None`` without any)."""
        if len(self.val_idx) == 0:
            return None
        return self._loader(self.val_idx, shuffle=False, drop_last=False)

    def test_dataloader(self) -> TensorDataLoader | None:
        """Minibatches of the test cells, in order (``None`` without any)."""
        if len(self.test_idx) == 0:
            return None
        return self._loader(self.test_idx, shuffle=False, drop_last=False)


def row_batches(
    x, batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Consecutive row blocks of a (sparse or dense) matrix, dense float32 on ``device``.

    The inference side of the data path: sparse matrices are held once as
    :class:`CSRRows` (on the device when they fit, see the memory rule above) and each
    block is cut there.

    Yields
    ------
    ``(rows, block)``: the slice of rows and the ``(block rows, n_features)`` tensor.
    """
    device = torch.device(device)
    n = x.shape[0]
    if is_on_disk(x):  # chunk by chunk from the file, each chunk cut like an in-memory matrix
        for chunk, block in OnDiskRows(x).chunks():
            for rows, part in row_batches(block, batch_size, device):
                yield slice(chunk.start + rows.start, chunk.start + rows.stop), part
        return
    if sparse.issparse(x):
        csr = CSRRows.from_matrix(x, device)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield slice(start, stop), csr.dense_rows(torch.arange(start, stop))
        return
    dense = np.asarray(x)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        block = torch.as_tensor(np.asarray(dense[start:stop], dtype=np.float32))
        yield slice(start, stop), block.to(device, non_blocking=True)


def n_batches(n: int, batch_size: int) -> int:
    """Number of minibatches of ``batch_size`` rows covering ``n`` rows."""
    return math.ceil(n / batch_size)
