"""Sphinx configuration for scmint."""

import shutil
from importlib.metadata import version as _version
from pathlib import Path

project = "scmint"
author = "scmint developers"
copyright = "2026, scmint developers"
release = _version("scmint")
version = release

extensions = [
    "myst_nb",  # MyST markdown and the executed tutorial notebooks (outputs as stored)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]
autosummary_generate = True
templates_path = ["_templates"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "comma"
always_document_param_types = False
nitpicky = False
myst_enable_extensions = ["colon_fence", "deflist"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
nb_execution_mode = "off"  # notebooks are committed executed; the docs show their outputs

# The notebooks live in the repository's tutorials/ folder; Sphinx reads only its
# source directory, so copy them in (docs/_tutorials/ is git-ignored).
_HERE = Path(__file__).resolve().parent
_COPY = _HERE / "_tutorials"
shutil.rmtree(_COPY, ignore_errors=True)
_COPY.mkdir()
for _nb in sorted((_HERE.parent / "tutorials").glob("*.ipynb")):
    shutil.copy2(_nb, _COPY / _nb.name)
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = "scmint"
