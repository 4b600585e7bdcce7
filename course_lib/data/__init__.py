"""Datasets: one loader module per dataset, each with an online and an offline path.

- :mod:`course_lib.data.image_files`: any image file as float pixels in [0, 1], masks as
  bool, rescaling;
- :mod:`course_lib.data.mnist`: MNIST digits (notebooks 01-03, 07);
- :mod:`course_lib.data.creditcard`: the ULB credit-card transactions (notebook 04);
- :mod:`course_lib.data.mvtec`: any folder in MVTec AD layout (grey or colour);
- :mod:`course_lib.data.mvtec_ad`: the real MVTec AD: safe download and unpacking, loading a
  category;
- :mod:`course_lib.data.textures`: the offline MVTec-style texture set (notebooks 05, 08);
- :mod:`course_lib.data.kolektor`: real surface cracks (KolektorSDD) in MVTec layout, a
  subset shipped for offline use (notebooks 05, 08);
- :mod:`course_lib.data.bottle`: MVTec AD's bottle (real objects, whole square images): a
  256-pixel grey subset shipped for offline use, or the full download (notebooks 05, 08);
- :mod:`course_lib.data.ecg`: ECG heartbeats, and any fixed-length windows of a series
  (notebook 09);
- :mod:`course_lib.data.cache`: what is cached, and fetching everything before a workshop
  (``python -m course_lib.data prefetch|status``);
- :mod:`course_lib.data.common`: what the loaders share (the online-or-embedded rule, the
  embedded files' checksums, cache items).

Every loader prints one line ``Data source: online|embedded|file | ...`` saying where its data
came from.  Import from the submodules: ``from course_lib.data.mnist import load_mnist``.
"""
