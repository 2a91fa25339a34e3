"""The live session (pdfgc/live): lips equal to the offline plan's on the same audio, controls between chunks,
memory freed on close, bad input refused."""
import gc
import weakref

import numpy as np
import pytest
import torch

from pdfgc.errors import InputError

EX = __import__("pathlib").Path(__file__).resolve().parents[1] / "pdfgc" / "ui" / "examples"
# the live head against the offline plan on this clip (README "Live"): the head distilled from the offline one, with
# a shorter look-ahead, measured 0.976 here (the offline head and rules at hop 8: 0.981); the 0.95
LIVE_VS_OFFLINE_R = 0.95


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    from pdfgc.pipeline import TalkingHeadPipeline
    return TalkingHeadPipeline.from_default(device="cpu", threads=1)


@pytest.fixture(scope="module")
def speech(pipe):
    return pipe.load_speech(EX / "speech.m4a").wav16k[:16000 * 3]


def feed(session, wav, step=480):
    out = []
    for i in range(0, len(wav), step):
        out += session.push(wav[i:i + step])
    return out


def test_live_lips_match_offline(pipe, speech):
    """rules="offline": the offline head and rules on a short hop give the offline plan's lips (r >= 0.95, the stated
    tolerance); the default live head and rules stay close to them (r >= LIVE_VS_OFFLINE_R: the distilled head, a
    shorter window) and keep the silent lead closed."""
    from pdfgc.live import LiveSession
    wav = np.concatenate([np.zeros(12000, np.float32), speech, np.zeros(8000, np.float32)])
    offline = pipe.plan(EX / "anne.png", wav, progress=False).mouth.numpy()
    for rules, need in (("offline", 0.95), ("live", LIVE_VS_OFFLINE_R)):
        with LiveSession(EX / "anne.png", pipeline=pipe, rules=rules) as s:
            assert s.rules == rules
            frames = feed(s, wav, 333) + s.finish()   # an odd chunk size: not aligned with frames or VAD windows
        assert [f.index for f in frames] == list(range(len(frames)))
        live = np.stack([f.mouth for f in frames])
        n = min(len(live), len(offline))
        assert n >= len(wav) // 640 - 2
        assert np.all(live[:5] == 0) and np.all(offline[:5] == 0)   # the silent lead closed in both, exactly
        r = np.corrcoef(live[:n].ravel(), offline[:n].ravel())[0, 1]
        assert r >= need, (rules, r)
        moving = np.abs(offline[:n]).max(1) > 0.2
        assert moving.sum() > 20 and np.abs(live[:n][moving]).max(1).mean() > 0.2


