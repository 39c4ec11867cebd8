"""Siamese training: cell pairs redrawn every epoch, and a training plan built on scvi's.

The pieces, from data to optimisation:

- :func:`draw_pairs` draws one epoch of cell pairs (MinNet's scheme: for every cell, in
  each direction, the partner is the same cell with probability ``positive_fraction``,
  otherwise a uniformly random other cell);
- :class:`SiamesePairSampler` redraws the pairs at the start of every epoch, looks up
  the pairs' graph distances, and yields minibatches of pairs (a batch sampler, so it
  runs in the main process even with data-loader workers);
- :class:`SiamesePairDataset` turns a minibatch of pairs into tensors: each needed cell
  once per modality (transformed on the fly, so data stay sparse outside a minibatch),
  the labels of those rows and the pair bookkeeping;
- :class:`SiameseDataModule` holds the train/validation split of cells for scvi-tools'
  :class:`~scvi.train.TrainRunner` (progress bar, early stopping, history);
- :class:`SiameseTrainingPlan` is a :class:`~scvi.train.TrainingPlan` whose steps log
  the Siamese loss and its parts instead of an ELBO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from scvi.train import TrainingPlan
from torch.utils.data import DataLoader, Dataset, Sampler

from scmint.data import CSRRows, data_key
from scmint.train._logging import LossLoggingMixin
from scmint.train._optim import make_optimizer

Strategy = Literal["between", "within"]
STRATEGIES: tuple[str, ...] = ("between", "within")

PAIR_KEYS: dict[str, str] = {
    "first": "pair_first",
    "second": "pair_second",
    "same": "pair_same",
    "distance": "pair_distance",
    "type_differs": "pair_type_differs",
}
"""Keys of the pair tensors in a Siamese minibatch."""

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``f(cells_a, cells_b) -> distances`` of the given pairs (positions in the cell pool)."""


def labels_key(modality: str) -> str:
    """Minibatch key of the labels of a modality's rows."""
    return f"labels_{modality}"


def batches_key(modality: str) -> str:
    """Minibatch key of the batch codes of a modality's rows."""
    return f"batches_{modality}"


@dataclass
class PairSet:
    """A set of cell pairs; cells are positions in the cell pool, modalities 0 or 1."""

    first_mod: np.ndarray
    first_cell: np.ndarray
    second_mod: np.ndarray
    second_cell: np.ndarray
    same: np.ndarray
    distance: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.first_cell)

    def subset(self, index: np.ndarray) -> PairSet:
        """The pairs at positions ``index``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return PairSet(**{k: None if v is None else v[index] for k, v in values.items()})


def draw_pairs(
    n_cells: int,
    rng: np.random.Generator,
    positive_fraction: float = 0.25,
    strategy: Strategy = "between",
) -> PairSet:
    """Draw one epoch of MinNet's cell pairs between two modalities (0 and 1).

    For every cell ``i`` and each direction (anchor measured in modality 0, and anchor
    measured in modality 1) one pair is drawn: with probability ``positive_fraction``
    the partner is cell ``i`` in the other modality (a positive pair), otherwise a
    uniformly random other cell ``j`` (a negative pair). With the default 0.25 there are
    about 3 negatives per positive.

    Parameters
    ----------
    n_cells
        Number of cells; cells are ``0 .. n_cells - 1``. At least 2.
    rng
        Random generator.
    positive_fraction
        Probability that a pair is positive.
    strategy
        ``"between"``: the negative partner is measured in the other modality (MinNet's
        choice for RNA + ATAC); ``"within"``: in the anchor's own modality (MinNet's
        choice for RNA + protein). Positive pairs are the same for both.

    Returns
    -------
    The ``2 * n_cells`` pairs (distances not filled in).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}.")
    if n_cells < 2:
        raise ValueError(f"Pairs need at least 2 cells, got {n_cells}.")
    anchors = np.tile(np.arange(n_cells), 2)
    anchor_mod = np.repeat(np.array([0, 1], dtype=np.int8), n_cells)
    same = rng.random(2 * n_cells) < positive_fraction
    other = rng.integers(0, n_cells - 1, size=2 * n_cells)
    other = other + (other >= anchors)  # uniform over the cells other than the anchor
    partner = np.where(same, anchors, other)
    partner_mod = 1 - anchor_mod
    if strategy == "within":
        partner_mod = np.where(same, partner_mod, anchor_mod).astype(np.int8)
    return PairSet(
        first_mod=anchor_mod,
        first_cell=anchors,
        second_mod=partner_mod.astype(np.int8),
        second_cell=partner,
        same=same.astype(np.float32),
    )


