"""The NTU ML homework presets (HW9, the CNN part) against the course's own code, written out here as the course's
notebook has it (compute_saliency_maps, smooth_grad, IntegratedGradients, filter_explanation, and LIME as the
``lime`` package computes it with the homework's settings), on a small model of the course's shape; then what the
corrected variants change. The course code hooks and calls the model directly, as the course does."""
import copy

import numpy as np
import pytest
import sklearn.metrics
import torch
import torch.nn as nn
from skimage.segmentation import slic
from sklearn.linear_model import Ridge

import cnnwidgets as cw
from cnnwidgets import hooks, runner
from cnnwidgets.analyses import attribution as A
from cnnwidgets.analyses import homework as H

SIZE = 64


def building_block(indim, outdim):
    return [nn.Conv2d(indim, outdim, 3, 1, 1), nn.BatchNorm2d(outdim), nn.ReLU()]


def stack_blocks(indim, outdim, block_num):
    layers = building_block(indim, outdim)
    for _ in range(block_num - 1):
        layers += building_block(outdim, outdim)
    layers.append(nn.MaxPool2d(2, 2, 0))
    return layers


class Classifier(nn.Module):
    """The course's Classifier (3-3-3-1-1 conv blocks, 11 food classes), narrower and for 64 px images."""

    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(*stack_blocks(3, 4, 3), *stack_blocks(4, 8, 3), *stack_blocks(8, 8, 3),
                                 *stack_blocks(8, 16, 1), *stack_blocks(16, 16, 1))
        self.fc = nn.Sequential(nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(32, 11))

    def forward(self, x):
        out = self.cnn(x)
        return self.fc(out.reshape(out.size()[0], -1))


@pytest.fixture(scope="module")
def images():
    return cw.sample_batch(3, SIZE, seed=1)


@pytest.fixture(scope="module")
def model(images):
    torch.manual_seed(0)
    m = Classifier()
    for bn in m.modules():  # running statistics of real images, so that activations keep their scale to the logits
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None
    with torch.no_grad():
        m(cw.sample_batch(32, SIZE, seed=2))
    return m.eval()


@pytest.fixture(scope="module")
def probe(model):
    return cw.Probe(model, input_size=SIZE, mean=0, std=1, classes=[f"food {i}" for i in range(11)])


@pytest.fixture(scope="module")
def labels(model, images):
    with torch.no_grad():
        return model(images).argmax(1)  # a class in lime's top 5, which the course's code needs


def normalize(image):
    return (image - image.min()) / (image.max() - image.min())


# --- the course's code --------------------------------------------------------------------------
def compute_saliency_maps(x, y, model):
    model.eval()
    x.requires_grad_()
    y_pred = model(x)
    loss_func = torch.nn.CrossEntropyLoss()
    loss = loss_func(y_pred, y)
    loss.backward()
    saliencies, _ = torch.max(x.grad.data.abs().detach().cpu(), dim=1)
    saliencies = torch.stack([normalize(item) for item in saliencies])
    return saliencies


def smooth_grad(x, y, model, epoch, param_sigma_multiplier, intended=False):
    model.eval()
    mean = 0
    sigma = param_sigma_multiplier / (torch.max(x) - torch.min(x)).item()
    if intended:  # the one line the correction changes: std = level x range
        sigma = (param_sigma_multiplier * (torch.max(x) - torch.min(x)).item()) ** 0.5
    smooth = np.zeros(x.unsqueeze(0).size())
    for i in range(epoch):
        noise = x.data.new(x.size()).normal_(mean, sigma ** 2)
        x_mod = (x + noise).unsqueeze(0)
        x_mod.requires_grad_()
        y_pred = model(x_mod)
        loss_func = torch.nn.CrossEntropyLoss()
        loss = loss_func(y_pred, y.unsqueeze(0))
        loss.backward()
        smooth += x_mod.grad.abs().detach().cpu().data.numpy()
    smooth = normalize(smooth / epoch)
    return smooth


class IntegratedGradients():
    def __init__(self, model):
        self.model = model
        self.gradients = None
        self.model.eval()

    def generate_images_on_linear_path(self, input_image, steps):
        xbar_list = [input_image * step / steps for step in range(steps)]
        return xbar_list

    def generate_gradients(self, input_image, target_class):
        input_image.requires_grad = True
        model_output = self.model(input_image)
        self.model.zero_grad()
        one_hot_output = torch.FloatTensor(1, model_output.size()[-1]).zero_()
        one_hot_output[0][target_class] = 1
        model_output.backward(gradient=one_hot_output)
        self.gradients = input_image.grad
        gradients_as_arr = self.gradients.data.cpu().numpy()[0]
        return gradients_as_arr

    def generate_integrated_gradients(self, input_image, target_class, steps):
        xbar_list = self.generate_images_on_linear_path(input_image, steps)
        integrated_grads = np.zeros(input_image.size())
        for xbar_image in xbar_list:
            single_integrated_grad = self.generate_gradients(xbar_image, target_class)
            integrated_grads = integrated_grads + single_integrated_grad / steps
        return integrated_grads[0]


