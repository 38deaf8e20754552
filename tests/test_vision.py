"""Chapter 5's attention on images: the non-local block against mmcv, SE against MONAI, CBAM and DANet against
their papers' equations written out with loops, non-local means against scikit-image, properties and errors."""

import math

import numpy as np
import pytest
import torch
from mmcv.cnn import NonLocal2d
from monai.networks.blocks import ChannelSELayer
from skimage import data
from skimage.restoration import denoise_nl_means
from skimage.transform import rescale

from attnbook.core import attention
from attnbook.errors import ShapeError
from attnbook.vision import (
    CBAM,
    MODES,
    ChannelAttention,
    ConcatenationScore,
    NonLocalBlock,
    PositionAttention,
    SpatialAttention,
    SqueezeExcitation,
    flatten_positions,
)
from attnbook.vision.denoise import nl_means, psnr

TOL = dict(atol=1e-5, rtol=1e-5)


def randomised(module, seed, std=0.5):
    """Give every parameter random values, so that no zero-initialised part can hide a difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def reference_nonlocal(channels, mode, use_scale, seed, reduction=2):
    return randomised(NonLocal2d(channels, reduction=reduction, use_scale=use_scale, mode=mode,
                                 norm_cfg=None), seed).eval()


# ------------------------------------------------------------------------------------ non-local block vs mmcv


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_scale", [True, False])
@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 5, 3, 1), (3, 4, 1, 4)])
def test_nonlocal_matches_mmcv(mode, use_scale, shape):
    seed = MODES.index(mode) * 10 + use_scale + shape[1]
    ref = reference_nonlocal(shape[1], mode, use_scale, seed)
    block = NonLocalBlock.from_reference(ref)
    assert block.inter_channels == ref.inter_channels
    assert block.use_scale == (use_scale and mode == "embedded_gaussian")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    expected = ref(x)
    z = block(x)
    assert z.shape == shape
    torch.testing.assert_close(z, expected, **TOL)
    if mode == "concatenation":
        return  # mmcv divides its ReLU's output in place, so its own backward pass fails
    (grad,) = torch.autograd.grad(z.square().sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4)


def test_nonlocal_reference_differs_between_modes():
    # guards the comparison above: different pairwise functions must give different outputs
    x = torch.randn(2, 6, 4, 5, generator=torch.Generator().manual_seed(0))
    outputs = [NonLocalBlock.from_reference(reference_nonlocal(6, m, False, 1))(x) for m in MODES]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.allclose(outputs[i], outputs[j], atol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_nonlocal_weights_and_normalisation(mode):
    block = randomised(NonLocalBlock(6, 3, mode=mode), seed=2)
    x = torch.randn(2, 6, 3, 5, generator=torch.Generator().manual_seed(3))
    z, weights = block(x, return_attention=True)
    assert weights.shape == (2, 15, 15)
    if mode in ("gaussian", "embedded_gaussian"):
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 15))
        assert (weights > 0).all()
    # y_i = Σ_j w_ij g(x_j), z = x + W_z y, recomputed from the returned weights
    y = weights @ flatten_positions(block.g(x))
    y = y.transpose(1, 2).reshape(2, 3, 3, 5)
    torch.testing.assert_close(z, x + block.out(y), **TOL)


def test_embedded_gaussian_is_softmax_attention_over_positions():
    block = randomised(NonLocalBlock(4, 2, use_scale=True), seed=5)
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(6))
    theta, phi, g = (flatten_positions(conv(x)) for conv in (block.theta, block.phi, block.g))
    weights = torch.softmax(theta @ phi.transpose(1, 2) / math.sqrt(2), dim=-1)
    _, returned = block(x, return_attention=True)
    torch.testing.assert_close(returned, weights, **TOL)
    out, core_weights = attention(theta, phi, g, score="scaled_dot")
    torch.testing.assert_close(core_weights, weights, **TOL)


@pytest.mark.parametrize("mode", ["dot_product", "concatenation"])
def test_dot_product_and_concatenation_divide_by_the_number_of_positions(mode):
    block = randomised(NonLocalBlock(4, 2, mode=mode), seed=7)
    x = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(8))
    theta, phi = flatten_positions(block.theta(x))[0], flatten_positions(block.phi(x))[0]
    f = torch.empty(6, 6)
    for i in range(6):
        for j in range(6):
            if mode == "dot_product":
                f[i, j] = theta[i] @ phi[j]
            else:
                f[i, j] = torch.relu(block.concat.weight @ torch.cat([theta[i], phi[j]]))
    _, weights = block(x, return_attention=True)
    torch.testing.assert_close(weights[0], f / 6, **TOL)


def test_concatenation_score_on_batched_heads():
    score = randomised(ConcatenationScore(3), seed=9)
    q, k = torch.randn(2, 4, 3), torch.randn(2, 5, 3)
    expected = torch.relu(torch.cat([q.unsqueeze(2).expand(2, 4, 5, 3), k.unsqueeze(1).expand(2, 4, 5, 3)], -1)
                          @ score.weight)
    torch.testing.assert_close(score(q, k), expected, **TOL)


def test_new_nonlocal_block_is_identity_and_learns():
    block = NonLocalBlock(4)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(block(x), x)
    block(x).square().sum().backward()
    assert block.out.weight.grad.abs().sum() > 0  # the zero output convolution still gets a gradient


@pytest.mark.parametrize("mode", MODES)
def test_nonlocal_is_equivariant_to_permuting_positions(mode):
    block = randomised(NonLocalBlock(4, mode=mode), seed=11)
    x = torch.randn(2, 4, 3, 4, generator=torch.Generator().manual_seed(12))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(13))
    permute = lambda t: t.flatten(2)[:, :, perm].reshape(t.shape)  # noqa: E731
    torch.testing.assert_close(block(permute(x)), permute(block(x)), **TOL)


def test_nonlocal_errors():
    block = NonLocalBlock(4)
    with pytest.raises(ShapeError, match=r"x: expected 4 dimensions \(batch, channels, height, width\)"):
        block(torch.randn(4, 3, 3))
    with pytest.raises(ShapeError, match=r"x: expected 4 channels \(in_channels of NonLocalBlock\), got shape"):
        block(torch.randn(1, 5, 3, 3))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        block(np.zeros((1, 4, 3, 3)))
    with pytest.raises(ValueError, match="mode: expected one of"):
        NonLocalBlock(4, mode="gaussian_embedded")
    with pytest.raises(ValueError, match="use_scale: applies to mode 'embedded_gaussian' only"):
        NonLocalBlock(4, mode="dot_product", use_scale=True)
    with pytest.raises(ValueError, match="in_channels: expected a positive number"):
        NonLocalBlock(0)
    with pytest.raises(TypeError, match="module: expected mmcv.cnn.NonLocal2d"):
        NonLocalBlock.from_reference(torch.nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match="sub_sample"):
        NonLocalBlock.from_reference(NonLocal2d(4, sub_sample=True, norm_cfg=None))
    with pytest.raises(ValueError, match="norm_cfg=None"):
        NonLocalBlock.from_reference(NonLocal2d(4, norm_cfg=dict(type="BN")))


# ------------------------------------------------------------------------------------ SE vs MONAI


@pytest.mark.parametrize("channels,r,shape", [(12, 3, (2, 4, 5)), (7, 2, (3, 3, 1)), (16, 16, (1, 6, 6))])
def test_squeeze_excitation_matches_monai(channels, r, shape):
    ref = randomised(ChannelSELayer(2, channels, r=r), seed=channels).eval()
    se = SqueezeExcitation.from_reference(ref)
    x = torch.randn(shape[0], channels, *shape[1:], generator=torch.Generator().manual_seed(r))
    torch.testing.assert_close(se(x), ref(x.clone()), **TOL)
    gate = se.gate(x)
    assert gate.shape == (shape[0], channels) and ((gate > 0) & (gate < 1)).all()


def test_squeeze_excitation_errors():
    with pytest.raises(TypeError, match="module: expected monai ChannelSELayer"):
        SqueezeExcitation.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="ReLU and sigmoid"):
        SqueezeExcitation.from_reference(ChannelSELayer(2, 8, r=2, acti_type_2="relu"))
    with pytest.raises(ValueError, match="ReLU and sigmoid"):
        SqueezeExcitation.from_reference(ChannelSELayer(2, 8, r=2, add_residual=True))
    with pytest.raises(ShapeError, match=r"x: expected 8 channels \(channels of SqueezeExcitation\)"):
        SqueezeExcitation(8)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="reduction: expected a positive integer"):
        SqueezeExcitation(8, reduction=0)
    with pytest.raises(ValueError, match="pools: expected"):
        SqueezeExcitation(8, pools=("median",))


# ------------------------------------------------------------------------------------ CBAM vs its equations


def mlp_loops(se, descriptor):
    """W₁ ReLU(W₀ d) with explicit sums over channels (Woo et al.'s shared MLP, biases included)."""
    hidden = [max(0.0, float(sum(se.fc1.weight[k, c] * descriptor[c] for c in range(len(descriptor)))
                             + se.fc1.bias[k])) for k in range(se.fc1.out_features)]
    return [float(sum(se.fc2.weight[c, k] * hidden[k] for k in range(len(hidden))) + se.fc2.bias[c])
            for c in range(se.fc2.out_features)]


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def cbam_loops(cbam, x):
    """Eq. (2) and (3) of Woo et al. (2018), one channel and one pixel at a time, for one image (C, H, W)."""
    channels, height, width = x.shape
    pixels = [(i, j) for i in range(height) for j in range(width)]
    avg = [sum(float(x[c, i, j]) for i, j in pixels) / len(pixels) for c in range(channels)]
    mx = [max(float(x[c, i, j]) for i, j in pixels) for c in range(channels)]
    m_c = [sigmoid(a + b) for a, b in zip(mlp_loops(cbam.channel, avg), mlp_loops(cbam.channel, mx))]
    refined = [[[m_c[c] * float(x[c, i, j]) for j in range(width)] for i in range(height)] for c in range(channels)]
    weight = cbam.spatial.conv.weight[0]  # (2, k, k)
    k = weight.shape[-1]
    out = torch.empty(channels, height, width)
    for i, j in pixels:
        total = 0.0
        for di in range(k):
            for dj in range(k):
                y, x_ = i + di - k // 2, j + dj - k // 2
                if 0 <= y < height and 0 <= x_ < width:
                    column = [refined[c][y][x_] for c in range(channels)]
                    total += float(weight[0, di, dj]) * sum(column) / channels + float(weight[1, di, dj]) * max(column)
        for c in range(channels):
            out[c, i, j] = sigmoid(total) * refined[c][i][j]
    return out


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_cbam_matches_its_equations(kernel_size):
    cbam = randomised(CBAM(6, reduction=2, kernel_size=kernel_size), seed=kernel_size)
    x = torch.randn(2, 6, 4, 5, generator=torch.Generator().manual_seed(1))
    out = cbam(x)
    for b in range(2):
        torch.testing.assert_close(out[b], cbam_loops(cbam, x[b]), **TOL)


def test_spatial_attention_gate_and_errors():
    spatial = randomised(SpatialAttention(3), seed=3)
    x = torch.randn(2, 5, 4, 4)
    gate = spatial.gate(x)
    assert gate.shape == (2, 1, 4, 4)
    torch.testing.assert_close(spatial(x), x * gate)
    with pytest.raises(ValueError, match="kernel_size: expected an odd positive size"):
        SpatialAttention(4)
    with pytest.raises(ShapeError, match="x: expected 4 dimensions"):
        spatial(torch.randn(5, 4, 4))
    with pytest.raises(ShapeError, match=r"x: expected 6 channels \(channels of SqueezeExcitation\)"):
        CBAM(6, reduction=2)(torch.randn(1, 3, 4, 4))


# ------------------------------------------------------------------------------------ DANet vs its equations


def test_position_attention_matches_its_equations():
    module = randomised(PositionAttention(8, reduction=4), seed=4)
    x = torch.randn(1, 8, 3, 2, generator=torch.Generator().manual_seed(4))
    out, weights = module(x, return_attention=True)
    a = x[0].flatten(1)  # (C, N)
    b, c, d = (conv(x)[0].flatten(1) for conv in (module.key, module.query, module.value))
    n = a.shape[1]
    expected = torch.empty_like(a)
    for j in range(n):  # E_j = α Σ_i s_ji D_i + A_j, s_ji = exp(B_i·C_j) / Σ_i exp(B_i·C_j)
        energies = [float(b[:, i] @ c[:, j]) for i in range(n)]
        total = sum(math.exp(e) for e in energies)
        s = [math.exp(e) / total for e in energies]
        expected[:, j] = module.gamma * sum(s[i] * d[:, i] for i in range(n)) + a[:, j]
        torch.testing.assert_close(weights[0, j], torch.tensor(s), **TOL)
    torch.testing.assert_close(out[0].flatten(1), expected, **TOL)


def test_channel_attention_matches_its_equations_and_the_released_code():
    module = randomised(ChannelAttention(), seed=5, std=0.3)
    x = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(5)) * 0.5
    a = x[0].flatten(1)  # (C, N): channel j is the row A_j
    out, weights = module(x, return_attention=True)
    expected = torch.empty_like(a)
    for j in range(4):  # E_j = β Σ_i x_ji A_i + A_j, x_ji = exp(A_i·A_j) / Σ_i exp(A_i·A_j)
        energies = [float(a[i] @ a[j]) for i in range(4)]
        total = sum(math.exp(e) for e in energies)
        expected[j] = module.beta * sum(math.exp(energies[i]) / total * a[i] for i in range(4)) + a[j]
    torch.testing.assert_close(out[0].flatten(1), expected, **TOL)
    released = randomised(ChannelAttention(released=True), seed=5, std=0.3)
    _, released_weights = released(x, return_attention=True)
    energy = a @ a.T
    torch.testing.assert_close(released_weights[0], torch.softmax(energy.max(-1, keepdim=True).values - energy, -1))
    torch.testing.assert_close(released_weights[0], torch.softmax(-energy, -1), **TOL)  # = softmax(−E)


