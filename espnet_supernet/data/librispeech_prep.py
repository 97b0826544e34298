"""ESPnet stage 1 for LibriSpeech: Kaldi-style data directories without Kaldi.

For each part ``<root>/LibriSpeech/<part>`` it writes ``<outdir>/<part_with_underscores>/``
with ``wav.scp`` (absolute flac paths), ``text``, ``utt2spk`` and ``spk2utt``, all sorted
in C locale (byte order). Utterance ids are LibriSpeech's ``<spk>-<chapter>-<utt>``,
which start with the speaker id, as Kaldi's sorting rules want.

Flac files without a transcript line, transcript lines with an empty text and
transcript lines without a flac file are skipped; each is reported by a warning that
names it, and a count summary follows. Everything else is written.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

from espnet_supernet.data.kaldi_dir import c_sorted, write_table


class CorpusNotFoundError(FileNotFoundError):
    """The LibriSpeech root or one of its parts does not exist."""


@dataclass(frozen=True)
class PartSummary:
    """What happened to one part.

    Attributes:
        part: LibriSpeech part name, e.g. ``dev-clean``.
        data_dir: The data directory written (or that would have been written).
        num_utts: Utterances written.
        no_transcript: Flac files skipped for lack of a transcript line.
        empty_text: Transcript lines skipped for an empty text.
        no_audio: Transcript lines skipped for lack of a flac file.
    """

    part: str
    data_dir: Path
    num_utts: int
    no_transcript: int
    empty_text: int
    no_audio: int


def data_dir_name(part: str) -> str:
    """Returns the data directory name of a part (``dev-clean`` -> ``dev_clean``)."""
    return part.replace("-", "_")


def check_parts(librispeech_root: Path, parts: Iterable[str]) -> None:
    """Checks that the corpus root holds every requested part.

    Args:
        librispeech_root: Directory that contains ``LibriSpeech/``.
        parts: Part names.

    Raises:
        CorpusNotFoundError: Naming the first missing path.
    """
    hint = (
        "set LIBRISPEECH in db.sh to the directory that contains LibriSpeech/ "
        "(or leave it empty to use the embedded corpus)"
    )
    if not librispeech_root.is_dir():
        raise CorpusNotFoundError(f"LibriSpeech root {librispeech_root} does not exist: {hint}.")
    for part in parts:
        part_dir = librispeech_root / "LibriSpeech" / part
        if not part_dir.is_dir():
            raise CorpusNotFoundError(f"LibriSpeech part {part_dir} does not exist: {hint}.")


def _read_transcripts(part_dir: Path) -> tuple[dict[str, str], set[str]]:
    """Reads every ``*.trans.txt`` of a part, reporting lines with an empty text.

    Returns:
        ``{utt_id: text}`` for lines with a text, and the ids of lines without one.
    """
    texts = {}
    empty = set()
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            if len(fields) == 1:
                logger.warning("Skipping %s: empty transcript in %s.", fields[0], trans)
                empty.add(fields[0])
                continue
            texts[fields[0]] = fields[1].strip()
    return texts, empty


def prepare_part(part_dir: Path, data_dir: Path) -> PartSummary:
    """Writes the Kaldi-style data directory of one LibriSpeech part.

    Nothing is written if no utterance is left.

    Args:
        part_dir: ``<root>/LibriSpeech/<part>``.
        data_dir: Output data directory.

    Returns:
        The part's summary.
    """
    texts, empty = _read_transcripts(part_dir)
    flacs = {path.stem: path.resolve() for path in part_dir.glob("*/*/*.flac")}
    no_transcript = c_sorted(set(flacs) - set(texts) - empty)
    for utt_id in no_transcript:
        logger.warning("Skipping %s: no transcript line for it.", flacs[utt_id])
    no_audio = c_sorted(set(texts) - set(flacs))
    for utt_id in no_audio:
        logger.warning("Skipping %s: transcript line without flac file in %s.", utt_id, part_dir)
    utt_ids = set(flacs) & set(texts)

    if utt_ids:
        data_dir.mkdir(parents=True, exist_ok=True)
        utt2spk = {utt_id: utt_id.split("-", 1)[0] for utt_id in utt_ids}
        spk2utt: dict[str, list[str]] = {}
        for utt_id in c_sorted(utt_ids):
            spk2utt.setdefault(utt2spk[utt_id], []).append(utt_id)
        write_table(data_dir / "wav.scp", {utt_id: str(flacs[utt_id]) for utt_id in utt_ids})
        write_table(data_dir / "text", {utt_id: texts[utt_id] for utt_id in utt_ids})
        write_table(data_dir / "utt2spk", utt2spk)
        write_table(data_dir / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    summary = PartSummary(
        part=part_dir.name,
        data_dir=data_dir,
        num_utts=len(utt_ids),
        no_transcript=len(no_transcript),
        empty_text=len(empty),
        no_audio=len(no_audio),
    )
    log = logger.warning if no_transcript or no_audio or empty else logger.info
    log(
        "%s: wrote %d utterances to %s; skipped %d flac files without transcript, "
        "%d empty transcripts, %d transcript lines without flac.",
        summary.part,
        summary.num_utts,
        data_dir,
        summary.no_transcript,
        summary.empty_text,
        summary.no_audio,
    )
    return summary


def prepare_librispeech(
    librispeech_root: Path, parts: Sequence[str], outdir: Path
) -> list[PartSummary]:
    """Writes the data directories of several LibriSpeech parts.

    Args:
        librispeech_root: Directory that contains ``LibriSpeech/``.
        parts: Part names, e.g. ``train-clean-100``.
        outdir: Parent of the data directories (ESPnet's ``data``).

    Returns:
        One summary per part; a part with ``num_utts == 0`` wrote nothing.

    Raises:
        CorpusNotFoundError: If the root or a part is missing (checked before writing).
    """
    check_parts(librispeech_root, parts)
    return [
        prepare_part(librispeech_root / "LibriSpeech" / part, outdir / data_dir_name(part))
        for part in parts
    ]
