"""The lite configuration: named configs, the 224 <-> model-resolution maps, the fast render path at lite channels,
one training step through every differentiable path, and the real pipeline on a lite model."""
import json

import av
import pytest
import torch
import torch.nn.functional as F

from pdfgc.errors import InputError
from pdfgc.families.pdfgc.configs import CONFIG_NAMES, architecture_name, get_config, lite_config, official_config
from pdfgc.families.pdfgc.model import PDFGC, ModelConfig
from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline

from .conftest import DATA, FIXTURE, need

PD = DATA / "pdfgc"


@pytest.fixture(scope="module")
def lite():
    return PDFGC.random(0, lite_config())


def test_registry_and_official_defaults():
    assert CONFIG_NAMES == ("official", "lite", "tiny")
    assert official_config() == ModelConfig()
    assert get_config("lite") == lite_config() and get_config("lite") is not get_config("lite")
    assert get_config("tiny").name == "tiny-test"
    with pytest.raises(InputError, match="unknown model configuration 'huge'"):
        get_config("huge")


def test_lite_keeps_the_code_layout(lite):
    lay = lite.layout
    assert (lay.mouth, lay.emotion, lay.eye, lay.pose) == (500, 30, 6, 6)
    assert lite.appearance.vector_dim == lay.appearance and lite.generator.style_dim == lay.dim
    assert lite.config.image_size == 112 and lite.generator.size == 112


def test_lite_encoder_shapes_at_its_resolution(lite):
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        vec, idm = lite.appearance(x)
        codes = lite.motion(x, mouth=True)
        feat, mouth = lite.audio(torch.rand(2, 1, 80, 20))
    assert vec.shape == (2, lite.layout.appearance)
    # a real 7x7 identity map (stem without max-pool: stride 16), not an upsampled 4x4
    assert lite.appearance.model(x).shape[-2:] == (7, 7)
    assert idm.shape == (2, lite.generator.identity_channels, 7, 7)
    assert (codes.pose.shape, codes.eye.shape, codes.emotion.shape, codes.mouth.shape) == (
        (2, 6), (2, 6), (2, 30), (2, 500))
    assert mouth.shape == (2, 500)


