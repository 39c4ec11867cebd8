"""MinNet's published smoothing result on our data (issue 18, item 6).

MinNet (Liu et al. 2023, "Model-based smoothing helps correlation-based cis-regulatory
element inferring") reports that when RNA and ATAC come from different cells, the
Spearman correlation of a gene with the peaks at its TSS across mini-bulks is lower than
in mini-bulks of truly paired cells, and that smoothing each modality over its 5
nearest neighbours in MINNET's co-embedding lifts it to the level of true pairs (more
neighbours lift it further). This script checks that with :class:`scmint.model.MINNET`
on SNARE-seq, where every cell was measured in both modalities, so the true pairs are
known:

* reference: the labelled paired cells of nine libraries (MINNET trained on them);
  query: the cells of the three held-out libraries (``09J``, ``09K``, ``09L``), embedded
  one modality at a time, so each query cell becomes an RNA-only and an ATAC-only cell;
* mini-bulks (MinNet's recipe): the query's RNA-only and ATAC-only cells clustered
  together in the co-embedding within their transferred cell types
  (:func:`scmint.tl.assign_minibulks`, ``--bulks`` groups), counts summed per group
  (:func:`scmint.tl.minibulk`);
* the gene's nearby peaks: SNARE-seq ships no gene annotation; the peaks the dataset's
  ``gene_peak_prior.npz`` links to a gene stand in for the paper's peaks within 2 kb
  of the TSS. All other peaks within 150 kb of the gene (positioned at the midpoint of
  its linked peaks, as in the MINNET tutorial) are the comparison set;
* conditions, all on the same RNA mini-bulks: **true pairs** (each RNA cell's own ATAC
  profile in its mini-bulk: what a paired measurement gives), **unpaired** (the ATAC-only
  cells placed in the mini-bulk by MINNET) without smoothing and with smoothing over
  ``k`` = 5, 10, 20 neighbours (:func:`scmint.tl.smooth`, each modality in its own
  embedding, MinNet's binarised kNN with the longest 5 % of edges dropped), true pairs
  smoothed with ``k`` = 5 (both modalities over the mean of the two embeddings), and a
  control that pairs each RNA mini-bulk with a random ATAC mini-bulk of the same type
  (what the cell type alone gives).

Scored: the mean Spearman rho of the linked gene-peak pairs (``rho_linked``), of the
other candidate pairs (``rho_other``), and the share of linked pairs with rho > 0.

Usage::

    .venv/bin/python benchmarks/minnet_claims.py [--seeds 0 1 2] [--epochs 10] \\
        [--bulks 100] [--out benchmarks/minnet_claims.csv]

Rows are appended to ``--out``; ``--markdown`` prints the table of the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scmint  # noqa: E402
from harness import data_dir, dataset_info, load_dataset  # noqa: E402
from harness._runner import git_commit  # noqa: E402

OUT = HERE / "minnet_claims.csv"
QUERY_LIBRARIES = ["09J", "09K", "09L"]
WINDOW = 150_000
SMOOTHING = (5, 10, 20)


def gene_loci_from_prior(prior: sp.csr_matrix, genes: pd.Index, peaks: pd.Index) -> pd.DataFrame:
    """Each gene placed at the midpoint of its linked peaks (unstranded, 1 bp)."""
    parsed = scmint.pp.parse_peak_names(peaks)
    link = prior.tocoo()
    spans = (
        pd.DataFrame(
            {
                "gene": genes[link.row],
                "chrom": parsed["chrom"].to_numpy()[link.col],
                "lo": parsed["start"].to_numpy()[link.col],
                "hi": parsed["end"].to_numpy()[link.col],
            }
        )
        .groupby("gene")
        .agg(chrom=("chrom", "first"), lo=("lo", "min"), hi=("hi", "max"))
    )
    spans["start"] = (spans["lo"] + spans["hi"]) // 2
    spans["end"] = spans["start"] + 1
    spans["strand"] = "."
    return spans[["chrom", "start", "end", "strand"]]


def shuffle_within_type(bulks, seed: int):
    """Rename mini-bulks by a random permutation within each cell type."""
    rng = np.random.default_rng(seed)
    out = bulks.copy()
    group = out.obs["group"].astype(str).to_numpy()
    names = out.obs_names.to_numpy().copy()
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        names[idx] = names[rng.permutation(idx)]
    out.obs_names = names
    return out


def read_snare():
    """The SNARE-seq MuData (read-only) and its gene-peak prior, from the harness's data."""
    name = "snare_mouse_cortex"
    links = data_dir() / name / dataset_info(name)["gene_peak_links"]
    return load_dataset(name), sp.load_npz(links).tocsr()


