"""Matrices that stay on disk (a MuData read with ``backed=True``), read in row chunks.

A backed MuData keeps each modality's matrix in its ``.h5mu`` file (anndata's
:class:`~anndata.abc.CSRDataset`, or an ``h5py.Dataset`` when dense). scmint reads such a
matrix only in contiguous chunks of cells, so host memory does not grow with the number
of cells beyond per-cell vectors:

- :class:`OnDiskRows` is a lazy selection of rows of one on-disk matrix. Indexing it
  with rows gives another selection (nothing is read); :meth:`OnDiskRows.chunks` reads
  the selected rows chunk by chunk (each chunk one contiguous read from the file), and
  the checks, sums and inference passes of the data layer go through it.
- :class:`DiskCSRRows` serves training minibatches: the file's rows are cut into blocks
  of :attr:`DiskCSRRows.block_rows` consecutive cells; a block is read once into a
  :class:`~scmint.data.CSRRows` (on the device when it fits) and minibatches are cut
  there. The training loader draws the blocks in a random order, takes them
  :data:`POOL_BLOCKS` at a time and shuffles the cells of those blocks together
  (:class:`BlockShuffleBatchSampler`), so an epoch reads every block once and a
  minibatch mixes cells of several regions of the file.

The memory rule: a chunk (or block) holds about :data:`CHUNK_BYTES` of values and
column indices, and at most ``POOL_BLOCKS + 1`` blocks are held at once. Files whose
cells are sorted (by batch, sample or measured modalities, as :func:`pad_mudata`
leaves a mosaic) still give minibatches of few batches: write them with their cells
shuffled once (``scmint.data.write_h5mu(mdata, path, shuffle_cells=True)``); training
from such a file warns (:func:`check_block_mixing`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DistributedSampler

from scmint.nn._sparse import csr_row_positions

try:  # anndata >= 0.11
    from anndata.abc import CSCDataset, CSRDataset
except ImportError:  # pragma: no cover - older anndata
    from anndata.experimental import CSCDataset, CSRDataset

CHUNK_BYTES = 64 * 2**20
"""Bytes of stored values and column indices read from disk at once (one chunk, one block)."""

POOL_BLOCKS = 4
"""Blocks whose cells are shuffled together into the minibatches of a training epoch.

