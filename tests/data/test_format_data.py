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


def _segmented_dir(tmp_path: Path) -> Path:
    """A data directory with ``segments``: recordings rec1 (2 s) and rec2 (1 s) of known
    samples (rec1: 0, 1, 2, ...), four segments, rec2 at 16 kHz as flac, rec1 as wav."""
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "rec1.wav", np.arange(32000, dtype=np.int16), 16000,
                    subtype="PCM_16")
    soundfile.write(audio / "rec2.flac", -np.arange(16000, dtype=np.int16), 16000,
                    format="FLAC", subtype="PCM_16")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec1 {audio / 'rec1.wav'}\nrec2 {audio / 'rec2.flac'}\n")
    (data / "segments").write_text("a-1 rec1 0.50 1.25\na-2 rec1 1.25 2.00\n"
                                   "b-1 rec2 0.00 0.10\nb-2 rec2 0.25 1.00\n")
    (data / "text").write_text("a-1 one\na-2 two\nb-1 three\nb-2 four\n")
    (data / "utt2spk").write_text("a-1 a\na-2 a\nb-1 b\nb-2 b\n")
    return data


@pytest.mark.parametrize("nj", [1, 2])
def test_segments_are_cut_sample_exact(tmp_path: Path, nj: int) -> None:
    data = _segmented_dir(tmp_path)
    outdir = tmp_path / "out"
    main([str(data), str(outdir), "--nj", str(nj), "--min_duration", "0"])
    cut_dir = outdir.resolve() / "data"
    ids = ["a-1", "a-2", "b-1", "b-2"]
    assert _read(outdir / "wav.scp") == {u: str(cut_dir / f"{u}.flac") for u in ids}
    assert _read(outdir / "utt2num_samples") == {"a-1": "12000", "a-2": "12000",
                                                 "b-1": "1600", "b-2": "12000"}
    assert _read(outdir / "text") == _read(data / "text")
    assert _read(outdir / "utt2spk") == _read(data / "utt2spk")
    assert _read(outdir / "spk2utt") == {"a": "a-1 a-2", "b": "b-1 b-2"}
    assert not (outdir / "segments").exists()
    assert (outdir / "feats_type").read_text() == "raw\n"
    expected = {"a-1": np.arange(8000, 20000), "a-2": np.arange(20000, 32000),
                "b-1": -np.arange(0, 1600), "b-2": -np.arange(4000, 16000)}
    for utt_id, samples in expected.items():
        assert soundfile.info(cut_dir / f"{utt_id}.flac").subtype == "PCM_16"
        cut, rate = soundfile.read(cut_dir / f"{utt_id}.flac", dtype="int16")
        assert rate == 16000
        np.testing.assert_array_equal(cut, samples.astype(np.int16))


