"""Check simulated cells of a state against the model's own embedding of real cells."""

import numpy as np

import scmint


def simulate_and_place(model, obs_key: str, value: str, n_cells: int = 60, **options):
    """Simulate ``n_cells`` of ``value`` and the fraction of each modality's simulated
    cells whose 10 nearest real cells (joint embedding) vote for ``value``.

    Returns the simulated MuData and ``{modality: fraction}``; also checks that the
    simulated cells are paired and labelled.
    """
    out = model.simulate(obs_key, value, n_cells=n_cells, seed=0, **options)
    assert set(out.mod) == set(model.modalities)
    names = [list(out[m].obs_names) for m in model.modalities]
    assert all(n == names[0] for n in names)  # paired: one cell in every modality
    assert out.n_obs == n_cells and (out.obs[obs_key] == value).all()
    z_real = model.get_latent_representation(modality="joint")
    labels = model.adata.obs[obs_key].astype(str).to_numpy()
    fractions = {}
    for m in model.modalities:
        z_sim = model.get_latent_representation(out[m], modality=m)
        predicted = scmint.tl.transfer_labels(z_real, labels, z_sim, k=10)
        predicted = predicted[0] if isinstance(predicted, tuple) else predicted
        fractions[m] = float(np.mean(np.asarray(predicted) == value))
    return out, fractions


def common_state(model, obs_key: str, rank: int = 0) -> tuple[str, float]:
    """The ``rank``-th most common value of ``obs_key`` and its share of the cells."""
    counts = model.adata.obs[obs_key].astype(str).value_counts()
    return str(counts.index[rank]), float(counts.iloc[rank] / counts.sum())