def test_architecture_name_survives_the_weights_file(lite, tmp_path, capsys):
    assert architecture_name(official_config()) == "official"
    assert architecture_name(get_config("tiny")) == "tiny"
    path = lite.save_pretrained(tmp_path / "lite.safetensors")
    loaded = PDFGC.from_pretrained(path)
    assert architecture_name(loaded.config) == "lite"  # JSON round trip (tuples -> lists, int keys -> str)
    cfg = lite_config()
    cfg.motion = dict(cfg.motion, width=32)
    assert architecture_name(cfg) == "custom"
    from pdfgc.cli import main
    assert main(["info", "--weights", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "lite" and info["config"]["image_size"] == 112
    assert info["parameters"]["generator"] == sum(p.numel() for p in lite.generator.parameters())


def test_network_input_and_crop_resolution(lite, tiny):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 224, 224) * 2 - 1
    assert tiny.network_input(x) is x and tiny.to_crop_resolution(x) is x  # identity at 224
    y = lite.network_input(x)
    torch.testing.assert_close(y, F.avg_pool2d(x, 2))  # 224 -> 112: the exact 2x2 box average
    # a smooth image survives the round trip; a constant one exactly; outputs stay in [-1, 1]
    ramp = torch.linspace(-0.9, 0.9, 224)
    smooth = (ramp[None, :] * ramp[:, None]).expand(1, 3, 224, 224)
    back = lite.to_crop_resolution(lite.network_input(smooth))
    assert back.shape == (1, 3, 224, 224) and (back - smooth).abs().max() < 0.02
    torch.testing.assert_close(lite.to_crop_resolution(torch.full((1, 3, 112, 112), 0.3)),
                               torch.full((1, 3, 224, 224), 0.3))
    edges = lite.to_crop_resolution(torch.sign(torch.randn(2, 3, 112, 112)))
    assert edges.min() >= -1 and edges.max() <= 1
    # differentiable (the trainer feeds its 224 crops through it)
    xg = x.clone().requires_grad_(True)
    lite.network_input(xg).sum().backward()
    torch.testing.assert_close(xg.grad, torch.full_like(x, 0.25))


def test_lite_render_path_equals_reference_forward(lite):
    """Generator.render's fast path at the lite channels (batch 1: per-sample weights at 56-112 px; batch 3:
    small layers batched, then per frame; appearance share cached) against the official-order forward."""
    g, k = lite.generator, lite.layout.appearance
    torch.manual_seed(1)
    app = torch.randn(1, k)
    for b in (1, 3):
        s = torch.cat([app.expand(b, -1), torch.randn(b, lite.layout.dim - k)], 1)
        idm = torch.randn(1, g.identity_channels, 7, 7).expand(b, -1, -1, -1)
        with torch.inference_mode():
            ref = g(s, idm)
            for per_sample_from in (56, 1000):
                out = g.render(s, idm, static=k, per_sample_from=per_sample_from)
                assert out.shape == (b, 3, 112, 112)
                assert (out - ref).abs().max() < 1e-4


def test_one_training_step_backprops_through_every_network():
    """Batch of 2 at the lite resolution, through the differentiable paths the trainer uses: every parameter of
    the four networks gets a finite, non-zero gradient, and one optimiser step changes the loss."""
    torch.manual_seed(0)
    model = PDFGC.random(0, lite_config()).train().requires_grad_(True)
    crops = torch.rand(2, 3, 224, 224) * 2 - 1           # official 224 crops
    mels = torch.rand(2, 1, 80, 20)

    def loss_fn():
        src = model.network_input(crops)
        drv = model.network_input(crops.flip(0))
        app, idm = model.appearance(src)
        feat = model.motion.unified_feature(drv)
        codes = model.motion.codes_from_feature(feat, mouth=True)
        _, audio_mouth = model.audio(mels)
        style = model.assemble_style(app, audio_mouth, codes.emotion, codes.eye, codes.pose)
        fake = model.generator(style, idm)
        return (fake - drv).abs().mean() + (codes.mouth - audio_mouth).pow(2).mean()

    loss = loss_fn()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        # a squeeze-excitation bottleneck (a few ReLU units) may be dead at init on two samples; nothing else
        assert p.grad.abs().sum() > 0 or ".se.fc." in name, name
    for net in ("appearance", "motion", "audio", "generator"):
        assert sum(p.grad.abs().sum() > 0 for p in getattr(model, net).parameters()) >= 0.95 * len(
            list(getattr(model, net).parameters())), net
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.0, 0.99))
    opt.step()
    assert loss_fn().item() != loss.item()


def test_pipeline_runs_a_lite_model_at_224(lite, tmp_path):
    """The real pipeline: 224 crops in, lite networks at 112, frames back at 224, mp4 written."""
    pipe = TalkingHeadPipeline(lite, device="cpu", threads=torch.get_num_threads())
    opt = AnimateOptions(pose=str(PD / "motions/pose/681600002"), eyes=str(PD / "motions/eye/id01333_00040/images"),
                         max_frames=9, progress=False)
    out = tmp_path / "lite.mp4"
    res = pipe(need(PD / "anne.png"), audio=need(FIXTURE / "clip2s_16k.wav"), output=out, options=opt,
               layout="pasteback")
    with av.open(str(out)) as c:
        assert res.num_frames == sum(1 for _ in c.decode(video=0)) == 9
    plan = res.plan
    assert plan.appearance.identity.shape == (1, 256, 7, 7) and plan.appearance.vector.shape == (1, 512)
    frames = torch.cat([img for _, img in pipe.render(plan, opt)])
    assert frames.shape == (9, 3, 224, 224) and frames.abs().max() <= 1
    # what the pipeline renders is the generator's frame brought to 224
    style = pipe.family.styles(plan, slice(0, 2))
    with torch.inference_mode():
        direct = lite.to_crop_resolution(lite.generator(style, plan.appearance.identity.expand(2, -1, -1, -1)))
    assert (frames[:2] - direct).abs().max() < 1e-4
