"""Tests for the espeak-ng corpus generator (espnet_supernet.data.embedded_corpus)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_supernet.bin.make_embedded_corpus import main
from espnet_supernet.data.embedded_corpus import (
    DEV_PART,
    MARKER_NAME,
    TEST_PART,
    TRAIN_PART,
    CorpusConfig,
    extract_sentences,
    generate_corpus,
    normalize_sentence,
)

TINY = CorpusConfig(num_train_utts=40, num_dev_utts=10, num_test_utts=10)
TINY_ARGS = ["--num_train_utts", "40", "--num_dev_utts", "10", "--num_test_utts", "10"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generates a tiny corpus once, through the command line."""
    root = tmp_path_factory.mktemp("embedded")
    main(["--outdir", str(root), "--nj", "2", *TINY_ARGS])
    return root


def _transcripts(corpus: Path, part: str) -> dict[str, str]:
    """Reads all transcript lines of a part."""
    lines = {}
    for trans in (corpus / "LibriSpeech" / part).glob("*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            lines[utt_id] = text
    return lines


def test_layout_and_audio(corpus: Path) -> None:
    for part, expected in ((TRAIN_PART, 40), (DEV_PART, 10), (TEST_PART, 10)):
        flacs = sorted((corpus / "LibriSpeech" / part).glob("*/*/*.flac"))
        assert len(flacs) == expected
        for flac in flacs:
            spk, chapter = flac.parent.parent.name, flac.parent.name
            assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}}\.flac", flac.name)
            assert (flac.parent / f"{spk}-{chapter}.trans.txt").is_file()
            info = soundfile.info(str(flac))
            assert (info.format, info.subtype) == ("FLAC", "PCM_16")
            assert (info.samplerate, info.channels) == (16000, 1)
            assert 0.5 < info.duration < 15.0
        audio, _ = soundfile.read(str(flacs[0]))
        assert np.abs(audio).max() > 0.05


def test_transcripts_match_flacs_and_are_normalised(corpus: Path) -> None:
    for part in (TRAIN_PART, DEV_PART, TEST_PART):
        lines = _transcripts(corpus, part)
        flacs = {flac.stem for flac in (corpus / "LibriSpeech" / part).glob("*/*/*.flac")}
        assert set(lines) == flacs
        for text in lines.values():
            assert re.fullmatch(r"[A-Z']+( [A-Z']+){3,19}", text)


def test_parts_have_disjoint_sentences_and_speakers(corpus: Path) -> None:
    texts = {
        part: set(_transcripts(corpus, part).values())
        for part in (TRAIN_PART, DEV_PART, TEST_PART)
    }
    assert not texts[TRAIN_PART] & texts[DEV_PART]
    assert not texts[TRAIN_PART] & texts[TEST_PART]
    assert not texts[DEV_PART] & texts[TEST_PART]

    rows = [line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 12 + 3 + 3
    assert len({(row[1], row[2]) for row in rows}) == len(rows)  # every speaker sounds different
    speakers = {}
    for part in (TRAIN_PART, DEV_PART, TEST_PART):
        speakers[part] = {path.name for path in (corpus / "LibriSpeech" / part).iterdir()}
        assert speakers[part] == {row[0] for row in rows if row[5] == part}
    assert not speakers[TRAIN_PART] & (speakers[DEV_PART] | speakers[TEST_PART])
    assert not speakers[DEV_PART] & speakers[TEST_PART]


def test_rerun_is_a_noop_and_other_arguments_are_refused(corpus: Path) -> None:
    files = [path for path in corpus.rglob("*") if path.is_file()]
    mtimes = {path: path.stat().st_mtime_ns for path in files}
    generate_corpus(corpus, TINY)
    assert {path: path.stat().st_mtime_ns for path in files} == mtimes
    assert '"done": true' in (corpus / MARKER_NAME).read_text()
    with pytest.raises(FileExistsError, match="other arguments"):
        generate_corpus(corpus, dataclasses.replace(TINY, seed=1))


def test_normalize_sentence() -> None:
    assert normalize_sentence("Don't look back, something might be gaining on you.") == (
        "DON'T LOOK BACK SOMETHING MIGHT BE GAINING ON YOU"
    )
    assert normalize_sentence("A well-known caf\u00e9 \u2019round the corner!") == (
        "A WELL KNOWN CAFE ROUND THE CORNER"
    )
    assert normalize_sentence("I'll see you at 10 o'clock tonight.") is None  # digits
    assert normalize_sentence("The IBM machine is very big today.") is None  # acronym
    assert normalize_sentence("Mr Smith is here now.") is None  # abbreviation
    assert normalize_sentence("Too short.") is None
    assert normalize_sentence(" ".join(["word"] * 21)) is None


def test_missing_fortunes_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        extract_sentences(tmp_path)
    (tmp_path / "wisdom.dat").write_bytes(b"\0")  # index files alone do not count
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        extract_sentences(tmp_path)


def test_cli_reports_impossible_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="dev-clean"):
        main(["--outdir", str(tmp_path), "--num_dev_utts", "2", "--num_dev_speakers", "3"])
