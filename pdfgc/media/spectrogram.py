"""Speech -> the official 16 kHz mel windows, one (1,80,20) window per 25 fps output frame (spec section 2.2).

lws "speech" STFT (n_fft 1280, hop 160, perfect-reconstruction framing), Slaney mel (80 bins, 125-7600 Hz) on the
magnitude, 20*log10 - 20 dB, normalised to [0,1] over a -100 dB floor. Window i covers mel rows [4i, 4i+20).
"""
from __future__ import annotations

import numpy as np

from ..vocabulary import FPS, SAMPLE_RATE

N_FFT = 1280
HOP = 160
N_MELS = 80
FMIN, FMAX = 125.0, 7600.0
MELS_PER_FRAME = SAMPLE_RATE // HOP // FPS  # 4
WINDOW_MELS = 20                           # 5 video frames


def rms_normalize(wav: np.ndarray, target: float = 0.1) -> np.ndarray:
    """Official loudness normalisation over the whole file."""
    wav = np.asarray(wav, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return (wav * (target / max(1e-4, rms))).astype(np.float32)


def _hz_to_mel(f):
    # Slaney scale: linear below 1 kHz, logarithmic above (as librosa with htk=False)
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f = m * (200.0 / 3)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), f)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float = FMAX) -> np.ndarray:
    """Slaney-normalised triangular mel filters (n_mels, n_fft//2+1), float32; equal to librosa.filters.mel."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def lws_window(n_fft: int = N_FFT) -> np.ndarray:
    """lws speech-mode analysis window: 0.5*sqrt(Hann) with a half-sample offset."""
    k = np.arange(n_fft)
    return 0.5 * np.sin(np.pi * (k + 0.5) / n_fft)


def stft_magnitude(wav: np.ndarray) -> np.ndarray:
    """|STFT| (M, 641) with lws framing: 1120 zeros in front, frames M = ceil(L/160) + 7."""
    wav = np.asarray(wav, dtype=np.float64)
    n = len(wav)
    n_frames = -(-n // HOP) + (N_FFT // HOP - 1)
    padded = np.zeros(n_frames * HOP + N_FFT, dtype=np.float64)
    front = N_FFT - HOP
    padded[front:front + n] = wav
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    return np.abs(np.fft.rfft(frames * lws_window(), n=N_FFT, axis=1))


_MEL_BASIS: np.ndarray | None = None


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Normalised log-mel (M, 80) float32 in [0,1]."""
    global _MEL_BASIS
    if _MEL_BASIS is None:
        _MEL_BASIS = mel_filterbank()
    mel = stft_magnitude(wav).astype(np.float32) @ _MEL_BASIS.T
    s = 20.0 * np.log10(np.maximum(1e-5, mel)) - 20.0
    return np.clip((s + 100.0) / 100.0, 0.0, 1.0).astype(np.float32)


def num_output_frames(num_samples: int) -> int:
    """Output length the official code produces for L samples at 16 kHz: floor(M/4) - 4."""
    m = -(-num_samples // HOP) + (N_FFT // HOP - 1)
    return max(0, m // MELS_PER_FRAME - 4)


def mel_windows(mel: np.ndarray) -> np.ndarray:
    """(M,80) -> (T,1,80,20): window i is mel rows [4i, 4i+20), transposed to (mel, time)."""
    t = max(0, mel.shape[0] // MELS_PER_FRAME - 4)
    idx = np.arange(t)[:, None] * MELS_PER_FRAME + np.arange(WINDOW_MELS)[None, :]
    return np.ascontiguousarray(mel[idx].transpose(0, 2, 1)[:, None])


def speech_windows(wav16k: np.ndarray, normalize: bool = True) -> np.ndarray:
    """16 kHz mono speech -> (T,1,80,20) float32 mel windows (the audio encoder's input)."""
    wav = rms_normalize(wav16k) if normalize else np.asarray(wav16k, np.float32)
    return mel_windows(mel_spectrogram(wav))


def rms_gain(wav16k: np.ndarray, target: float = 0.1) -> float:
    """The official loudness normalisation's gain over the whole file (`rms_normalize` = wav * gain)."""
    wav = np.asarray(wav16k, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return target / max(1e-4, rms)


def speech_windows_range(wav16k: np.ndarray, start: int, stop: int, gain: float | None = None) -> np.ndarray:
    """Mel windows of output frames [start, stop) only: equal to `speech_windows(wav16k)[start:stop]`, at a cost and
    memory proportional to stop - start (each lws STFT frame m reads padded samples [160 m, 160 m + 1280) with
    1120 zeros in front, so a row range needs only its own samples)."""
    n = len(wav16k)
    stop = min(stop, num_output_frames(n))
    if stop <= start:
        return np.zeros((0, 1, N_MELS, WINDOW_MELS), np.float32)
    gain = rms_gain(wav16k) if gain is None else gain
    r0, r1 = start * MELS_PER_FRAME, stop * MELS_PER_FRAME + (WINDOW_MELS - MELS_PER_FRAME)
    front = N_FFT - HOP
    a, b = r0 * HOP - front, (r1 - 1) * HOP - front + N_FFT  # wav sample range of those rows (may pass the ends)
    seg = np.zeros(b - a, np.float64)
    lo, hi = max(a, 0), min(b, n)
    if hi > lo:
        # the same float32 rounding as rms_normalize, then float64 as stft_magnitude
        seg[lo - a:hi - a] = (np.asarray(wav16k[lo:hi], np.float32) * np.float32(gain)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT)[::HOP][:r1 - r0]
    global _MEL_BASIS
    if _MEL_BASIS is None:
        _MEL_BASIS = mel_filterbank()
    mel = np.abs(np.fft.rfft(frames * lws_window(), n=N_FFT, axis=1)).astype(np.float32) @ _MEL_BASIS.T
    mel = np.clip((20.0 * np.log10(np.maximum(1e-5, mel)) - 20.0 + 100.0) / 100.0, 0.0, 1.0).astype(np.float32)
    idx = np.arange(stop - start)[:, None] * MELS_PER_FRAME + np.arange(WINDOW_MELS)[None, :]
    return np.ascontiguousarray(mel[idx].transpose(0, 2, 1)[:, None])
