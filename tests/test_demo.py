"""The demo behind `make demo`: end to end on the simulator and on a real .h5mu."""

import re

import pytest

from scmint.__main__ import main
from scmint._demo import run_demo


def _foscttm(report_md: str) -> float:
    row = next(line for line in report_md.splitlines() if line.startswith("| cca"))
    return float(row.split("|")[2])


def test_demo_on_simulator_writes_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-cells", "800"]) == 0
    # one progress line per step, with the elapsed time
    steps = re.findall(r"^\[demo (\d+):(\d\d)\] (.*)$", capsys.readouterr().out, flags=re.M)
    assert [s[2] for s in steps][0] == "simulating 800 cells"
    assert steps[-1][2] == f"report written to {tmp_path / 'report.html'}"
    for method in ("cca", "minnet", "conaae", "sccross", "clue"):
        assert any(s[2].startswith(f"{method}: trained in ") for s in steps), method
    elapsed = [int(m) * 60 + int(sec) for m, sec, _ in steps]
    assert elapsed == sorted(elapsed)
    md_text = (tmp_path / "report.md").read_text()
    html_text = (tmp_path / "report.html").read_text()
    assert (tmp_path / "embedding_cca.png").stat().st_size > 10_000
    assert "embedding_cca.png" in html_text and "<table" in html_text
    assert "foscttm" in md_text
    assert _foscttm(md_text) < 0.3  # the simulated modalities share their cell states
    assert re.search(r"480 paired", md_text)
    for method in ("cca", "minnet", "conaae", "sccross", "clue"):  # every model is in the report
        assert re.search(rf"^\| {method} +\| +0\.\d+", md_text, flags=re.M), method
        assert (tmp_path / f"embedding_{method}.png").stat().st_size > 10_000


def test_demo_on_real_h5mu(tmp_path, data_dir):
    path = data_dir / "bmmc_cite_starter" / "bmmc_cite_starter.h5mu"
    if not path.exists():
        pytest.skip("shared data not available")
    report = run_demo(path, out_dir=tmp_path, modalities=["rna", "adt"])
    assert report.exists()
    assert _foscttm((tmp_path / "report.md").read_text()) < 0.4


def test_demo_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_demo(tmp_path / "missing.h5mu", out_dir=tmp_path)
    with pytest.raises(KeyError, match="labels_key 'celltype'"):
        run_demo(None, out_dir=tmp_path, n_cells=300, labels_key="celltype")
