"""Sphinx configuration of the dln-manifolds documentation.

The gallery and the performance page are generated at build time (see
``_gallery.py``): the gallery runs every experiment at the ``tiny`` size (set
``DLN_DOCS_GALLERY_SIZE=quick`` for the larger figures), the performance page
reads ``benchmarks/results/*.json``.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import dln_manifolds  # noqa: E402

project = "dln-manifolds"
author = "dln-manifolds developers"
copyright = "2026, dln-manifolds developers"
release = dln_manifolds.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_inherit_docstrings = False
# Docstrings of the adapters mention pymanopt/geomstats types that have no inventory here.
# Numpy-style type fields such as "ndarray, shape (d, d)" make Sphinx try to resolve "d",
# which several classes define as a property: ambiguous, not wrong.
suppress_warnings = ["ref.python"]
nitpicky = False

templates_path = []
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
html_theme = "alabaster"
html_static_path = []
html_title = f"dln-manifolds {release}"
math_number_all = False
math_eqref_format = "({number})"


def _generate(app):
    from _gallery import write_api, write_gallery, write_performance

    size = os.environ.get("DLN_DOCS_GALLERY_SIZE", "tiny")
    write_gallery(HERE / "_generated", size=size)
    write_performance(HERE / "_generated", HERE.parent / "benchmarks" / "results")
    write_api(HERE / "_generated")


def setup(app):
    app.connect("builder-inited", _generate)
