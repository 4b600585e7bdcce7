"""The experiments that the notebooks, the benchmark commands and the workshop deck share.

One module per notebook topic.  One naming scheme: ``<data>_<method>_experiment(...)`` runs a
whole experiment (split, train on normal data only, score held-out data, compare with
baselines) and returns a dict of metrics, the same fields that ``python -m course_lib.bench
<command>`` prints as JSON; with ``return_details=True`` it also returns the trained model, the
split and the scores, for figures of the very same run.  ``split_*`` make the splits,
``train_*`` train one model.

- ``experiments.one_class``   MNIST one-class (notebooks 03, 06 and 07, ``bench mnist-one-class``)
- ``experiments.creditcard``  credit-card fraud (notebook 04, ``bench creditcard``)
- ``experiments.mvtec``       MVTec-style images (notebooks 05, 06 and 08, ``bench mvtec``,
  ``mvtec-dictionary``, ``mvtec-knn``, ``ssim-speed``)
- ``experiments.ecg``         ECG heartbeats (notebook 09, ``bench ecg``)

The modules do not import one another.
"""
