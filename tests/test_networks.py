"""The networks: official key layout, sizes, raw head outputs, and the two modulated-conv forms."""
import re

import pytest
import torch

from pdfgc.families.pdfgc.model import PDFGC
from pdfgc.families.pdfgc.networks.generator import Generator, ModulatedConv2d, Upsample, upfirdn2d
from pdfgc.families.pdfgc.official.layout import FILES, official_layout

from .conftest import REFERENCE, need


def _parse_shapes_file():
    text = need(REFERENCE / "official_state_dict_shapes.txt").read_text()
    sections = text.split("=" * 100)[1:]
    out = {}
    for network, sec in zip(FILES, sections):
        rows = []
        for line in sec.strip().splitlines():
            if not line or line.startswith("#"):
                continue
            key, shape, dtype, _ = line.split("\t")
            rows.append((key, tuple(int(x) for x in re.findall(r"\d+", shape)), dtype))
        out[network] = rows
    return out


@pytest.fixture(scope="module")
def official():
    return PDFGC()


def test_official_layout_matches_checkpoint_shapes_file(official):
    ref = _parse_shapes_file()
    for network in FILES:
        ours = [(k, tuple(s), str(d).replace("torch.", "")) for k, (s, d) in official_layout(official, network).items()]
        assert ours == ref[network], network


def test_parameter_counts_are_the_official_used_ones(official):
    counts = {n: sum(p.numel() for p in getattr(official, n).parameters()) for n in FILES}
    assert counts == {"appearance": 24_028_992, "motion": 9_035_727, "audio": 7_630_144, "generator": 37_310_877}
    assert official.layout.dim == 2590


def test_encoder_output_shapes(tiny):
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        vec, idmap = tiny.appearance(x)
        codes = tiny.motion(x, mouth=True)
        feat, mouth = tiny.audio(torch.rand(2, 1, 80, 20))
        mouth5, = [tiny.audio(torch.rand(2, 3, 1, 80, 20))[1]]
    assert vec.shape == (2, tiny.layout.appearance) and idmap.shape[-2:] == (7, 7)
    assert codes.pose.shape == (2, 6) and codes.eye.shape == (2, 6) and codes.emotion.shape == (2, 30)
    assert codes.mouth.shape == (2, 500) and mouth.shape == (2, 500) and mouth5.shape == (6, 500)
    # head outputs are raw Linear outputs: an in-place ReLU after them would zero the negatives
    assert (codes.pose < 0).any() and (codes.emotion < 0).any() and (mouth < 0).any()
    assert (vec >= 0).all()  # the appearance vector follows a ReLU


def test_audio_encoder_5d_input_equals_flattened(tiny):
    x = torch.rand(2, 3, 1, 80, 20)
    with torch.inference_mode():
        a = tiny.audio(x)[1]
        b = tiny.audio(x.flatten(0, 1))[1]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_forms_agree(upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, 3, style_dim=40, upsample=upsample)
    x, s = torch.randn(3, 16, 14, 14), torch.randn(3, 40)
    with torch.inference_mode():
        conv.fused = True
        a = conv(x, s)
        conv.fused = False
        b = conv(x, s)
    assert a.shape == ((3, 8, 28, 28) if upsample else (3, 8, 14, 14))
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_grouped_form_is_per_sample():
    """Each sample of a batch is modulated by its own style: batch output == outputs one by one."""
    torch.manual_seed(1)
    g = Generator(size=28, style_dim=24, channels={7: 8, 14: 8, 28: 4})
    s, idm = torch.randn(3, 24), torch.randn(3, 8, 7, 7)
    with torch.inference_mode():
        batch = g(s, idm)
        single = torch.cat([g(s[i:i + 1], idm[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)
    assert batch.shape == (3, 3, 28, 28) and batch.abs().max() <= 1


def test_upsample_is_zero_insertion_then_fir():
    """upfirdn2d upsampling preserves a constant image away from the border and doubles the size."""
    up = Upsample((1, 3, 3, 1))
    x = torch.full((1, 2, 6, 6), 3.0)
    y = up(x)
    assert y.shape == (1, 2, 12, 12)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))
    # a single impulse spreads into the separable [1,3,3,1] kernel
    imp = torch.zeros(1, 1, 4, 4)
    imp[0, 0, 1, 1] = 1.0
    k = upfirdn2d(imp, up.kernel, up=2, pad=up.pad)
    assert torch.isclose(k.sum(), torch.tensor(4.0))


def test_generator_noise_is_part_of_the_model(tiny):
    sd = tiny.generator.state_dict()
    noise_keys = [k for k in sd if k.endswith(".noise.noise")]
    assert len(noise_keys) == 1 + len(tiny.generator.convs)
    s = torch.randn(1, tiny.layout.dim)
    idm = torch.randn(1, tiny.generator.identity_channels, 7, 7)
    with torch.inference_mode():
        a = tiny.generator(s, idm)
        b = tiny.generator(s, idm)
    assert torch.equal(a, b)  # fixed noise: the same style renders the same frame


def test_render_path_equals_reference_forward(tiny):
    """Generator.render (the fast inference path) against the official-order forward, batch 1 and 3."""
    g = tiny.generator
    torch.manual_seed(3)
    for b in (1, 3):
        s = torch.randn(b, tiny.layout.dim)
        idm = torch.randn(b, g.identity_channels, 7, 7)
        with torch.inference_mode():
            torch.testing.assert_close(g.render(s, idm), g(s, idm), atol=2e-5, rtol=1e-4)


def test_render_caches_follow_weight_changes():
    torch.manual_seed(0)
    g = Generator(size=28, style_dim=24, channels={7: 8, 14: 8, 28: 4})
    s, idm = torch.randn(1, 24), torch.randn(1, 8, 7, 7)
    before = g.render(s, idm)
    with torch.no_grad():
        g.convs[1].conv.weight.mul_(2.0)
        g.convs[1].activate.bias.add_(0.5)
        g.to_rgbs[0].conv.modulation.weight.mul_(0.5)
    after = g.render(s, idm)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, g(s, idm), atol=2e-5, rtol=1e-4)


def test_static_style_part_is_computed_once_and_stays_exact(tiny):
    """render(static=k): the appearance share of each modulation is cached; a new appearance refreshes it."""
    g, k = tiny.generator, tiny.layout.appearance
    torch.manual_seed(5)
    idm = torch.randn(1, g.identity_channels, 7, 7)
    app1, app2 = torch.rand(1, k), torch.rand(1, k)
    with torch.inference_mode():
        for app in (app1, app1, app2):
            s = torch.cat([app, torch.randn(1, tiny.layout.dim - k)], 1)
            torch.testing.assert_close(g.render(s, idm, static=k), g(s, idm), atol=2e-5, rtol=1e-4)
        # rows with different appearance in one batch fall back to the full product
        s = torch.cat([torch.cat([app1, app2]), torch.randn(2, tiny.layout.dim - k)], 1)
        torch.testing.assert_close(g.render(s, idm.expand(2, -1, -1, -1), static=k), g(s, idm.expand(2, -1, -1, -1)),
                                   atol=2e-5, rtol=1e-4)
