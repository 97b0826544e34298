"""ESPnet stage 1 for TED-LIUM release 2: Kaldi-style data directories with segments.

For each set ``<root>/TEDLIUM_release2/<set>`` (``train``, ``dev``, ``test``) it reads
``stm/*.stm`` and the talks' ``sph/<recording>.sph`` and writes ``<outdir>/<set>/`` with
``wav.scp`` (recording id -> absolute sph path), ``segments`` (``utt recording start end``,
seconds), ``text``, ``utt2spk`` and ``spk2utt``, all sorted in C locale (byte) order.
Stage 3 (:mod:`espnet_supernet.data.format_data`) cuts the segments out of the talks.

An stm line is ``<recording> <channel> <speaker> <start_s> <end_s> <label> <words...>``.
Conventions:

- utterance id ``<speaker>-<start>-<end>``, times in centiseconds, 7 digits (Kaldi's ids,
  e.g. ``AaronHuey_2010X-0001782-0002881``), so ids sort by speaker as Kaldi wants. Times
  are rounded to the nearest centisecond (Kaldi's awk ``printf("%07d", $4*100)`` truncates,
  turning 0.29 s into ``0000028``); ``segments`` holds the rounded times, so an id always
  names its own segment;
- recording id = the sph file's stem (the stm's first field); ``utt2spk`` maps to the stm's
  speaker field;
- lines whose text is ``ignore_time_segment_in_scoring`` are dropped (not counted as bad);
- text: ``<sil>`` tokens are dropped, pronunciation variant marks ``(N)`` are removed
  (``because(2)`` -> ``because``, a lone ``(2)`` is dropped);
- ``join_suffix`` (default on, ESPnet's tedlium2 convention): a word starting with ``'``
  is joined to the word before it (``it 's`` -> ``it's``, ``i 'm`` -> ``i'm``);
- ``<unk>`` (out-of-vocabulary word) is removed by default, with any ``'`` suffix that
  follows it (``<unk> 's``), because character and BPE units have no OOV word;
  ``keep_unk`` keeps it literally (joined as ``<unk>'s``);
- a segment whose text is empty after this is skipped and counted.

Bad input is skipped, each case reported by a warning that names the file (and line),
with a count summary per set; everything else is written: an stm recording whose sph is
missing or unreadable (all its segments), a malformed stm line (fewer than 6 fields,
non-numeric or negative time, end <= start, an id already used), a segment whose end lies
beyond its recording's end (read from the sph header with ``soundfile.info``; libsndfile
reads NIST SPHERE PCM, not shorten-compressed SPHERE). A missing root, set, ``stm/`` or
``sph/`` directory is an error (:class:`CorpusNotFoundError`).
"""

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile

from espnet_supernet.data.kaldi_dir import c_sorted, write_table

logger = logging.getLogger(__name__)

IGNORE_TEXT = "ignore_time_segment_in_scoring"
UNK, SIL = "<unk>", "<sil>"
_VARIANT = re.compile(r"\(\d+\)$")


class CorpusNotFoundError(FileNotFoundError):
    """The TED-LIUM root, a set or one of its ``stm/``, ``sph/`` directories is missing."""


class StmLineError(ValueError):
    """An stm line that cannot be read (the message says why)."""


@dataclass(frozen=True)
class StmSegment:
    """One scored stm line.

    Attributes:
        recording: Recording id (the sph file's stem).
        speaker: Speaker id.
        start_cs: Start time in centiseconds (rounded).
        end_cs: End time in centiseconds (rounded), > ``start_cs``.
        words: The transcript's words, as in the stm.
    """

    recording: str
    speaker: str
    start_cs: int
    end_cs: int
    words: tuple[str, ...]

    @property
    def utt_id(self) -> str:
        """Kaldi's ``<speaker>-<start cs, 7 digits>-<end cs, 7 digits>``."""
        return f"{self.speaker}-{self.start_cs:07d}-{self.end_cs:07d}"


@dataclass(frozen=True)
class SetSummary:
    """What happened to one set.

    Attributes:
        name: Set name, e.g. ``dev``.
        data_dir: The data directory written (or that would have been written).
        num_utts: Segments written.
        num_recordings: Recordings (talks) in ``wav.scp``.
        no_audio: Recordings skipped for a missing or unreadable sph file.
        no_audio_segments: Their segments.
        malformed: Malformed stm lines skipped.
        beyond_end: Segments skipped for ending after their recording.
        empty_text: Segments skipped for an empty text after normalisation.
        ignored: ``ignore_time_segment_in_scoring`` lines dropped (expected, not bad).
    """

    name: str
    data_dir: Path
    num_utts: int
    num_recordings: int
    no_audio: int
    no_audio_segments: int
    malformed: int
    beyond_end: int
    empty_text: int
    ignored: int


