"""Plots people would rather look at than read."""

from ._cis_regulatory import peak_gene_links
from ._embedding import embedding

__all__ = ["embedding", "peak_gene_links"]
