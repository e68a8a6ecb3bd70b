"""The VisionTransformer wiring: shapes, masking, ablation switches, residual mode, next-frame prediction."""
import math

import pytest
import torch

from model.config import Config, with_overrides
from model.metrics import shift_frame
from model.vit import WARP_IDENTITY_LOGIT, VisionTransformer, change_support

TINY = dict(num_frames=3, image_height=16, image_width=24, patch_size=8, channels=16, num_heads=2, layers=2)


def tiny(**changes):
    torch.manual_seed(0)
    return VisionTransformer(**{**TINY, **changes}).eval()


def frames(batch=2, num_frames=3, seed=1):
    return torch.rand(batch, num_frames, 16, 24, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_the_masked_last_frame():
    out = tiny()(frames())
    assert out["prediction"].shape == (2, 3, 16, 24)
    mask = out["pixel_mask"]
    assert mask.dtype == torch.bool and mask.shape == (2, 3, 16, 24)
    assert mask[:, -1].all() and not mask[:, :-1].any()
    assert out["attention"] is None


def test_the_hidden_frame_cannot_leak_into_the_prediction():
    model = tiny()
    x = frames()
    changed = x.clone()
    changed[:, -1] = torch.rand_like(changed[:, -1])
    torch.testing.assert_close(model(x)["prediction"], model(changed)["prediction"], rtol=0, atol=0)


def test_the_seen_frames_do_matter():
    model = tiny()
    x = frames()
    changed = x.clone()
    changed[:, 0] = 1 - changed[:, 0]
    assert not torch.allclose(model(x)["prediction"][:, -1], model(changed)["prediction"][:, -1])


def test_single_frame_masks_a_share_of_the_patches():
    model = tiny(num_frames=1, mask_percentage=0.5)
    out = model(frames(batch=4, num_frames=1), generator=torch.Generator().manual_seed(0))
    assert out["pixel_mask"].float().mean(dim=(1, 2, 3)).tolist() == [0.5] * 4  # 3 of 6 patches each
    again = model(frames(batch=4, num_frames=1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["pixel_mask"], again["pixel_mask"])  # the generator fixes the masks


def test_attention_maps_per_block():
    out = tiny()(frames(), return_attention=True)
    assert len(out["attention"]) == 2
    for weights in out["attention"]:
        assert weights.shape == (2, 2, 18, 18)  # (B, heads, N, N), N = 3 frames * 2 * 3 patches
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 18))
    assert tiny(attention=False)(frames(), return_attention=True)["attention"] == [None, None]


def test_attention_to_the_last_frame_is_read_from_the_attention_maps():
    from model.data import FrameWindows
    from model.evaluate import attention_to_last_frame

    model, video = tiny(), torch.rand(7, 16, 24, generator=torch.Generator().manual_seed(3))
    windows = FrameWindows(video, 3)  # 5 windows
    shares = attention_to_last_frame(model, windows, batch_size=2)
    weights = torch.stack(model(windows.batch(torch.arange(5)), return_attention=True)["attention"])
    to_last = weights[:, :, :, 12:, 6:12]  # (blocks, B, heads, predicted tokens 12-17, last seen frame 6-11)
    torch.testing.assert_close(torch.tensor(shares["same_place"]),
                               torch.stack([to_last[:, :, :, i, i] for i in range(6)]).mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(shares["last_frame"]), to_last.sum(-1).mean(dim=(1, 2, 3)))
    # Per head of each block (blocks, heads): the same shares before the mean over heads.
    torch.testing.assert_close(torch.tensor(shares["same_place_per_head"]),
                               torch.stack([to_last[:, :, :, i, i] for i in range(6)]).mean(dim=(0, 2)))
    torch.testing.assert_close(torch.tensor(shares["last_frame_per_head"]), to_last.sum(-1).mean(dim=(1, 3)))
    torch.testing.assert_close(torch.tensor(shares["same_place_per_head"]).mean(-1), torch.tensor(shares["same_place"]))
    assert attention_to_last_frame(tiny(attention=False), windows) is None
    assert attention_to_last_frame(tiny(num_frames=1), FrameWindows(video, 1)) is None


