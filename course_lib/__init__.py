"""Helpers for the course *Autoencoders and Anomaly Detection with Keras*.

The package is deliberately small and flat, one module per concern:

- ``course_lib.config``   profiles (``COURSE_PROFILE``), data-source setting, seeds
- ``course_lib.data``     MNIST and credit-card loading (online, embedded offline subset, your own file)
- ``course_lib.models``   the dense, convolutional and tabular autoencoders
- ``course_lib.metrics``  reconstruction errors, anomaly scores, thresholds, evaluation
- ``course_lib.baselines`` classic baselines (PCA reconstruction)
- ``course_lib.plots``    figures used in the notebooks
- ``course_lib.losses``   SSIM map and SSIM loss for Keras
- ``course_lib.pixel_metrics`` anomaly-map metrics: pixel AUROC, PRO / AUPRO, MVTec ratios
- ``course_lib.mvtec``    MVTec AD download and loader, offline texture dataset
- ``course_lib.gan``      DCGAN and AnoGAN scoring (with an f-AnoGAN-style encoder)
- ``course_lib.features`` CNN patch features, feature dictionary, nearest-neighbour memory bank
- ``course_lib.runner``   execute every notebook (the course's main job)
- ``course_lib.doctor``   check a machine before the workshop (``python -m course_lib.doctor``)
- ``course_lib.bench``    benchmarks and held-apart evaluations (command line)
- ``course_lib.colab``    Colab setup cell and Colab/Binder badges (``python -m course_lib.colab sync``)

Importing ``course_lib`` is cheap: Keras/TensorFlow load only when a model helper runs.
"""

from course_lib.config import get_profile, set_seed

__version__ = "0.1.0"
__all__ = ["get_profile", "set_seed", "__version__"]
