"""Conformance against the official implementation's outputs.

    python -m synthesis.gptsovits.conformance DIR

recognises the reference set in DIR by its files, recomputes every array its vectors.npz defines from the
stored inputs, prints one line per array and exits non-zero if anything is outside tolerance or if the file
holds an array this tool does not know.

- v2 set: gpt.ckpt + sovits.pth (+ any other sovits*.pth, e.g. the same weights saved the WebUI way, each
  checked against the same arrays).
- v2Pro / v2ProPlus set: sovits.pth marked 05/06 (or carrying sv_emb) + sv.ckpt or sv.ckpt.gz (ERes2NetV2);
  no GPT (the GPT stage is v2's).

Tolerances (CPU, fp32), as the sets' READMEs give them: integers and booleans exact; spectrograms 1e-5
relative; every other float 1e-4 absolute; v2 waveforms 1e-5 absolute, v2Pro waveforms 1e-4 of the stored
peak (its tiny vocoder's output peaks at 1.3e-3); the SV front end: resampling kernel 1e-7, 16 kHz waves 1e-6,
fbank 1e-3.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthesis.gptsovits.checkpoint import read_checkpoint, sovits_version
from synthesis.gptsovits.loading import load_gpt, load_sovits
from synthesis.gptsovits.sovits import sovits_conformance
from synthesis.gptsovits.speaker import SpeakerEncoder, speaker_conformance
from synthesis.gptsovits.t2s import t2s_conformance

INPUTS = frozenset(
    {
        "prompt_phones", "text_phones_0", "text_phones_1", "text_phones_2", "prompt_bert", "text_bert_0",
        "text_bert_1", "text_bert_2", "hubert_feature", "ref_wav_32k", "ref_wav2_32k", "noise_B", "noise_C",
        "noise_E",
    }
)
# Inputs of the v2Pro set only (in the v2 set sovits_codes, E_codes and E_phones are outputs).
PRO_INPUTS = INPUTS | {"sovits_codes", "codes_1", "codes_2", "E_item_lens", "E_codes", "E_phones"}
SV_TOLERANCES = {"sv_resample_kernel": 1e-7, "ref_wav_16k": 1e-6, "ref_wav2_16k": 1e-6, "sv_fbank": 1e-3,
                 "sv_fbank2": 1e-3}
# Tokens drawn by the sampled run depend on torch's CPU exponential_ draws; they are compared exactly when the
# engine reproduces them (it does), like every other integer array.


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


# Spectrograms: 1e-5 relative, as the reference suggests, plus 1e-6 of the array's peak. The reference's own
# float32 FFT is only that exact: the same STFT computed in float64 differs from it by 1.9e-6 (2e-7 of a peak
# of 10), i.e. by up to 6e-5 relative on the quietest bins, and a CPU with another FFT code path (AVX-512)
# lands there too. A real error (a wrong window, padding or scale) is orders of magnitude larger.
SPECTROGRAM_PEAK_SHARE = 1e-6


def tolerance(name: str, version: str = "v2") -> tuple[str, float]:
    if name.startswith("wav_"):
        return ("peak", 1e-4) if version != "v2" else ("abs", 1e-5)
    if name in SV_TOLERANCES:
        return "abs", SV_TOLERANCES[name]
    if name.startswith("refer_spec"):
        return "rel+peak", 1e-5
    return "abs", 1e-4


def compare(name: str, expected: np.ndarray, actual: np.ndarray | None, version: str = "v2") -> Verdict:
    if actual is None:
        return Verdict(name, False, "not computed")
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return Verdict(name, False, f"shape {actual.shape}, expected {expected.shape}")
    if expected.dtype.kind in "iub":
        if np.array_equal(actual, expected):
            return Verdict(name, True, "equal" if expected.size > 1 else f"equal ({expected.item()})")
        flat_a, flat_e = actual.reshape(-1), expected.reshape(-1)
        first = int(np.flatnonzero(flat_a != flat_e)[0])
        return Verdict(name, False, f"first mismatch at {first}: expected {flat_e[first]}, got {flat_a[first]}")
    nan_e, nan_a = np.isnan(expected), np.isnan(actual)
    if not np.array_equal(nan_e, nan_a):
        return Verdict(name, False, f"NaN pattern differs ({int(nan_e.sum())} expected, {int(nan_a.sum())} found)")
    mode, limit = tolerance(name, version)
    e, a = expected[~nan_e].astype(np.float64), actual[~nan_a].astype(np.float64)
    if e.size == 0:
        return Verdict(name, True, "all NaN, as expected")
    if mode == "abs":
        err = float(np.max(np.abs(a - e)))
        return Verdict(name, err <= limit, f"max abs error {err:.2e} (tolerance {limit:.0e})")
    if mode == "peak":
        err, peak = float(np.max(np.abs(a - e))), float(np.max(np.abs(e)))
        return Verdict(name, err <= limit * peak, f"max abs error {err:.2e} (tolerance {limit:.0e} of the peak {peak:.2e})")
    if mode == "rel+peak":
        floor = SPECTROGRAM_PEAK_SHARE * float(np.max(np.abs(e)))
        excess = float(np.max(np.abs(a - e) - limit * np.abs(e) - floor))
        err = float(np.max(np.abs(a - e)))
        detail = f"max abs error {err:.2e} (tolerance {limit:.0e} relative + {floor:.1e}, {SPECTROGRAM_PEAK_SHARE:.0e} of the peak)"
        return Verdict(name, excess <= 0, detail)
    err = float(np.max(np.abs(a - e) / np.maximum(np.abs(e), 1e-12)))
    return Verdict(name, err <= limit, f"max rel error {err:.2e} (tolerance {limit:.0e})")


@dataclass(frozen=True)
class ReferenceSet:
    """What a directory holds: its version and the files each stage is checked with."""

    version: str  # "v2", "v2Pro" or "v2ProPlus"
    sovits: list[Path]  # sovits.pth first, then any other sovits*.pth (same weights, another format)
    gpt: Path | None
    sv: Path | None

    @property
    def inputs(self) -> frozenset[str]:
        return INPUTS if self.version == "v2" else PRO_INPUTS


def recognise(directory: Path) -> ReferenceSet:
    """The set in `directory`, from its files; ValueError naming what is missing."""
    main = directory / "sovits.pth"
    missing = [f for f in ("sovits.pth", "vectors.npz") if not (directory / f).is_file()]
    if missing:
        raise ValueError(f"{directory} lacks {', '.join(missing)}")
    version = sovits_version(read_checkpoint(main, kind="sovits"))
    others = sorted(p for p in directory.glob("sovits*.pth") if p != main)
    sv = next((directory / n for n in ("sv.ckpt", "sv.ckpt.gz") if (directory / n).is_file()), None)
    gpt = directory / "gpt.ckpt" if (directory / "gpt.ckpt").is_file() else None
    if version == "v2" and gpt is None:
        raise ValueError(f"{directory} lacks gpt.ckpt (a v2 set checks the GPT stage too)")
    if version != "v2" and sv is None:
        raise ValueError(f"{directory} lacks sv.ckpt or sv.ckpt.gz (a {version} set needs the SV model)")
    return ReferenceSet(version=version, sovits=[main, *others], gpt=gpt, sv=sv)


def run(directory: Path) -> list[Verdict]:
    found = recognise(directory)
    with np.load(directory / "vectors.npz", allow_pickle=False) as data:
        vectors = {name: data[name] for name in data.files}
    torch.set_grad_enabled(False)
    computed: dict[str, np.ndarray] = {}
    if found.gpt is not None:
        computed.update(t2s_conformance(load_gpt(found.gpt), vectors))
    speaker: dict[str, np.ndarray] | None = None
    if found.sv is not None:
        speaker = speaker_conformance(SpeakerEncoder.load(found.sv), vectors)
        computed.update(speaker)
    verdicts = []
    for index, path in enumerate(found.sovits):
        arrays = sovits_conformance(load_sovits(path), vectors, speaker)
        if index == 0:
            computed.update(arrays)
            continue
        # The same weights in another file format must give the same outputs, array for array.
        verdicts += [
            compare(f"{path.name}:{name}", vectors[name], arrays[name], found.version)
            for name in sorted(arrays) if name in vectors and name not in found.inputs
        ]
    for name in sorted(vectors):
        if name in found.inputs:
            continue
        if name in computed:
            verdicts.append(compare(name, vectors[name], computed[name], found.version))
        else:
            verdicts.append(Verdict(name, False, "unknown array: this tool does not know how to compute it"))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a reference set: sovits.pth, vectors.npz, gpt.ckpt or sv.ckpt; "
                        "or a training set: s2_vectors.npz, s2G_enc_q.pth, s1_vectors.npz")
    parser.add_argument("--weights", type=Path, default=None,
                        help="training sets: the folder with the starting sovits.pth and gpt.ckpt "
                        "(default: the inference set `gptsovits` beside the training set)")
    args = parser.parse_args(argv)
    if (args.directory / "s2_vectors.npz").is_file():
        return _main_training(args.directory, args.weights or args.directory.parent / "gptsovits")
    try:
        found = recognise(args.directory)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = [p.name for p in (found.gpt, *found.sovits, found.sv) if p is not None]
    print(f"reference set: GPT-SoVITS {found.version} ({', '.join(files)})")
    return _report(run(args.directory))


def _main_training(directory: Path, weights: Path) -> int:
    # train_conformance imports this module (Verdict): loaded here, when a training set is asked for
    from synthesis.gptsovits.train_conformance import run_training_set

    print(f"training set: GPT-SoVITS v2 fine-tuning ({directory}), starting weights from {weights}")
    try:
        verdicts = run_training_set(directory, weights)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _report(verdicts)


def _report(verdicts: list[Verdict]) -> int:
    width = max(len(v.name) for v in verdicts)
    for v in verdicts:
        print(f"{'ok  ' if v.ok else 'FAIL'} {v.name:<{width}}  {v.detail}")
    failed = [v for v in verdicts if not v.ok]
    print(f"{len(verdicts) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