def test_ablation_switches_change_the_parameters():
    names = set(dict(tiny().named_parameters()))
    assert any("positional" in name for name in names)
    assert not any("positional" in name for name in dict(tiny(positional_embedding=False).named_parameters()))
    no_attention = set(dict(tiny(attention=False).named_parameters()))
    assert not any("qkv" in name for name in no_attention)


def test_fused_and_written_out_attention_share_weights():
    fused, plain = tiny(fused_attention=True), tiny(fused_attention=False)
    plain.load_state_dict(fused.state_dict(), strict=True)
    x = frames()
    torch.testing.assert_close(fused(x)["prediction"], plain(x)["prediction"], rtol=1e-5, atol=1e-6)


def test_written_out_attention_switches_a_fused_model_for_the_block_only():
    from torch.utils.flop_counter import FlopCounterMode

    from nn.attention import written_out_attention

    model, x = tiny(fused_attention=True), frames()
    with FlopCounterMode(display=False) as fused_count:
        expected = model(x)["prediction"]
    with written_out_attention(model), FlopCounterMode(display=False) as counter:
        torch.testing.assert_close(model(x)["prediction"], expected, rtol=1e-5, atol=1e-6)
    assert counter.get_total_flops() > fused_count.get_total_flops()  # the attention's products, uncounted fused
    assert all(layer.fused for layer in model.modules() if hasattr(layer, "fused"))


def test_residual_starts_as_the_copy_of_the_last_seen_frame():
    model = tiny(output="residual")
    x = frames()
    torch.testing.assert_close(model(x)["prediction"][:, -1], x[:, -2])
    loss = (model.train()(x)["prediction"][:, -1] - x[:, -1]).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.reverse_embedding.parameters())
    assert model.reverse_embedding.to_pixels.weight.grad.abs().sum() > 0  # it can learn from zero
    with pytest.raises(ValueError, match="output: 'residual' needs num_frames > 1"):
        tiny(num_frames=1, output="residual")


def test_predict_next_frame_uses_a_blank_last_frame_and_clamps():
    model = tiny()
    context = frames()[:, :2]
    next_frame = model.predict_next_frame(context)
    assert next_frame.shape == (2, 16, 24)
    assert next_frame.min() >= 0 and next_frame.max() <= 1
    blank = torch.cat([context, torch.zeros(2, 1, 16, 24)], dim=1)
    torch.testing.assert_close(next_frame, model(blank)["prediction"][:, -1].clamp(0, 1))
    with pytest.raises(ValueError, match=r"context must have shape \(B, 2, H, W\)"):
        model.predict_next_frame(frames())
    with pytest.raises(ValueError, match="needs a model with num_frames > 1"):
        tiny(num_frames=1).predict_next_frame(context[:, :0])


def test_from_config():
    cfg = with_overrides(Config(), {"model.channels": 32, "model.layers": 1, "model.positional_embedding": False})
    model = VisionTransformer.from_config(cfg.model)
    assert len(model.blocks) == 1 and model.embedding.positional_embedding is None
    assert cfg.model.model_kwargs()["channels"] == 32
    out = model(torch.rand(1, 3, 144, 160))
    assert out["prediction"].shape == (1, 3, 144, 160)


def test_positional_init_std_sets_the_spread_and_defaults_to_vit():
    assert Config().model.model_kwargs()["positional_init_std"] == 0.02
    torch.manual_seed(0)
    default = VisionTransformer(**TINY).embedding.positional_embedding
    torch.manual_seed(0)
    same = VisionTransformer(**TINY, positional_init_std=0.02).embedding.positional_embedding
    torch.testing.assert_close(default, same, rtol=0, atol=0)  # the default is the old initialisation
    wide = tiny(positional_init_std=1.0).embedding.positional_embedding
    assert 0.01 < default.std().item() < 0.03 and 0.6 < wide.std().item() < 1.1
    with pytest.raises(ValueError, match="positional_init_std: must be positive"):
        tiny(positional_init_std=0.0)
    cfg = with_overrides(Config(), {"model.positional_init_std": 1.0})
    assert cfg.model.model_kwargs()["positional_init_std"] == 1.0