layer_activations = None


def filter_explanation(x, model, cnnid, filterid, iteration=100, lr=1):
    model.eval()

    def hook(model, input, output):
        global layer_activations
        layer_activations = output

    hook_handle = model.cnn[cnnid].register_forward_hook(hook)
    model(x)
    filter_activations = layer_activations[:, filterid, :, :].detach().cpu()
    x = x.clone()
    x.requires_grad_()
    optimizer = torch.optim.Adam([x], lr=lr)
    for iter in range(iteration):
        optimizer.zero_grad()
        model(x)
        objective = -layer_activations[:, filterid, :, :].sum()
        objective.backward()
        optimizer.step()
    filter_visualizations = x.detach().cpu().squeeze()
    hook_handle.remove()
    return filter_activations, filter_visualizations


def lime_explain(image, classifier_fn, segmentation_fn, label, num_samples, random_state):
    """``LimeImageExplainer().explain_instance(image, classifier_fn, segmentation_fn=...)`` with lime's defaults
    (hide_color=None, top_labels=5, num_features=100000, batch_size=10, cosine distance, kernel width 0.25,
    feature_selection='auto'), then ``get_image_and_mask(label, positive_only=False, hide_rest=False,
    num_features=11, min_weight=0.05)``: (segments, local_exp[label], lime_img, mask)."""
    random_state.randint(0, high=1000)
    segments = segmentation_fn(image)
    fudged_image = image.copy()
    for x in np.unique(segments):
        fudged_image[segments == x] = (np.mean(image[segments == x][:, 0]), np.mean(image[segments == x][:, 1]),
                                       np.mean(image[segments == x][:, 2]))
    n_features = np.unique(segments).shape[0]
    data = random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    labels, imgs = [], []
    data[0, :] = 1
    for row in data:
        temp = copy.deepcopy(image)
        zeros = np.where(row == 0)[0]
        mask = np.zeros(segments.shape).astype(bool)
        for z in zeros:
            mask[segments == z] = True
        temp[mask] = fudged_image[mask]
        imgs.append(temp)
        if len(imgs) == 10:
            labels.extend(classifier_fn(np.array(imgs)))
            imgs = []
    if imgs:
        labels.extend(classifier_fn(np.array(imgs)))
    labels = np.array(labels)
    distances = sklearn.metrics.pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
    assert label in np.argsort(labels[0])[-5:]  # top_labels=5: the course's label must be among them
    weights = np.sqrt(np.exp(-(distances ** 2) / 0.25 ** 2))
    labels_column = labels[:, label]
    clf = Ridge(alpha=0.01, fit_intercept=True, random_state=random_state)  # feature_selection 'highest_weights'
    clf.fit(data, labels_column, sample_weight=weights)
    feature_weights = sorted(zip(range(data.shape[1]), clf.coef_ * data[0]), key=lambda x: np.abs(x[1]), reverse=True)
    used_features = np.array([x[0] for x in feature_weights[:100000]])
    easy_model = Ridge(alpha=1, fit_intercept=True, random_state=random_state)
    easy_model.fit(data[:, used_features], labels_column, sample_weight=weights)
    exp = sorted(zip(used_features, easy_model.coef_), key=lambda x: np.abs(x[1]), reverse=True)
    temp, mask = image.copy(), np.zeros(segments.shape, segments.dtype)
    for f, w in exp[:11]:
        if np.abs(w) < 0.05:
            continue
        c = 0 if w < 0 else 1
        mask[segments == f] = -1 if w < 0 else 1
        temp[segments == f] = image[segments == f].copy()
        temp[segments == f, c] = np.max(image)
    return segments, exp, temp, mask


# --- each homework setting against the course's code --------------------------------------------
def test_saliency_is_the_courses(probe, model, images, labels):
    course = compute_saliency_maps(images.clone(), labels, model)
    for i in range(len(images)):
        a = cw.attribution.attribute(probe, images[i], "saliency_homework", int(labels[i]), resize=False)
        np.testing.assert_allclose(a.map, course[i].numpy(), atol=1e-5)
        assert a.map.min() == 0 and a.map.max() == 1
    vanilla = cw.attribution.attribute(probe, images[0], "saliency", int(labels[0]), resize=False)
    assert not np.allclose(normalize(vanilla.map), course[0].numpy(), atol=1e-2)  # the loss's gradient is not the score's