def test_dual_attention_starts_as_identity_and_errors():
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(PositionAttention(8)(x), x)
    torch.testing.assert_close(ChannelAttention()(x), x)
    with pytest.raises(ShapeError, match=r"x: expected 8 channels \(channels of PositionAttention\)"):
        PositionAttention(8)(torch.randn(1, 4, 3, 3))
    with pytest.raises(ShapeError, match="x: expected 4 dimensions"):
        ChannelAttention()(torch.randn(8, 3, 3))


# ------------------------------------------------------------------------------------ non-local means


def nl_means_loops(image, s, d, h):
    """Buades et al.'s NL-means one pixel at a time (reflect-padded patches, window cut at the border)."""
    height, width = image.shape
    r, a = s // 2, (s - 1) / 4
    padded = np.pad(image, r, mode="reflect")
    kernel = np.exp(-(np.arange(-r, r + 1)[:, None] ** 2 + np.arange(-r, r + 1)[None] ** 2) / (2 * a * a))
    kernel /= kernel.sum() * h * h
    out = np.empty_like(image)
    for i in range(height):
        for j in range(width):
            p = padded[i: i + s, j: j + s]
            total = weight_sum = 0.0
            for y in range(max(0, i - d), min(height, i + d + 1)):
                for x in range(max(0, j - d), min(width, j + d + 1)):
                    w = math.exp(-(kernel * (p - padded[y: y + s, x: x + s]) ** 2).sum())
                    total, weight_sum = total + w * image[y, x], weight_sum + w
            out[i, j] = total / weight_sum
    return out


