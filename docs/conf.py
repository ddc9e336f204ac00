"""Sphinx configuration of the scmix documentation.

Build from the repository root (warnings are errors)::

    pip install -e ".[doc]"
    python -m sphinx -W -b html docs docs/_build/html

Every notebook (the tutorials, ``docs/tutorials`` being a link to ``tutorials/``, and the
plot gallery ``gallery.md``) is executed afresh at each build, so every figure comes from
the current code. The tutorials read the real data from ``$SCMIX_DATA_DIR``.
``SCMIX_DOCS_EXECUTE=off`` skips the execution (a quick look at the text only).
``SCMIX_DOCS_INTERSPHINX=1`` links to the Python, numpy, pandas, anndata and scanpy
documentation (it downloads their inventories, so it is off by default: the build needs
no network).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import scmix

DOCS = Path(__file__).resolve().parent

# -- Project -------------------------------------------------------------------------

project = "scmix"
author = "scmix developers"
project_copyright = "scmix developers"
release = scmix.__version__
version = release

# -- General -------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "**/.venv", "**/.ipynb_checkpoints", "Thumbs.db"]
templates_path = ["_templates"]

# -- MyST and MyST-NB ----------------------------------------------------------------

myst_enable_extensions = ["amsmath", "colon_fence", "dollarmath"]
myst_heading_anchors = 3

# Execute every notebook at every build (no cache: a figure never outlives the code
# that drew it); a failing cell fails the build.
nb_execution_mode = os.environ.get("SCMIX_DOCS_EXECUTE", "force")
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600  # seconds per cell
nb_execution_in_temp = True  # the kernels write nothing into the source tree
nb_merge_streams = True
if nb_execution_mode != "off" and not os.environ.get("SCMIX_DATA_DIR"):
    print(
        "scmix docs: SCMIX_DATA_DIR is not set; the tutorials will look for the real data"
        " in the cache and try to download it (a tutorial that finds none fails the build)"
    )
# figures inline even where the environment asks matplotlib for a non-interactive backend
# (the tests set MPLBACKEND=Agg); the kernels inherit this process's environment
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

# -- API reference -------------------------------------------------------------------

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document a class's own members and those it inherits from scmix, not the
    methods that scikit-learn's BaseEstimator adds (get_params, set_*_request, ...)."""
    if what != "class":
        return None
    module = getattr(getattr(obj, "fget", obj), "__module__", None)
    if module is not None and not module.startswith("scmix"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)


# -- Links to other projects' documentation (opt-in: needs the network) --------------

if os.environ.get("SCMIX_DOCS_INTERSPHINX"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
    }

# -- HTML ----------------------------------------------------------------------------

html_theme = "furo"
html_title = f"scmix {release}"

# -- Completeness --------------------------------------------------------------------
# The API reference and the gallery are written by hand; a public name that one of
# them misses fails the build (as the -W build fails on a warning).


def _check_complete() -> None:
    import importlib

    api = (DOCS / "api.md").read_text()
    # the items of the autosummary tables, relative to the package
    listed = {f"scmix.{name}" for name in re.findall(r"^   ([\w.]+)$", api, flags=re.M)}
    missing = []
    for name in scmix.__all__:
        if name.startswith("__"):
            continue
        if name in ("pp", "tl", "pl", "get", "datasets", "models"):
            module = importlib.import_module(f"scmix.{name}")
            missing += [f"scmix.{name}.{item}" for item in module.__all__]
        else:
            missing.append(f"scmix.{name}")
    missing = [name for name in missing if name not in listed]
    if missing:
        raise RuntimeError(f"docs/api.md does not list {missing}")

    gallery = (DOCS / "gallery.md").read_text()
    drawn = set(re.findall(r"scmix\.pl\.(\w+)\(", gallery))
    undrawn = sorted(set(scmix.pl.__all__) - drawn)
    if undrawn:
        raise RuntimeError(f"docs/gallery.md draws no scmix.pl.{undrawn}")


_check_complete()
