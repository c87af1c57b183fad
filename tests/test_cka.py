"""CKA engine: equal to seed 000's numpy formula, invariances, estimators, numerics, bad input."""
import numpy as np
import pytest
import torch

import cnnwidgets as cw
from cnnwidgets.analyses import cka as C
from cnnwidgets.hooks import hook_count

BLOCKS = ["_blocks.0", "_blocks.3", "_blocks.8", "_blocks.15"]


# --- seed 000's formula, verbatim in numpy -------------------------------------------------------
def centering(K):
    n = K.shape[0]
    H = np.eye(n) - np.ones([n, n]) / n
    return np.dot(np.dot(H, K), H)


def linear_HSIC(X, Y):
    return np.sum(centering(X @ X.T) * centering(Y @ Y.T))


def linear_CKA(X, Y):
    return linear_HSIC(X, Y) / (np.sqrt(linear_HSIC(X, X)) * np.sqrt(linear_HSIC(Y, Y)))


@pytest.fixture(scope="module")
def images():
    return cw.sample_batch(16, seed=3)


@pytest.fixture(scope="module")
def acts(probe, images):
    return probe.activations(images, BLOCKS, batch_size=16)


def rand(n=40, d=30, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def t(a):
    return torch.as_tensor(a)


# --- equal to the formula ------------------------------------------------------------------------
def test_equals_numpy_formula_on_random_features():
    X, Y = rand(40, 30, 0), rand(40, 25, 1)
    Y = Y + X[:, :25] * 0.7
    assert abs(C.cka(t(X), t(Y)) - linear_CKA(X, Y)) < 1e-6
    Z = np.abs(rand(40, 500, 2)) + 5.0  # large mean: centering cancels a lot
    assert abs(C.cka(t(X), t(Z)) - linear_CKA(X, Z)) < 1e-6


def test_float32_features_with_a_large_mean_keep_float64_accuracy():
    # Grams are formed in the features' precision; a mean 100x the spread would cancel in float32 sums,
    # so the engine must detect it and shift first (the float64 formula is the reference).
    X, Y = rand(64, 3000, 4), rand(64, 2000, 5)
    Y[:, :1000] += 0.5 * X[:, :1000]
    X32, Y32 = (X + 100.0).astype(np.float32), (Y - 100.0).astype(np.float32)
    expect = linear_CKA(X32.astype(np.float64), Y32.astype(np.float64))
    assert abs(C.cka(t(X32), t(Y32)) - expect) < 1e-6
    g = C.gram_linear(t(X32)).numpy()
    Xc = X32.astype(np.float64) - X32.astype(np.float64).mean(0)
    np.testing.assert_allclose(centering(g), Xc @ Xc.T, rtol=0, atol=1e-4 * np.abs(Xc @ Xc.T).max())


def test_matrix_equals_numpy_formula_on_real_activations(acts):
    res = C.cka_matrix({n: a for n, a in acts.items()})
    X = [acts[n].flatten(1).double().numpy() for n in BLOCKS]
    for i in range(len(BLOCKS)):
        for j in range(len(BLOCKS)):
            expect = 1.0 if i == j else linear_CKA(X[i], X[j])
            assert abs(res.matrix[i, j] - expect) < 1e-6, (BLOCKS[i], BLOCKS[j])


def test_layer_similarity_biased_equals_formula(probe, images, acts):
    # one batch: the same forward as probe.activations(batch_size=16), so the very same activations
    res = C.layer_similarity(probe, images, BLOCKS, estimator="biased", batch_size=16)
    X = [acts[n].flatten(1).double().numpy() for n in BLOCKS]
    ref = np.array([[linear_CKA(a, b) for b in X] for a in X])
    assert np.abs(res.matrix - ref).max() < 1e-6
    assert res.rows == BLOCKS and res.cols == BLOCKS and res.estimator == "biased"
    # streamed in batches of 4, and in groups (held memory capped): same full-batch value; the only
    # differences are float32 rounding of convolutions run at another batch size
    for mb in (1 << 30, 2_000_000):
        streamed = C.layer_similarity(probe, images, BLOCKS, estimator="biased", batch_size=4, max_bytes=mb)
        assert np.abs(streamed.matrix - ref).max() < 2e-5
    assert hook_count(probe.model) == 0


def test_channel_similarity_equals_formula(probe, images, acts):
    res = C.channel_similarity(probe, images, "_blocks.15", batch_size=16)
    a = acts["_blocks.15"]
    assert res.matrix.shape == (320, 320)
    for i, j in [(0, 1), (5, 200), (319, 17)]:
        Xi, Xj = a[:, i].flatten(1).double().numpy(), a[:, j].flatten(1).double().numpy()
        assert abs(res.matrix[i, j] - linear_CKA(Xi, Xj)) < 1e-6
    assert res.rows[7] == "_blocks.15:7"
    assert hook_count(probe.model) == 0


# --- invariances ---------------------------------------------------------------------------------
def test_invariances():
    X, Y = rand(50, 20, 3), rand(50, 20, 4) + rand(50, 20, 3)
    base = C.cka(t(X), t(Y))
    Q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(20, 20)))
    assert abs(C.cka(t(X @ Q), t(Y)) - base) < 1e-9  # orthogonal transform
    assert abs(C.cka(t(X * 7.5), t(Y)) - base) < 1e-9  # isotropic scaling
    assert abs(C.cka(t(X + 3.0), t(Y)) - base) < 1e-9  # translation
    D = np.diag(np.linspace(0.05, 20, 20))
    assert abs(C.cka(t(X @ D), t(Y)) - base) > 1e-3  # NOT invariant to non-isotropic scaling
    assert abs(C.cka(t(X), t(X)) - 1.0) < 1e-12
    assert abs(C.cka(t(X), t(X), estimator="unbiased") - 1.0) < 1e-12
    assert abs(C.cka(t(X), t(X), kernel="rbf") - 1.0) < 1e-12


