"""The README runs as written: its Python blocks execute in order, its commands exist."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def test_readme_has_examples():
    assert len(_blocks("python")) >= 2
    assert _blocks("bash")


def test_python_blocks_run_as_written(tmp_path, monkeypatch):
    """Every Python block, in order, in one namespace, as a reader pasting them would."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(_blocks("python")):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as error:  # say which block failed
            pytest.fail(f"README python block {i} failed: {error!r}\n{block}")
    # what the blocks promise
    assert 0 <= namespace["foscttm"] < 0.3
    assert namespace["x_lsi"].shape[1] == 29
    assert namespace["atlas"]["atac"].isbacked  # trained and embedded from the file
    assert namespace["z_on_disk"].shape == (namespace["padded"].n_obs, 100)


def test_commands_exist():
    """Each command of a bash block is a Makefile target or parses as an scmint command."""
    from scmint.__main__ import main

    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for block in _blocks("bash"):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if not command:
                continue
            words = shlex.split(command)
            if words[0] == "make":
                assert set(words[1:]) <= targets, command
            elif words[0].endswith("scmint"):
                with pytest.raises(SystemExit) as done:
                    main([*words[1:], "--help"])
                assert done.value.code == 0, command
                data = words[words.index("--data") + 1] if "--data" in words else None
                assert data is None or (ROOT / data).exists(), f"{command}: {data} not found"
            elif words[0].endswith("python"):
                assert (ROOT / words[1]).exists(), command
            else:
                pytest.fail(f"README command not checked by this test: {command}")
