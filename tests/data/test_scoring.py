"""Tests of WER/CER scoring and RESULTS.md (``espnet_supernet.data.scoring``)."""

import json
from pathlib import Path

import pytest

from espnet_supernet.bin.score import main
from espnet_supernet.data.scoring import (
    ErrorCounts,
    ResultRow,
    char_tokens,
    read_text,
    score_pair,
    write_results_md,
)


def test_substitution_and_deletion() -> None:
    counts = score_pair({"u1": "A B C D"}, {"u1": "A X C"})
    assert (counts.n_ref, counts.sub, counts.dele, counts.ins) == (4, 1, 1, 0)
    assert counts.error_rate == pytest.approx(50.0)
    assert counts.corr == pytest.approx(50.0)
    assert (counts.n_sent, counts.n_sent_err) == (1, 1)
    assert counts.missing == ()


def test_insertion_and_correct_sentence() -> None:
    counts = score_pair({"u1": "A B", "u2": "C D"}, {"u1": "A B E", "u2": "C D"})
    assert (counts.n_ref, counts.sub, counts.dele, counts.ins) == (4, 0, 0, 1)
    assert counts.error_rate == pytest.approx(25.0)
    assert counts.corr == pytest.approx(100.0)
    assert (counts.n_sent, counts.n_sent_err) == (2, 1)
    assert counts.sentence_error_rate == pytest.approx(50.0)


def test_cer_counts_spaces_as_tokens() -> None:
    assert char_tokens(" AB  C ") == ["A", "B", "<space>", "C"]
    counts = score_pair({"u1": "AB C"}, {"u1": "AC C"}, unit="char")
    assert (counts.n_ref, counts.sub, counts.dele, counts.ins) == (4, 1, 0, 0)
    assert counts.error_rate == pytest.approx(25.0)
    merged = score_pair({"u1": "A B"}, {"u1": "AB"}, unit="char")
    assert (merged.n_ref, merged.sub, merged.dele, merged.ins) == (3, 0, 1, 0)
    words = score_pair({"u1": "A B"}, {"u1": "AB"})
    assert (words.sub, words.dele) == (1, 1)


def test_missing_and_empty_hypotheses_are_deletions() -> None:
    ref = {"u1": "A B", "u2": "C D E", "u3": "F"}
    counts = score_pair(ref, {"u1": "A B", "u3": "", "extra": "Z"})
    assert (counts.n_ref, counts.sub, counts.dele, counts.ins) == (6, 0, 4, 0)
    assert counts.error_rate == pytest.approx(400 / 6)
    assert counts.missing == ("u2",)
    assert counts.n_sent_err == 2


def test_empty_reference_is_an_error_naming_the_utterance() -> None:
    with pytest.raises(ValueError, match="utt_empty"):
        score_pair({"u1": "A", "utt_empty": "  "}, {"u1": "A"})


