"""ESPnet stages 3-4 without Kaldi: check the audio of a data directory and filter it.

Reads ``wav.scp``, ``text`` and ``utt2spk`` of a Kaldi-style data directory and writes
``<outdir>/{wav.scp,text,utt2spk,spk2utt,utt2num_samples,feats_type}`` for ESPnet's raw
waveform input (``feats_type`` holds ``raw``, as asr.sh writes it). Every audio file is
probed with ``soundfile.info`` and decoded in full once with ``soundfile.read``:

- an unreadable or corrupt file is skipped and reported by name;
- a sample rate other than the expected one is an error (:class:`SampleRateError`);
- utterances shorter than ``min_duration`` or longer than ``max_duration`` are dropped.

All output files hold the same utterances, sorted in C locale (byte) order.
"""

import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile

from espnet_supernet.data.kaldi_dir import c_sorted, read_table, write_table

logger = logging.getLogger(__name__)


class SampleRateError(ValueError):
    """An audio file's sample rate is not the expected one."""


@dataclass(frozen=True)
class AudioProbe:
    """What decoding one audio file found.

    Attributes:
        sample_rate: Sample rate from the header (0 if unreadable).
        channels: Channels from the header (0 if unreadable).
        num_samples: Samples per channel actually decoded (0 if unreadable).
        error: Why the file is unusable, or None if it decoded cleanly.
    """

    sample_rate: int
    channels: int
    num_samples: int
    error: str | None = None


@dataclass(frozen=True)
class FormatSummary:
    """What happened to a data directory.

    Attributes:
        num_utts: Utterances written.
        unreadable: Utterances skipped for an unreadable or corrupt audio file.
        too_short: Utterances dropped for being shorter than ``min_duration``.
        too_long: Utterances dropped for being longer than ``max_duration``.
        incomplete: Utterances missing from one of wav.scp, text or utt2spk.
    """

    num_utts: int
    unreadable: int
    too_short: int
    too_long: int
    incomplete: int


def probe_audio(path: str) -> AudioProbe:
    """Reads an audio file's header and decodes the whole file.

    Args:
        path: Audio file readable by soundfile.

    Returns:
        The probe; ``error`` is set if the file cannot be read in full or decodes to a
        different number of samples than its header announces.
    """
    try:
        info = soundfile.info(path)
        data, _ = soundfile.read(path, dtype="int16", always_2d=True)
    except (soundfile.SoundFileError, OSError) as error:
        return AudioProbe(0, 0, 0, f"{type(error).__name__}: {error}")
    if len(data) != info.frames:
        return AudioProbe(
            info.samplerate,
            info.channels,
            len(data),
            f"header announces {info.frames} samples, decoded {len(data)}",
        )
    return AudioProbe(info.samplerate, info.channels, len(data))


def _probe_all(paths: Sequence[str], nj: int) -> list[AudioProbe]:
    """Probes audio files, in ``nj`` processes if ``nj > 1``."""
    if nj <= 1:
        return [probe_audio(path) for path in paths]
    with ProcessPoolExecutor(max_workers=nj) as pool:
        return list(pool.map(probe_audio, paths, chunksize=32))


def format_data_dir(
    data_dir: Path,
    outdir: Path,
    fs: int = 16000,
    min_duration: float = 0.1,
    max_duration: float = 20.0,
    nj: int = 1,
) -> FormatSummary:
    """Checks, filters and copies a data directory for ESPnet's raw waveform input.

    Args:
        data_dir: Kaldi-style data directory with ``wav.scp``, ``text`` and ``utt2spk``.
        outdir: Output directory (e.g. ``dump/raw/<set>``).
        fs: Expected sample rate.
        min_duration: Shortest utterance kept, in seconds.
        max_duration: Longest utterance kept, in seconds.
        nj: Processes that decode the audio.

    Returns:
        The summary.

    Raises:
        FileNotFoundError: If one of the input tables is missing.
        SampleRateError: If a readable file's sample rate is not ``fs``.
    """
    tables = {}
    for name in ("wav.scp", "text", "utt2spk"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name} does not exist.")
        tables[name] = read_table(data_dir / name)
    wavs, texts, utt2spk = tables["wav.scp"], tables["text"], tables["utt2spk"]
    all_ids = set(wavs) | set(texts) | set(utt2spk)
    complete = set(wavs) & set(texts) & set(utt2spk)
    for utt_id in c_sorted(all_ids - complete):
        missing = [name for name, table in tables.items() if utt_id not in table]
        logger.warning("Skipping %s: missing from %s in %s.", utt_id, ", ".join(missing), data_dir)

    utt_ids = c_sorted(complete)
    probes = _probe_all([wavs[utt_id] for utt_id in utt_ids], nj)
    num_samples = {}
    unreadable = too_short = too_long = 0
    for utt_id, probe in zip(utt_ids, probes):
        if probe.error is not None:
            logger.warning("Skipping %s: bad audio %s (%s).", utt_id, wavs[utt_id], probe.error)
            unreadable += 1
        elif probe.sample_rate != fs:
            raise SampleRateError(
                f"{wavs[utt_id]} has sample rate {probe.sample_rate} Hz, expected {fs} Hz: "
                "resample the corpus (e.g. `sox in.flac -r 16000 out.flac`) or set --fs."
            )
        elif probe.num_samples < min_duration * fs:
            too_short += 1
        elif probe.num_samples > max_duration * fs:
            too_long += 1
        else:
            num_samples[utt_id] = probe.num_samples

    outdir.mkdir(parents=True, exist_ok=True)
    kept_utt2spk = {utt_id: utt2spk[utt_id] for utt_id in num_samples}
    spk2utt: dict[str, list[str]] = {}
    for utt_id in c_sorted(kept_utt2spk):
        spk2utt.setdefault(kept_utt2spk[utt_id], []).append(utt_id)
    write_table(outdir / "wav.scp", {utt_id: wavs[utt_id] for utt_id in num_samples})
    write_table(outdir / "text", {utt_id: texts[utt_id] for utt_id in num_samples})
    write_table(outdir / "utt2spk", kept_utt2spk)
    write_table(outdir / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    write_table(outdir / "utt2num_samples", num_samples)
    (outdir / "feats_type").write_text("raw\n", encoding="utf-8")

    summary = FormatSummary(
        num_utts=len(num_samples),
        unreadable=unreadable,
        too_short=too_short,
        too_long=too_long,
        incomplete=len(all_ids - complete),
    )
    log = logger.warning if unreadable or summary.incomplete else logger.info
    log(
        "%s -> %s: kept %d utterances; skipped %d unreadable, %d incomplete; dropped %d "
        "shorter than %.2f s and %d longer than %.2f s.",
        data_dir,
        outdir,
        summary.num_utts,
        unreadable,
        summary.incomplete,
        too_short,
        min_duration,
        too_long,
        max_duration,
    )
    return summary