def run(
    seed: int,
    epochs: int,
    n_bulks: int,
    mdata=None,
    prior=None,
    reference_cells: int | None = None,
) -> list[dict]:
    """Train MINNET on the reference libraries and score every condition on the query.

    ``reference_cells``: train on this many reference cells drawn at random (default
    all, 7,844); the query is always the three held-out libraries.
    """
    if mdata is None:
        mdata, prior = read_snare()
    rna, atac = mdata["rna"], mdata["atac"]
    obs = rna.obs
    is_query = obs["batch"].isin(QUERY_LIBRARIES).to_numpy()
    in_reference = np.flatnonzero(~is_query)
    if reference_cells is not None and reference_cells < in_reference.size:
        rng = np.random.default_rng(seed)
        in_reference = np.sort(rng.choice(in_reference, reference_cells, replace=False))
    reference = md.MuData({"rna": rna[in_reference].copy(), "atac": atac[in_reference].copy()})
    reference.obs[["cell_type", "batch"]] = obs.iloc[in_reference][["cell_type", "batch"]]
    ref = scmint.data.pad_mudata(reference)
    q_rna, q_atac = rna[is_query].copy(), atac[is_query].copy()

    scvi.settings.seed = seed
    scmint.model.MINNET.setup_mudata(ref, labels_key="cell_type", batch_key="batch")
    model = scmint.model.MINNET(ref, distance_cutoff="auto")
    start = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=256, plan_kwargs={"lr": 1e-3})
    train_s = time.perf_counter() - start

    z_ref = model.get_latent_representation(modality="joint")
    ref_types = ref.obs["cell_type"].astype(str).to_numpy()
    z_rna = model.get_latent_representation(q_rna, modality="rna")
    z_atac = model.get_latent_representation(q_atac, modality="atac")
    lab_rna = scmint.tl.transfer_labels(z_ref, ref_types, z_rna, k=10).astype(str)
    lab_atac = scmint.tl.transfer_labels(z_ref, ref_types, z_atac, k=10).astype(str)
    truth = obs.loc[is_query, "cell_type"].astype(str).to_numpy()
    n = len(z_rna)
    assignment = scmint.tl.assign_minibulks(
        np.vstack([z_rna, z_atac]), np.concatenate([lab_rna, lab_atac]), n_bulks=n_bulks
    )
    rna_bulks = scmint.tl.minibulk(q_rna, groupby=lab_rna, assignment=assignment[:n])
    loci = gene_loci_from_prior(prior, rna.var_names, atac.var_names)

    def atac_bulks(cells, rows_assignment):
        return scmint.tl.minibulk(cells, groupby=lab_rna, assignment=rows_assignment)

    conditions = {
        "true pairs": (rna_bulks, atac_bulks(q_atac, assignment[:n])),
        "unpaired, no smoothing": (
            rna_bulks,
            scmint.tl.minibulk(q_atac, groupby=lab_atac, assignment=assignment[n:]),
        ),
    }
    for k in SMOOTHING:
        conditions[f"unpaired, smoothing k={k}"] = (
            scmint.tl.minibulk(
                scmint.tl.smooth(q_rna, z_rna, n_neighbors=k),
                groupby=lab_rna,
                assignment=assignment[:n],
            ),
            scmint.tl.minibulk(
                scmint.tl.smooth(q_atac, z_atac, n_neighbors=k),
                groupby=lab_atac,
                assignment=assignment[n:],
            ),
        )
    z_joint = (z_rna + z_atac) / 2
    conditions["true pairs, smoothing k=5"] = tuple(
        scmint.tl.minibulk(
            scmint.tl.smooth(cells, z_joint, n_neighbors=5),
            groupby=lab_rna,
            assignment=assignment[:n],
        )
        for cells in (q_rna, q_atac)
    )
    conditions["control: same type, random mini-bulk"] = (
        rna_bulks,
        shuffle_within_type(conditions["unpaired, no smoothing"][1], seed),
    )

    common = dict(
        seed=seed,
        epochs=f"{len(model.history['train_loss'])} / {epochs}",
        query_cells=n,
        bulks=len(rna_bulks),
        label_transfer_rna=float(np.mean(lab_rna == truth)),
        label_transfer_atac=float(np.mean(lab_atac == truth)),
        train_s=round(train_s, 1),
        commit=git_commit(),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    rows = []
    for name, (r_b, a_b) in conditions.items():
        table = scmint.tl.peak_gene_correlation(r_b, a_b, genes=loci, window=WINDOW)
        gi = rna.var_names.get_indexer(table["gene"])
        pi = atac.var_names.get_indexer(table["peak"])
        linked = np.asarray(prior[gi, pi]).ravel() > 0
        rho = table["rho"].to_numpy()
        ok = np.isfinite(rho)
        rows.append(
            {
                "condition": name,
                "rho_linked": float(rho[ok & linked].mean()),
                "rho_other": float(rho[ok & ~linked].mean()),
                "positive_linked": float(np.mean(rho[ok & linked] > 0)),
                "linked_pairs": int((ok & linked).sum()),
                **common,
            }
        )
    return rows


def markdown(path: Path) -> str:
    """Mean and spread over seeds of each condition (latest run per seed)."""
    table = pd.read_csv(path).drop_duplicates(["seed", "condition"], keep="last")
    order = list(dict.fromkeys(table["condition"]))
    summary = table.groupby("condition", sort=False).agg(
        seeds=("seed", "size"),
        rho_linked=("rho_linked", "mean"),
        rho_linked_sd=("rho_linked", "std"),
        rho_other=("rho_other", "mean"),
        positive_linked=("positive_linked", "mean"),
    )
    summary["seeds"] = summary["seeds"].astype(str)
    return summary.reindex(order).to_markdown(floatfmt=".3f")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bulks", type=int, default=100, help="mini-bulks (MinNet: 100)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--markdown", action="store_true", help="print the file's summary")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(args.out))
        return
    mdata, prior = read_snare()
    for seed in args.seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rows = run(seed, args.epochs, args.bulks, mdata, prior)
        print(pd.DataFrame(rows)[["condition", "rho_linked", "rho_other"]], flush=True)
        old = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
        pd.concat([old, pd.DataFrame(rows)]).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