A minibatch mixes cells of four random regions of the file, and at most
``POOL_BLOCKS + 1`` blocks (about 320 MB) are held at once."""

MIN_CHUNK_ROWS = 256
"""Fewest cells in a chunk, whatever their size."""


def is_on_disk(x: Any) -> bool:
    """Whether ``x`` is a matrix that stays on disk (backed) rather than in memory."""
    return isinstance(x, OnDiskRows | CSRDataset | CSCDataset | h5py.Dataset)


def _stored_entries(x) -> int:
    """Stored (non-zero) entries of an on-disk CSR matrix, from its last row pointer."""
    return int(x.group["indptr"][-1]) if x.shape[0] else 0


def _stored_bytes_per_row(x) -> float:
    """Average bytes one row takes in memory once read (values float32, int64 indices)."""
    n_rows, n_cols = x.shape
    if isinstance(x, CSRDataset):
        return 12.0 * _stored_entries(x) / max(n_rows, 1) + 8.0
    return 4.0 * n_cols


def chunk_rows_for(x, chunk_bytes: int | None = None) -> int:
    """Cells per chunk of an on-disk matrix: ``chunk_bytes`` (:data:`CHUNK_BYTES`) of it."""
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return max(MIN_CHUNK_ROWS, int(budget // max(_stored_bytes_per_row(x), 1.0)))


def _check_row_readable(x) -> None:
    if isinstance(x, CSCDataset):
        raise ValueError(
            "An on-disk matrix is stored column by column (CSC); reading cells from it "
            "would read the whole file for every chunk. Store it by rows once: "
            "adata = anndata.read_h5ad(path); adata.X = scipy.sparse.csr_matrix(adata.X); "
            "write it again (for a MuData, each modality)."
        )


class OnDiskRows:
    """A selection of rows of a matrix that stays on disk; reads happen chunk by chunk.

    Parameters
    ----------
    x
        The on-disk matrix (:class:`~anndata.abc.CSRDataset` or ``h5py.Dataset``).
    rows
        Selected rows, in order (default: all).
    """

    def __init__(self, x, rows: np.ndarray | None = None) -> None:
        if isinstance(x, OnDiskRows):
            x, rows = x.x, x.rows if rows is None else x.rows[rows]
        _check_row_readable(x)
        self.x = x
        self.rows = np.arange(x.shape[0], dtype=np.int64) if rows is None else rows
        self.chunk_rows = chunk_rows_for(x)

    @property
    def shape(self) -> tuple[int, int]:
        """``(selected rows, features)``."""
        return (len(self.rows), int(self.x.shape[1]))

    @property
    def dtype(self) -> np.dtype:
        """Type of the stored values."""
        return np.dtype(self.x.dtype)

    @property
    def is_sparse(self) -> bool:
        """Whether the rows are read as scipy sparse CSR (else as dense arrays)."""
        return isinstance(self.x, CSRDataset)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows) -> OnDiskRows:
        """The selection of these rows of this selection (nothing is read)."""
        if isinstance(rows, tuple):
            raise IndexError("On-disk matrices are selected by rows only (x[rows]).")
        if isinstance(rows, slice):
            return OnDiskRows(self.x, self.rows[rows])
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if len(rows) != len(self.rows):
                raise IndexError(f"Boolean rows of length {len(rows)} for {len(self.rows)} rows.")
            rows = np.flatnonzero(rows)
        return OnDiskRows(self.x, self.rows[rows.astype(np.int64)])

    def read_range(self, start: int, stop: int):
        """File rows ``start:stop`` in memory (one contiguous read)."""
        block = self.x[start:stop]
        if sparse.issparse(block):
            return sparse.csr_matrix(block)
        return np.asarray(block)

    def _read(self, rows: np.ndarray):
        """File rows ``rows`` (any order) in memory, read as one contiguous range."""
        if rows.size == 0:
            return self.read_range(0, 0)
        order = np.argsort(rows, kind="stable")
        lo, hi = int(rows[order[0]]), int(rows[order[-1]]) + 1
        if hi - lo <= 4 * rows.size:
            return self.read_range(lo, hi)[rows - lo]
        picked = np.unique(rows)  # scattered rows: read only those, sorted
        block = self.x[picked]
        block = sparse.csr_matrix(block) if sparse.issparse(block) else np.asarray(block)
        return block[np.searchsorted(picked, rows)]

    def chunks(self, chunk_rows: int | None = None) -> Iterator[tuple[slice, Any]]:
        """Consecutive chunks of the selection: ``(positions, rows in memory)``.

        Each chunk is read from the file at once; sparse data come as scipy CSR.
        """
        step = self.chunk_rows if chunk_rows is None else int(chunk_rows)
        for start in range(0, len(self.rows), step):
            stop = min(start + step, len(self.rows))
            yield slice(start, stop), self._read(self.rows[start:stop])

    def to_memory(self):
        """All selected rows in memory (scipy CSR for sparse data, else a dense array)."""
        parts = [block for _, block in self.chunks()]
        if not parts:
            return self._read(self.rows)
        return sparse.vstack(parts, format="csr") if self.is_sparse else np.vstack(parts)

    def sum(self, axis: int | None = None):
        """Sums over rows (``axis=0``), per row (``axis=1``) or of everything, chunk by chunk."""
        if axis == 1:
            out = np.empty(len(self.rows))
            for pos, block in self.chunks():
                out[pos] = np.asarray(block.sum(axis=1)).ravel()
            return out[:, None]
        total = np.zeros(self.shape[1]) if axis == 0 else 0.0
        for _, block in self.chunks():
            total = total + (np.asarray(block.sum(axis=0)).ravel() if axis == 0 else block.sum())
        return total[None, :] if axis == 0 else total


def in_memory(x):
    """``x`` itself, or the rows of an on-disk selection read into memory."""
    return x.to_memory() if isinstance(x, OnDiskRows) else x


def stored_value_chunks(x) -> Iterator[np.ndarray]:
    """The stored values of a matrix (no densification), chunk by chunk when on disk."""
    if is_on_disk(x):
        for _, block in OnDiskRows(x).chunks():
            yield np.asarray(block.data if sparse.issparse(block) else block)
        return
    yield np.asarray(x.data if sparse.issparse(x) else x)


def check_block_mixing(
    codes: dict[str, np.ndarray], block_rows: int, min_share: float = 0.5
) -> None:
    """Warn when most blocks of an on-disk file hold cells of one kind only.

    ``codes`` maps what a per-cell code means (``"batch"``, ``"measured modalities"``) to
    its value for every file row. When the code takes several values overall but at
    least ``min_share`` of the blocks hold a single one (cells sorted by it in the file),
    minibatches drawn from a few blocks would too: the warning says how to write the
    file with its cells shuffled.
    """
    for what, code in codes.items():
        code = np.asarray(code).ravel()
        blocks = np.arange(len(code)) // int(block_rows)
        if blocks[-1:].sum() < 1 or len(np.unique(code)) < 2:
            continue  # one block, or one kind of cell
        pairs = np.unique(np.stack([blocks, code.astype(np.int64)]), axis=1)
        kinds = np.bincount(pairs[0], minlength=int(blocks[-1]) + 1)
        single = float(np.mean(kinds == 1))
        if single >= min_share:
            warnings.warn(
                f"The cells of the file are sorted by {what}: {single:.0%} of its blocks of "
                f"{block_rows} consecutive cells hold one {what} only, so the minibatches "
                f"drawn from them (a few blocks each) mix few. Write the file once with its "
                "cells shuffled: scmint.data.write_h5mu(mdata, path, shuffle_cells=True).",
                UserWarning,
                stacklevel=4,
            )


class DiskCSRRows:
    """An on-disk matrix read block by block for minibatches, like :class:`~scmint.data.CSRRows`.

    Blocks are :attr:`block_rows` consecutive file rows; the ``POOL_BLOCKS + 1`` most
    recently used blocks are held as :class:`~scmint.data.CSRRows` on ``device``, and a
    minibatch whose cells lie in several of them is assembled from their rows on the
    device.

    Parameters
    ----------
    x
        The on-disk matrix.
    device
        Device of the minibatches.
    block_rows
        Cells per block (default :func:`chunk_rows_for`).
    """

    def __init__(self, x, device: torch.device | str = "cpu", block_rows: int | None = None):
        from ._tensors import CSRRows  # _tensors imports this module

        self._csr_rows = CSRRows
        self.disk = OnDiskRows(x)
        self.target = torch.device(device)
        self.n_rows, self.n_cols = self.disk.shape
        self.block_rows = chunk_rows_for(x) if block_rows is None else int(block_rows)
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self.blocks_read = 0

    @property
    def density(self) -> float:
        """Fraction of stored entries (from the file's row pointers)."""
        if not self.disk.is_sparse or self.n_rows == 0:
            return 1.0
        return _stored_entries(self.disk.x) / (self.n_rows * max(self.n_cols, 1))

    def _block(self, k: int):
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        start = k * self.block_rows
        block = self.disk.read_range(start, min(start + self.block_rows, self.n_rows))
        self.blocks_read += 1
        held = self._csr_rows.from_matrix(block, self.target)
        self._cache[k] = held
        while len(self._cache) > POOL_BLOCKS + 1:
            self._cache.popitem(last=False)
        return held

    def _parts(self, rows: torch.Tensor) -> Iterator[tuple[torch.Tensor, Any, torch.Tensor]]:
        """``(positions in the minibatch, block, rows within the block)`` per block touched."""
        blocks = torch.div(rows, self.block_rows, rounding_mode="floor")
        # held blocks first: the ones read now stay held for the next minibatches (at the
        # seam between two pools of the sampler a minibatch spans both)
        for k in sorted(torch.unique(blocks).tolist(), key=lambda k: k not in self._cache):
            where = torch.nonzero(blocks == k).ravel()
            yield where, self._block(int(k)), rows[where] - k * self.block_rows

    def dense_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` (file rows) as a dense float32 tensor on the device."""
        rows = rows.cpu()
        parts = list(self._parts(rows))
        if len(parts) == 1:
            return parts[0][1].dense_rows(parts[0][2])
        out = torch.zeros((rows.numel(), self.n_cols), dtype=torch.float32, device=self.target)
        for where, block, local in parts:
            out[where.to(self.target)] = block.dense_rows(local)
        return out

    def sparse_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` (file rows) as a sparse CSR float32 tensor on the device."""
        rows = rows.cpu()
        parts = list(self._parts(rows))
        if len(parts) == 1:
            return parts[0][1].sparse_rows(parts[0][2])
        # rows from several held blocks: each block's entries go to their rows' places
        cuts = []
        lengths = torch.zeros(rows.numel(), dtype=torch.int64, device=self.target)
        for where, block, local in parts:
            crow, position, row_of = csr_row_positions(block.crow, local)
            where = where.to(self.target)
            lengths[where] = (crow[1:] - crow[:-1]).to(self.target)
            cuts.append((where, block, crow.to(self.target), position, row_of.to(self.target)))
        crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=self.target)
        torch.cumsum(lengths, 0, out=crow[1:])
        col = torch.empty(int(crow[-1]), dtype=torch.int64, device=self.target)
        values = torch.empty(int(crow[-1]), dtype=torch.float32, device=self.target)
        for where, block, part_crow, position, row_of in cuts:
            offset = torch.arange(row_of.numel(), device=self.target) - part_crow[row_of]
            place = crow[where[row_of]] + offset
            col[place] = block.col[position].to(self.target)
            values[place] = block.values[position].to(self.target)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used here
            warnings.filterwarnings(
                "ignore", message="Sparse CSR tensor support", category=UserWarning
            )
            return torch.sparse_csr_tensor(
                crow, col, values, size=(rows.numel(), self.n_cols), check_invariants=False
            )


class BlockShuffleBatchSampler(DistributedSampler):
    """Minibatches drawn block by block: blocks in a random order, cells shuffled in pools.

    The training sampler for on-disk data: each block of ``block_rows`` consecutive file
    rows is read once per epoch; the blocks are taken ``pool_blocks`` at a time and the
    cells of those blocks shuffled together. On one device the random order comes from torch's
    global generator, as in :class:`~torch.utils.data.RandomSampler` (so
    ``scvi.settings.seed`` fixes it).

    On several devices (``num_replicas > 1``, DDP) every process draws the same block
    order (a generator seeded with ``seed`` plus the epoch, ``set_epoch``) and
    takes every ``num_replicas``-th block from position ``rank``, so each process reads
    only its own blocks. As :class:`~torch.utils.data.DistributedSampler` does, each
    process's share is cut or wrapped around to ``ceil(cells / num_replicas)`` cells so
    that all processes take the same number of steps. (It is a
    :class:`~torch.utils.data.DistributedSampler` so that Lightning keeps it in place
    under DDP.)

    Parameters
    ----------
    file_rows
        File row of each position the loader iterates over.
    block_rows
        Cells per block.
    batch_size
        Cells per minibatch.
    drop_last
        Drop the last, smaller minibatch of the epoch.
    num_replicas, rank
        Number of processes and this one's rank (default one process).
    seed
        Seed of the shared block order on several processes.
    pool_blocks
        Blocks whose cells are shuffled together (default :data:`POOL_BLOCKS`).
    """

    def __init__(
        self,
        file_rows: np.ndarray,
        block_rows: int,
        batch_size: int,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        pool_blocks: int | None = None,
    ) -> None:
        self.blocks = np.asarray(file_rows, dtype=np.int64) // int(block_rows)
        super().__init__(
            self.blocks, num_replicas=int(num_replicas), rank=int(rank), seed=int(seed)
        )
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.pool_blocks = POOL_BLOCKS if pool_blocks is None else int(pool_blocks)

    def _n_cells(self) -> int:
        """Cells this process draws in an epoch."""
        return -(-len(self.blocks) // self.num_replicas)

    def __len__(self) -> int:
        n = self._n_cells()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = None
        if self.num_replicas > 1:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
        by_block = np.argsort(self.blocks, kind="stable")
        _, counts = np.unique(self.blocks[by_block], return_counts=True)
        members = np.split(by_block, np.cumsum(counts)[:-1]) if len(by_block) else []
        blocks = torch.randperm(len(members), generator=generator).tolist()
        mine = blocks[self.rank :: self.num_replicas]
        order = []
        for start in range(0, len(mine), self.pool_blocks):  # cells of a pool shuffled together
            pool = np.concatenate([members[i] for i in mine[start : start + self.pool_blocks]])
            order.append(pool[torch.randperm(len(pool), generator=generator).numpy()])
        flat = np.concatenate(order) if order else np.empty(0, dtype=np.int64)
        if self.num_replicas > 1 and len(flat):  # the same number of steps everywhere
            flat = np.resize(flat, self._n_cells())
        for start in range(0, len(flat), self.batch_size):
            batch = flat[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()