def test_rbf_kernel_matches_kornblith():
    X, Y = rand(30, 10, 6), rand(30, 12, 7)

    def rbf(Z, thr):
        g = Z @ Z.T
        d = np.diag(g)
        sq = -2 * g + d[:, None] + d[None, :]
        return np.exp(-sq / (2 * thr ** 2 * np.median(sq)))

    def cka_k(K, L):
        Kc, Lc = centering(K), centering(L)
        return np.sum(Kc * Lc) / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc))

    for thr in (0.5, 1.0):
        # Kornblith takes the median over all n² entries; we take it over distinct pairs (no zero diagonal)
        K = C.gram_rbf(C.gram_linear(t(X)), thr).numpy()
        L = C.gram_rbf(C.gram_linear(t(Y)), thr).numpy()
        assert abs(C.cka(t(X), t(Y), kernel="rbf", sigma=thr) - cka_k(K, L)) < 1e-9
        assert 0 < C.cka(t(X), t(Y), kernel="rbf", sigma=thr) < 1


def test_unbiased_hsic_matches_definition():
    X, Y = rand(12, 5, 8), rand(12, 6, 9)
    K, L = X @ X.T, Y @ Y.T
    n = 12
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    ref = (np.trace(Kt @ Lt) + one @ Kt @ one * (one @ Lt @ one) / ((n - 1) * (n - 2))
           - 2 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))
    got = C.hsic_unbiased(t(K)[None], t(L)[None])[0, 0].item()
    assert abs(got - ref) < 1e-9 * abs(ref)


def test_minibatch_converges_to_full_batch():
    # a population with structure; the full-batch biased value on many samples is the target
    rng = np.random.default_rng(10)
    W = rng.normal(size=(8, 40))
    V = rng.normal(size=(8, 30))

    def draw(n):
        z = rng.normal(size=(n, 8))
        return z @ W + rng.normal(size=(n, 40)), np.tanh(z) @ V + rng.normal(size=(n, 30))

    Xb, Yb = draw(4000)
    target = C.cka(t(Xb), t(Yb), estimator="biased")
    errors = []
    for n in (32, 256, 2048):
        X, Y = draw(n)
        h = None
        for a in range(0, n, 16):  # minibatches of 16, as layer_similarity streams them
            k = torch.stack([C.gram_linear(t(X[a:a + 16])), C.gram_linear(t(Y[a:a + 16]))])
            hb = C.hsic_unbiased(k)
            h = hb if h is None else h + hb
        errors.append(abs(float(h[0, 1] / torch.sqrt(h[0, 0] * h[1, 1])) - target))
    assert errors[-1] < 0.03 and errors[-1] < errors[0]


