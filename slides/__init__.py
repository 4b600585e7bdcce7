"""The workshop deck: ``deck.md`` (source), ``figures.py`` (figures computed with course_lib),
``build.py`` (``python -m slides.build``: one self-contained HTML file) and ``browser_check.py``
(headless Chromium check). Not part of the installed ``course_lib`` package."""