@pytest.mark.parametrize("intended", [False, True])
def test_smoothgrad_is_the_courses_with_the_same_noise(probe, model, images, labels, intended):
    x, y, n = images[1], labels[1], 24
    torch.manual_seed(5)  # the course draws from torch's global generator; cnnwidgets from one seeded the same
    course = smooth_grad(x, y, model, n, 0.4, intended)[0]
    part = "smoothgrad_homework_fixed" if intended else "smoothgrad_homework"
    a = cw.attribution.attribute(probe, x, part, int(y), resize=False, samples=n, seed=5, batch_size=7)
    np.testing.assert_allclose(a.raw, course, atol=1e-5)
    np.testing.assert_allclose(a.map, normalize(course.max(0)), atol=1e-5)
    spread = float(x.max() - x.min())
    std = A.methods.homework_smoothgrad.homework_noise_std(x, 0.4, intended)
    assert std == pytest.approx(0.4 * spread if intended else (0.4 / spread) ** 2)


def test_the_intended_noise_is_larger_and_changes_the_map(probe, images, labels):
    x, y = images[1], int(labels[1])
    hw, fixed = H.compare(probe, x, "smoothgrad", y, resize=False, samples=24, seed=5)
    assert "0.16" in hw.kind.legend(hw) and "as intended" in fixed.kind.legend(fixed)
    assert 0.3 < np.corrcoef(hw.map.ravel(), fixed.map.ravel())[0, 1] < 0.999


def test_integrated_gradients_is_the_courses_and_misses_completeness(probe, model, images, labels):
    ig = IntegratedGradients(model)
    for i in range(2):
        course = ig.generate_integrated_gradients(images[i][None].clone(), labels[i], 10)
        hw = H.attribute(probe, images[i], "integrated_gradients", int(labels[i]), resize=False)
        np.testing.assert_allclose(hw.raw, course, atol=1e-5 * np.abs(course).max())
        with torch.no_grad():
            gap = float(model(images[i][None])[0, labels[i]] - model(torch.zeros(1, 3, SIZE, SIZE))[0, labels[i]])
        assert hw.delta == pytest.approx(abs(float(course.sum()) - gap), rel=1e-3, abs=1e-5)
        # the same 10 path gradients times (image - black) is Integrated Gradients on the homework's path
        ten = cw.attribution.attribute(probe, images[i], "integrated_gradients", int(labels[i]), resize=False, steps=10,
                                       approximation="riemann_left", baseline="black")
        np.testing.assert_allclose(ten.raw, course * images[i].numpy(), atol=1e-5 * np.abs(course).max())
    # completeness: the corrected map's sum tends to f(image) - f(black) as steps grow; the homework's does not
    x, y = images[2], int(labels[2])
    with torch.no_grad():
        gap = float(model(x[None])[0, y] - model(torch.zeros(1, 3, SIZE, SIZE))[0, y])
    hw_many = H.attribute(probe, x, "integrated_gradients", y, resize=False, steps=50, batch_size=25)
    fixed, fine = (H.attribute(probe, x, "integrated_gradients", y, corrected=True, resize=False, steps=s) for s in (100, 200))
    assert fixed.options["baseline"] == "black" and fixed.options["steps"] == 100
    assert fine.delta < fixed.delta < 0.1 * abs(gap) and fine.delta < 0.02 * abs(gap)
    assert hw_many.delta > 0.1 * abs(gap) and hw_many.delta > 10 * fine.delta  # 50 steps: no closer than 10


@pytest.mark.parametrize("cnnid", [6, 23])
def test_filter_explanation_is_the_courses(probe, model, images, cnnid):
    first = next(H.filter_explanation(probe, images, f"cnn.{cnnid}", 0))
    assert first.total == 100 and first.value.recipe == "homework"  # the homework's 100 steps by default
    steps = 30  # fewer here, to keep the test short; the same loop
    acts, vis = filter_explanation(images[:2].clone(), model, cnnid, 0, iteration=steps, lr=0.1)
    seen = []
    fe = runner.run(H.filter_explanation(probe, images[:2], f"cnn.{cnnid}", 0, steps=steps), lambda s: seen.append(s.step)).value
    assert seen == list(range(1, steps + 1)) and isinstance(model.cnn[cnnid], nn.Conv2d)
    np.testing.assert_allclose(fe.activations, acts, rtol=1e-5, atol=1e-5 * float(acts.abs().max()))
    np.testing.assert_allclose(fe.visualizations, vis, atol=1e-4)
    assert fe.visualizations.min() < 0 or fe.visualizations.max() > 1  # no clamp, as in the homework
    assert fe.history[-1] > fe.history[0]
    assert hooks.hook_count(model) == 0