def test_the_reverse_embedding_starts_at_zero_only_for_the_change_outputs():
    head = lambda model: torch.cat([p.flatten() for p in model.reverse_embedding.parameters()])  # noqa: E731
    assert head(tiny(output="residual")).abs().max() == 0
    assert head(tiny(output="warp")).abs().max() == 0
    assert head(tiny()).abs().max() > 0


def one_hot_warp(model, shift):
    """Set the warp head so that every pixel takes the shift (dy, dx) alone."""
    pixels = model.embedding.patch_size ** 2
    with torch.no_grad():
        model.head.warp.weight.zero_()
        bias = torch.full((len(model.head.shifts), pixels), -1e4, dtype=model.head.warp.bias.dtype)
        bias[model.head.shifts.index(shift)] = 0
        model.head.warp.bias.copy_(bias.flatten())


def test_warp_with_one_chosen_shift_equals_moving_the_frame():
    model = tiny(output="warp", warp_radius=2).double()
    x = frames().double()
    tokens = torch.randn(2, 6, 16, dtype=torch.float64)  # 2 x 3 patches of the target frame
    assert len(model.head.shifts) == 25
    for shift in model.head.shifts:
        one_hot_warp(model, shift)
        torch.testing.assert_close(model.head.base(x[:, -2], tokens), shift_frame(x[:, -2], *shift))
        # The zero-initialised change is added to the moved frame.
        torch.testing.assert_close(model(x)["prediction"][:, -1], shift_frame(x[:, -2], *shift))


def test_warp_starts_near_the_copy_and_learns_the_shift_weights():
    model = tiny(output="warp", warp_radius=1)
    x = frames()
    weights = model.head.weights(torch.zeros(2, 6, 16))  # (B, 9, H, W)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 16, 24))
    identity = WARP_IDENTITY_LOGIT
    assert torch.allclose(weights[:, model.head.shifts.index((0, 0))], torch.tensor(
        math.exp(identity) / (math.exp(identity) + 8)))
    prediction = model.train()(x)["prediction"][:, -1]
    assert (prediction - x[:, -2]).abs().mean() < 0.1
    (prediction - shift_frame(x[:, -2], 1, 0)).abs().mean().backward()
    assert model.head.warp.weight.grad.abs().sum() > 0  # the zero-initialised head learns from the first step


def test_the_hidden_frame_cannot_leak_into_the_warp():
    model = tiny(output="warp", warp_radius=2)
    with torch.no_grad():  # weights away from their start, so that the warp depends on the tokens
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = frames()
    changed = x.clone()
    changed[:, -1] = torch.rand_like(changed[:, -1])
    torch.testing.assert_close(model(x)["prediction"], model(changed)["prediction"], rtol=0, atol=0)
    changed[:, -2] = torch.rand_like(changed[:, -2])
    assert not torch.allclose(model(x)["prediction"][:, -1], model(changed)["prediction"][:, -1])


def test_the_warp_radius_belongs_to_the_warp_output():
    with pytest.raises(ValueError, match="warp_radius: applies to output 'warp' only"):
        tiny(warp_radius=2)
    with pytest.raises(ValueError, match="warp_radius: applies to output 'warp' only"):
        tiny(output="residual", warp_radius=2)
    with pytest.raises(ValueError, match="warp_radius: must be a positive integer"):
        tiny(output="warp", warp_radius=-1)
    assert len(tiny(output="warp").head.shifts) == 25  # the default radius 2
    assert not hasattr(tiny(output="residual").head, "warp")
    with pytest.raises(ValueError, match="output: '[a-z]+' is not one of frame, residual, warp"):
        tiny(output="flow")


