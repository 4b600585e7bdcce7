"""The course's command-line tools.  Nothing in ``course_lib``, no notebook and not the deck
imports from here: this is the top layer.

=======================  =======================================  ===================
``python -m ...``        what it does                              console script
=======================  =======================================  ===================
``course_lib.runner``    run every notebook (``make course``)       ``course-run``
``course_lib.bench``     benchmarks and held-apart evaluations      ``course-bench``
``course_lib.data``      ``prefetch`` / ``status`` of the datasets  ``course-data``
``course_lib.doctor``    check a machine before the workshop        ``course-doctor``
``course_lib.colab``     Colab setup cells and README badges        ``course-colab``
``course_lib.score``     score new data with a saved detector       ``course-score``
``course_lib.site``      build (and check) the course website       ``course-site``
=======================  =======================================  ===================

Shared by the tools: :mod:`~course_lib.cli.common` (parsing, exit codes, paths) and
:mod:`~course_lib.cli.notebooks` (running a notebook, the tables of runs); bench's own parts:
:mod:`~course_lib.cli.bench_save` (``--save``) and :mod:`~course_lib.cli.bench_images` (the image
commands).

Every tool exits with 0 on success, 1 on a failure (with a message saying what to do) and 2
on a usage error (one line); see :mod:`course_lib.cli.common`.
"""
