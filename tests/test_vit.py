"""The Vision Transformer against `transformers.ViTForImageClassification` with copied weights, and its errors."""

import pytest
import torch
import transformers

from attnbook.errors import ShapeError
from attnbook.transformer import EncoderLayer
from attnbook.vit import PatchEmbedding, ViT, hf_to_attnbook, patchify, position_similarity

SIZES = [  # image_size, patch_size, channels, hidden, layers, heads, mlp, labels
    (8, 2, 1, 16, 2, 4, 32, 10),
    (12, 4, 3, 24, 3, 2, 40, 5),
    ((8, 12), (4, 2), 2, 12, 1, 3, 20, 3),
    (16, 16, 3, 32, 2, 8, 64, 7),  # a single patch
]


def reference(image_size, patch_size, channels, hidden, layers, heads, mlp, labels, seed=0):
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=image_size, patch_size=patch_size, num_channels=channels,
                                    hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                    intermediate_size=mlp, num_labels=labels, attn_implementation="eager")
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():  # HF starts position embeddings and biases near zero: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model


@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "x".join(map(str, s[:5])))
def test_matches_transformers_vit(sizes):
    theirs = reference(*sizes)
    ours = ViT.from_reference(theirs)
    image_size, _, channels, _, layers, heads, _, labels = sizes
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    pixels = torch.randn(3, channels, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(pixel_values=pixels, output_attentions=True)
        actual = ours(pixels, output_attentions=True)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=1e-4, atol=1e-5)
    tokens = ours.patch_embedding.num_patches + 1
    assert actual.logits.shape == (3, labels)
    assert len(actual.attentions) == len(expected.attentions) == layers
    for ours_w, theirs_w in zip(actual.attentions, expected.attentions):
        assert ours_w.shape == (3, heads, tokens, tokens)
        torch.testing.assert_close(ours_w, theirs_w, rtol=1e-4, atol=1e-5)


def test_layer_norm_epsilon_is_the_references():
    theirs = reference(8, 2, 1, 16, 2, 4, 32, 10)
    ours = ViT.from_reference(theirs)
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(m.eps == 1e-12 for m in norms)
    theirs.config.layer_norm_eps = 1e-3  # a different epsilon is read from the config, not assumed
    assert all(m.eps == 1e-3 for m in ViT.from_reference(theirs).modules() if isinstance(m, torch.nn.LayerNorm))


def test_encoder_reuses_the_pre_norm_transformer_layers():
    model = ViT(8, 2, 1, 10, 16, depth=3, num_heads=4, mlp_dim=32)
    assert len(model.encoder.layers) == 3
    for layer in model.encoder.layers:
        assert isinstance(layer, EncoderLayer)
        assert layer.norm_first and layer.activation_name == "gelu" and layer.self_attn.num_heads == 4


def test_output_shapes_and_attentions_on_request():
    model = ViT(8, 2, 1, 10, 16, depth=2, num_heads=4, mlp_dim=32).eval()
    pixels = torch.rand(5, 1, 8, 8)
    out = model(pixels)
    assert out.logits.shape == (5, 10) and out.attentions is None
    out = model(pixels, output_attentions=True)
    assert len(out.attentions) == 2
    for weights in out.attentions:
        assert weights.shape == (5, 4, 17, 17)
        torch.testing.assert_close(weights.sum(-1), torch.ones(5, 4, 17))
    assert model.embed(pixels).shape == (5, 17, 16)


def test_patch_embedding_is_a_linear_map_on_flattened_patches():
    embed = PatchEmbedding((6, 9), 3, in_channels=2, embed_dim=5)
    images = torch.randn(4, 2, 6, 9)
    patches = patchify(images, 3)
    assert patches.shape == (4, 6, 2 * 3 * 3) and embed.grid_size == (2, 3) and embed.num_patches == 6
    torch.testing.assert_close(patches[0, 4], images[0, :, 3:6, 3:6].flatten())  # row 1, column 1
    weight = embed.projection.weight.flatten(1)  # (embed_dim, C · p · p)
    torch.testing.assert_close(embed(images), patches @ weight.T + embed.projection.bias)


