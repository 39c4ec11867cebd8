"""SCCROSS: scCross's VAE-GAN with bidirectional aligners and a common-gene MNN prior.

Everything only SCCROSS uses lives here: the common-gene MNN prior and the MNN
correction it is built with (:func:`mnn_prior`, :func:`mnn_correct`, :func:`mnn_pairs`,
:func:`cross_knn`), the optional gene-set scores of the encoder input
(:func:`gene_set_scores`, :class:`GeneSetScorePCA`, :func:`read_gmt`) and the alignment
losses (:func:`gram_alignment_loss`, :func:`paired_distance_loss`).
"""

from ._gene_sets import GeneSetScorePCA, gene_set_scores, read_gmt
from ._losses import gram_alignment_loss, paired_distance_loss
from ._mnn import cross_knn, mnn_correct, mnn_pairs, mnn_prior
from ._model import SCCROSS
from ._module import SCCROSSModule

__all__ = [
    "SCCROSS",
    "GeneSetScorePCA",
    "SCCROSSModule",
    "cross_knn",
    "gene_set_scores",
    "gram_alignment_loss",
    "mnn_correct",
    "mnn_pairs",
    "mnn_prior",
    "paired_distance_loss",
    "read_gmt",
]
