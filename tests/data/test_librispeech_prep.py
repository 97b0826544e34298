"""Tests for LibriSpeech data preparation (espnet_supernet.data.librispeech_prep)."""

import logging
import shutil
from pathlib import Path

import pytest

from espnet_supernet.bin.prepare_librispeech import main
from espnet_supernet.data.embedded_corpus import CorpusConfig, generate_corpus
from espnet_supernet.data.librispeech_prep import CorpusNotFoundError, prepare_librispeech

PARTS = ["train-clean-100", "dev-clean", "test-clean"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generates a tiny LibriSpeech-layout corpus once."""
    root = tmp_path_factory.mktemp("corpus")
    config = CorpusConfig(
        num_train_utts=16,
        num_dev_utts=8,
        num_test_utts=8,
        num_train_speakers=4,
        num_dev_speakers=2,
        num_test_speakers=2,
    )
    generate_corpus(root, config)
    return root


@pytest.fixture
def corpus_copy(corpus: Path, tmp_path: Path) -> Path:
    """A copy of the corpus that a test may damage."""
    shutil.copytree(corpus, tmp_path / "copy")
    return tmp_path / "copy"


def _read(path: Path) -> list[tuple[str, str]]:
    """Reads a two-column Kaldi table as (key, value) pairs in file order."""
    return [
        (line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in path.read_text().splitlines()
    ]


def _dev_utterances(root: Path) -> list[tuple[Path, str, str]]:
    """(trans.txt, utt id, text) of every dev-clean transcript line."""
    rows = []
    for trans in sorted((root / "LibriSpeech" / "dev-clean").glob("*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            rows.append((trans, utt_id, text))
    return rows


def test_data_dirs_are_sorted_and_consistent(corpus: Path, tmp_path: Path) -> None:
    main(["--librispeech", str(corpus), "--outdir", str(tmp_path / "data")])
    for part, num_utts in zip(PARTS, (16, 8, 8)):
        data_dir = tmp_path / "data" / part.replace("-", "_")
        tables = {
            name: _read(data_dir / name) for name in ("wav.scp", "text", "utt2spk", "spk2utt")
        }
        for rows in tables.values():
            keys = [key for key, _ in rows]
            assert keys == sorted(keys, key=str.encode) and len(set(keys)) == len(keys)
        utt_ids = [key for key, _ in tables["wav.scp"]]
        assert len(utt_ids) == num_utts
        assert [key for key, _ in tables["text"]] == utt_ids
        assert [key for key, _ in tables["utt2spk"]] == utt_ids
        for utt_id, path in tables["wav.scp"]:
            assert Path(path).is_absolute() and Path(path).is_file()
            assert Path(path).name == f"{utt_id}.flac"
        for utt_id, spk in tables["utt2spk"]:
            assert utt_id.startswith(f"{spk}-")
        spk2utt = {spk: utts.split() for spk, utts in tables["spk2utt"]}
        assert sorted(u for utts in spk2utt.values() for u in utts) == sorted(utt_ids)
        for spk, utts in spk2utt.items():
            assert utts == sorted(utts, key=str.encode)
            assert all(utt.startswith(f"{spk}-") for utt in utts)
        expected_text = {
            utt_id: text
            for trans in (corpus / "LibriSpeech" / part).glob("*/*/*.trans.txt")
            for utt_id, text in _read(trans)
        }
        assert dict(tables["text"]) == expected_text


def test_missing_root_names_path_and_librispeech(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as excinfo:
        main(["--librispeech", str(missing), "--outdir", str(tmp_path / "data")])
    message = str(excinfo.value.code)
    assert str(missing) in message and "LIBRISPEECH" in message and "embedded" in message
    assert not (tmp_path / "data").exists()


def test_missing_part_names_path(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError, match="LIBRISPEECH") as excinfo:
        prepare_librispeech(corpus, ["dev-clean", "dev-other"], tmp_path / "data")
    assert str(corpus / "LibriSpeech" / "dev-other") in str(excinfo.value)
    assert not (tmp_path / "data").exists()


def test_bad_utterances_are_skipped_and_named(
    corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = _dev_utterances(corpus_copy)
    (trans_a, no_line, _), (trans_b, empty, _), (_, no_flac, _) = rows[0], rows[1], rows[-1]
    flac_no_line = next(corpus_copy.glob(f"LibriSpeech/dev-clean/*/*/{no_line}.flac"))
    next(corpus_copy.glob(f"LibriSpeech/dev-clean/*/*/{no_flac}.flac")).unlink()
    for trans in {trans_a, trans_b}:
        lines = []
        for line in trans.read_text().splitlines():
            utt_id = line.split(" ", 1)[0]
            if utt_id == empty:
                lines.append(f"{utt_id} ")
            elif utt_id != no_line:
                lines.append(line)
        trans.write_text("\n".join(lines) + "\n")

    with caplog.at_level(logging.WARNING):
        summaries = prepare_librispeech(corpus_copy, ["dev-clean"], tmp_path / "data")
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(flac_no_line.resolve()) in warnings
    assert f"{empty}: empty transcript" in warnings
    assert f"{no_flac}: transcript line without flac" in warnings
    assert "skipped 1 flac files without transcript, 1 empty transcripts, 1 transcript" in warnings

    (summary,) = summaries
    assert (summary.num_utts, summary.no_transcript, summary.empty_text, summary.no_audio) == (
        5,
        1,
        1,
        1,
    )
    written = [key for key, _ in _read(tmp_path / "data" / "dev_clean" / "wav.scp")]
    expected = sorted(
        {utt_id for _, utt_id, _ in rows} - {no_line, empty, no_flac}, key=str.encode
    )
    assert written == expected
    assert [key for key, _ in _read(tmp_path / "data" / "dev_clean" / "text")] == expected


def test_empty_part_exits_nonzero_after_writing_the_others(
    corpus_copy: Path, tmp_path: Path
) -> None:
    for flac in corpus_copy.glob("LibriSpeech/test-clean/*/*/*.flac"):
        flac.unlink()
    with pytest.raises(SystemExit, match="test-clean") as excinfo:
        main(["--librispeech", str(corpus_copy), "--outdir", str(tmp_path / "data")])
    assert excinfo.value.code != 0
    assert len(_read(tmp_path / "data" / "dev_clean" / "wav.scp")) == 8
    assert not (tmp_path / "data" / "test_clean").exists()