def _centiseconds(field: str) -> int:
    """Parses an stm time in seconds, rounded to centiseconds."""
    try:
        seconds = float(field)
    except ValueError:
        raise StmLineError(f"non-numeric time '{field}'") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise StmLineError(f"bad time '{field}'")
    return round(seconds * 100)


def parse_stm_line(line: str) -> StmSegment | None:
    """Parses one stm line.

    Args:
        line: ``<recording> <channel> <speaker> <start_s> <end_s> <label> <words...>``.

    Returns:
        The segment, or None for an ``ignore_time_segment_in_scoring`` line.

    Raises:
        StmLineError: For fewer than 6 fields, a bad time or end <= start.
    """
    fields = line.split()
    if len(fields) < 6:
        raise StmLineError(
            f"{len(fields)} fields, expected <recording> <channel> <speaker> <start> <end> "
            "<label> <words...>"
        )
    words = tuple(fields[6:])
    if words == (IGNORE_TEXT,):
        return None
    start_cs, end_cs = _centiseconds(fields[3]), _centiseconds(fields[4])
    if end_cs <= start_cs:
        raise StmLineError(f"end {fields[4]} <= start {fields[3]}")
    return StmSegment(fields[0], fields[2], start_cs, end_cs, words)


def normalize_words(
    words: Sequence[str], keep_unk: bool = False, join_suffix: bool = True
) -> str:
    """Turns stm words into the training text (see the module docstring).

    Args:
        words: The stm words, e.g. ``["it", "'s", "because(2)", "<sil>", "<unk>"]``.
        keep_unk: Keep ``<unk>`` words literally instead of removing them.
        join_suffix: Join a ``'`` suffix to the word before it.

    Returns:
        The text, words separated by one space (``"it's because"``); may be empty.
    """
    groups: list[list[str]] = []  # a word and the ' suffixes that follow it
    for word in words:
        word = _VARIANT.sub("", word)
        if not word or word == SIL:
            continue
        if word.startswith("'") and groups:
            groups[-1].append(word)
        else:
            groups.append([word])
    if not keep_unk:
        groups = [group for group in groups if group[0] != UNK]
    return " ".join(("" if join_suffix else " ").join(group) for group in groups)


def check_sets(tedlium_root: Path, sets: Sequence[str]) -> None:
    """Checks that the corpus root holds every requested set with ``stm/`` and ``sph/``.

    Args:
        tedlium_root: Directory that contains ``TEDLIUM_release2/``.
        sets: Set names.

    Raises:
        CorpusNotFoundError: Naming the first missing path.
    """
    hint = "set TEDLIUM2 in db.sh to the directory that contains TEDLIUM_release2/"
    if not tedlium_root.is_dir():
        raise CorpusNotFoundError(f"TED-LIUM root {tedlium_root} does not exist: {hint}.")
    for name in sets:
        for path in (tedlium_root / "TEDLIUM_release2" / name,) + tuple(
            tedlium_root / "TEDLIUM_release2" / name / sub for sub in ("stm", "sph")
        ):
            if not path.is_dir():
                raise CorpusNotFoundError(f"TED-LIUM directory {path} does not exist: {hint}.")


