"""Voice over music (issue 24): the offline lips' voice gate with the Whisper-feature classifier
(``lips.VoiceFeatures``) opens on a voice that silero-vad misses under a music bed, stays shut on silence, and opens
on few frames of music with no voice. Synthetic signals: a glottal pulse train through changing vowel formants, and
chords with a beat."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pdfgc.errors import CheckpointError
from pdfgc.families.meshwarp import lips as L

SR = 16000


def voiced(sec: float) -> np.ndarray:
    """A glottal pulse train (f0 130-190 Hz) through vowel formants that change every 200 ms, 4 syllables a second."""
    from scipy.signal import lfilter

    t = np.arange(int(sec * SR)) / SR
    ph = np.cumsum(160 + 30 * np.sin(2 * np.pi * 0.7 * t)) / SR
    src = np.r_[0, np.diff(np.floor(ph)) > 0].astype(float)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    out, seg = np.zeros_like(t), int(0.2 * SR)
    for k in range(0, len(t), seg):
        y = src[k:k + seg]
        for f in vowels[(k // seg) % len(vowels)]:
            r, th = np.exp(-np.pi * 80 / SR), 2 * np.pi * f / SR
            y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y)
        out[k:k + len(y)] = y
    out *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def music(sec: float, seed: int = 0) -> np.ndarray:
    """Sustained three-note chords with 5 harmonics each, one a second, and a kick + noise hit every 0.5 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sec * SR)) / SR
    out = np.zeros_like(t)
    chords = [(220, 277.2, 329.6), (196, 246.9, 293.7), (174.6, 220, 261.6)]
    for i in range(int(np.ceil(sec))):
        s = slice(i * SR, min((i + 1) * SR, len(t)))
        for f in chords[i % 3]:
            for h in range(1, 6):
                out[s] += np.sin(2 * np.pi * f * h * t[s]) / h ** 1.5
    for k in range(0, len(t), SR // 2):
        n, m = min(4000, len(t) - k), min(800, len(t) - k)
        out[k:k + n] += 3 * np.sin(2 * np.pi * 60 * np.arange(n) / SR) * np.exp(-np.arange(n) / 800)
        out[k:k + m] += 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / 150)
    return (0.2 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="module")
def s2m():
    from pdfgc.families.meshwarp.params import load_params

    try:
        head = L.from_params(load_params())
        L._silero()
        return L.SpeechToMouth(head)
    except CheckpointError as e:
        pytest.skip(str(e))