class SiamesePairSampler(Sampler):
    """Batch sampler of cell pairs, redrawn (with their graph distances) every epoch.

    Parameters
    ----------
    cells
        Positions (in the cell pool) of the cells to pair, e.g. the training cells.
    batch_size
        Pairs per minibatch (batches are split evenly, so none is tiny).
    positive_fraction
        See :func:`draw_pairs`.
    strategy
        See :func:`draw_pairs`.
    distance_fn
        ``f(pool_positions_a, pool_positions_b) -> distances`` for the negative pairs
        (e.g. graph shortest paths). None gives distance 1 to every negative pair (a
        constant margin).
    redraw
        Draw new pairs at every epoch (training); if False, one fixed draw
        (validation, so that its loss is comparable across epochs).
    shuffle
        Shuffle the order of the pairs before batching.
    seed
        Seed of the sampler's random generator.
    prefetch_epochs
        Draw the pairs of this many epochs at once and look up all their distances in
        one ``distance_fn`` call (each epoch's pairs are still fresh). Exact graph
        distances cost one shortest-path search per distinct cell in a call, so
        prefetching all epochs costs about one search per cell in total instead of
        per epoch; memory grows by ``~26 bytes x 2 x n_cells`` per prefetched epoch.
    """

    def __init__(
        self,
        cells: np.ndarray,
        batch_size: int = 128,
        positive_fraction: float = 0.25,
        strategy: Strategy = "between",
        distance_fn: DistanceFn | None = None,
        redraw: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        prefetch_epochs: int = 1,
    ) -> None:
        self.cells = np.asarray(cells, dtype=np.int64)
        if len(self.cells) < 2:
            raise ValueError(f"Pair sampling needs at least 2 cells, got {len(self.cells)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.positive_fraction = positive_fraction
        self.strategy = strategy
        self.distance_fn = distance_fn
        self.redraw = redraw
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.prefetch_epochs = max(1, int(prefetch_epochs))
        self._fixed: PairSet | None = None
        self._queue: list[PairSet] = []
        self.n_draws = 0

    @property
    def n_pairs(self) -> int:
        """Pairs per epoch: two per cell."""
        return 2 * len(self.cells)

    def __len__(self) -> int:
        return int(np.ceil(self.n_pairs / self.batch_size))

    def draw(self) -> PairSet:
        """One epoch of pairs, in pool positions, with their distances."""
        if not self._queue:
            self._queue = self._draw_epochs(1 if not self.redraw else self.prefetch_epochs)
        self.n_draws += 1
        return self._queue.pop(0)

    def _draw_epochs(self, n_epochs: int) -> list[PairSet]:
        """Pairs of ``n_epochs`` epochs, distances looked up in one call."""
        epochs = [
            draw_pairs(len(self.cells), self.rng, self.positive_fraction, self.strategy)
            for _ in range(n_epochs)
        ]
        first = self.cells[np.concatenate([e.first_cell for e in epochs])]
        second = self.cells[np.concatenate([e.second_cell for e in epochs])]
        same = np.concatenate([e.same for e in epochs])
        distance = np.zeros(len(same), dtype=np.float32)
        negative = same < 0.5
        if self.distance_fn is None:
            distance[negative] = 1.0
        elif negative.any():
            dist = np.asarray(self.distance_fn(first[negative], second[negative]))
            if dist.shape != (int(negative.sum()),):
                raise ValueError(
                    f"distance_fn returned shape {dist.shape} for {int(negative.sum())} pairs."
                )
            distance[negative] = dist
        out, start = [], 0
        for e in epochs:
            stop = start + len(e)
            out.append(
                PairSet(
                    first_mod=e.first_mod,
                    first_cell=first[start:stop],
                    second_mod=e.second_mod,
                    second_cell=second[start:stop],
                    same=e.same,
                    distance=distance[start:stop],
                )
            )
            start = stop
        return out

    def __iter__(self) -> Iterator[PairSet]:
        if self.redraw or self._fixed is None:
            pairs = self.draw()
            if not self.redraw:
                self._fixed = pairs
        else:
            pairs = self._fixed
        order = self.rng.permutation(len(pairs)) if self.shuffle else np.arange(len(pairs))
        for chunk in np.array_split(order, len(self)):
            yield pairs.subset(chunk)


class SiamesePairDataset(Dataset):
    """Turns a minibatch of pairs into the tensors a Siamese module reads.

    The cells' matrices are held once as CSR tensors (:class:`scmint.data.CSRRows`, the
    shared data path); each minibatch's rows are cut on the device and handed to the
    module as registered values (the module's input layers normalise and scale them).

    Parameters
    ----------
    matrices
        One cells x features matrix (sparse or dense) per modality, rows = the cell pool.
    labels
        Integer cell-type code of each pool cell.
    modalities
        Modality names (keys :func:`scmint.data.data_key` and :func:`labels_key`).
    device
        Device of the minibatches (see :meth:`to`).
    batches
        Registry batch code of each pool cell (default: all 0), for input layers that
        take each batch's centre off.
    sparse_inputs
        Hand a modality's rows to the module as a sparse CSR tensor (its first layer then
        reads only the non-zeros, :class:`~scmint.nn.SparseInputLinear`) rather than
        dense. ``None`` (default): for the modalities with at most
        :attr:`SPARSE_MAX_DENSITY` of their entries non-zero (peaks, most RNA panels;
        not proteins).
    """

    SPARSE_MAX_DENSITY: float = 0.1
    """Largest fraction of non-zero entries for which minibatches stay sparse by default."""

    def __init__(
        self,
        matrices: Sequence,
        labels: np.ndarray,
        modalities: Sequence[str],
        device: torch.device | str = "cpu",
        sparse_inputs: bool | None = None,
        batches: np.ndarray | None = None,
    ) -> None:
        if not len(matrices) == len(modalities):
            raise ValueError("matrices and modalities must have the same length.")
        n = {m.shape[0] for m in matrices}
        if len(n) != 1 or len(labels) not in n:
            raise ValueError("All matrices and labels must hold the same cells.")
        self.matrices = [CSRRows.from_matrix(m, device) for m in matrices]
        self.sparse = [
            m.density <= self.SPARSE_MAX_DENSITY if sparse_inputs is None else bool(sparse_inputs)
            for m in self.matrices
        ]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batches = (
            np.zeros(len(self.labels), dtype=np.int64)
            if batches is None
            else np.asarray(batches, dtype=np.int64)
        )
        if len(self.batches) != len(self.labels):
            raise ValueError("batches must hold one code per cell of the pool.")
        self.modalities = list(modalities)
        self.n_cells = int(len(self.labels))
        self.device = torch.device(device)

    def to(self, device: torch.device | str) -> SiamesePairDataset:
        """Minibatches on ``device`` from now on (the matrices move there when they fit)."""
        device = torch.device(device)
        if device != self.device:
            self.matrices = [m.to(device) for m in self.matrices]
            self.device = device
        return self

    def __len__(self) -> int:
        return self.n_cells

    def __getitem__(self, pairs: PairSet) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        offset = 0
        first_row = np.empty(len(pairs), dtype=np.int64)
        second_row = np.empty(len(pairs), dtype=np.int64)
        for k, m in enumerate(self.modalities):
            in_first = pairs.first_mod == k
            in_second = pairs.second_mod == k
            rows = np.unique(
                np.concatenate([pairs.first_cell[in_first], pairs.second_cell[in_second]])
            )
            first_row[in_first] = offset + np.searchsorted(rows, pairs.first_cell[in_first])
            second_row[in_second] = offset + np.searchsorted(rows, pairs.second_cell[in_second])
            offset += len(rows)
            cut = self.matrices[k].sparse_rows if self.sparse[k] else self.matrices[k].dense_rows
            batch[data_key(m)] = cut(torch.as_tensor(rows))
            batch[labels_key(m)] = torch.as_tensor(self.labels[rows]).to(self.device)
            batch[batches_key(m)] = torch.as_tensor(self.batches[rows]).to(self.device)
        differs = self.labels[pairs.first_cell] != self.labels[pairs.second_cell]
        distance = pairs.distance if pairs.distance is not None else np.ones(len(pairs))
        batch[PAIR_KEYS["first"]] = torch.as_tensor(first_row)
        batch[PAIR_KEYS["second"]] = torch.as_tensor(second_row)
        batch[PAIR_KEYS["same"]] = torch.as_tensor(pairs.same, dtype=torch.float32)
        batch[PAIR_KEYS["distance"]] = torch.as_tensor(distance, dtype=torch.float32)
        batch[PAIR_KEYS["type_differs"]] = torch.as_tensor(differs, dtype=torch.float32)
        return batch


def split_cells(
    n_cells: int,
    train_size: float = 0.8,
    validation_size: float | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_cells`` cells into training and validation positions.

    Parameters
    ----------
    n_cells
        Number of cells.
    train_size
        Fraction of cells for training, in ``(0, 1]``.
    validation_size
        Fraction for validation; default ``1 - train_size``.
    shuffle
        Split a random permutation (else the cells in order).
    seed
        Seed of the permutation.

    Returns
    -------
    ``(train, validation)`` positions.
    """
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
    if validation_size is None:
        validation_size = 1.0 - train_size
    if validation_size < 0 or train_size + validation_size > 1.0 + 1e-9:
        raise ValueError(
            f"train_size + validation_size must be at most 1, got {train_size} + {validation_size}."
        )
    order = np.random.default_rng(seed).permutation(n_cells) if shuffle else np.arange(n_cells)
    n_train = int(np.ceil(train_size * n_cells))
    n_val = min(int(np.floor(validation_size * n_cells + 1e-6)), n_cells - n_train)
    if n_train < 2:
        raise ValueError(
            f"Only {n_train} training cells: Siamese training needs at least 2 (have {n_cells})."
        )
    return np.sort(order[:n_train]), np.sort(order[n_train : n_train + n_val])


class SiameseDataModule(LightningDataModule):
    """Lightning data module of Siamese pairs over a train/validation split of cells.

    Stands in for scvi-tools' ``DataSplitter`` in :class:`~scvi.train.TrainRunner`:
    it exposes ``train_idx``, ``val_idx``, ``test_idx`` (indices into the registered
    data), ``n_train`` and ``n_val``.

    Parameters
    ----------
    dataset
        The pair dataset over the cell pool.
    train_cells, val_cells
        Pool positions of the training and validation cells.
    pool_indices
        Index of each pool cell in the registered data (for ``train_idx`` / ``val_idx``).
    batch_size
        Pairs per minibatch.
    positive_fraction, strategy
        See :func:`draw_pairs`.
    distance_fn
        See :class:`SiamesePairSampler`.
    seed
        Seed of the samplers.
    prefetch_epochs
        See :class:`SiamesePairSampler` (training pairs only).
    """

    def __init__(
        self,
        dataset: SiamesePairDataset,
        train_cells: np.ndarray,
        val_cells: np.ndarray,
        pool_indices: np.ndarray,
        batch_size: int = 128,
        positive_fraction: float = 0.25,
        strategy: Strategy = "between",
        distance_fn: DistanceFn | None = None,
        seed: int = 0,
        prefetch_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.train_cells = np.asarray(train_cells, dtype=np.int64)
        self.val_cells = np.asarray(val_cells, dtype=np.int64)
        pool_indices = np.asarray(pool_indices, dtype=np.int64)
        self.train_idx = pool_indices[self.train_cells]
        self.val_idx = pool_indices[self.val_cells]
        self.test_idx = np.array([], dtype=np.int64)
        self.n_train = len(self.train_cells)
        self.n_val = len(self.val_cells)
        self.batch_size = batch_size
        sampler_kwargs = {
            "batch_size": batch_size,
            "positive_fraction": positive_fraction,
            "strategy": strategy,
            "distance_fn": distance_fn,
        }
        self.train_sampler = SiamesePairSampler(
            self.train_cells,
            redraw=True,
            shuffle=True,
            seed=seed,
            prefetch_epochs=prefetch_epochs,
            **sampler_kwargs,
        )
        self.val_sampler = (
            SiamesePairSampler(
                self.val_cells, redraw=False, shuffle=False, seed=seed + 1, **sampler_kwargs
            )
            if self.n_val >= 2
            else None
        )

    def _loader(self, sampler: SiamesePairSampler) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.dataset.to(trainer.strategy.root_device)
        return DataLoader(
            self.dataset,
            sampler=sampler,
            batch_size=None,
        )

    def train_dataloader(self) -> DataLoader:
        """Pairs of training cells, redrawn every epoch."""
        return self._loader(self.train_sampler)

    def val_dataloader(self) -> DataLoader | list:
        """One fixed draw of pairs of validation cells (empty without validation cells)."""
        return [] if self.val_sampler is None else self._loader(self.val_sampler)


class SiameseTrainingPlan(LossLoggingMixin, TrainingPlan):
    """scvi-tools training plan for Siamese modules (MINNET).

    Automatic optimisation of the module's loss (for MINNET: cross-entropy on both
    modalities plus ``lambda`` times the flexible-margin contrastive loss). Logs
    ``train_loss`` / ``validation_loss`` (per epoch; the progress bar shows the training
    loss) and every entry of the module's ``extra_metrics`` with suffix ``_train`` or
    ``_validation`` (``contrastive_loss``, ``classification_loss``, ``accuracy``,
    ``positive_distance``, ``negative_distance``), so they appear in ``model.history``
    and can be monitored for early stopping.

    Parameters
    ----------
    module
        A module whose ``loss`` returns a :class:`~scvi.module.base.LossOutput` with
        ``n_obs_minibatch`` set.
    optimizer
        ``"Adam"`` (default), ``"AdamW"`` or ``"Custom"`` (with ``optimizer_creator``).
    lr
        Learning rate (MinNet: 1e-4).
    weight_decay
        Weight decay (MinNet: 1e-6).
    eps
        Adam's epsilon (PyTorch's default 1e-8, as in MinNet; scvi-tools' plans use
        0.01, which slows training at this learning rate).
    lr_scheduler_metric
        Metric watched by ``reduce_lr_on_plateau``.
    **kwargs
        Further :class:`~scvi.train.TrainingPlan` arguments (``reduce_lr_on_plateau``,
        ``optimizer_creator``, ...).
    """

    def __init__(
        self,
        module,
        *,
        optimizer: Literal["Adam", "AdamW", "Custom"] = "Adam",
        lr: float = 1e-4,
        weight_decay: float = 1e-6,
        eps: float = 1e-8,
        lr_scheduler_metric: str = "validation_loss",
        **kwargs,
    ) -> None:
        kwargs.setdefault("n_epochs_kl_warmup", None)
        super().__init__(
            module,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            eps=eps,
            lr_scheduler_metric=lr_scheduler_metric,
            **kwargs,
        )

    def _optimizer_creator_fn(self, optimizer_cls):
        """scvi-tools' Adam / AdamW creator, fused where PyTorch supports it."""
        return lambda params: make_optimizer(
            optimizer_cls, params, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay
        )

    def training_step(self, batch, batch_idx):
        """Loss of one minibatch of pairs; logged as ``train_loss`` and its parts."""
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._log_loss_output(loss_output, "train")
        return loss_output.loss

    def validation_step(self, batch, batch_idx):
        """Loss of one minibatch of validation pairs; logged as ``validation_loss``."""
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._log_loss_output(loss_output, "validation")
