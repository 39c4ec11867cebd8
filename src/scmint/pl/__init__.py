"""Plots people would rather look at than read."""

from ._cis_regulatory import peak_gene_links
from ._embedding import embedding
from ._perturbation import perturbation_screen

__all__ = ["embedding", "peak_gene_links", "perturbation_screen"]
