"""SCCROSS: scCross's VAE-GAN with bidirectional aligners and a common-gene MNN prior."""

from ._model import SCCROSS
from ._module import SCCROSSModule

__all__ = ["SCCROSS", "SCCROSSModule"]