def test_class_token_reads_every_patch_and_positions_matter():
    torch.manual_seed(0)
    model = ViT(8, 2, 1, 10, 16, depth=1, num_heads=2, mlp_dim=32).eval()
    assert not model.position_embeddings.any() and not model.cls_token.any()  # both start at zero
    with torch.no_grad():
        model.position_embeddings.normal_()
    pixels = torch.rand(2, 1, 8, 8)
    swapped = pixels.clone()
    swapped[:, :, 0:2, 0:2], swapped[:, :, 6:8, 6:8] = pixels[:, :, 6:8, 6:8], pixels[:, :, 0:2, 0:2]
    with torch.no_grad():
        base = model(pixels).logits
        assert not torch.allclose(model(swapped).logits, base)  # patch order is seen through the positions
        model.position_embeddings.zero_()
        torch.testing.assert_close(model(swapped).logits, model(pixels).logits)  # without them it is a set


def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match="image_size: expected a multiple of patch_size"):
        ViT(10, 4, 1, 10, 16, depth=1, num_heads=2, mlp_dim=32)
    with pytest.raises(ValueError, match="image_size"):
        PatchEmbedding((8, 10), 4, 1, 16)
    with pytest.raises(ShapeError, match="divisible by patch_size"):
        patchify(torch.zeros(1, 1, 8, 10), 4)


def test_wrong_inputs_name_what_was_expected():
    model = ViT(8, 2, 1, 10, 16, depth=1, num_heads=2, mlp_dim=32)
    with pytest.raises(ShapeError, match=r"pixel_values: expected shape \(batch, 1, 8, 8\), got \(2, 1, 8, 6\)"):
        model(torch.zeros(2, 1, 8, 6))
    with pytest.raises(ShapeError, match=r"pixel_values: expected shape \(batch, 1, 8, 8\), got \(2, 3, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ShapeError, match="4 dimensions"):
        model(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match="embed_dim"):
        ViT(8, 2, 1, 10, 18, depth=1, num_heads=4, mlp_dim=32)
    with pytest.raises(TypeError, match="ViTForImageClassification"):
        ViT.from_reference(torch.nn.Linear(2, 2))


def test_reference_names_map_one_to_one():
    theirs = reference(8, 2, 1, 16, 2, 4, 32, 10)
    ours = ViT(8, 2, 1, 10, 16, depth=2, num_heads=4, mlp_dim=32)
    mapped = {hf_to_attnbook(name) for name in theirs.state_dict()}
    assert mapped == set(ours.state_dict())
    assert hf_to_attnbook("vit.layers.1.attention.o_proj.bias") == "encoder.layers.1.self_attn.out_proj.bias"


def test_gradients_reach_every_parameter():
    model = ViT(8, 4, 1, 3, 8, depth=2, num_heads=2, mlp_dim=16)  # depth 1: the zero class token
    # at the start gives a query equal to q_proj.bias, so q_proj.weight would get no gradient
    model(torch.rand(2, 1, 8, 8)).logits.sum().backward()
    for name, p in model.named_parameters():
        if name.endswith("k_proj.bias"):  # q·b_k is the same for every key: softmax ignores it
            torch.testing.assert_close(p.grad, torch.zeros_like(p), atol=1e-6, rtol=0)
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_position_similarity_is_the_cosine_of_two_patches_positions():
    model = ViT((4, 6), 2, 1, 3, 8, depth=1, num_heads=2, mlp_dim=16)
    with torch.no_grad():
        model.position_embeddings.normal_()
    similarity = position_similarity(model)
    assert similarity.shape == (2, 3, 2, 3)
    first, last = model.position_embeddings[0, 1], model.position_embeddings[0, 6]  # patches (0, 0) and (1, 2)
    torch.testing.assert_close(similarity[0, 0, 1, 2], torch.cosine_similarity(first, last, dim=0).detach())
    torch.testing.assert_close(similarity[1, 1, 1, 1], torch.tensor(1.0))
    with pytest.raises(TypeError, match="ViT"):
        position_similarity(torch.nn.Linear(2, 2))
