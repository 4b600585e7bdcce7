"""Sphinx configuration of the course website (``make site``; see course_lib/cli/site.py).

Not run from here: ``python -m course_lib.site`` stages the site's sources (landing page,
these docs pages, the executed notebooks) in ``build/site-src/``, copies this file there with a
``site.json`` beside it (title, repository URL and branch, written from pyproject.toml), and
runs Sphinx on that folder.  To rerun Sphinx by hand on a staged tree:
``sphinx-build -b html build/site-src build/site-src/_build/html``.

Tools: Sphinx + MyST-NB + sphinx-book-theme, all from PyPI (requirements-dev.txt).  Jupyter
Book 2 (mystmd) would need Node.js; this needs Python only.  The site works with no network:
MathJax comes from the ``sphinx-mathjax-offline`` package, the theme's scripts, styles and
fonts are its own files, widgets' CDN scripts are switched off (the staging step turns each
widget into its final text), and the browser check (``--check``) refuses every request that
is not a local file.
"""

import json
from pathlib import Path

SITE = json.loads((Path(__file__).resolve().parent / "site.json").read_text(encoding="utf-8"))

project = SITE["title"]
author = SITE.get("author", "the course's authors")
copyright = SITE.get("copyright", "the course's authors (MIT licence)")
html_title = SITE["title"]

extensions = [
    "myst_nb",                   # notebooks and MyST Markdown
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",    # MathJax 3 copied into _static/mathjax: no CDN
]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "site.json"]
suppress_warnings = ["myst.header"]   # notebooks may start below level 1 in a section

# MyST: $...$ maths as in the notebooks, and ::: fences
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3              # links to "#a-heading" in the docs pages resolve

# MyST-NB: the notebooks come executed (or deliberately without outputs): never run them here
nb_execution_mode = "off"
nb_ipywidgets_js = {}                 # no require.js / widget manager from a CDN
nb_merge_streams = True

# MathJax from the local copy; the path is relative to _static
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_static_path = []
html_extra_path = SITE.get("extra_paths", [])
html_show_sourcelink = True
html_copy_source = True
html_last_updated_fmt = ""
# Search works from disk: Sphinx's search page fetches each result's page for a summary, which
# a browser refuses for file:// pages, so show the titles only.
html_show_search_summary = False
# Figures are drawn on white: start light (with no mode set, the theme's script logs a console
# error on the first page a browser opens).
html_context = {"default_mode": "light"}
html_theme_options = {
    "repository_url": SITE["repository_url"],
    "repository_branch": SITE["branch"],
    "path_to_docs": "",               # staged notebooks keep their repository paths
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": False,   # needs no network, but keeps the header short
    "launch_buttons": {
        "colab_url": "https://colab.research.google.com",
        "binderhub_url": "https://mybinder.org",
        "notebook_interface": "jupyterlab",
    },
    "show_toc_level": 2,
    "navbar_persistent": [],          # search is in the sidebar (and Ctrl+K)
    "home_page_in_toc": True,
}
