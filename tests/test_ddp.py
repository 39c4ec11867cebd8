"""Several devices: every model trains under Lightning DDP (two CPU processes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import scmint
from scmint.model import CLUE
from scmint.train import tolerant_strategy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_processes_train_like_one():
    """All four models under ``strategy="ddp_fork"``, devices=2, against one device.

    Each also trains on two processes from the same data read with ``backed=True``
    (blocks shared out between the processes; MINNET's training cells in memory).
    """
    script = Path(__file__).with_name("_ddp_run.py")
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=900, check=False
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("SCORES ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    scores = json.loads(lines[-1].removeprefix("SCORES "))
    # Lightning returns rank 0's weights to this process after fitting (an untrained
    # model scores about 0.5). Half the optimiser steps, each on the gradient of twice
    # the cells: about as good (measured at 30 epochs, one -> two processes: CLUE 0.17 ->
    # 0.20, CONAAE 0.22 -> 0.28, MINNET 0.22 -> 0.30, SCCROSS 0.36 -> 0.34)
    for name in ("clue", "conaae", "minnet", "sccross"):
        one, two = scores[f"{name}_one"], scores[f"{name}_two"]
        assert two < 0.4 and abs(two - one) < 0.12, (name, one, two)
    # from disk, each process reading its own blocks
    for name in ("clue", "conaae", "minnet", "sccross"):
        one, disk = scores[f"{name}_one"], scores[f"{name}_disk_two"]
        assert disk < 0.4 and abs(disk - one) < 0.12, (name, one, disk)


@pytest.fixture(scope="module")
def paired():
    sim = scmint.data.simulate_multiome(n_cells=300, n_genes=100, n_peaks=200, seed=0)
    return scmint.data.pad_mudata(sim)


def test_each_process_draws_its_share(paired, monkeypatch):
    """Under several processes the training loader uses a distributed sampler."""
    from types import SimpleNamespace

    from scmint.data import _tensors

    CLUE.setup_mudata(paired, batch_key="batch")
    splitter = _tensors.RegisteredDataSplitter(CLUE(paired).adata_manager, train_size=0.9)
    splitter.setup()
    seen = []
    monkeypatch.setattr(_tensors, "TensorDataLoader", lambda *a, **kw: seen.append(kw))
    monkeypatch.setattr(splitter, "_tensors", lambda: None)
    for world_size in (1, 2):
        splitter.trainer = SimpleNamespace(world_size=world_size)
        splitter.train_dataloader()
    assert [kw.get("distributed_sampler", False) for kw in seen] == [False, True]


def test_strategies_by_name():
    assert tolerant_strategy("ddp") == "ddp_find_unused_parameters_true"
    assert tolerant_strategy("ddp_notebook") == "ddp_notebook_find_unused_parameters_true"
    assert tolerant_strategy("auto") == "auto"
    with pytest.raises(ValueError, match="ddp_spawn"):
        tolerant_strategy("ddp_spawn")