def test_nl_means_matches_its_definition():
    image = np.random.default_rng(0).random((7, 9))
    out, weights = nl_means(torch.tensor(image), patch_size=3, patch_distance=2, h=0.3)
    np.testing.assert_allclose(out.numpy(), nl_means_loops(image, 3, 2, 0.3), atol=1e-10)
    assert weights.shape == (63, 1, 25)
    torch.testing.assert_close(weights.sum(-1), torch.ones(63, 1, dtype=torch.float64))
    assert (weights[0, 0].view(5, 5)[:2] == 0).all()  # the corner pixel's window rows above the image


def test_nl_means_agrees_with_scikit_image():
    clean = rescale(data.camera() / 255.0, 0.125, anti_aliasing=True)[4:36, 8:40]
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape)
    ours, _ = nl_means(torch.tensor(noisy), patch_size=5, patch_distance=4, h=0.1)
    theirs = denoise_nl_means(noisy, patch_size=5, patch_distance=4, h=0.1, fast_mode=False)
    # scikit-image skips candidates past a distance cut-off and uses an approximate exponential: close, not equal
    assert np.abs(ours.numpy() - theirs).mean() < 2e-3 and np.abs(ours.numpy() - theirs).max() < 0.03
    clean_t = torch.tensor(clean)
    assert abs(psnr(ours, clean_t) - psnr(torch.tensor(theirs), clean_t)) < 0.3
    assert psnr(ours, clean_t) > psnr(torch.tensor(noisy), clean_t) + 3


