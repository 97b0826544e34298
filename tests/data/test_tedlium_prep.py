"""Tests for TED-LIUM release 2 data preparation (espnet_supernet.data.tedlium_prep) and
the cutting of its segments by format_data."""

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_supernet.bin.prepare_tedlium import main
from espnet_supernet.data.format_data import format_data_dir
from espnet_supernet.data.tedlium_prep import (
    CorpusNotFoundError,
    StmLineError,
    StmSegment,
    normalize_words,
    parse_stm_line,
    prepare_tedlium,
)

SETS = ("train", "dev", "test")
# (set, talk, seconds, stm lines): every talk is its own speaker, as in TED-LIUM
TALKS = (
    ("dev", "TalkA_2010X", 3.0, (
        "TalkA_2010X 1 inter_segment_gap 0.00 0.29 <o,,unknown> ignore_time_segment_in_scoring",
        "TalkA_2010X 1 TalkA_2010X 0.29 1.25 <o,f0,male> it 's because(2) <sil> i 'm here",
        "TalkA_2010X 1 TalkA_2010X 1.25 2.10 <o,f0,male> the <unk> 's story",
        "TalkA_2010X 1 TalkA_2010X 2.10 2.90 <o,f0,male> <unk>",
    )),
    ("dev", "TalkB_2011", 2.0, (
        "TalkB_2011 1 TalkB_2011 0.50 1.25 <o,f0,female> hello world",
        "TalkB_2011 1 TalkB_2011 1.30 2.00 <o,f0,female> up to the end",
    )),
    ("train", "TalkC_2012", 2.0, ("TalkC_2012 1 TalkC_2012 0.10 1.90 <o,f0,male> one talk",)),
    ("test", "TalkD_2013", 2.0, ("TalkD_2013 1 TalkD_2013 0.10 1.90 <o,f0,male> another",)),
)  # fmt: skip
DEV_IDS = ["TalkA_2010X-0000029-0000125", "TalkA_2010X-0000125-0000210",
           "TalkB_2011-0000050-0000125", "TalkB_2011-0000130-0000200"]