def test_read_text(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_text("u1 HELLO   WORLD\nu2\n\nu3 X\n", encoding="utf-8")
    assert read_text(str(path)) == {"u1": "HELLO WORLD", "u2": "", "u3": "X"}
    path.write_text("u1 A\nu1 B\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate utterance u1"):
        read_text(str(path))


def _row(size: str, test_set: str, wer: ErrorCounts) -> ResultRow:
    return ResultRow(
        size=size,
        test_set=test_set,
        wer=wer,
        cer=ErrorCounts(n_ref=40, sub=1, dele=0, ins=1, n_sent=2, n_sent_err=1),
        encoder_params=12_345_678,
        total_params=23_456_789,
        encoder_gflops_per_sec=1.234,
    )


def test_results_md_table(tmp_path: Path) -> None:
    wer = ErrorCounts(n_ref=8, sub=1, dele=1, ins=2, n_sent=2, n_sent_err=2)
    rows = [
        _row("16", "test_clean", wer),
        _row("large", "test_clean", wer),
        _row("4", "test_other", wer),
        _row("4", "test_clean", wer),
        _row("8.5", "test_clean", wer),
    ]
    path = tmp_path / "out/RESULTS.md"
    write_results_md({"asr_x": rows}, str(path))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    env = next(line for line in lines if line.startswith("- date:"))
    assert "python" in env and "torch" in env and "espnet" in env
    header = lines.index(
        "| size | test set | enc params | total params | enc GFLOPs/s | WER | S | D | I | words "
        "| CER |"
    )
    table = [line.split("|")[1:-1] for line in lines[header + 2 : header + 7]]
    assert [(c[0].strip(), c[1].strip()) for c in table] == [
        ("4", "test_clean"),
        ("4", "test_other"),
        ("8.5", "test_clean"),
        ("16", "test_clean"),
        ("large", "test_clean"),
    ]
    assert [c.strip() for c in table[0]] == [
        "4", "test_clean", "12.35M", "23.46M", "1.23", "50.00", "1", "1", "2", "8", "5.00",
    ]


def test_cli_pair_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = tmp_path / "data/test/text"
    ref.parent.mkdir(parents=True)
    ref.write_text("u1 A B C D\nu2 E F\n")
    hyp = tmp_path / "exp/decode_16/test/text"
    hyp.parent.mkdir(parents=True)
    hyp.write_text("u1 A X C\nu2 E F G\n")
    main(["--ref", str(ref), "--hyp", str(hyp), "--out", str(hyp.parent / "score")])
    result = (hyp.parent / "score/result.txt").read_text()
    assert result == capsys.readouterr().out
    sum_lines = [line for line in result.splitlines() if "Sum/Avg" in line]
    # WER: 6 words, 1 sub 1 del 1 ins -> 50 %; both sentences wrong.
    assert sum_lines[0].split() == [
        "|", "Sum/Avg", "|", "2", "6", "|", "66.7", "16.7", "16.7", "16.7", "50.0", "100.0", "|",
    ]
    entries = tmp_path / "entries.jsonl"
    entry = {
        "size": 16, "test_set": "test", "ref": str(ref), "hyp": str(hyp),
        "encoder_params": 1000, "total_params": 2000, "encoder_gflops_per_sec": 0.5,
    }
    entries.write_text(json.dumps(entry) + "\n\n" + json.dumps({**entry, "size": "2"}) + "\n")
    results_md = tmp_path / "RESULTS.md"
    main(["--summary", str(entries), "--results_md", str(results_md)])
    title, *table = capsys.readouterr().out.strip().splitlines()
    text = results_md.read_text()
    assert title == tmp_path.name and f"## {title}" in text and "\n".join(table) in text
    assert [line.split("|")[1].strip() for line in table[2:]] == ["2", "16"]
    assert "| 1.0k | 2.0k | 0.50 | 50.00 | 1 | 1 | 1 | 6 | 50.00 |" in table[3]
    assert "## Comparison" not in text

    # two experiments: a comparison table, size by size, one column each
    other = tmp_path / "asr_b" / "score_summary.jsonl"
    other.parent.mkdir()
    other.write_text(json.dumps({**entry, "hyp": str(ref)}) + "\n")  # perfect hypothesis
    main(["--summary", str(entries), "--summary", str(other), "--results_md", str(results_md)])
    text = results_md.read_text()
    assert f"| size | test set | {tmp_path.name} | asr_b |" in text
    assert "| 2 | test | 50.00 / 50.00 | - |" in text
    assert "| 16 | test | 50.00 / 50.00 | 0.00 / 0.00 |" in text

    # asr_b's exp dir is gone: --keep_missing keeps its column and section as written
    section = text[text.index("## asr_b"):]
    (other.parent / "score_summary.jsonl").unlink()
    (tmp_path / "asr_c").mkdir()
    third = tmp_path / "asr_c" / "score_summary.jsonl"
    third.write_text(json.dumps({**entry, "size": "2", "hyp": str(ref)}) + "\n")
    main(["--summary", str(entries), "--summary", str(third), "--results_md", str(results_md),
          "--keep_missing"])
    text = results_md.read_text()
    assert f"| size | test set | asr_b | asr_c | {tmp_path.name} |" in text  # titles sorted
    assert "| 2 | test | - | 0.00 / 0.00 | 50.00 / 50.00 |" in text
    assert "| 16 | test | 0.00 / 0.00 | - | 50.00 / 50.00 |" in text
    assert section in text and text.count("## asr_b") == 1 and "## asr_c" in text
    # without it, only what was scored now
    main(["--summary", str(third), "--results_md", str(results_md)])
    assert "asr_b" not in results_md.read_text()


def test_cli_empty_reference_exits(tmp_path: Path) -> None:
    (tmp_path / "ref").write_text("u1 A\nbad_utt\n")
    (tmp_path / "hyp").write_text("u1 A\n")
    with pytest.raises(SystemExit, match="bad_utt"):
        main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp")])
