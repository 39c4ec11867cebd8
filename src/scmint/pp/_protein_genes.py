"""Surface proteins of a CITE-seq panel matched to the genes that encode them.

Protein names in CITE-seq data are antibody targets (``CD45RA``, ``HLA-DR``, ``cd4.1``,
``CD19_TotalSeqB``), not gene symbols, so RNA and protein share few feature names as
given. :func:`protein_gene_names` finds the gene of each protein and
:func:`protein_gene_matrix` turns the protein counts into a gene-centric matrix (the
input of gene-level comparisons such as SCCROSS's common-gene MNN prior).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._cd_antigens import CD_ANTIGEN_GENES
from ._utils import get_matrix, to_csr

ProteinTable = Mapping[str, str | None] | pd.Series | pd.DataFrame | str | Path

# kit / assay decorations around the target name: ADT_CD4, CD4_TotalSeqB, CD4-ADT, ...
_PREFIX_RE = re.compile(r"^(adt|ab|prot|anti[-_ ]?human)[-_ .:]+", re.IGNORECASE)
_SUFFIX_RE = re.compile(
    r"[-_ .:]+(totalseq[-_ ]?[a-d]?|adt|abseq|prot|protein|antibody)$", re.IGNORECASE
)
_CLONE_RE = re.compile(r"^(?P<base>.+?)[-_.](?P<index>\d{1,2})$")
_SEPARATORS_RE = re.compile(r"[-_. /:()+]")
_CD_NAME_RE = re.compile(r"^CD\d+[A-Z]?\d?$")


def _strip_decorations(name: str) -> str:
    stripped = _SUFFIX_RE.sub("", _PREFIX_RE.sub("", name.strip()))
    return stripped or name.strip()


def _key(name: str) -> str:
    """Upper case without separators: ``"hla.dr"`` and ``"HLA-DR"`` -> ``"HLADR"``."""
    return _SEPARATORS_RE.sub("", name).upper()


def _clone_bases(names: Sequence[str]) -> dict[str, str]:
    """Names that are numbered clones of one target (``cd4.1``, ``cd4.2`` -> ``cd4``).

    A trailing number counts as a clone index only when the panel numbers that base
    1, 2, ... (two or more), so that ``TCRVa7.2``, ``CD158e1`` or ``tcr.v.2`` next to
    ``tcr.v.9`` keep their number.
    """
    groups: dict[str, list[tuple[str, int]]] = {}
    for name in names:
        match = _CLONE_RE.match(name)
        if match:
            groups.setdefault(_key(match["base"]), []).append((name, int(match["index"])))
    out = {}
    for group in groups.values():
        if len(group) > 1 and sorted(i for _, i in group) == list(range(1, len(group) + 1)):
            out.update({n: _CLONE_RE.match(n)["base"] for n, _ in group})
    return out


def read_protein_table(table: ProteinTable) -> dict[str, str | None]:
    """A user's protein -> gene table as a dict.

    Parameters
    ----------
    table
        A mapping or Series (protein -> gene symbol), a two-column DataFrame (protein,
        gene), or the path of such a CSV / TSV file with a header row. A missing or
        empty gene leaves that protein unmatched.
    """
    if isinstance(table, str | Path):
        path = Path(table)
        if not path.exists():
            raise FileNotFoundError(f"Protein-gene table {str(path)!r} does not exist.")
        table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    if isinstance(table, pd.DataFrame):
        if table.shape[1] != 2:
            raise ValueError(
                "A protein-gene table needs exactly two columns (protein, gene); got "
                f"{list(table.columns)}."
            )
        table = pd.Series(table.iloc[:, 1].to_numpy(), index=table.iloc[:, 0].astype(str))
    if isinstance(table, pd.Series):
        table = table.to_dict()
    if not isinstance(table, Mapping):
        raise TypeError(
            "protein table must be a mapping, Series, two-column DataFrame or a CSV / TSV "
            f"path, got {type(table).__name__}."
        )
    out: dict[str, str | None] = {}
    for protein, gene in table.items():
        missing = gene is None or (isinstance(gene, float) and np.isnan(gene)) or gene == ""
        out[str(protein)] = None if missing else str(gene)
    return out


def protein_gene_names(
    proteins: Sequence[str],
    genes: Sequence[str] | None = None,
    table: ProteinTable | None = None,
) -> pd.Series:
    """The gene that encodes each protein of a CITE-seq panel.

    Each protein name is tried in this order; the first hit wins:

    1. the user's ``table`` (exact name, then case- and separator-insensitive);
    2. a gene of ``genes`` with the same name, ignoring case and separators
       (``cd14`` -> ``CD14``, ``siglec.8`` -> ``SIGLEC8``);
    3. the built-in table of human CD antigens and common CITE-seq targets
       (``CD56`` -> ``NCAM1``, ``CD45RA`` -> ``PTPRC``, ``HLA-DR`` -> ``HLA-DRA``;
       HCDM / HGNC nomenclature, see :mod:`scmint.pp._cd_antigens`);
    4. a CD name not in that table is its own gene symbol (``cd36`` -> ``CD36``).

    Kit decorations are removed first (``ADT_``, ``_TotalSeqB``, ``-ADT``, ...), and
    numbered clones of one target in the panel (``cd4.1``, ``cd4.2``) are read as that
    target. Mouse panels (``Cd4``) match through rule 2 only.

    Parameters
    ----------
    proteins
        Protein (antibody target) names, e.g. ``adt.var_names``.
    genes
        Gene symbols to match names against (e.g. ``rna.var_names``); ``None``: rules 1
        and 3 only.
    table
        Protein -> gene symbol, see :func:`read_protein_table`. It takes precedence; map
        a protein to ``None`` to leave it unmatched.

    Returns
    -------
    Series indexed by ``proteins`` with the gene symbol of each (NaN where none was
    found), named ``"gene"``.
    """
    proteins = [str(p) for p in proteins]
    user = read_protein_table(table) if table is not None else {}
    user_keys = {_key(p): g for p, g in user.items()}
    gene_keys: dict[str, str] = {}
    for g in [] if genes is None else [str(g) for g in genes]:
        gene_keys.setdefault(_key(g), g)
    cleaned = [_strip_decorations(p) for p in proteins]
    clones = _clone_bases(cleaned)
    out = []
    for raw, name in zip(proteins, cleaned, strict=True):
        target = clones.get(name, name)
        gene = None
        if raw in user:
            gene = user[raw]
        elif _key(target) in user_keys or _key(name) in user_keys:
            gene = user_keys.get(_key(target), user_keys.get(_key(name)))
        elif _key(target) in gene_keys:
            gene = gene_keys[_key(target)]
        elif _key(target) in CD_ANTIGEN_GENES:
            gene = CD_ANTIGEN_GENES[_key(target)]
        elif _CD_NAME_RE.match(_key(target)):
            gene = _key(target)  # CD4, CD14, CD38, ...: the gene has the antigen's name
        out.append(np.nan if gene is None else gene)
    return pd.Series(out, index=pd.Index(proteins), name="gene", dtype=object)


def protein_gene_matrix(
    adt: AnnData,
    genes: Sequence[str] | None = None,
    table: ProteinTable | None = None,
    layer: str | None = None,
) -> AnnData:
    """Protein counts as a cells x genes matrix, for gene-level comparisons with RNA.

    Proteins are matched to genes with :func:`protein_gene_names`; proteins of one gene
    (``CD45RA`` and ``CD45RO``; clones ``cd4.1`` and ``cd4.2``) are summed.

    Parameters
    ----------
    adt
        Cells x proteins counts (not modified).
    genes
        The gene symbols to match against and keep (e.g. ``rna.var_names``); ``None``:
        every matched gene.
    table
        User protein -> gene table, see :func:`read_protein_table`.
    layer
        Layer of ``adt`` holding the counts (``None``: ``X``).

    Returns
    -------
    AnnData ``n_cells x n_matched_genes`` with sparse ``X``, ``obs`` copied from ``adt``
    and ``var["proteins"]`` (the proteins summed into each gene, comma-separated), in
    the order of ``genes`` when given.
    """
    matched = protein_gene_names(adt.var_names, genes=genes, table=table)
    matched = matched[matched.notna()]
    if genes is not None:
        order = pd.Index([str(g) for g in genes])
        matched = matched[matched.isin(order)]
        names = order[order.isin(matched.to_numpy())]
    else:
        names = pd.Index(pd.unique(matched.to_numpy()))
    col = names.get_indexer(matched.to_numpy())
    row = adt.var_names.get_indexer(matched.index)
    summing = sp.csr_matrix(
        (np.ones(len(row), dtype=np.float32), (row, col)), shape=(adt.n_vars, len(names))
    )
    x = to_csr(get_matrix(adt, layer)) @ summing
    proteins = matched.groupby(matched.to_numpy(), sort=False).apply(
        lambda s: ",".join(s.index.astype(str))
    )
    var = pd.DataFrame({"proteins": proteins.reindex(names).to_numpy()}, index=names)
    return AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=adt.obs.copy(), var=var)
