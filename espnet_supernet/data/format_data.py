"""ESPnet stages 3-4 without Kaldi: check the audio of a data directory and filter it.

Reads ``wav.scp``, ``text`` and ``utt2spk`` of a Kaldi-style data directory and writes
``<outdir>/{wav.scp,text,utt2spk,spk2utt,utt2num_samples,feats_type}`` for ESPnet's raw
waveform input (``feats_type`` holds ``raw``, as asr.sh writes it). Every audio file is
probed with ``soundfile.info`` and decoded in full once with ``soundfile.read``:

- an unreadable or corrupt file is skipped and reported by name;
- a sample rate other than the expected one is an error (:class:`SampleRateError`);
- utterances shorter than ``min_duration`` or longer than ``max_duration`` are dropped.

With a ``segments`` file (``<utt> <recording> <start_s> <end_s>``; ``wav.scp`` then maps
recording ids to audio files, as for TED-LIUM), each recording is decoded once and its
segments are cut out (samples ``round(start * fs)`` to ``round(end * fs)``) into
``<outdir>/data/<utt>.flac`` (16-bit PCM), one process per recording at a time (``nj``);
the written ``wav.scp`` maps each utterance to its cut (absolute path), ``utt2num_samples``
holds the cuts' lengths. A recording missing from ``wav.scp``, an unreadable recording
(all its segments), a malformed ``segments`` line and a segment ending after its
recording's audio are skipped, each reported by a warning that names it, and counted.

All output files hold the same utterances, sorted in C locale (byte) order.
"""

