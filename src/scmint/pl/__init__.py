"""Plots people would rather look at than read.

As in scanpy, ``pl.X`` plots the output of ``tl.X`` (``pl.embedding`` that of
``tl.umap``); every function draws into ``ax=`` when given and takes ``show=``. Nothing
here selects a matplotlib backend.
"""

from ._cis_regulatory import peak_gene_correlation
from ._embedding import embedding
from ._perturbation import perturbation_screen

__all__ = ["embedding", "peak_gene_correlation", "perturbation_screen"]
