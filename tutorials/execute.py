"""Execute the tutorial notebooks in place, keeping their outputs.

Usage, from the repository root: ``.venv/bin/python tutorials/execute.py [NOTEBOOK ...]``
(default: every ``*.ipynb`` in ``tutorials/``). Each notebook runs in its own folder with
the ``python3`` kernel of the Python that runs this script.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted(HERE.glob("*.ipynb"))
for path in paths:
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    client = NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    nbformat.write(nb, path)
    print(f"{path.name}: executed in {time.time() - start:.0f} s")