def test_layer_similarity_unbiased_streams_partial_results(probe, images):
    steps = list(C.layer_similarity_steps(probe, images, BLOCKS, batch_size=8))
    assert [s.step for s in steps] == [1, 2] and steps[-1].total == 2
    assert steps[0].value.images == 8 and steps[-1].value.images == 16 and steps[-1].value.final
    m = steps[-1].value.matrix
    assert m.shape == (4, 4) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1) and np.isfinite(m).all()
    assert hook_count(probe.model) == 0


def test_model_similarity(probe, images):
    other = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu")
    res = C.model_similarity(probe, other, images, BLOCKS[:2], ["layer1", "layer4"], batch_size=8)
    assert res.matrix.shape == (2, 2) and res.rows == BLOCKS[:2] and res.cols == ["layer1", "layer4"]
    assert np.isfinite(res.matrix).all()
    same = C.model_similarity(probe, probe, images, BLOCKS, BLOCKS, batch_size=8)
    assert np.allclose(np.diag(same.matrix), 1.0, atol=1e-9)
    assert hook_count(probe.model) == 0 and hook_count(other.model) == 0


# --- numerics ------------------------------------------------------------------------------------
def test_dead_features_give_no_nan_and_are_reported():
    X = rand(20, 10, 11)
    feats = {"x": t(X), "zeros": torch.zeros(20, 10), "const": torch.ones(20, 10) * 3.0}
    for est in ("biased", "unbiased"):
        for kernel in ("linear", "rbf"):
            res = C.cka_matrix(feats, estimator=est, kernel=kernel)
            assert np.isfinite(res.matrix).all()
            assert np.allclose(np.diag(res.matrix), 1.0)
            assert res.matrix[0, 1] == 0 and res.matrix[1, 2] == 0
            assert res.dead_rows == ["zeros", "const"]


def test_dead_channels_in_a_real_layer(probe, images):
    # ReLU6 outputs of efficientnet have channels that never fire on these images
    res = C.channel_similarity(probe, images, "_blocks.1._depthwise_conv", batch_size=16)
    m = res.matrix
    assert np.isfinite(m).all() and np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert m.min() > -1e-9 and m.max() <= 1 + 1e-9


# --- bad input -----------------------------------------------------------------------------------
def test_bad_inputs(probe, images):
    with pytest.raises(ValueError, match="at least 4 images"):
        C.layer_similarity(probe, images[:3], BLOCKS)
    with pytest.raises(ValueError, match="at least 4 images"):
        C.channel_similarity(probe, cw.sample_image(), "_blocks.3")
    with pytest.raises(KeyError, match="_blokcs.4.*_blocks.4"):
        C.layer_similarity(probe, images, ["_blocks.3", "_blokcs.4"])
    with pytest.raises(ValueError, match="estimator"):
        C.layer_similarity(probe, images, BLOCKS, estimator="fast")
    with pytest.raises(ValueError, match="kernel"):
        C.layer_similarity(probe, images, BLOCKS, kernel="cosine")
    small = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu", input_size=112)
    with pytest.raises(ValueError, match="different input sizes"):
        C.model_similarity(probe, small, images)
    raw = cw.Probe(probe.model, device="cpu", transform=cw.Preprocess(resize=None, crop=None))
    mixed = [torch.rand(3, 64, 64) for _ in range(4)] + [torch.rand(3, 80, 80) for _ in range(4)]
    with pytest.raises(ValueError, match="different sizes"):
        C.layer_similarity(raw, mixed, BLOCKS[:2], batch_size=4)
    with pytest.raises(ValueError, match="different sizes"):
        C.layer_similarity(raw, mixed, BLOCKS[:2], batch_size=8)
    assert hook_count(probe.model) == 0
    assert not any(p.grad is not None for p in probe.model.parameters())


def test_cluster_order_groups_blocks():
    # two blocks of mutually similar items, interleaved
    m = np.full((6, 6), 0.1)
    for grp in ([0, 2, 4], [1, 3, 5]):
        for i in grp:
            for j in grp:
                m[i, j] = 0.9
    np.fill_diagonal(m, 1)
    order = list(C.cluster_order(m))
    assert sorted(order) == list(range(6))
    assert set(order[:3]) in ({0, 2, 4}, {1, 3, 5})
