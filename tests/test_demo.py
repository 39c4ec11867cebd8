"""The demo behind `make demo`: end to end on the simulator and on a real .h5mu."""

import re

import pytest

from scmint.__main__ import main
from scmint._demo import run_demo


def _scores(report_md: str) -> dict[str, list[str]]:
    """Method -> the cells of its row in the Markdown scores table (bold marks removed)."""
    rows = {}
    for line in report_md.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("cca", "minnet", "conaae", "sccross", "clue"):
            rows[cells[0]] = cells[1:]
    return rows


def _foscttm(report_md: str, method: str = "cca") -> float:
    return float(_scores(report_md)[method][0])


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
    assert "foscttm" in md_text and "peak_rss_mb" in md_text
    assert _foscttm(md_text) < 0.3  # the simulated modalities share their cell states
    assert re.search(r"480 paired", md_text)
    scores = _scores(md_text)
    for method in ("cca", "minnet", "conaae", "sccross", "clue"):  # every model is in the report
        assert 0 <= float(scores[method][0]) < 0.6, method
        assert (tmp_path / f"embedding_{method}.png").stat().st_size > 10_000
        # one verdict line per method
        assert re.search(rf"^- \*\*{method}\*\*: ", md_text, flags=re.M), method
    # the best FOSCTTM (lowest) is bold, in its row only
    best = min(scores, key=lambda m: float(scores[m][0]))
    assert re.search(rf"^\| {best} +\| \*\*", md_text, flags=re.M)
    # one self-contained HTML file: reading guide, tables, figures embedded
    assert "How to read this report" in html_text and "<table" in html_text
    assert html_text.count("data:image/png;base64,") == 5 + 2  # 5 UMAPs, confusion, translation
    assert "<img src='embedding" not in html_text
    assert (tmp_path / "label_transfer.png").stat().st_size > 10_000
    assert (tmp_path / "translation.png").stat().st_size > 10_000


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


def test_verdicts_and_best_values():
    import pandas as pd

    from scmint._demo_report import best_rows, format_value, verdicts

    table = pd.DataFrame(
        {
            "foscttm": [0.20, 0.10, 0.40],
            "label_transfer_a_to_b": [0.7, 0.9, 0.5],
            "label_transfer_b_to_a": [0.7, 0.9, 0.5],
            "train_time_s": [1.0, 30.0, 60.0],
        },
        index=pd.Index(["cca", "clue", "sccross"], name="method"),
    )
    best = best_rows(table)
    assert best["foscttm"] == {"clue"} and best["train_time_s"] == {"cca"}
    said = verdicts(table, "rna", "atac")
    assert said["clue"].startswith("best alignment") and "better than the linear" in said["clue"]
    assert "does not beat the linear baseline" in said["sccross"] and "Why:" in said["sccross"]
    assert "linear baseline" in said["cca"]
    assert format_value("peak_rss_mb", 1234.56) == "1235"
    assert format_value("train_time_s", 12.345) == "12.3"
    assert format_value("foscttm", 0.12345) == "0.123"
