"""Sphinx configuration of the noisereg documentation: `bash scripts/docs.sh` builds it into docs/_build/html.

Sphinx, not MkDocs: autodoc + napoleon read the Google-style docstrings as they are, and
sphinx-gallery runs the example scripts at build time, the way scikit-learn's and PyTorch's docs do.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))   # this checkout's sources, also without an install
sys.path.insert(0, str(HERE / "_ext"))

import noisereg  # noqa: E402
import noisereg_docs  # noqa: E402

noisereg_docs.write_pages(HERE / "_generated")   # api.rst and cli.md, from noisereg.__all__ and the parser

project = "noisereg"
author = "the noisereg authors"
copyright = "the noisereg authors, MIT license"
release = version = noisereg.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5", "results/REPORT.md",
                    "results/demo/*/REPORT.md"]   # the demo's sections: all in results/demo/REPORT.md

myst_heading_anchors = 3            # links to a heading of another page (#a-heading) resolve, as on GitHub
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.header"]  # the generated REPORT.md pages start their sections at level 2

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The example gallery: single-process scripts run at build time, at toy size (noisereg_docs.SMALL_ARGS);
# the torchrun scripts are shown, not run.
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/(" + "|".join(n.replace(".", r"\.") for n in noisereg_docs.SMALL_ARGS) + ")$",
    "reset_argv": "noisereg_docs.reset_argv",
    "image_scrapers": (),
    "abort_on_example_error": True,
    "write_computation_times": False,
    "download_all_examples": False,
    "min_reported_time": 1,
}
os.environ.setdefault("PYTHONWARNINGS", "ignore")

html_theme = "furo"
html_title = f"noisereg {release}"
html_static_path = []