def test_nl_means_errors():
    with pytest.raises(ShapeError, match=r"image: expected 2 dimensions \(height, width\)"):
        nl_means(torch.rand(1, 5, 5))
    with pytest.raises(ValueError, match="patch_size: expected an odd positive size"):
        nl_means(torch.rand(5, 5), patch_size=4)
    with pytest.raises(ValueError, match="h: expected"):
        nl_means(torch.rand(5, 5), h=0.0)


# ------------------------------------------------------------------------------------ chapter 5's tasks

from attnbook.vision.tasks import (  # noqa: E402
    IGNORE,
    AttentionPool2d,
    PooledCNN,
    TinyCNN,
    accuracy_by_distance,
    majority_task,
    receptive_field,
    source_task,
)


def test_source_task_labels_follow_the_matching_source():
    g = torch.Generator().manual_seed(0)
    batch = source_task(20, size=7, n_sources=2, n_keys=3, n_colours=4, n_objects=5, generator=g)
    assert batch.images.shape == (20, 11, 7, 7) and batch.labels.shape == (20, 7, 7)
    for b in range(20):
        image = batch.images[b]
        sources = (image[7:].sum(0) > 0).nonzero().tolist()  # pixels with a colour
        objects = (image[0] > 0).nonzero().tolist()
        assert len(sources) == 2 and len(objects) == 5
        assert ((batch.labels[b] != IGNORE).nonzero().tolist()) == objects
        assert image[1:4].sum() == 2 and image[4:7].sum() == 5  # one key per source, one per object
        for i, j in objects:
            key = int(image[4:7, i, j].argmax())
            (si, sj), = [(si, sj) for si, sj in sources if image[1 + key, si, sj] > 0]
            assert batch.labels[b, i, j] == int(image[7:, si, sj].argmax())
            assert batch.distance[b, i, j] == max(abs(i - si), abs(j - sj))