def _read_stm(stm: Path) -> tuple[list[tuple[int, StmSegment]], int, int]:
    """Parses an stm file, warning about each malformed line.

    Returns:
        ``(line number, segment)`` of every scored line, malformed lines, ignored lines.
    """
    segments, malformed, ignored = [], 0, 0
    for number, line in enumerate(stm.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(";;"):
            continue
        try:
            segment = parse_stm_line(line)
        except StmLineError as error:
            logger.warning("Skipping %s:%d: malformed stm line (%s).", stm, number, error)
            malformed += 1
            continue
        if segment is None:
            ignored += 1
        else:
            segments.append((number, segment))
    return segments, malformed, ignored


def _duration(sph: Path) -> tuple[int, int] | str:
    """``(frames, sample rate)`` from an sph header, or why it cannot be read."""
    if not sph.is_file():
        return f"no {sph}"
    try:
        info = soundfile.info(str(sph))
    except (soundfile.SoundFileError, OSError, RuntimeError) as error:
        return f"unreadable {sph} ({error})"
    return info.frames, info.samplerate


def prepare_set(
    set_dir: Path, data_dir: Path, keep_unk: bool = False, join_suffix: bool = True
) -> SetSummary:
    """Writes the Kaldi-style data directory (with ``segments``) of one TED-LIUM set.

    Nothing is written if no segment is left.

    Args:
        set_dir: ``<root>/TEDLIUM_release2/<set>``.
        data_dir: Output data directory.
        keep_unk: Keep ``<unk>`` words (see :func:`normalize_words`).
        join_suffix: Join ``'`` suffixes to the word before.

    Returns:
        The set's summary.
    """
    durations: dict[str, tuple[int, int] | str] = {}
    kept: dict[str, tuple[StmSegment, str]] = {}  # utt id -> (segment, text)
    first_line: dict[str, str] = {}  # utt id -> "stm:line" of its first segment
    malformed = ignored = no_audio_segments = beyond_end = empty_text = 0
    for stm in sorted((set_dir / "stm").glob("*.stm")):
        segments, bad, skipped = _read_stm(stm)
        malformed, ignored = malformed + bad, ignored + skipped
        by_recording: dict[str, list[tuple[int, StmSegment]]] = {}
        for number, segment in segments:
            by_recording.setdefault(segment.recording, []).append((number, segment))
        for recording, rows in by_recording.items():
            if recording not in durations:
                durations[recording] = _duration(set_dir / "sph" / f"{recording}.sph")
            duration = durations[recording]
            if isinstance(duration, str):
                logger.warning("Skipping the %d segments of %s in %s: %s.",
                               len(rows), recording, stm, duration)
                no_audio_segments += len(rows)
                continue
            frames, rate = duration
            for number, segment in rows:
                where, utt_id = f"{stm}:{number}", segment.utt_id
                text = normalize_words(segment.words, keep_unk, join_suffix)
                if utt_id in first_line:
                    logger.warning("Skipping %s: malformed stm line (segment %s already at "
                                   "%s).", where, utt_id, first_line[utt_id])
                    malformed += 1
                elif round(segment.end_cs * rate / 100) > frames:
                    logger.warning("Skipping %s (%s): ends at %.2f s, after the end of %s "
                                   "(%.2f s).", utt_id, where, segment.end_cs / 100,
                                   recording, frames / rate)
                    beyond_end += 1
                elif not text:
                    logger.warning("Skipping %s (%s): empty text after normalisation.",
                                   utt_id, where)
                    empty_text += 1
                else:
                    kept[utt_id] = (segment, text)
                first_line.setdefault(utt_id, where)

    recordings = {seg.recording for seg, _ in kept.values()}
    if kept:
        data_dir.mkdir(parents=True, exist_ok=True)
        spk2utt: dict[str, list[str]] = {}
        for utt_id in c_sorted(kept):
            spk2utt.setdefault(kept[utt_id][0].speaker, []).append(utt_id)
        write_table(data_dir / "wav.scp", {
            rec: str((set_dir / "sph" / f"{rec}.sph").resolve()) for rec in recordings})
        write_table(data_dir / "segments", {
            utt: f"{seg.recording} {seg.start_cs / 100:.2f} {seg.end_cs / 100:.2f}"
            for utt, (seg, _) in kept.items()})
        write_table(data_dir / "text", {utt: text for utt, (_, text) in kept.items()})
        write_table(data_dir / "utt2spk", {utt: seg.speaker for utt, (seg, _) in kept.items()})
        write_table(data_dir / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    no_audio = sum(isinstance(duration, str) for duration in durations.values())
    summary = SetSummary(set_dir.name, data_dir, len(kept), len(recordings), no_audio,
                         no_audio_segments, malformed, beyond_end, empty_text, ignored)
    log = logger.warning if no_audio or malformed or beyond_end or empty_text else logger.info
    log(
        "%s: wrote %d segments of %d recordings to %s; skipped %d segments of %d recordings "
        "without readable sph, %d malformed stm lines, %d segments beyond the audio end, "
        "%d segments with empty text; dropped %d ignore_time_segment_in_scoring lines.",
        summary.name, summary.num_utts, summary.num_recordings, data_dir,
        no_audio_segments, no_audio, malformed, beyond_end, empty_text, ignored,
    )  # fmt: skip
    return summary


def prepare_tedlium(
    tedlium_root: Path,
    sets: Sequence[str],
    outdir: Path,
    keep_unk: bool = False,
    join_suffix: bool = True,
) -> list[SetSummary]:
    """Writes the data directories of several TED-LIUM release 2 sets.

    Args:
        tedlium_root: Directory that contains ``TEDLIUM_release2/``.
        sets: Set names (``train``, ``dev``, ``test``); each goes to ``<outdir>/<set>``.
        outdir: Parent of the data directories (ESPnet's ``data``).
        keep_unk: Keep ``<unk>`` words literally.
        join_suffix: Join ``'`` suffixes to the word before (``it 's`` -> ``it's``).

    Returns:
        One summary per set; a set with ``num_utts == 0`` wrote nothing.

    Raises:
        CorpusNotFoundError: If the root or a set is missing (checked before writing).
    """
    check_sets(tedlium_root, sets)
    return [
        prepare_set(tedlium_root / "TEDLIUM_release2" / name, outdir / name, keep_unk,
                    join_suffix)
        for name in sets
    ]