def gates(s2m, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(wav) // 640
    torch.set_num_threads(1)
    _, voice = s2m.raw_codes_and_voice(wav, n)
    return L.voice_activity(wav, n), L.voice_activity(wav, n, voice), voice


def test_shipped_head_carries_the_voice_classifier(s2m):
    assert s2m.head.voice is not None
    assert s2m.head.voice.weight.shape == (s2m.head.window.frames * s2m.head.proj.shape[1],)


def test_voice_under_music_opens_where_silero_alone_does_not(s2m):
    silero, gate, _ = gates(s2m, voiced(6) + music(6))
    assert silero.mean() < 0.15, silero.mean()
    assert gate.mean() > 0.3, gate.mean()
    assert (gate | ~silero).all()   # it only adds frames to silero's


def test_silence_and_music_without_voice(s2m):
    for wav in (np.zeros(6 * SR, np.float32), (np.random.default_rng(0).standard_normal(6 * SR) * 1e-4)
                .astype(np.float32)):
        silero, gate, _ = gates(s2m, wav)
        assert not gate.any()
    for seed in (0, 1):
        # the classifier alone hears harmonic music as a voice (most frames); with silero's low probability required
        # the gate opens on few of them (5 % measured: one 0.3 s blip in 6 s)
        _, gate, voice = gates(s2m, music(6, seed))
        assert (voice >= L.VOICE_FEATURES).mean() > 0.5
        assert gate.mean() < 0.15, gate.mean()


def test_rules_without_a_classifier_are_silero_alone(s2m):
    wav = voiced(3) + music(3)
    n = len(wav) // 640
    assert np.array_equal(L.voice_activity(wav, n, None), L.voice_activity(wav, n))
    head = s2m.head
    try:
        voice, head.voice = head.voice, None
        y, p = s2m.raw_codes_and_voice(wav, n)
    finally:
        head.voice = voice
    assert p is None
    assert np.array_equal(y, s2m.raw_codes(wav, n))


def test_live_session_hears_the_voice_over_music_too(s2m):
    """The live session carries the same voice-over-music flags (the classifier on the live head's windows, with
    the codes; no lead): its mouth moves on the voice under music where silero alone would keep it shut."""
    from pathlib import Path

    from pdfgc.live import LiveSession
    from pdfgc.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_default(device="cpu", threads=1)
    anne = Path(__file__).resolve().parents[1] / "pdfgc" / "ui" / "examples" / "anne.png"
    wav = voiced(4) + music(4)
    with LiveSession(anne, pipeline=pipe, threaded=False) as s:
        assert s.voice_model is not None
        mouth = np.stack([f.mouth for f in s.push(wav) + s.finish()])
    n = len(mouth)
    silero = L.live_speaking(L.voice_flags(wav, n), 2)
    moving = np.abs(mouth).max(1) > 0
    assert silero.mean() < 0.2 and moving.mean() > 0.3, (silero.mean(), moving.mean())


def test_logistic_fit_recovers_a_separating_direction():
    """``lips_train.fit_voice`` (the training command's classifier fit: standardise, L2 logistic regression, folded
    back onto the raw features) on synthetic data whose labels follow a known direction, on features of mixed scales
    and offsets: the folded weights point along it and classify the rows as the direction does."""
    from pdfgc.families.meshwarp.lips_train import fit_voice

    rng = np.random.default_rng(0)
    d = 12
    x = rng.standard_normal((3000, d)) * rng.uniform(0.1, 10, d) + rng.uniform(-5, 5, d)
    true = rng.standard_normal(d) / x.std(0)
    logit = (x - x.mean(0)) @ true * 4 + 0.5
    y = rng.random(len(x)) < 1 / (1 + np.exp(-logit))
    w, b = fit_voice([x[:1000], x[1000:]], [y[:1000], y[1000:]])
    assert w.dtype == np.float32 and w.shape == (d,)
    assert w @ true / np.linalg.norm(w) / np.linalg.norm(true) > 0.98
    assert np.mean((x @ w + b >= 0) == (logit >= 0)) > 0.97


def test_install_head_keeps_its_classifier(tmp_path):
    """``lips_train.install_head`` writes a head's classifier (``audio.vad.*`` and the config's ``vad`` record) with
    it, and a head without one leaves none behind."""
    import shutil

    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params

    src = load_params(DEFAULT_PATH)
    try:
        head = L.from_params(src)
    except CheckpointError as e:
        pytest.skip(str(e))
    if head.voice is None:
        pytest.skip("no shipped voice classifier")
    dst = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_PATH, dst)
    LT.install_head(head, src.info.get("lips", {}), dst)
    p = load_params(dst)
    for k in ("weight", "bias"):
        assert torch.equal(p.audio_state["vad." + k], src.audio_state["vad." + k])
    assert p.audio_config["vad"] == src.audio_config["vad"]
    assert L.from_params(p).voice is not None
    head.voice = None
    LT.install_head(head, src.info.get("lips", {}), dst)
    p = load_params(dst)
    assert not any(k.startswith("vad.") for k in p.audio_state) and "vad" not in p.audio_config
    assert L.from_params(p).voice is None


def test_voice_classifier_needs_speech_and_silence(monkeypatch):
    """``lips_train.fit_voice_classifier`` attaches a classifier of the head's window size when silero's labels hold
    both kinds, and none (the rules then use silero alone) when every frame is one kind."""
    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp import speech as sp

    head = L.LipsHead(components=3, mouth_dim=4)
    size = head.window.frames * 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, size)).astype(np.float32)
    clip = LT.LipClip("k", "p", False, "s", 0, np.zeros((200, 4), np.float32), np.ones(200, bool), None, 0)
    for labels, fitted in ((x[:, 0] > 0, True), (np.ones(200, bool), False)):
        monkeypatch.setattr(LT, "voice_data", lambda *a, **k: ([(clip, x, labels)], []))
        rec = LT.fit_voice_classifier(head, [clip], None, None, log=lambda m: None)
        assert rec["fitted"] is fitted
        assert (head.voice is not None) is fitted
        if fitted:
            assert head.voice.weight.shape == (size,) and head.voice_config["clips"] == 1
            assert sp.WINDOW * 3 == size