import logging
import math
import os
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
        incomplete: Utterances missing from one of wav.scp, text or utt2spk (with a
            ``segments`` file: from one of segments, text or utt2spk).
        no_recording: Segments whose recording is missing from wav.scp.
        bad_segment: Segments with a malformed line or ending after their recording.
    """

    num_utts: int
    unreadable: int
    too_short: int
    too_long: int
    incomplete: int
    no_recording: int = 0
    bad_segment: int = 0


@dataclass(frozen=True)
class RecordingJob:
    """The segments to cut out of one recording.

    Attributes:
        path: Audio file of the recording.
        segments: ``(utt id, start s, end s)`` of each segment.
        outdir: Directory that receives ``<utt id>.flac``.
        fs: Expected sample rate (nothing is written at another one).
        min_samples: Shorter cuts are not written.
        max_samples: Longer cuts are not written.
    """

    path: str
    segments: tuple[tuple[str, float, float], ...]
    outdir: str
    fs: int
    min_samples: float
    max_samples: float


@dataclass(frozen=True)
class RecordingCuts:
    """What cutting one recording did.

    Attributes:
        sample_rate: Sample rate from the header (0 if unreadable).
        num_samples: ``{utt id: samples}`` of the cuts written.
        beyond_end: Segments not written for ending after the audio (``utt id``s).
        too_short: Segments not written for being shorter than ``min_samples``.
        too_long: Segments not written for being longer than ``max_samples``.
        num_frames: Samples per channel of the recording.
        error: Why the recording is unusable, or None.
    """

    sample_rate: int
    num_samples: dict[str, int]
    beyond_end: tuple[str, ...] = ()
    too_short: int = 0
    too_long: int = 0
    num_frames: int = 0
    error: str | None = None


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


def cut_recording(job: RecordingJob) -> RecordingCuts:
    """Decodes a recording once and writes its segments as 16-bit flac files.

    Args:
        job: The recording and its segments.

    Returns:
        What was written; ``error`` is set (and nothing written) if the recording cannot
        be read in full; nothing is written at a sample rate other than ``job.fs``.
    """
    try:
        info = soundfile.info(job.path)
        data, rate = soundfile.read(job.path, dtype="int16", always_2d=True)
    except (soundfile.SoundFileError, OSError) as error:
        return RecordingCuts(0, {}, error=f"{type(error).__name__}: {error}")
    if len(data) != info.frames:
        return RecordingCuts(rate, {}, error=f"header announces {info.frames} samples, "
                                             f"decoded {len(data)}")
    if rate != job.fs:
        return RecordingCuts(rate, {}, num_frames=len(data))
    num_samples, beyond_end, too_short, too_long = {}, [], 0, 0
    for utt_id, start, end in job.segments:
        first, last = round(start * rate), round(end * rate)
        if last > len(data):
            beyond_end.append(utt_id)
        elif last - first < job.min_samples:
            too_short += 1
        elif last - first > job.max_samples:
            too_long += 1
        else:
            soundfile.write(os.path.join(job.outdir, f"{utt_id}.flac"), data[first:last], rate,
                            format="FLAC", subtype="PCM_16")
            num_samples[utt_id] = last - first
    return RecordingCuts(rate, num_samples, tuple(beyond_end), too_short, too_long, len(data))


def _cut_all(jobs: Sequence[RecordingJob], nj: int) -> list[RecordingCuts]:
    """Cuts recordings, in ``nj`` processes if ``nj > 1``."""
    if nj <= 1:
        return [cut_recording(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=nj) as pool:
        return list(pool.map(cut_recording, jobs))


def _parse_segment(value: str) -> tuple[str, float, float] | None:
    """``(recording, start, end)`` of a segments value, or None if malformed."""
    fields = value.split()
    if len(fields) != 3:
        return None
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        return None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        return None
    return fields[0], start, end


def _cut_segments(
    data_dir: Path,
    outdir: Path,
    utt_ids: Sequence[str],
    segments: dict[str, str],
    recordings: dict[str, str],
    fs: int,
    min_duration: float,
    max_duration: float,
    nj: int,
) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """Cuts the segments of ``utt_ids`` out of their recordings into ``outdir/data``.

    Returns:
        ``{utt: cut path}``, ``{utt: samples}`` of the cuts written, and the counts
        ``unreadable``, ``too_short``, ``too_long``, ``no_recording``, ``bad_segment``.

    Raises:
        SampleRateError: If a readable recording's sample rate is not ``fs``.
    """
    counts = dict.fromkeys(("unreadable", "too_short", "too_long", "no_recording",
                            "bad_segment"), 0)
    by_recording: dict[str, list[tuple[str, float, float]]] = {}
    for utt_id in utt_ids:
        parsed = _parse_segment(segments[utt_id])
        if parsed is None:
            logger.warning("Skipping %s: malformed segments line '%s' in %s (expected "
                           "<recording> <start> <end>, 0 <= start < end).",
                           utt_id, segments[utt_id], data_dir)
            counts["bad_segment"] += 1
        elif parsed[0] not in recordings:
            logger.warning("Skipping %s: recording %s is missing from %s.", utt_id, parsed[0],
                           data_dir / "wav.scp")
            counts["no_recording"] += 1
        else:
            by_recording.setdefault(parsed[0], []).append((utt_id, *parsed[1:]))
    cut_dir = (outdir / "data").resolve()
    cut_dir.mkdir(parents=True, exist_ok=True)
    names = c_sorted(by_recording)
    jobs = [RecordingJob(recordings[name], tuple(by_recording[name]), str(cut_dir), fs,
                         min_duration * fs, max_duration * fs) for name in names]
    cut_paths, num_samples = {}, {}
    for name, job, cuts in zip(names, jobs, _cut_all(jobs, nj)):
        if cuts.error is not None:
            logger.warning("Skipping the %d segments of recording %s: bad audio %s (%s).",
                           len(job.segments), name, job.path, cuts.error)
            counts["unreadable"] += len(job.segments)
            continue
        if cuts.sample_rate != fs:
            raise SampleRateError(
                f"{job.path} has sample rate {cuts.sample_rate} Hz, expected {fs} Hz: "
                "resample the corpus (e.g. `sox in.sph -r 16000 out.flac`) or set --fs."
            )
        ends = {utt_id: end for utt_id, _, end in job.segments}
        for utt_id in cuts.beyond_end:
            logger.warning("Skipping %s: segment ends at %.2f s, after the end of recording "
                           "%s (%.2f s).", utt_id, ends[utt_id], name, cuts.num_frames / fs)
        counts["bad_segment"] += len(cuts.beyond_end)
        counts["too_short"] += cuts.too_short
        counts["too_long"] += cuts.too_long
        for utt_id, samples in cuts.num_samples.items():
            cut_paths[utt_id] = str(cut_dir / f"{utt_id}.flac")
            num_samples[utt_id] = samples
    return cut_paths, num_samples, counts


def _probe_utterances(
    utt_ids: Sequence[str],
    wavs: dict[str, str],
    fs: int,
    min_duration: float,
    max_duration: float,
    nj: int,
) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """Probes the audio file of each utterance (one file per utterance).

    Returns:
        ``{utt: audio path}`` and ``{utt: samples}`` of the utterances kept, and the counts
        ``unreadable``, ``too_short``, ``too_long``.

    Raises:
        SampleRateError: If a readable file's sample rate is not ``fs``.
    """
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
    counts = dict(unreadable=unreadable, too_short=too_short, too_long=too_long)
    return {utt_id: wavs[utt_id] for utt_id in num_samples}, num_samples, counts


def format_data_dir(
    data_dir: Path,
    outdir: Path,
    fs: int = 16000,
    min_duration: float = 0.1,
    max_duration: float = 20.0,
    nj: int = 1,
) -> FormatSummary:
    """Checks, filters and copies a data directory for ESPnet's raw waveform input.

    With ``<data_dir>/segments``, the segments are cut out of the recordings of
    ``wav.scp`` into ``<outdir>/data/<utt>.flac`` (see the module docstring).

    Args:
        data_dir: Kaldi-style data directory with ``wav.scp``, ``text`` and ``utt2spk``
            (and optionally ``segments``).
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
    segments = None
    if (data_dir / "segments").is_file():  # wav.scp holds recordings, segments the utterances
        segments = read_table(data_dir / "segments")
        tables = {"segments": segments, "text": texts, "utt2spk": utt2spk}
    all_ids = set().union(*tables.values())
    complete = set.intersection(*(set(table) for table in tables.values()))
    for utt_id in c_sorted(all_ids - complete):
        missing = [name for name, table in tables.items() if utt_id not in table]
        logger.warning("Skipping %s: missing from %s in %s.", utt_id, ", ".join(missing), data_dir)

    utt_ids = c_sorted(complete)
    if segments is None:
        audio, num_samples, counts = _probe_utterances(
            utt_ids, wavs, fs, min_duration, max_duration, nj)
    else:
        audio, num_samples, counts = _cut_segments(
            data_dir, outdir, utt_ids, segments, wavs, fs, min_duration, max_duration, nj)

    outdir.mkdir(parents=True, exist_ok=True)
    kept_utt2spk = {utt_id: utt2spk[utt_id] for utt_id in num_samples}
    spk2utt: dict[str, list[str]] = {}
    for utt_id in c_sorted(kept_utt2spk):
        spk2utt.setdefault(kept_utt2spk[utt_id], []).append(utt_id)
    write_table(outdir / "wav.scp", audio)
    write_table(outdir / "text", {utt_id: texts[utt_id] for utt_id in num_samples})
    write_table(outdir / "utt2spk", kept_utt2spk)
    write_table(outdir / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    write_table(outdir / "utt2num_samples", num_samples)
    (outdir / "feats_type").write_text("raw\n", encoding="utf-8")

    summary = FormatSummary(num_utts=len(num_samples), incomplete=len(all_ids - complete),
                            **counts)
    bad = summary.unreadable or summary.incomplete or summary.no_recording or summary.bad_segment
    log = logger.warning if bad else logger.info
    log(
        "%s -> %s: kept %d utterances; skipped %d unreadable, %d incomplete; dropped %d "
        "shorter than %.2f s and %d longer than %.2f s%s.",
        data_dir,
        outdir,
        summary.num_utts,
        summary.unreadable,
        summary.incomplete,
        summary.too_short,
        min_duration,
        summary.too_long,
        max_duration,
        "" if segments is None else (
            f"; cut from {len({segments[utt_id].split()[0] for utt_id in num_samples})} "
            f"recordings, skipped {summary.no_recording} segments whose recording is not in "
            f"wav.scp, {summary.bad_segment} malformed or beyond the audio end"),
    )
    return summary
