"""Tests for formatting data directories (espnet_supernet.data.format_data)."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_supernet.bin.format_data import main
from espnet_supernet.data.embedded_corpus import CorpusConfig, generate_corpus
from espnet_supernet.data.format_data import SampleRateError, format_data_dir
from espnet_supernet.data.librispeech_prep import prepare_librispeech

OUTPUT_TABLES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generates a tiny corpus once and prepares its dev-clean data directory."""
    root = tmp_path_factory.mktemp("format")
    config = CorpusConfig(
        num_train_utts=4,
        num_dev_utts=12,
        num_test_utts=4,
        num_train_speakers=2,
        num_dev_speakers=3,
        num_test_speakers=2,
        chapters_per_speaker=1,
    )
    generate_corpus(root / "corpus", config)
    prepare_librispeech(root / "corpus", ["dev-clean"], root / "data")
    return root / "data" / "dev_clean"


def _read(path: Path) -> dict[str, str]:
    """Reads a two-column Kaldi table, checking that its keys are C-sorted and unique."""
    rows = [line.split(" ", 1) for line in path.read_text().splitlines()]
    keys = [key for key, _ in rows]
    assert keys == sorted(set(keys), key=str.encode)
    return dict(rows)


def _private_copy(data_dir: Path, tmp_path: Path) -> Path:
    """Copies a data directory and its audio so that a test may damage the audio."""
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    lines = []
    for utt_id, path in _read(data_dir / "wav.scp").items():
        lines.append(f"{utt_id} {shutil.copy(path, audio_dir)}\n")
    (copy / "wav.scp").write_text("".join(lines))
    return copy


def test_output_is_consistent_sorted_and_counted(data_dir: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "dump" / "raw" / "dev_clean"
    main([str(data_dir), str(outdir), "--nj", "2"])
    tables = {name: _read(outdir / name) for name in OUTPUT_TABLES}
    utt_ids = set(_read(data_dir / "wav.scp"))
    assert len(utt_ids) == 12
    for name in ("wav.scp", "text", "utt2spk", "utt2num_samples"):
        assert set(tables[name]) == utt_ids
    assert tables["wav.scp"] == _read(data_dir / "wav.scp")
    assert tables["text"] == _read(data_dir / "text")
    assert tables["utt2spk"] == _read(data_dir / "utt2spk")
    for utt_id, num_samples in tables["utt2num_samples"].items():
        assert int(num_samples) == soundfile.info(tables["wav.scp"][utt_id]).frames
    spk2utt = {spk: utts.split() for spk, utts in tables["spk2utt"].items()}
    assert spk2utt == {
        spk: sorted((u for u, s in tables["utt2spk"].items() if s == spk), key=str.encode)
        for spk in set(tables["utt2spk"].values())
    }
    assert (outdir / "feats_type").read_text() == "raw\n"


def test_corrupt_audio_is_skipped_and_named(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = _private_copy(data_dir, tmp_path)
    wavs = _read(copy / "wav.scp")
    garbage_id, truncated_id = sorted(wavs)[0], sorted(wavs)[5]
    Path(wavs[garbage_id]).write_bytes(b"this is not a flac file" * 100)
    data = Path(wavs[truncated_id]).read_bytes()
    Path(wavs[truncated_id]).write_bytes(data[: len(data) // 2])

    with caplog.at_level(logging.WARNING):
        summary = format_data_dir(copy, tmp_path / "out", nj=2)
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert wavs[garbage_id] in warnings and wavs[truncated_id] in warnings
    assert "skipped 2 unreadable" in warnings
    assert summary.num_utts == 10 and summary.unreadable == 2
    kept = set(wavs) - {garbage_id, truncated_id}
    for name in OUTPUT_TABLES:
        if name != "spk2utt":
            assert set(_read(tmp_path / "out" / name)) == kept


def test_duration_filter_reports_drops(data_dir: Path, tmp_path: Path) -> None:
    durations = sorted(
        soundfile.info(path).duration for path in _read(data_dir / "wav.scp").values()
    )
    low, high = (durations[2] + durations[3]) / 2, (durations[-2] + durations[-1]) / 2
    summary = format_data_dir(data_dir, tmp_path / "out", min_duration=low, max_duration=high)
    assert (summary.num_utts, summary.too_short, summary.too_long) == (8, 3, 1)
    for num_samples in _read(tmp_path / "out" / "utt2num_samples").values():
        assert low * 16000 <= int(num_samples) <= high * 16000


def test_incomplete_utterances_are_skipped(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    lines = (copy / "text").read_text().splitlines()
    (copy / "text").write_text("\n".join(lines[1:]) + "\n")
    summary = format_data_dir(copy, tmp_path / "out")
    assert (summary.num_utts, summary.incomplete) == (11, 1)
    assert lines[0].split(" ", 1)[0] not in _read(tmp_path / "out" / "wav.scp")


def test_wrong_sample_rate_is_an_error(data_dir: Path, tmp_path: Path) -> None:
    copy = _private_copy(data_dir, tmp_path)
    wavs = _read(copy / "wav.scp")
    wrong = wavs[sorted(wavs)[3]]
    soundfile.write(wrong, np.zeros(8000, dtype=np.int16), 8000, format="FLAC")
    with pytest.raises(SampleRateError, match="8000 Hz, expected 16000 Hz"):
        format_data_dir(copy, tmp_path / "out")
    with pytest.raises(SystemExit, match=wrong):
        main([str(copy), str(tmp_path / "out2")])
