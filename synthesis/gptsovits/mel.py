"""Mel filterbank and log-mel spectrograms of the SoVITS training losses (mel_processing.py of GPT-SoVITS).

Hand-written so that training needs no librosa: `slaney_mel_basis` is librosa.filters.mel's default
(Slaney mel scale, Slaney area normalisation) computed the same way in float64 and stored as float32, and
the two log-mel functions are the official `spec_to_mel_torch` and `mel_spectrogram_torch`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from synthesis.gptsovits.sovits import spectrogram

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, 66.7 Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0
LOG_FLOOR = 1e-5  # dynamic_range_compression_torch's clip value


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = _F_SP * mel
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, hz)


@functools.lru_cache(maxsize=8)
def slaney_mel_basis(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, as librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)."""
    fmax = sampling_rate / 2.0 if fmax is None else float(fmax)
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)  # (F,)
    mel_points = np.linspace(_hz_to_mel(np.float64(fmin)), _hz_to_mel(np.float64(fmax)), n_mels + 2)
    mel_f = _mel_to_hz(mel_points)  # (n_mels + 2,) band edges in Hz
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]  # (n_mels + 2, F)
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))  # stored as float32, as librosa does
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])  # Slaney: each filter has unit area
    weights *= enorm[:, None]  # float64 product rounded into the float32 array, as librosa's in-place *=
    weights.setflags(write=False)
    return weights


def _basis(like: Tensor, sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> Tensor:
    basis = slaney_mel_basis(sampling_rate, n_fft, n_mels, fmin, fmax)
    return torch.from_numpy(basis.copy()).to(dtype=like.dtype, device=like.device)


def spec_to_mel(
    spec: Tensor, n_fft: int, n_mels: int, sampling_rate: int, fmin: float = 0.0, fmax: float | None = None
) -> Tensor:
    """Linear spectrogram (B, F, T) -> log mel (B, n_mels, T): log(clamp(basis @ spec, 1e-5))."""
    mel = torch.matmul(_basis(spec, sampling_rate, n_fft, n_mels, fmin, fmax), spec)  # (B, n_mels, T)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR))


def mel_spectrogram(
    wav: Tensor,
    n_fft: int,
    n_mels: int,
    sampling_rate: int,
    hop: int,
    win: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> Tensor:
    """Waveform (B, N) -> log mel (B, n_mels, N // hop), mel_spectrogram_torch with center=False."""
    return spec_to_mel(spectrogram(wav, n_fft, hop, win), n_fft, n_mels, sampling_rate, fmin, fmax)