def test_change_support_is_the_square_around_each_changed_pixel():
    before = torch.zeros(1, 16, 24)
    last = before.clone()
    last[0, 5, 10] = 0.5
    last[0, 0, 23] = 1 / 255  # one gray level is a change; half of one is not
    last[0, 12, 3] = 0.4 / 255
    expected = torch.zeros(1, 16, 24, dtype=torch.bool)
    expected[0, 3:8, 8:13] = True
    expected[0, 0:3, 21:24] = True  # clipped at the border
    assert torch.equal(change_support(before, last, 2), expected)


def test_change_support_equals_the_square_maximum_for_any_radius():
    generator = torch.Generator().manual_seed(0)
    before = torch.rand(3, 16, 24, generator=generator)
    last = torch.where(torch.rand(3, 16, 24, generator=generator) < 0.03, before + 0.5, before)
    changed = (last != before).float()[:, None]
    for radius in (0, 1, 3, 7, 30):
        square = torch.nn.functional.max_pool2d(changed, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0
        assert torch.equal(change_support(before, last, radius), square)


def test_outside_the_change_support_the_prediction_is_the_last_frame_exactly():
    gated = tiny(output="warp", warp_radius=1, change_radius=1)
    with torch.no_grad():  # an output that is not the copy anywhere
        for parameter in gated.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    ungated = tiny(output="warp", warp_radius=1)
    ungated.load_state_dict(gated.state_dict())
    x = frames()
    x[:, -3] = x[:, -2]
    x[0, -3, 4, 4] += 0.5  # one pixel of the first sample changed between the seen frames
    prediction, free = gated(x)["prediction"][:, -1], ungated(x)["prediction"][:, -1]
    support = torch.zeros(2, 16, 24, dtype=torch.bool)
    support[0, 3:6, 3:6] = True
    torch.testing.assert_close(prediction[support], free[support], rtol=0, atol=0)
    torch.testing.assert_close(prediction[~support], x[:, -2][~support], rtol=0, atol=0)
    assert not torch.equal(free[~support], x[:, -2][~support])


def test_the_hidden_frame_cannot_leak_into_the_change_gate():
    model = tiny(output="warp", warp_radius=1, change_radius=2)
    x = frames()
    changed = x.clone()
    changed[:, -1] = torch.rand_like(changed[:, -1])
    torch.testing.assert_close(model(x)["prediction"], model(changed)["prediction"], rtol=0, atol=0)


def test_the_change_gate_needs_a_change_output_and_two_seen_frames():
    with pytest.raises(ValueError, match="change_radius: 2 needs output 'residual' or 'warp'"):
        tiny(change_radius=2)
    with pytest.raises(ValueError, match="change_radius: 2 needs output 'residual' or 'warp' and num_frames > 2"):
        tiny(output="residual", num_frames=2, change_radius=2)
    with pytest.raises(ValueError, match="change_radius: must be a non-negative integer"):
        tiny(output="residual", change_radius=-1)


@pytest.mark.parametrize("output", ["frame", "residual", "warp"])
def test_the_last_frame_alone_equals_the_last_frame_of_the_full_output(output):
    torch.manual_seed(0)
    model = tiny(output=output)
    for parameter in model.reverse_embedding.parameters():  # not the zero start of the change outputs
        torch.nn.init.normal_(parameter, std=0.1)
    x = frames()
    full, last = model(x), model(x, last_frame_only=True)
    assert last["prediction"].shape == last["pixel_mask"].shape == (2, 1, 16, 24)
    torch.testing.assert_close(last["prediction"], full["prediction"][:, -1:], rtol=1e-6, atol=1e-6)
    assert torch.equal(last["pixel_mask"], full["pixel_mask"][:, -1:])


def test_the_last_frame_alone_in_masked_reconstruction():
    model = tiny(num_frames=1)
    x = frames(num_frames=1)
    full = model(x, generator=torch.Generator().manual_seed(3))
    last = model(x, generator=torch.Generator().manual_seed(3), last_frame_only=True)
    torch.testing.assert_close(last["prediction"], full["prediction"], rtol=0, atol=0)
    assert torch.equal(last["pixel_mask"], full["pixel_mask"])
