"""Shared neural-network building blocks: losses (and, as models need them, layers)."""

from ._losses import flexible_margin, flexible_margin_contrastive_loss

__all__ = ["flexible_margin", "flexible_margin_contrastive_loss"]