def test_the_regularized_dream_of_the_same_filter(probe, images):
    fe = runner.run(H.filter_explanation(probe, images, "cnn.6", 0, recipe="regularized", steps=8)).value
    assert fe.recipe == "regularized" and fe.visualizations.shape == (1, 3, SIZE, SIZE)
    assert 0 <= float(fe.visualizations.min()) and float(fe.visualizations.max()) <= 1
    with pytest.raises(ValueError, match="recipe is 'homework' or 'regularized'"):
        H.filter_explanation(probe, images, "cnn.6", recipe="lucent")
    with pytest.raises(ValueError, match="out of range"):
        H.filter_explanation(probe, images, "cnn.6", 99)


def test_lime_is_the_courses_on_the_same_samples(probe, model, images, labels):
    def predict(input):
        model.eval()
        input = torch.FloatTensor(input).permute(0, 3, 1, 2)
        output = model(input)
        return output.detach().cpu().numpy()

    def segmentation(input):
        return slic(input, n_segments=200, compactness=1, sigma=1, start_label=1)

    np.random.seed(16)
    image = images[0].permute(1, 2, 0).numpy().astype(np.double)
    label = int(labels[0])
    with torch.no_grad():
        segments, exp, lime_img, mask = lime_explain(image, predict, segmentation, label, 300, np.random.mtrand._rand)
    a = cw.attribution.attribute(probe, images[0], "lime_homework", label, resize=False, samples=300)
    np.testing.assert_array_equal(a.segments, segments)
    L = A.methods.homework_lime
    data = L.homework_samples(segments, 300, 16)
    with torch.no_grad():
        ours = L.homework_fit(data, model(L.homework_images(images[0][None], segments, data))[:, label].double().numpy())
    assert [f for f, _ in ours[:30]] == [int(f) for f, _ in exp[:30]]
    np.testing.assert_allclose([w for _, w in ours], [w for _, w in exp], atol=1e-4 * abs(exp[0][1]))
    shown = {int(f): w for f, w in exp[:11] if abs(w) >= 0.05}
    assert shown, "the course would colour no superpixel: the test model's scores are too flat"
    np.testing.assert_allclose(a.map, np.where(mask != 0, a.map, 0))
    assert set(np.unique(segments[mask != 0])) == {f for f in shown if f in segments}
    for f, w in shown.items():
        if f in segments:
            assert a.map[segments == f][0] == pytest.approx(w, rel=1e-3)
    np.testing.assert_allclose(H.picture(a), np.clip(lime_img, 0, 1), atol=1e-6)
    assert 0 not in segments and segments.max() == len(np.unique(segments))  # the start_label=1 quirk: feature 0 is empty


# --- where the presets are reachable, and the model stays as it was --------------------------------------------
def test_presets_are_listed_for_the_panel_not_in_all_methods(probe, model):
    labels = {m.name: m.label for m in A.registered(probe)}
    assert labels["smoothgrad_homework"] == "SmoothGrad (as in the homework)"
    assert labels["integrated_gradients_homework"] == "Integrated Gradients (as in the homework)"
    assert {"saliency_homework", "lime_homework", "smoothgrad_homework_fixed"} <= set(labels)
    assert not any("homework" in m for m in A.METHODS)  # the "All methods" tab stays the eight general methods
    assert {H.PRESETS[p][0] for p in H.PRESETS} <= set(labels) and {H.CORRECTED[p][0] for p in H.CORRECTED} <= set(labels)
    with pytest.raises(ValueError, match="homework part is one of"):
        H.attribute(probe, torch.rand(3, SIZE, SIZE), "gradcam", resize=False)
    model.zero_grad(set_to_none=True)  # the course's code above left gradients on the weights; cnnwidgets leaves none
    model.train()
    for part in ("saliency", "smoothgrad", "integrated_gradients"):
        H.attribute(probe, torch.rand(3, SIZE, SIZE), part, 0, resize=False, **({"samples": 3} if part == "smoothgrad" else {}))
    assert model.training and hooks.hook_count(model) == 0 and all(p.grad is None for p in model.parameters())
    model.eval()


def test_the_saliency_panel_offers_them(probe, images):
    panel = cw.Saliency(probe, images[0], mode="foreground")
    try:
        options = dict(panel.method_select.options)
        assert options["SmoothGrad (as in the homework)"] == "smoothgrad_homework"
        panel.join()
        panel.method_select.value = "saliency_homework"
        assert panel.result.method == "saliency_homework" and "cross-entropy" in panel.map.legend.value
    finally:
        panel.close()