def test_receptive_field_and_accuracy_by_distance():
    assert [receptive_field(d) for d in (1, 2, 3)] == [3, 5, 7]
    assert receptive_field(2, kernel_size=5) == 9
    batch = source_task(50, size=8, generator=torch.Generator().manual_seed(1))

    class Oracle(torch.nn.Module):  # predicts the labels exactly
        def forward(self, x):
            return torch.nn.functional.one_hot(batch.labels.clamp_min(0), 3).permute(0, 3, 1, 2).float()

    accuracy = accuracy_by_distance(Oracle(), batch, 7)
    assert torch.equal(accuracy, torch.ones(7))


def test_tiny_cnn_places_attention_and_checks_input():
    for position in range(4):
        model = TinyCNN(5, 3, hidden=8, attention="nonlocal", position=position)
        assert model(torch.randn(2, 5, 6, 6)).shape == (2, 3, 6, 6)
    with pytest.raises(ValueError, match="attention: expected one of"):
        TinyCNN(5, 3, attention="transformer")
    with pytest.raises(ValueError, match="position: expected 0 <= position <= depth=3"):
        TinyCNN(5, 3, position=4)
    with pytest.raises(ShapeError, match=r"x: expected 5 channels \(in_channels of TinyCNN\)"):
        TinyCNN(5, 3)(torch.randn(1, 4, 6, 6))
    with pytest.raises(ValueError, match="n_sources: expected"):
        source_task(2, n_sources=3, n_keys=2)


def test_majority_task_and_pooling():
    images, labels = majority_task(30, size=6, generator=torch.Generator().manual_seed(2))
    counts = images.sum(dim=(2, 3))  # (30, 2): dots of each colour
    assert (counts.sum(1) == 3).all() and torch.equal(labels, (counts[:, 1] > counts[:, 0]).long())
    pool = AttentionPool2d(4)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(pool(x), x.mean(dim=(2, 3)))  # a zero query attends uniformly
    assert PooledCNN(2, 2, pool="attention")(images).shape == (30, 2)
    with pytest.raises(ValueError, match="pool: expected 'max' or 'attention'"):
        PooledCNN(2, 2, pool="avg")
    with pytest.raises(ValueError, match="n_dots, n_colours"):
        majority_task(3, n_dots=2)
