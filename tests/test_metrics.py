import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import mean_absolute_error, mean_squared_error

from course_lib.baselines import PCAReconstruction
from course_lib.metrics import anomaly_scores, reconstruction_error


def test_reconstruction_error_matches_sklearn():
    rng = np.random.default_rng(0)
    x, x_hat = rng.random((6, 28, 28)), rng.random((6, 28, 28))
    ours = reconstruction_error(x, x_hat)
    ref = [mean_squared_error(a.ravel(), b.ravel()) for a, b in zip(x, x_hat)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    ref_mae = [mean_absolute_error(a.ravel(), b.ravel()) for a, b in zip(x, x_hat)]
    np.testing.assert_allclose(reconstruction_error(x, x_hat, kind="mae"), ref_mae, rtol=1e-12)
    assert np.all(reconstruction_error(x, x) == 0)


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((3, 4)), np.zeros((3, 5)), "same shape"),
    (np.zeros((0, 4)), np.zeros((0, 4)), "non-empty"),
    (np.full((2, 2), np.nan), np.zeros((2, 2)), "NaN"),
])
def test_reconstruction_error_rejects_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        reconstruction_error(a, b)
    with pytest.raises(ValueError, match="kind"):
        reconstruction_error(np.zeros((1, 2)), np.zeros((1, 2)), kind="huber")


def test_anomaly_scores_uses_the_model():
    class Halver:
        def predict(self, x, batch_size=None, verbose=0):
            return x / 2

    x = np.ones((3, 4), np.float32) * np.array([[0.0], [1.0], [2.0]], np.float32)
    np.testing.assert_allclose(anomaly_scores(Halver(), x), [0.0, 0.25, 1.0])


def test_pca_baseline_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30)) @ rng.normal(size=(30, 30))
    base = PCAReconstruction(n_components=5).fit(x)
    pca = PCA(n_components=5, random_state=0).fit(x)
    ref = np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)
    np.testing.assert_allclose(base.score_samples(x), ref, rtol=1e-8)
    # an input far from the training subspace scores higher than typical training rows
    outlier = rng.normal(size=(1, 30)) * 50
    assert base.score_samples(outlier)[0] > np.percentile(base.score_samples(x), 99)
    with pytest.raises(ValueError, match="NaN"):
        base.score_samples(np.full((1, 30), np.nan))