def test_live_session_equals_its_head_and_rules_on_the_whole_file(pipe, speech):
    """The default session fed in odd pieces gives the live head and the live rules run on the whole file at once
    (the head on the same 2 s chunks, silero's flags of the whole file), frame for frame: the rolling rules read the
    voice flags past the last final code (the lead) as the whole-file rules do. Before this was checked, a frame
    whose codes were the last known lost the voice of the frames after it and stayed closed at phrase starts (the
    held-out voices' r with the offline lips: 0.82 instead of 0.90 on the hardest one)."""
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp.lips import live_rules, voice_flags
    from pdfgc.live import LiveSession
    wav = np.concatenate([np.zeros(12000, np.float32), speech, np.zeros(8000, np.float32)])
    with LiveSession(EX / "anne.png", pipeline=pipe, threaded=False) as s:
        frames = feed(s, wav, 333) + s.finish()
        head, hop, lead, gain = s.head, s.stream.hop, s.rules_ahead, s.mouth_gain
    n = len(frames)
    stream = head.stream(pipe.family.model.lips.encoder, n, hop)
    raw = np.zeros((n, head.bias.shape[0]), np.float32)
    feat = np.zeros(n, bool)   # voice over music: the offline head's classifier on the live head's windows
    voice = pipe.family.model.lips.head.voice
    with torch.no_grad():
        for first, slab in stream.push(wav) + stream.finish():
            z = head.project(torch.from_numpy(slab))
            y = head.decode(z, hop).numpy()
            raw[first:first + hop] = y[:min(hop, n - first)]
            if voice is not None:
                p = voice(L.voice_windows(head, z, hop)).numpy()
                feat[first:first + hop] = (p >= L.VOICE_FEATURES)[:min(hop, n - first)]
    probs = L.voice_probs(wav)
    extra = L.frames_of_windows(probs >= L.VAD_LOW, n) & feat
    want = live_rules(raw, voice_flags(wav, n), head.gap_direction.numpy(), float(head.gap_rms), lead=lead,
                      extra=extra) * gain
    got = np.stack([f.mouth for f in frames])
    assert lead == 2 and np.abs(want).max(1).astype(bool).sum() > 30
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_live_head_reads_no_speech_past_the_stated_lookahead(pipe, speech):
    """Feed the speech up to what frame f needs (``frame_needs``), then loud noise instead of the rest: frames up to
    f come out, final, equal to those of the session fed the real speech; the stated look-ahead is at most 150 ms
    (the issue's 250 ms delay minus ~100 ms of compute at p95; the distilled head's: 144 ms, its chunk ends 140 ms
    after a hop's first frame starts and its rules read the voice flags of 2 frames later) and is what the default
    session waits for."""
    from pdfgc.live import LiveSession
    wav = speech[:16000 * 2]
    with LiveSession(EX / "anne.png", pipeline=pipe, threaded=False) as s:   # out in the push completing them
        stated = s.lookahead_ms
        assert s.rules == "live" and stated <= 150
        ref = {f.index: f.mouth for f in feed(s, wav, 160)}
        needs = [s.frame_needs(f) for f in (10, 11, 25)]
    assert max(n - f * 640 for n, f in zip(needs, (10, 11, 25))) <= stated * 16
    rng = np.random.default_rng(1)
    moved = 0
    for f, need in zip((10, 11, 25), needs):
        noisy = wav.copy()
        noisy[need:] = np.clip(rng.normal(0, 0.3, len(wav) - need), -1, 1)
        with LiveSession(EX / "anne.png", pipeline=pipe, threaded=False) as s:
            got = {x.index: x.mouth for x in feed(s, noisy[:need], 160)}
            assert max(got) >= f                                  # frame f is final with this much speech
            for i in range(f + 1):
                np.testing.assert_allclose(got[i], ref[i], atol=1e-5)
            later = {x.index: x.mouth for x in feed(s, noisy[need:], 160)}
        moved += sum(np.abs(later[i] - ref[i]).max() > 1e-3 for i in later if i in ref)
    assert moved > 0   # the noise does change the frames after: the check can fail


def test_stated_delay_matches_what_the_session_does(pipe, speech):
    """No frame comes out before the samples it needs (``frame_needs``), and each comes out in the push that
    brings them (the encoder on the calling thread): the most speech any frame waited for past its first sample is
    the stated ``lookahead_ms`` (within one 10 ms push). With the encoder on its worker thread (the default), the
    same frames come out, in order, none before its samples."""
    from pdfgc.live import LiveSession
    for rules in ("live", "offline"):
        with LiveSession(EX / "anne.png", pipeline=pipe, rules=rules, threaded=False) as s:
            waited, sent = [], 0
            for i in range(0, 16000 * 2, 160):
                sent += len(speech[i:i + 160])
                for f in s.push(speech[i:i + 160]):
                    assert sent >= s.frame_needs(f.index) > sent - 160
                    waited.append(sent - f.index * 640)
            stated = s.lookahead_ms
        assert len(waited) > 30
        assert stated - 10 <= max(waited) / 16 < stated + 10, (rules, max(waited) / 16, stated)
    with LiveSession(EX / "anne.png", pipeline=pipe, threaded=False) as s:
        ref = feed(s, speech, 480) + s.finish()
    with LiveSession(EX / "anne.png", pipeline=pipe) as s:
        got, sent = [], 0
        for i in range(0, len(speech), 480):
            sent += len(speech[i:i + 480])
            for f in s.push(speech[i:i + 480]):
                assert sent >= s.frame_needs(f.index)
                got.append(f)
        got += s.finish()
    assert [f.index for f in got] == [f.index for f in ref] == list(range(len(ref)))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.mouth, b.mouth, atol=1e-5)


