"""Plots people would rather look at than read."""

from ._embedding import embedding

__all__ = ["embedding"]
