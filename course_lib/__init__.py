"""Helpers for the course *Autoencoders and Anomaly Detection with Keras*.

One concern per module; each module imports only modules above it in this list (a test keeps
it so), and nothing imports the command-line tools at the bottom:

- ``config``        profiles (``COURSE_PROFILE``), data mode (``COURSE_DATA``), seeds, folders
- ``checks``        the one ``DataError`` and every input validator
- ``sampling``      seeded subsets and splits
- ``results``       results a notebook keeps for a later one (JSON in the cache folder)
- ``healthy``       what a healthy run gives: the ranges the notebooks state, one line per check
- ``download``      network probe, verified downloads, resumable downloads, safe extraction
- ``browser``       headless Chromium for the built deck and website: find it, check pages
                    offline (no network, no broken link or image, no console error)
- ``data.*``        image files (``image_files``), one loader per dataset (``mnist``,
                    ``creditcard``, ``mvtec`` folders, ``mvtec_ad`` download, ``textures``,
                    ``kolektor``, ``bottle``, ``ecg``) and ``data.cache`` (what is cached;
                    prefetch)
- ``images``        image batches for models: scaling, flattening, channel axis, noise, flips
- ``metrics``       reconstruction errors, anomaly scores, thresholds, evaluation
- ``ssim``          the SSIM map and loss (Keras)
- ``map_metrics``   anomaly maps: residual maps, pixel AUROC, PRO / AUPRO, MVTec ratios
- ``baselines``     PCA reconstruction, variation model, texture inspection
- ``models``        the course's autoencoders (Keras)
- ``training``      one compact progress bar for a whole ``fit``
- ``detector``      a saved detector: model, preprocessing, score and threshold in one .keras
- ``vae``           variational autoencoders: sampling layer, KL term, ELBO training, scores
- ``gan``           DCGAN, AnoGAN's latent search, f-AnoGAN's encoder
- ``backbones``     the CNNs that give patch features: pretrained, learned or random
- ``features``      CNN patch features, feature dictionary, PatchCore-style memory bank
- ``plots``         the notebooks' figures
- ``experiments.*`` the runs shared by notebooks, benchmark commands and the deck, one module
                    per notebook topic (``one_class``, ``creditcard``, ``mvtec``, ``ecg``)
- ``cli.*``         command-line tools: ``runner``, ``bench``, ``data``, ``doctor``, ``colab``,
                    ``score``, ``site`` (``python -m course_lib.<tool>``)

Importing ``course_lib``, ``config``, ``checks``, ``healthy``, ``data.*``, ``metrics``,
``browser`` or a command-line tool is cheap; ``ssim``, ``models``, ``detector``, ``vae``,
``gan`` and what builds on them import Keras at the top, like the notebook cells they are saved
from.
"""

from course_lib.config import get_profile, set_seed

__version__ = "0.2.0"
__all__ = ["get_profile", "set_seed", "__version__"]