def test_bad_segments_are_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _segmented_dir(tmp_path)
    with open(data / "segments", "a") as f:
        f.write("a-3 rec1 1.50 2.01\n"  # beyond rec1's 2 s
                "a-4 rec1 1.00 0.50\n"  # end before start
                "a-5 rec1 x 1.0\n"  # not a time
                "c-1 rec3 0.00 0.50\n"  # rec3 is not in wav.scp
                "d-1 rec4 0.00 0.50\n"  # rec4's file is garbage
                "d-2 rec4 0.50 1.00\n")
    (tmp_path / "audio/rec4.wav").write_bytes(b"garbage" * 100)
    with open(data / "wav.scp", "a") as f:
        f.write(f"rec4 {tmp_path / 'audio/rec4.wav'}\n")
    with open(data / "text", "a") as f:
        f.write("a-3 x\na-4 x\na-5 x\nc-1 x\nd-1 x\nd-2 x\ne-1 no segment\n")
    with open(data / "utt2spk", "a") as f:
        f.write("a-3 a\na-4 a\na-5 a\nc-1 c\nd-1 d\nd-2 d\ne-1 e\n")
    with caplog.at_level(logging.WARNING):
        summary = format_data_dir(data, tmp_path / "out", min_duration=0, nj=2)
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert ("Skipping a-3: segment ends at 2.01 s, after the end of recording rec1 (2.00 s)."
            in warnings)
    assert f"Skipping a-4: malformed segments line 'rec1 1.00 0.50' in {data}" in warnings
    assert f"Skipping a-5: malformed segments line 'rec1 x 1.0' in {data}" in warnings
    assert f"Skipping c-1: recording rec3 is missing from {data / 'wav.scp'}." in warnings
    assert (f"Skipping the 2 segments of recording rec4: bad audio {tmp_path / 'audio/rec4.wav'}"
            in warnings)
    assert f"Skipping e-1: missing from segments in {data}." in warnings
    assert ("kept 4 utterances; skipped 2 unreadable, 1 incomplete; dropped 0 shorter than "
            "0.00 s and 0 longer than 20.00 s; cut from 2 recordings, skipped 1 segments whose "
            "recording is not in wav.scp, 3 malformed or beyond the audio end.") in warnings
    assert (summary.num_utts, summary.unreadable, summary.incomplete, summary.no_recording,
            summary.bad_segment) == (4, 2, 1, 1, 3)
    for name in ("wav.scp", "text", "utt2spk", "utt2num_samples"):
        assert set(_read(tmp_path / "out" / name)) == {"a-1", "a-2", "b-1", "b-2"}
    assert sorted(p.name for p in (tmp_path / "out/data").iterdir()) == [
        "a-1.flac", "a-2.flac", "b-1.flac", "b-2.flac"]


def test_segments_duration_filter_writes_no_cut(tmp_path: Path) -> None:
    data = _segmented_dir(tmp_path)
    summary = format_data_dir(data, tmp_path / "out", min_duration=0.2, max_duration=0.7)
    # 0.75 s x 3 too long, 0.1 s too short
    assert (summary.num_utts, summary.too_short, summary.too_long) == (0, 1, 3)
    assert list((tmp_path / "out/data").iterdir()) == []
    summary = format_data_dir(data, tmp_path / "out2", min_duration=0.1, max_duration=0.75)
    assert (summary.num_utts, summary.too_short, summary.too_long) == (4, 0, 0)  # inclusive


def test_segments_wrong_sample_rate_is_an_error(tmp_path: Path) -> None:
    data = _segmented_dir(tmp_path)
    soundfile.write(tmp_path / "audio/rec2.flac", np.zeros(8000, dtype=np.int16), 8000,
                    format="FLAC")
    with pytest.raises(SampleRateError, match="rec2.flac has sample rate 8000 Hz"):
        format_data_dir(data, tmp_path / "out")


def test_truncated_recording_is_unreadable(tmp_path: Path, caplog) -> None:
    data = _segmented_dir(tmp_path)
    flac = tmp_path / "audio/rec2.flac"
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        summary = format_data_dir(data, tmp_path / "out", min_duration=0)
    assert f"Skipping the 2 segments of recording rec2: bad audio {flac}" in caplog.text
    assert (summary.num_utts, summary.unreadable) == (2, 2)
    assert set(_read(tmp_path / "out/wav.scp")) == {"a-1", "a-2"}


def test_recording_decoding_short_of_its_header_is_unreadable(tmp_path: Path,
                                                                monkeypatch) -> None:
    """A decode that stops before the header's sample count (libsndfile mostly raises
    instead, as for the truncated flac above) skips the recording too."""
    data = _segmented_dir(tmp_path)
    read = soundfile.read

    def short_read(path, *args, **kwargs):
        samples, rate = read(path, *args, **kwargs)
        return (samples[:-1], rate) if str(path).endswith("rec1.wav") else (samples, rate)

    monkeypatch.setattr(soundfile, "read", short_read)
    summary = format_data_dir(data, tmp_path / "out", min_duration=0, nj=1)
    assert (summary.num_utts, summary.unreadable) == (2, 2)
    assert set(_read(tmp_path / "out/wav.scp")) == {"b-1", "b-2"}
