"""The mesh-warp refiner: network (pinned outputs), weights file, runner, losses on known inputs, training resume."""
import csv

import numpy as np
import pytest
import torch

from pdfgc.errors import CheckpointError, InputError
from pdfgc.families.meshwarp import refine_train as R
from pdfgc.families.meshwarp.refiner import (
    FORMAT,
    Refiner,
    RefinerRunner,
    load_refiner,
    refiner_path_for,
    region_mask,
    save_refiner,
)


def _randomised(widths=(4, 6, 8), seed=0, region=True):
    torch.manual_seed(seed)
    m = Refiner(widths, region=region)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.2)
    return m.eval()


def _inputs(b=1, s=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    warp = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    aux = torch.rand(b, 4, s, s, generator=g)
    src = torch.rand(b, 3, s // 2, s // 2, generator=g) * 2 - 1
    return warp, aux, src


def test_untrained_refiner_returns_the_warp_exactly():
    torch.manual_seed(0)
    m = Refiner((4, 6, 8), region=False).eval()
    warp, aux, src = _inputs()
    out, mask = m(warp, aux, src)
    assert torch.equal(out, warp)
    assert torch.allclose(mask, torch.full_like(mask, 1 / (1 + np.exp(2.0))))
    m.region = True
    out, gated = m(warp, aux, src)
    assert torch.equal(out, warp) and torch.allclose(gated, mask * region_mask(aux))


def test_tiny_random_refiner_pinned_values():
    m = _randomised(region=False)
    warp, aux, src = _inputs()
    with torch.no_grad():
        out, mask = m(warp, aux, src)
    assert out.shape == (1, 3, 16, 16) and mask.shape == (1, 1, 16, 16)
    got = [float(out[0, 0, 0, 0]), float(out[0, 1, 5, 7]), float(out[0, 2, 15, 15]), float(mask[0, 0, 8, 3]),
           float(out.mean())]
    assert got == pytest.approx(PINNED, abs=1e-4)


PINNED = [0.538292, 1.038959, 0.122309, 0.503363, -0.030780]


def test_region_mask_expected_values():
    aux = torch.zeros(1, 4, 224, 224)
    aux[0, 0, 100, 100] = 1.0          # one mouth-interior pixel: not dilated, feathered by a 5x5 box
    aux[0, 2, 50, 50] = 1.0            # one lid pixel: dilated to 7x7, then the 5x5 box
    aux[0, 3, 150:160, 150:160] = 0.5  # a mild stretch: left to the warp
    aux[0, 3, 190, 190] = 0.75         # a strong one: (0.75 - 0.5) / 0.5, dilated to 5x5
    aux[0, 3, 106, 100] = 1.0          # stretch within LIP_GUARD of the mouth interior (the lips): left to the warp
    g = region_mask(aux)[0, 0]
    assert g.shape == (224, 224)
    assert float(g[100, 100]) == pytest.approx(1 / 25) and float(g[102, 102]) == pytest.approx(1 / 25)
    assert float(g[103, 100]) == 0.0
    assert float(g[50, 50]) == pytest.approx(1.0) and float(g[51, 50]) == pytest.approx(1.0)
    assert float(g[52, 50]) == pytest.approx(4 / 5)
    assert float(g[55, 50]) == pytest.approx(1 / 5) and float(g[56, 50]) == 0.0
    assert float(g[155, 155]) == 0.0 and float(g[106, 100]) == 0.0 and float(g[104, 100]) == 0.0
    assert float(g[190, 190]) == pytest.approx(0.5) and float(g[194, 190]) == pytest.approx(0.5 / 5)
    assert float(g[10, 200]) == 0.0    # skin, hair, background: exactly the warp
    assert float(region_mask(torch.zeros(2, 4, 32, 32)).abs().sum()) == 0.0


def test_weights_round_trip_and_refusals(tmp_path):
    m = _randomised()
    p = save_refiner(m, tmp_path / "meshwarp_refiner.safetensors", {"step": 3})
    back = load_refiner(p)
    assert back.widths == (4, 6, 8) and back.info["step"] == 3 and back.region
    assert not load_refiner(p, region=False).region
    warp, aux, src = _inputs()
    with torch.no_grad():
        assert torch.equal(back(warp, aux, src)[0], m(warp, aux, src)[0])
    assert refiner_path_for(tmp_path / "meshwarp.safetensors") == tmp_path / "meshwarp_refiner.safetensors"
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something"})
    with pytest.raises(CheckpointError, match=FORMAT):
        load_refiner(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="junk.safetensors: cannot read safetensors file"):
        load_refiner(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="missing.safetensors: refiner weights file not found"):
        load_refiner(tmp_path / "missing.safetensors")


def test_runner_at_224_and_above():
    torch.manual_seed(0)
    untrained = Refiner((4, 6, 8)).eval()
    rng = np.random.default_rng(0)
    portrait = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for s in (224, 256):
        frame = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        aux = {k: np.zeros((s, s), np.float32) for k in ("mouth", "eyes", "lids", "stretch")}
        assert np.array_equal(RefinerRunner(untrained, portrait).apply(frame, aux), frame)
        gated = RefinerRunner(_randomised(), portrait)
        assert np.array_equal(gated.apply(frame, aux), frame)          # empty gate: the warp, network skipped
        out = RefinerRunner(_randomised(region=False), portrait).apply(frame, aux)
        assert out.shape == frame.shape and out.dtype == np.uint8 and not np.array_equal(out, frame)
        aux["mouth"][s // 2:s // 2 + s // 8, s // 3:s // 2] = 1.0      # a mouth interior: painted there only
        out = gated.apply(frame, aux)
        changed = np.nonzero(np.any(out != frame, axis=2))
        assert len(changed[0]) > 0
        assert changed[0].min() >= s // 2 - 8 and changed[0].max() < s // 2 + s // 8 + 8
        # the network on the gate's bounding box (plus margin) gives what the whole frame gives
        assert np.abs(gated._run(frame[None], [aux], s)[0].astype(int) - out.astype(int)).max() <= 1


# ---------------------------------------------------------------------------------------------- losses


def test_losses_on_known_inputs():
    a = torch.zeros(1, 3, 16, 16)
    b = torch.full_like(a, 0.5)
    assert float(R.weighted_l1(a, b)) == pytest.approx(0.5)
    w = torch.ones(1, 1, 16, 16)
    w[..., :8, :] = 3.0
    b2 = torch.zeros_like(a)
    b2[..., :8, :] = 1.0   # error 1 on the heavily weighted half only: (3*1*128) / (3*128 + 128) = 0.75
    assert float(R.weighted_l1(a, b2, w)) == pytest.approx(0.75)
    # a constant offset has no gradient error; a ramp of slope 0.1 along x against a flat image has 0.1 at scale 1
    assert float(R.gradient_loss(a, b)) == pytest.approx(0.0, abs=1e-7)
    ramp = torch.arange(16.0).mul(0.1).expand(1, 3, 16, 16)
    # per scale s (1, 2, 4) the x-difference of the pooled ramp is 0.1*s, y is 0: 0.5*(0.1 s) averaged = 0.1167
    assert float(R.gradient_loss(ramp, a)) == pytest.approx(0.5 * 0.1 * (1 + 2 + 4) / 3, rel=1e-5)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(R.ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    # two constant images: SSIM = (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1)
    c1 = 0.02 ** 2
    assert float(R.ssim(a, b)) == pytest.approx(c1 / (0.25 + c1), rel=1e-4)
    d = R.losses(a, b)
    assert float(d["total"]) == pytest.approx(0.5 + R.GRAD_WEIGHT * 0 + R.SSIM_WEIGHT * (1 - c1 / (0.25 + c1)),
                                              rel=1e-4)
    assert R.psnr(np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)) == pytest.approx(0.0)


def test_lip_band_is_the_ring_around_the_mouth_edge():
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 10:30] = 255
    band = R.lip_band(m, px=3)
    # dilated by 3 (rows/cols 7..32) minus eroded by 3 (13..26): 26^2 - 14^2 pixels
    assert band.sum() == 26 ** 2 - 14 ** 2
    assert band[20, 20] == 0 and band[10, 20] == 1 and band[7, 20] == 1 and band[6, 20] == 0
    assert R.lip_band(np.zeros((8, 8), np.uint8)).sum() == 0


def test_adversarial_losses_on_known_inputs():
    disc = R.PatchDiscriminator(width=4)
    with torch.no_grad():   # a discriminator that says c everywhere: LSGAN g = (c-1)^2, d = (c-1)^2 + c^2
        for p in disc.parameters():
            p.zero_()
        disc.net[-1].bias.fill_(0.25)
    out = torch.zeros(2, 3, 32, 32, requires_grad=True)
    tgt = torch.zeros(2, 3, 32, 32)
    gate = torch.ones(2, 1, 32, 32)
    g, d = R.adversarial_losses(disc, out, tgt, gate)
    assert float(g.detach()) == pytest.approx(0.75 ** 2) and float(d.detach()) == pytest.approx(0.75 ** 2 + 0.25 ** 2)
    g.backward()   # the generator's term leaves the discriminator alone
    assert all(p.grad is None for p in disc.parameters())
    d.backward()   # ... and the discriminator's term leaves the refiner alone
    assert float(out.grad.abs().sum()) == 0.0 and disc.net[-1].bias.grad is not None
    # patches the gate does not reach do not count: a discriminator right on one half and wrong on the other
    with torch.no_grad():
        disc.net[-1].bias.zero_()
    half = torch.zeros(2, 1, 32, 32)
    half[..., :16] = 1.0
    fake = torch.zeros(2, 3, 32, 32)
    g0, _ = R.adversarial_losses(disc, fake, tgt, half)
    assert float(g0) == pytest.approx(1.0)
    g1, _ = R.adversarial_losses(disc, fake, tgt, torch.zeros(2, 1, 32, 32))
    assert float(g1) == 0.0


def test_feature_loss_on_known_inputs():
    from pdfgc.families.meshwarp.dlib_resnet import DlibFaceResNet

    torch.manual_seed(0)
    net = DlibFaceResNet().eval().requires_grad_(False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert float(R.feature_loss(net, x, x)) == 0.0
    y = x.clone().requires_grad_(True)
    far = R.feature_loss(net, y, -x)
    near = R.feature_loss(net, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1), x)
    assert float(far.detach()) > float(near) > 0.0
    far.backward()   # the gradient reaches the image, not the frozen network
    assert float(y.grad.abs().sum()) > 0.0 and all(p.grad is None for p in net.parameters())


def test_feature_loss_without_faceapi_weights_names_the_setup(monkeypatch, tmp_path):
    import pdfgc.families.meshwarp.dlib_resnet as D

    monkeypatch.setattr(D, "find_faceapi_model_dir", lambda: None)
    with pytest.raises(InputError, match="npm install"):
        R.train(_tiny_cache(), tmp_path / "run", steps=1, feat=0.1, log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_region_boxes_cover_mouth_and_eyes():
    mesh = np.zeros((478, 3))
    mesh[:, :2] = 100.0
    mesh[list(R.LIP_OUTER), 0] = np.linspace(90, 130, len(R.LIP_OUTER))
    mesh[list(R.LIP_OUTER), 1] = 160.0
    b = R.region_boxes(mesh)
    assert b.shape == (3, 4)
    assert b[0, 0] <= 90 and b[0, 2] >= 131 and b[0, 1] <= 160 <= b[0, 3]


# ---------------------------------------------------------------------------------------------- training


def _tiny_cache(n=6, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    warp = np.clip(target.astype(int) + rng.integers(-30, 30, target.shape), 0, 255).astype(np.uint8)
    source = target[:, ::2, ::2].copy()
    aux = rng.integers(0, 256, (n, 224, 224, 4), dtype=np.uint8)
    boxes = np.tile(np.array([[80, 140, 150, 190], [50, 80, 100, 110], [120, 80, 170, 110]], np.int32), (n, 1, 1))
    return R.PairCache(warp, target, source, aux, boxes, {})


@pytest.mark.parametrize("adv,feat", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)],
                         ids=["reconstruction", "adversarial", "feature"])
def test_two_steps_then_resume_equals_uninterrupted(tmp_path, adv, feat):
    from pdfgc.families.meshwarp.dlib_resnet import DlibFaceResNet

    cache = _tiny_cache()
    torch.manual_seed(1)
    net = DlibFaceResNet().eval().requires_grad_(False) if feat else None   # random weights: the loss's plumbing
    # adversarial: the discriminator takes part from step 1 on, so its state must survive the resume too
    kw = dict(batch=2, crop=32, lr=1e-2, seed=0, ckpt_every=100, log_every=1, widths=(4, 6, 8), log=lambda *_: None,
              adv=adv, adv_start=1, feat=feat, feat_net=net)
    full = R.train(cache, tmp_path / "a", steps=2, **kw)
    # interrupted after step 1 (minutes=0 stops, checkpointed, after the first step), then resumed
    part = R.train(cache, tmp_path / "b", steps=2, minutes=0.0, **kw)
    assert not all(torch.equal(p, q) for p, q in zip(part.state_dict().values(), full.state_dict().values()))
    with open(tmp_path / "b" / "log.csv", "a") as f:   # a row a killed run logged past its checkpoint
        f.write("99,1,0,0,0,0,0,,,,\n")
    with pytest.raises(InputError, match="--resume"):   # a run folder with a checkpoint is continued only when asked
        R.train(cache, tmp_path / "b", steps=2, **kw)
    resumed = R.train(cache, tmp_path / "b", steps=2, resume=True, **kw)
    for (k, p), q in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), k
    with open(tmp_path / "b" / "log.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2]
    assert load_refiner(tmp_path / "b" / "refiner.safetensors").info["step"] == 2
    b1, b2 = R.sample_batch(cache, 5, 0, 2, 32), R.sample_batch(cache, 5, 0, 2, 32)
    assert all(torch.equal(x, y) for x, y in zip(b1, b2))


def test_pair_cache_is_built_once_per_corpus_and_renderer(prepared_corpus, tmp_path):
    logs = []
    root = R.build_cache(prepared_corpus, tmp_path / "cache", "train", log=logs.append)
    c = R.open_cache(root)
    assert len(c) > 0 and c.warp.shape[1:] == (224, 224, 3) and c.aux.shape[-1] == 4
    assert c.meta["aux_version"] == R.AUX_VERSION and c.meta["data"] == str(prepared_corpus.resolve())
    stamp = (root / "warp.npy").stat().st_mtime_ns
    R.build_cache(prepared_corpus, tmp_path / "cache", "train", log=logs.append)   # the same: kept
    assert (root / "warp.npy").stat().st_mtime_ns == stamp and not any("rebuilding" in m for m in logs)
    R.build_cache(prepared_corpus, tmp_path / "cache", "train", seed=1, log=logs.append)   # another seed: rebuilt
    assert any("rebuilding" in m for m in logs)
    with pytest.raises(InputError):   # a cache does not stand in for a missing corpus
        R.build_cache(tmp_path / "nothing", tmp_path / "cache", "train")


def test_cli_bad_corpus_is_one_error_line(tmp_path, capsys):
    assert R.main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"),
                   "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pdfgc: error:")


# ---------------------------------------------------------------------------------------------- integration


def _tiny_params(path):
    from pdfgc.families.meshwarp import codes as C
    from pdfgc.families.meshwarp.params import MeshParams, save_params

    rng = np.random.default_rng(0)
    canon = rng.normal(size=(478, 3))
    basis = np.zeros((2, 478, 3))
    basis[:, C.MOUTH_POINTS] = rng.normal(size=(2, len(C.MOUTH_POINTS), 3))
    return save_params(MeshParams(mean_shape=canon, mouth_basis=basis, emotion_basis=basis.copy(),
                                  emotion_from_mouth=np.zeros((2, 2))), path)


def test_model_finds_the_refiner_beside_its_params_and_the_option_turns_it_off(tmp_path):
    from pdfgc.families.meshwarp.model import MeshWarpModel
    from pdfgc.media.preprocess import to_uint8
    from tests.conftest import DATA, need

    params = _tiny_params(tmp_path / "mw.safetensors")
    assert MeshWarpModel.from_pretrained(params).refiner is None           # no refiner file: the warp alone
    save_refiner(_randomised(), refiner_path_for(params))
    model = MeshWarpModel.from_pretrained(params)
    assert model.refiner is not None and model.refiner.widths == (4, 6, 8)
    assert MeshWarpModel.from_pretrained(params, refiner=False).refiner is None
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        MeshWarpModel.from_pretrained(params, refiner=tmp_path / "missing.safetensors")

    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    pipe = TalkingHeadPipeline(model, device="cpu", threads=1)
    anne = need(DATA / "pdfgc" / "anne.png")
    frames, plans = {}, {}
    for on in (True, False):
        opt = AnimateOptions(lips="still", duration=0.08, progress=False, refiner=on)
        plan = plans[on] = pipe.plan(anne, None, opt)
        assert (plan.appearance.refiner is not None) == on
        frames[on] = np.concatenate([to_uint8(f) for _, f in pipe.render(plan, opt)])
    warp = plan.appearance.renderer.render(plan.appearance.mesh)   # still lips: every frame is the portrait's own
    assert np.array_equal(frames[False][0], warp)
    assert frames[True].shape == frames[False].shape
    # the refiner bound to the portrait, on the frame the warp gives (the gate decides where it paints, if anywhere)
    on = plans[True].appearance
    assert np.array_equal(frames[True][0], on.refiner.apply(*on.renderer.render(on.mesh, return_aux=True)))


def test_refiner_option_renders_with_the_default_warp(tmp_path):
    """--refiner paints over the default renderer's frames (session 33: the refiner trains on them): the real mouth
    bank, the sliding skin lid, the stretched fill with the cheek texture, no mirrored far side; no older warp."""
    from pdfgc.families.meshwarp.model import MeshWarpModel
    from pdfgc.families.meshwarp.warp import WarpRenderer
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    from tests.conftest import DATA, need

    params = _tiny_params(tmp_path / "mw.safetensors")
    save_refiner(_randomised(), refiner_path_for(params))
    pipe = TalkingHeadPipeline(MeshWarpModel.from_pretrained(params), device="cpu", threads=1)
    anne = need(DATA / "pdfgc" / "anne.png")
    st = {on: pipe.plan(anne, None, AnimateOptions(lips="still", duration=0.04, progress=False, refiner=on)).appearance
          for on in (True, False)}
    assert st[True].refiner is not None and st[False].refiner is None
    default = WarpRenderer(st[True].image, st[True].mesh)

    def setup(r):
        plain = (bool, int, float, str)
        return (r.depth_gain, r._mirror_src_tri is False, r._fill_from, r._detail is not None,
                [(type(p).__name__, sorted((k, v) for k, v in vars(p).items() if isinstance(v, plain)))
                 for p in r.parts])
    assert setup(st[True].renderer) == setup(default) == setup(st[False].renderer)
    eyes, mouth = st[True].renderer.parts
    assert eyes.use_lids == "skin" and mouth.use_mouth is True and mouth._mouths is not None   # the bank's mouths
    assert st[True].renderer._mirror_src_tri is False and st[True].renderer._detail is not None


def test_shipped_refiner_paints_teeth_and_lash_lines_only_inside_its_gate():
    """The shipped weights on anne.png over the default warp: an open mouth's dark interior gets lit (teeth), closed
    lids a darker lash line, and every pixel outside the region gate stays the warp's."""
    from pdfgc.families.meshwarp.model import DEFAULT_PATH
    from pdfgc.families.meshwarp.refiner import region_mask_np
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth
    from pdfgc.media.face import FaceMeshDetector, load_image_rgb
    from tests.conftest import DATA, need

    img = load_image_rgb(need(DATA / "pdfgc" / "anne.png"))
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        mesh = det.detect(img)[0]
    runner = RefinerRunner(load_refiner(refiner_path_for(DEFAULT_PATH)), img)
    r = WarpRenderer(img, mesh)
    warp, aux = r.render(open_mouth(mesh, 0.08), return_aux=True)
    out = runner.apply(warp, aux)
    inside = aux["mouth"] > 0.5
    assert inside.sum() > 200
    # measured: 88 -> 138 grey levels over the bank's dark mouth (session 33; the refiner of sessions 11-32 over the
    # painted black hole: 60 -> 154)
    assert out[inside].mean() > warp[inside].mean() + 35
    outside = region_mask_np(aux) == 0
    assert np.array_equal(out[outside], warp[outside])
    warp, aux = r.render(close_eyes(mesh, 1.0), return_aux=True)
    out = runner.apply(warp, aux)
    lids = aux["lids"] > 0.5
    assert lids.sum() > 100
    # a dark lash line, kept or darkened (measured: darkest 15 -> 0 over the sliding lid, which draws its own; the
    # refiner of sessions 11-32 over the painted flat skin: 58 -> 18, one trained without the GAN term: 54)
    assert int(out[lids].min()) <= int(warp[lids].min()) and int(out[lids].min()) < 30