def _sph(path: Path, seconds: float) -> None:
    """A 16 kHz mono 16-bit NIST SPHERE file of noise, made by sox (-R: repeatable)."""
    subprocess.run(["sox", "-R", "-n", "-r", "16000", "-b", "16", "-c", "1", str(path),
                    "synth", str(seconds), "whitenoise", "vol", "0.3"], check=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TED-LIUM release 2 layout: root/TEDLIUM_release2/<set>/{sph,stm}."""
    root = tmp_path_factory.mktemp("tedlium")
    for name in SETS:
        for sub in ("sph", "stm"):
            (root / "TEDLIUM_release2" / name / sub).mkdir(parents=True)
    for name, talk, seconds, lines in TALKS:
        set_dir = root / "TEDLIUM_release2" / name
        _sph(set_dir / "sph" / f"{talk}.sph", seconds)
        (set_dir / "stm" / f"{talk}.stm").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def corpus_copy(corpus: Path, tmp_path: Path) -> Path:
    """A copy of the corpus that a test may damage."""
    shutil.copytree(corpus, tmp_path / "copy")
    return tmp_path / "copy"


def _read(path: Path) -> list[tuple[str, str]]:
    """A two-column Kaldi table as (key, value) pairs in file order."""
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]


def test_sox_sphere_reads_with_soundfile(corpus: Path) -> None:
    info = soundfile.info(str(corpus / "TEDLIUM_release2/dev/sph/TalkA_2010X.sph"))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "NIST", "PCM_16", 16000, 1, 48000)


@pytest.mark.parametrize(("line", "expected"), [
    ("T1 1 S1 17.82 28.81 <o,f0,male> i 'm here",
     StmSegment("T1", "S1", 1782, 2881, ("i", "'m", "here"))),
    ("T1 1 S1 0.29 1.15 <o> a", StmSegment("T1", "S1", 29, 115, ("a",))),  # rounded
    ("T1 1 S1 3 4 <o>", StmSegment("T1", "S1", 300, 400, ())),  # no words: empty text
    ("T1 1 inter_segment_gap 0.0 0.29 <o,,unknown> ignore_time_segment_in_scoring", None),
])  # fmt: skip
def test_parse_stm_line(line: str, expected: StmSegment | None) -> None:
    assert parse_stm_line(line) == expected


def test_utterance_id_is_kaldis() -> None:
    segment = parse_stm_line("AaronHuey_2010X 1 AaronHuey_2010X 17.82 28.81 <o> i")
    assert segment.utt_id == "AaronHuey_2010X-0001782-0002881"


@pytest.mark.parametrize(("line", "reason"), [
    ("T1 1 S1 0.5 1.0", "5 fields"),
    ("T1 1 S1 abc 1.0 <o> a", "non-numeric time 'abc'"),
    ("T1 1 S1 1.0 nan <o> a", "bad time 'nan'"),
    ("T1 1 S1 -1.0 1.0 <o> a", "bad time '-1.0'"),
    ("T1 1 S1 2.0 1.5 <o> a", "end 1.5 <= start 2.0"),
    ("T1 1 S1 2.0 2.0 <o> a", "end 2.0 <= start 2.0"),
    ("T1 1 S1 2.001 2.004 <o> a", "end 2.004 <= start 2.001"),  # equal after rounding
])  # fmt: skip
def test_malformed_stm_lines(line: str, reason: str) -> None:
    with pytest.raises(StmLineError) as excinfo:
        parse_stm_line(line)
    assert reason in str(excinfo.value)


@pytest.mark.parametrize(("words", "keep_unk", "join_suffix", "expected"), [
    ("it 's because(2) <sil> i 'm here", False, True, "it's because i'm here"),
    ("it 's because(2) <sil> i 'm here", False, False, "it 's because i 'm here"),
    ("the <unk> 's story <unk>", False, True, "the story"),
    ("the <unk> 's story <unk>", True, True, "the <unk>'s story <unk>"),
    ("the <unk> 's story <unk>", True, False, "the <unk> 's story <unk>"),
    ("the <unk> 's story <unk>", False, False, "the story"),
    ("'cause we (2) can", False, True, "'cause we can"),  # nothing to join to, lone mark
    ("<unk> <sil>", False, True, ""),
    ("<unk> <sil>", True, True, "<unk>"),
])  # fmt: skip
def test_normalize_words(words: str, keep_unk: bool, join_suffix: bool, expected: str) -> None:
    assert normalize_words(words.split(), keep_unk, join_suffix) == expected


def test_data_dirs(corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        main(["--tedlium2", str(corpus), "--outdir", str(tmp_path / "data")])
    dev = tmp_path / "data" / "dev"
    sph = corpus.resolve() / "TEDLIUM_release2/dev/sph"
    assert _read(dev / "wav.scp") == [("TalkA_2010X", str(sph / "TalkA_2010X.sph")),
                                      ("TalkB_2011", str(sph / "TalkB_2011.sph"))]
    assert _read(dev / "segments") == [
        (DEV_IDS[0], "TalkA_2010X 0.29 1.25"), (DEV_IDS[1], "TalkA_2010X 1.25 2.10"),
        (DEV_IDS[2], "TalkB_2011 0.50 1.25"), (DEV_IDS[3], "TalkB_2011 1.30 2.00")]
    assert _read(dev / "text") == [
        (DEV_IDS[0], "it's because i'm here"), (DEV_IDS[1], "the story"),
        (DEV_IDS[2], "hello world"), (DEV_IDS[3], "up to the end")]
    assert _read(dev / "utt2spk") == [(DEV_IDS[0], "TalkA_2010X"), (DEV_IDS[1], "TalkA_2010X"),
                                      (DEV_IDS[2], "TalkB_2011"), (DEV_IDS[3], "TalkB_2011")]
    assert _read(dev / "spk2utt") == [("TalkA_2010X", " ".join(DEV_IDS[:2])),
                                      ("TalkB_2011", " ".join(DEV_IDS[2:]))]
    assert _read(tmp_path / "data/train/text") == [("TalkC_2012-0000010-0000190", "one talk")]
    assert _read(tmp_path / "data/test/segments") == [
        ("TalkD_2013-0000010-0000190", "TalkD_2013 0.10 1.90")]
    messages = [r.getMessage() for r in caplog.records]
    assert (f"Skipping TalkA_2010X-0000210-0000290 ({corpus}/TEDLIUM_release2/dev/stm/"
            "TalkA_2010X.stm:4): empty text after normalisation.") in messages
    assert any(m.startswith("dev: wrote 4 segments of 2 recordings") and m.endswith(
        "0 malformed stm lines, 0 segments beyond the audio end, 1 segments with empty text; "
        "dropped 1 ignore_time_segment_in_scoring lines.") for m in messages), messages


def test_keep_unk_and_no_join(corpus: Path, tmp_path: Path) -> None:
    main(["--tedlium2", str(corpus), "--sets", "dev", "--outdir", str(tmp_path / "data"),
          "--keep_unk", "true", "--join_suffix", "false"])
    assert _read(tmp_path / "data/dev/text") == [
        (DEV_IDS[0], "it 's because i 'm here"), (DEV_IDS[1], "the <unk> 's story"),
        ("TalkA_2010X-0000210-0000290", "<unk>"),
        (DEV_IDS[2], "hello world"), (DEV_IDS[3], "up to the end")]


def test_bad_input_is_skipped_and_named(
    corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stm_dir = corpus_copy / "TEDLIUM_release2/dev/stm"
    (stm_dir / "TalkE_2014.stm").write_text(  # its sph is missing
        "TalkE_2014 1 TalkE_2014 0.00 1.00 <o> no audio\n"
        "TalkE_2014 1 TalkE_2014 1.00 2.00 <o> at all\n")
    with open(stm_dir / "TalkB_2011.stm", "a") as f:
        f.write("TalkB_2011 1 TalkB_2011 1.50\n"  # line 3
                "TalkB_2011 1 TalkB_2011 1.60 1.40 <o> backwards\n"  # line 4
                "TalkB_2011 1 TalkB_2011 abc 1.80 <o> not a time\n"  # line 5
                "TalkB_2011 1 TalkB_2011 1.50 2.01 <o> past the end\n"  # line 6
                "TalkB_2011 1 TalkB_2011 0.50 1.25 <o> the same segment again\n")  # line 7
    with caplog.at_level(logging.WARNING):
        (summary,) = prepare_tedlium(corpus_copy, ["dev"], tmp_path / "data")
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    stm_b = stm_dir / "TalkB_2011.stm"
    sph_e = corpus_copy / "TEDLIUM_release2/dev/sph/TalkE_2014.sph"
    assert (f"Skipping the 2 segments of TalkE_2014 in {stm_dir / 'TalkE_2014.stm'}: "
            f"no {sph_e}.") in warnings
    assert f"Skipping {stm_b}:3: malformed stm line (4 fields" in warnings
    assert f"Skipping {stm_b}:4: malformed stm line (end 1.40 <= start 1.60)." in warnings
    assert f"Skipping {stm_b}:5: malformed stm line (non-numeric time 'abc')." in warnings
    assert (f"Skipping TalkB_2011-0000150-0000201 ({stm_b}:6): ends at 2.01 s, after the end "
            "of TalkB_2011 (2.00 s).") in warnings
    assert (f"Skipping {stm_b}:7: malformed stm line (segment TalkB_2011-0000050-0000125 "
            f"already at {stm_b}:1).") in warnings
    assert ("skipped 2 segments of 1 recordings without readable sph, 4 malformed stm lines, "
            "1 segments beyond the audio end, 1 segments with empty text") in warnings
    assert (summary.num_utts, summary.num_recordings, summary.no_audio,
            summary.no_audio_segments, summary.malformed, summary.beyond_end,
            summary.empty_text, summary.ignored) == (4, 2, 1, 2, 4, 1, 1, 1)
    assert [key for key, _ in _read(tmp_path / "data/dev/segments")] == DEV_IDS
    assert [key for key, _ in _read(tmp_path / "data/dev/wav.scp")] == ["TalkA_2010X",
                                                                        "TalkB_2011"]


def test_unreadable_sph_is_skipped(corpus_copy: Path, tmp_path: Path, caplog) -> None:
    sph = corpus_copy / "TEDLIUM_release2/dev/sph/TalkB_2011.sph"
    sph.write_bytes(b"not a sphere file" * 50)
    with caplog.at_level(logging.WARNING):
        (summary,) = prepare_tedlium(corpus_copy, ["dev"], tmp_path / "data")
    assert "Skipping the 2 segments of TalkB_2011 in " in caplog.text
    assert f"unreadable {sph}" in caplog.text
    assert (summary.num_utts, summary.no_audio, summary.no_audio_segments) == (2, 1, 2)


def test_missing_root_names_path_and_tedlium2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as excinfo:
        main(["--tedlium2", str(missing), "--outdir", str(tmp_path / "data")])
    message = str(excinfo.value.code)
    assert message == (f"prepare_tedlium: TED-LIUM root {missing} does not exist: set TEDLIUM2 "
                       "in db.sh to the directory that contains TEDLIUM_release2/.")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("missing", ["test", "test/stm", "test/sph"])
def test_missing_set_dir_names_it(corpus_copy: Path, tmp_path: Path, missing: str) -> None:
    path = corpus_copy / "TEDLIUM_release2" / missing
    shutil.rmtree(path)
    with pytest.raises(CorpusNotFoundError, match="TEDLIUM2 in db.sh") as excinfo:
        prepare_tedlium(corpus_copy, SETS, tmp_path / "data")
    assert f"TED-LIUM directory {path} does not exist" in str(excinfo.value)
    assert not (tmp_path / "data").exists()  # checked before writing anything


def test_empty_set_exits_nonzero_after_writing_the_others(
    corpus_copy: Path, tmp_path: Path
) -> None:
    (corpus_copy / "TEDLIUM_release2/test/sph/TalkD_2013.sph").unlink()
    with pytest.raises(SystemExit) as excinfo:
        main(["--tedlium2", str(corpus_copy), "--outdir", str(tmp_path / "data")])
    assert excinfo.value.code == "prepare_tedlium: no usable segment in test."
    assert len(_read(tmp_path / "data/dev/segments")) == 4
    assert not (tmp_path / "data/test").exists()


@pytest.mark.parametrize("nj", [1, 2])
def test_format_data_cuts_the_segments(corpus: Path, tmp_path: Path, nj: int) -> None:
    """Stage 3 on a prepared set: one 16-bit flac per segment, sample-exact."""
    prepare_tedlium(corpus, ["dev"], tmp_path / "data")
    outdir = tmp_path / "dump/raw/org/dev"
    summary = format_data_dir(tmp_path / "data/dev", outdir, min_duration=0,
                              max_duration=1e9, nj=nj)
    assert (summary.num_utts, summary.unreadable, summary.no_recording,
            summary.bad_segment) == (4, 0, 0, 0)
    cut_dir = outdir.resolve() / "data"
    assert _read(outdir / "wav.scp") == [(utt, str(cut_dir / f"{utt}.flac")) for utt in DEV_IDS]
    # 0.29-1.25 s, 1.25-2.10 s, 0.50-1.25 s, 1.30-2.00 s at 16 kHz
    assert _read(outdir / "utt2num_samples") == list(
        zip(DEV_IDS, ("15360", "13600", "12000", "11200")))
    assert _read(outdir / "text") == _read(tmp_path / "data/dev/text")
    assert sorted(p.name for p in cut_dir.iterdir()) == [f"{utt}.flac" for utt in DEV_IDS]
    sph = corpus / "TEDLIUM_release2/dev/sph"
    talks = {talk: soundfile.read(str(sph / f"{talk}.sph"), dtype="int16")[0]
             for talk in ("TalkA_2010X", "TalkB_2011")}
    for utt, (talk, first, last) in zip(DEV_IDS, (("TalkA_2010X", 4640, 20000),
                                                  ("TalkA_2010X", 20000, 33600),
                                                  ("TalkB_2011", 8000, 20000),
                                                  ("TalkB_2011", 20800, 32000))):
        info = soundfile.info(str(cut_dir / f"{utt}.flac"))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "FLAC", "PCM_16", 16000, 1)
        cut, _ = soundfile.read(str(cut_dir / f"{utt}.flac"), dtype="int16")
        np.testing.assert_array_equal(cut, talks[talk][first:last])
