"""Losses shared by scmint modules (SCCROSS and CLUE)."""

from __future__ import annotations

import torch


def labelled_cross_entropy(
    classifier: torch.nn.Module,
    embeddings: dict[str, torch.Tensor],
    has: dict[str, torch.Tensor],
    classes: torch.Tensor,
) -> torch.Tensor | None:
    """Cross-entropy of one classifier shared by all modalities, on labelled cells only.

    Parameters
    ----------
    classifier
        Maps embeddings to class logits.
    embeddings
        ``{modality: rows x d}``: the embeddings of the minibatch cells measured in that
        modality (the rows where ``has[modality]`` is true, in minibatch order).
    has
        ``{modality: minibatch-long bool mask}`` of the cells measured in each modality.
    classes
        Class index of every minibatch cell; ``-1`` marks an unlabelled cell, which takes
        no part in the loss.

    Returns
    -------
    The mean cross-entropy over every (cell, modality) with a label, or ``None`` when the
    minibatch has no labelled cell.
    """
    logits, target = [], []
    for m, z in embeddings.items():
        labelled = has[m] & (classes >= 0)
        if labelled.any():
            logits.append(classifier(z[labelled[has[m]]]))
            target.append(classes[labelled])
    if not logits:
        return None
    return torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(target))