def test_live_rules_close_in_silence_open_on_a_loud_vowel(pipe, speech):
    """The default (live) session: 1.5 s of silence, the example's speech, 1 s of silence: every frame of the
    silences more than the hangover from the speech closed; the loudest 40 ms of the speech (a vowel) opens the lip
    gap past half the median speaker's gap RMS."""
    from pdfgc.live import LiveSession
    wav = np.concatenate([np.zeros(24000, np.float32), speech, np.zeros(16000, np.float32)])
    with LiveSession(EX / "anne.png", pipeline=pipe) as s:
        frames = feed(s, wav, 480) + s.finish()
        g, rms = s.head.gap_direction.numpy(), float(s.head.gap_rms)
    mouth = np.stack([f.mouth for f in frames])
    n = len(mouth)
    padded = np.zeros(n * 640, np.float32)
    padded[:min(len(wav), n * 640)] = wav[:n * 640]
    env = np.sqrt(np.mean(padded.reshape(n, 640) ** 2, 1))
    heard = np.flatnonzero(env > 0)
    assert np.all(mouth[:heard[0] - 2] == 0) and np.all(mouth[heard[-1] + 5:] == 0)
    loud = int(env.argmax())
    assert (mouth[loud - 1:loud + 2] @ g).max() > 0.5 * rms


def test_controls_take_effect_at_next_chunk(pipe, speech):
    from pdfgc.live import LiveSession
    with LiveSession(EX / "anne.png", pipeline=pipe, seed=3) as s:
        before = feed(s, speech[:16000 * 2])
        s.set_controls(yaw=12.0, lip_level=0.0)
        after = feed(s, speech[16000 * 2:])
        assert len(before) > 20 and len(after) > 8
        yaw_before = np.array([f.pose[0] for f in before])
        assert yaw_before.std() > 0.05                       # generated motion while nothing drives the yaw
        assert np.allclose([f.pose[0] for f in after], after[0].pose[0])   # held from the very next frame
        assert abs(after[0].pose[0] - yaw_before[-1]) > 1.0
        assert max(np.abs(f.mouth).max() for f in before) > 0.2
        assert all(np.abs(f.mouth).max() == 0 for f in after)              # lip level 0: closed at once
        with pytest.raises(InputError, match="emotion"):
            s.set_controls(emotion="no-such-label")
        assert s.controls.lip_level == 0.0                   # a refused change leaves the controls as they were


def test_a_label_shades_the_skin_live_as_offline(pipe):
    """The live frames carry the label's expression shading (the ratio images), as `animate`'s do; none without."""
    from pdfgc.live import LiveSession
    quiet = np.zeros(16000, np.float32)
    with LiveSession(EX / "anne.png", pipeline=pipe, seed=3) as s:
        seen = []
        render = s.state.renderer.render
        s.state.renderer.render = lambda m, **kw: (seen.append(kw.get("texture")), render(m, **kw))[1]
        feed(s, quiet[:8000])
        s.set_controls(emotion="happy", emotion_level=1.0)
        feed(s, quiet[8000:])
        own = s.state.expression.image              # the portrait's own pixels, which the shading multiplies
    plain = [t for t in seen[:8] if t is None]
    shaded = [t for t in seen[-8:] if t is not None]
    assert len(plain) == 8 and len(shaded) == 8
    assert shaded[0].shape == own.shape and np.abs(shaded[0].astype(int) - own).max() > 5


