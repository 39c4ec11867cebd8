"""Alternating generator / discriminator training on scvi-tools' training plan."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from scvi.module.base import BaseModuleClass
from scvi.train import TrainingPlan
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ._logging import LossLoggingMixin
from ._optim import make_optimizer

Order = Literal["generator_first", "discriminator_first"]
ORDERS: tuple[str, ...] = ("generator_first", "discriminator_first")


def detach_outputs(outputs: Any) -> Any:
    """A copy of nested dicts / lists / tuples of tensors with every tensor detached."""
    if torch.is_tensor(outputs):
        return outputs.detach()
    if isinstance(outputs, Mapping):
        return {k: detach_outputs(v) for k, v in outputs.items()}
    if isinstance(outputs, list | tuple):
        return type(outputs)(detach_outputs(v) for v in outputs)
    return outputs


class GeneratorDiscriminatorPlan(LossLoggingMixin, TrainingPlan):
    """Manual optimisation of a generator and a discriminator, one update of each per step.

    A :class:`~scvi.train.TrainingPlan` (so scvi-tools' ``TrainRunner``, progress bar,
    early stopping, ``model.history``, accelerators and save/load work unchanged) with
    ``automatic_optimization = False`` and two optimisers. Unlike
    :class:`scvi.train.AdversarialTrainingPlan`, whose discriminator is the plan's own
    batch classifier, the discriminator(s) belong to the module, which defines both
    objectives. (Named apart from scvi-tools' class, which it does not extend.)

    **Module protocol.** The module (a :class:`~scvi.module.base.BaseModuleClass`)
    provides:

    - ``loss(tensors, inference_outputs, generative_outputs, **loss_kwargs) ->
      LossOutput``: the generator objective (autoencoders, classifiers, and the term that
      fools the discriminator), with each part as a 0-d tensor in ``extra_metrics`` and
      ``n_obs_minibatch`` set;
    - ``discriminator_loss(tensors, inference_outputs) -> Tensor | None``: the
      discriminator objective on the same minibatch. It receives ``inference_outputs``
      detached (:func:`detach_outputs`), so no gradient reaches the generator; ``None``
      means "nothing to train on this minibatch";
    - ``discriminator_parameters() -> Iterable[Parameter]``: the parameters of the
      discriminator(s). If empty (e.g. adversarial loss switched off) the plan runs a
      single optimiser and no discriminator step. All other parameters of the module are
      the generator's;
    - optionally ``set_epoch(epoch: int)``: called at the start of every training epoch
      (0-based), for schedules inside the module (e.g. CLUE's annealed discriminator
      noise).

    **Step.** ``order="generator_first"`` (Con-AAE): forward pass, generator update,
    then discriminator update on the detached latent codes of that forward pass.
    ``order="discriminator_first"`` (GAN/GLUE style): a gradient-free inference pass,
    discriminator update, then forward pass and generator update against the updated
    discriminator.

    **Logged** (per epoch, in ``model.history``): ``train_loss`` / ``validation_loss``
    (the generator objective), ``discriminator_loss_train`` /
    ``discriminator_loss_validation``, and every ``extra_metrics`` entry as
    ``<key>_train`` / ``<key>_validation``.

    Parameters
    ----------
    module
        A module following the protocol above.
    optimizer
        ``"Adam"``, ``"AdamW"`` or ``"Custom"`` (then ``optimizer_creator``).
    optimizer_creator
        ``params -> torch.optim.Optimizer`` for ``optimizer="Custom"`` (generator; also the
        discriminator unless ``discriminator_optimizer_creator`` is given).
    lr
        Generator learning rate (Con-AAE: 1e-4).
    weight_decay
        Generator weight decay (Con-AAE: 1e-4).
    eps
        Adam's epsilon (PyTorch default 1e-8).
    betas
        Adam's betas (Con-AAE: ``(0.5, 0.999)``, the usual GAN choice).
    discriminator_lr
        Discriminator learning rate; default ``lr``.
    discriminator_weight_decay
        Discriminator weight decay; default ``weight_decay``.
    discriminator_optimizer_creator
        ``params -> Optimizer`` for the discriminator with ``optimizer="Custom"``.
    order
        ``"generator_first"`` or ``"discriminator_first"`` (see above).
    n_discriminator_steps
        Discriminator updates per minibatch (1; scCross / GLUE: 2 before the generator's),
        each on a fresh inference pass with ``"discriminator_first"``.
    max_grad_norm
        Clip each update's gradient norm to this value (``None``: no clipping).
    reduce_lr_on_plateau
        Reduce the generator's learning rate when ``lr_scheduler_metric`` plateaus.
    lr_scheduler_metric
        Metric watched by ``reduce_lr_on_plateau`` (``"validation_loss"``).
    **kwargs
        Further :class:`~scvi.train.TrainingPlan` arguments (``lr_factor``,
        ``lr_patience``, ``n_epochs_kl_warmup`` for modules whose loss takes
        ``kl_weight``, ...) and keyword arguments of ``module.loss``.
    """

    def __init__(
        self,
        module: BaseModuleClass,
        *,
        optimizer: Literal["Adam", "AdamW", "Custom"] = "Adam",
        optimizer_creator: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
        | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        eps: float = 1e-8,
        betas: tuple[float, float] = (0.5, 0.999),
        discriminator_lr: float | None = None,
        discriminator_weight_decay: float | None = None,
        discriminator_optimizer_creator: Callable[
            [Iterable[torch.nn.Parameter]], torch.optim.Optimizer
        ]
        | None = None,
        order: Order = "generator_first",
        n_discriminator_steps: int = 1,
        max_grad_norm: float | None = None,
        reduce_lr_on_plateau: bool = False,
        lr_scheduler_metric: str = "validation_loss",
        **kwargs: Any,
    ) -> None:
        for name in ("discriminator_loss", "discriminator_parameters"):
            if not callable(getattr(module, name, None)):
                raise TypeError(
                    f"{type(module).__name__} has no {name}(); GeneratorDiscriminatorPlan needs "
                    "a module with loss(), discriminator_loss() and discriminator_parameters()."
                )
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}.")
        if optimizer not in ("Adam", "AdamW", "Custom"):
            raise ValueError(f"optimizer must be 'Adam', 'AdamW' or 'Custom', got {optimizer!r}.")
        kwargs.setdefault("n_epochs_kl_warmup", None)
        super().__init__(
            module,
            optimizer=optimizer,
            optimizer_creator=optimizer_creator,
            lr=lr,
            weight_decay=weight_decay,
            eps=eps,
            reduce_lr_on_plateau=reduce_lr_on_plateau,
            lr_scheduler_metric=lr_scheduler_metric,
            **kwargs,
        )
        self.betas = (float(betas[0]), float(betas[1]))
        self.discriminator_lr = lr if discriminator_lr is None else discriminator_lr
        self.discriminator_weight_decay = (
            weight_decay if discriminator_weight_decay is None else discriminator_weight_decay
        )
        self.discriminator_optimizer_creator = discriminator_optimizer_creator
        self.order = order
        if isinstance(n_discriminator_steps, bool) or int(n_discriminator_steps) < 1:
            raise ValueError(f"n_discriminator_steps must be >= 1, got {n_discriminator_steps!r}.")
        self.n_discriminator_steps = int(n_discriminator_steps)
        self.max_grad_norm = max_grad_norm
        self.automatic_optimization = False

    # ------------------------------------------------------------------ optimisers
    def _discriminator_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.module.discriminator_parameters() if p.requires_grad]

    def _generator_params(self) -> list[torch.nn.Parameter]:
        disc = {id(p) for p in self.module.discriminator_parameters()}
        return [p for p in self.module.parameters() if p.requires_grad and id(p) not in disc]

    @property
    def has_discriminator(self) -> bool:
        """Whether the module has discriminator parameters to train."""
        return len(self._discriminator_params()) > 0

    def _make_optimizer(
        self, params: list, lr: float, weight_decay: float, creator: Callable | None
    ) -> torch.optim.Optimizer:
        if self.optimizer_name == "Custom":
            if creator is None:
                raise ValueError("optimizer='Custom' needs optimizer_creator=.")
            return creator(params)
        cls = torch.optim.Adam if self.optimizer_name == "Adam" else torch.optim.AdamW
        return make_optimizer(
            cls, params, lr=lr, betas=self.betas, eps=self.eps, weight_decay=weight_decay
        )

    def configure_optimizers(self):
        """Generator optimiser (with optional plateau scheduler) and discriminator optimiser."""
        opt_g = self._make_optimizer(
            self._generator_params(), self.lr, self.weight_decay, self.optimizer_creator
        )
        optimizers = [opt_g]
        if self.has_discriminator:
            optimizers.append(
                self._make_optimizer(
                    self._discriminator_params(),
                    self.discriminator_lr,
                    self.discriminator_weight_decay,
                    self.discriminator_optimizer_creator or self.optimizer_creator,
                )
            )
        if not self.reduce_lr_on_plateau:
            return optimizers
        scheduler = ReduceLROnPlateau(
            opt_g,
            patience=self.lr_patience,
            factor=self.lr_factor,
            threshold=self.lr_threshold,
            min_lr=self.lr_min,
            threshold_mode="abs",
        )
        return optimizers, [{"scheduler": scheduler}]  # stepped by hand (manual optimisation)

    def _optimizers(self) -> tuple[Any, Any | None]:
        opts = self.optimizers()
        if not isinstance(opts, list | tuple):
            return opts, None
        return opts[0], (opts[1] if len(opts) > 1 else None)

    def _update(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.max_grad_norm is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm"
            )
        optimizer.step()

    # ------------------------------------------------------------------ steps
    def _discriminator_step(self, batch, inference_outputs, optimizer, n: int) -> None:
        loss = self.module.discriminator_loss(batch, detach_outputs(inference_outputs))
        if loss is None:  # nothing to discriminate in this minibatch (e.g. one modality)
            if self.trainer.world_size > 1:  # processes average gradients: same steps in all
                self._update(optimizer, 0.0 * sum(p.sum() for p in self._discriminator_params()))
            return
        self._update(optimizer, loss)
        self._log_metric("discriminator_loss", loss, "train", n)

    def _no_grad_inference(self, batch) -> dict:
        with torch.no_grad():
            return self.module.inference(**self.module._get_inference_input(batch))

    def training_step(self, batch, batch_idx):
        """One generator update and one discriminator update on the same minibatch."""
        if "kl_weight" in self.loss_kwargs:
            self.loss_kwargs.update({"kl_weight": self.kl_weight})
        opt_g, opt_d = self._optimizers()
        if opt_d is not None and self.order == "discriminator_first":
            n = _n_obs(batch)
            for _ in range(self.n_discriminator_steps):
                inference_outputs = self._no_grad_inference(batch)
                self._discriminator_step(batch, inference_outputs, opt_d, n)
        inference_outputs, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._update(opt_g, loss_output.loss)
        self._log_loss_output(loss_output, "train")
        if opt_d is not None and self.order == "generator_first":
            n = int(loss_output.n_obs_minibatch)
            for _ in range(self.n_discriminator_steps):
                self._discriminator_step(batch, inference_outputs, opt_d, n)
        return loss_output.loss.detach()

    def validation_step(self, batch, batch_idx):
        """Generator and discriminator objectives of a validation minibatch (no updates)."""
        inference_outputs, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._log_loss_output(loss_output, "validation")
        if self.has_discriminator:
            loss = self.module.discriminator_loss(batch, detach_outputs(inference_outputs))
            if loss is not None:
                n = int(loss_output.n_obs_minibatch)
                self._log_metric("discriminator_loss", loss, "validation", n)

    # ------------------------------------------------------------------ schedulers
    def on_train_epoch_start(self) -> None:
        """Tell the module which epoch starts (modules with a ``set_epoch`` method)."""
        set_epoch = getattr(self.module, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(int(self.current_epoch))

    def _step_scheduler(self, on_validation: bool) -> None:
        if not self.reduce_lr_on_plateau:
            return
        if ("validation" in self.lr_scheduler_metric) != on_validation:
            return
        metric = self.trainer.callback_metrics.get(self.lr_scheduler_metric)
        if metric is not None:
            self.lr_schedulers().step(metric)

    def on_train_epoch_end(self) -> None:
        """Step the plateau scheduler on a training metric."""
        self._step_scheduler(on_validation=False)

    def on_validation_epoch_end(self) -> None:
        """Step the plateau scheduler on a validation metric."""
        self._step_scheduler(on_validation=True)


def _n_obs(batch: Mapping[str, torch.Tensor]) -> int:
    """Rows of a minibatch (length of its first tensor)."""
    for value in batch.values():
        if torch.is_tensor(value) and value.dim() > 0:
            return int(value.shape[0])
    return 1