def test_close_frees_the_session(pipe, speech):
    from pdfgc.live import LiveSession
    s = LiveSession(EX / "anne.png", pipeline=pipe)
    feed(s, speech[:8000])
    refs = [weakref.ref(s.state), weakref.ref(s.state.renderer), weakref.ref(s.stream), weakref.ref(s.vad)]
    s.close()
    gc.collect()
    assert all(r() is None for r in refs)
    with pytest.raises(InputError, match="closed"):
        s.push(speech[:100])


def test_silence_keeps_the_mouth_closed(pipe):
    from pdfgc.live import LiveSession
    rng = np.random.default_rng(0)
    with LiveSession(EX / "anne.png", pipeline=pipe) as s:
        frames = feed(s, (0.001 * rng.standard_normal(16000 * 2)).astype(np.float32)) + s.finish()
    assert len(frames) == 50 and all(np.abs(f.mouth).max() == 0 for f in frames)


def test_bad_input(pipe, speech):
    from pdfgc.live import LiveSession
    with pytest.raises(InputError, match="face"):
        LiveSession(np.full((256, 256, 3), 128, np.uint8), pipeline=pipe)
    with LiveSession(EX / "anne.png", pipeline=pipe) as s:
        with pytest.raises(InputError, match="NaN"):
            s.push(np.full(320, np.nan, np.float32))
        with pytest.raises(InputError, match="mono"):
            s.push(np.zeros((320, 2), np.float32))
        with pytest.raises(InputError, match="32768"):
            s.push(np.full(320, 1000, np.int16))
        with pytest.raises(InputError, match="numbers"):
            s.push("not audio")
        assert s.push(speech[:320]) == []                    # the session still works after refusals


def test_server_websocket_round_trip_and_refusals(pipe, speech):
    """`pdfgc live`'s WebSocket: frames come back as JPEGs for pushed audio; a second connection, bad messages and a
    portrait without a face get a clear message; a dropped connection frees the slot."""
    import json
    import struct

    import cv2
    from starlette.testclient import TestClient

    from pdfgc.live.server import build_app
    client = TestClient(build_app(pipe))
    assert "WebSocket" in client.get("/").text
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "portrait": "example", "sample_rate": 16000}))
        assert json.loads(ws.receive_text())["type"] == "ready"
        with client.websocket_connect("/ws") as second:
            m = json.loads(second.receive_text())
            assert m["type"] == "error" and "one at a time" in m["message"]
        ws.send_text(json.dumps({"type": "controls", "lip_level": 0.5}))
        ws.send_bytes(speech[:16000].astype("<f4").tobytes())
        got = ws.receive()
        data = got.get("bytes")
        assert data is not None and struct.unpack("<I", data[:4])[0] == 0
        img = cv2.imdecode(np.frombuffer(data[4:], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] >= 224
    with client.websocket_connect("/ws") as ws:   # the slot was freed when the first one left
        ws.send_text(json.dumps({"type": "start", "portrait": "data:image/png;base64,AAAA"}))
        assert "not a readable image" in json.loads(ws.receive_text())["message"]
    with client.websocket_connect("/ws") as ws:
        ok, png = cv2.imencode(".png", np.full((256, 256, 3), 128, np.uint8))
        import base64
        url = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()
        ws.send_text(json.dumps({"type": "start", "portrait": url}))
        assert "face" in json.loads(ws.receive_text())["message"]


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_head_motion_steps_equal_the_offline_process(level):
    """The live head motion is motion.py's process one frame at a time: same seed, same activity -> same angles."""
    from pdfgc.families.meshwarp.motion import MotionModel
    from pdfgc.live.session import _HeadMotion
    m = MotionModel.load()
    a = m.params["activity"]
    loud = np.full(200, a["rest"] + level * (a["speak"] - a["rest"]))
    offline = m.head_angles(loud, seed=5)
    live = _HeadMotion(m, seed=5)
    steps = np.stack([live.step(level) for _ in range(200)])
    np.testing.assert_allclose(steps, offline, atol=1e-9)
    assert np.abs(offline).max() > 0.5
