"""The LibriSpeech supernet recipe on bad input: a missing corpus, broken corpus files
and an unknown option. Stages 1-4 only (no training); each test uses its own copy of the
recipe."""

import shutil
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PARTS = {"train_clean_100": "train-clean-100", "dev_clean": "dev-clean", "test_clean": "test-clean"}
FS = 16000


def flacs(corpus: Path, part: str) -> List[Path]:
    """The flac files of a corpus part, sorted."""
    return sorted((corpus / "LibriSpeech" / part).glob("*/*/*.flac"))


def trans_file(flac: Path) -> Path:
    """The transcript file of a flac's chapter (``<spk>-<chapter>.trans.txt``)."""
    spk, chapter = flac.parent.parent.name, flac.parent.name
    return flac.parent / f"{spk}-{chapter}.trans.txt"


def rewrite_trans_line(flac: Path, new_line: Optional[str] = None) -> None:
    """Replaces (or, with None, deletes) the transcript line of a flac's utterance."""
    trans = trans_file(flac)
    lines = trans.read_text(encoding="utf-8").splitlines(keepends=True)
    utt = flac.stem
    hits = [i for i, line in enumerate(lines) if line.split(maxsplit=1)[:1] == [utt]]
    assert len(hits) == 1, f"{utt} in {trans}: {hits}"
    if new_line is None:
        del lines[hits[0]]
    else:
        lines[hits[0]] = new_line
    trans.write_text("".join(lines), encoding="utf-8")


def scp_keys(path: Path) -> Set[str]:
    """The keys of a Kaldi table."""
    return {line.split(maxsplit=1)[0] for line in path.read_text(encoding="utf-8").splitlines()}


def lines_with(output: str, *needles: str) -> List[str]:
    """The output lines that contain every needle."""
    return [line for line in output.splitlines() if all(n in line for n in needles)]


def test_missing_corpus_fails_fast(recipe_copy, run_recipe) -> None:
    recipe = recipe_copy("no_corpus")
    run = run_recipe(recipe, "--stop_stage", "1", corpus=Path("/nonexistent"), timeout=120)
    assert run.returncode != 0, run.tail()
    assert run.seconds < 60, f"took {run.seconds:.0f} s to fail\n{run.tail()}"
    assert lines_with(run.output, "LIBRISPEECH"), f"no message naming LIBRISPEECH\n{run.tail()}"
    assert "/nonexistent" in run.output, run.tail()
    assert not (recipe / "downloads").exists(), "generated the embedded corpus instead"
    assert not list(recipe.glob("data/*/wav.scp")), "data directories written"


def test_unknown_option_fails(recipe_copy, run_recipe, tiny_corpus) -> None:
    recipe = recipe_copy("bad_option")
    run = run_recipe(recipe, "--no_such_option", "1", corpus=tiny_corpus, timeout=120)
    assert run.returncode != 0, run.tail()
    assert run.seconds < 60, run.tail()
    assert lines_with(run.output, "no_such_option"), f"option not named\n{run.tail()}"
    assert "Stage 1" not in run.output, f"stages ran despite the bad option\n{run.tail()}"
    assert not (recipe / "data").exists()


@pytest.fixture(scope="module")
def broken_corpus(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict:
    """A copy of the tiny corpus with one broken utterance per part.

    train-clean-100: a flac holding garbage bytes; dev-clean: a transcript line without
    text; test-clean: a flac without a transcript line.
    """
    corpus = tmp_path_factory.mktemp("broken_corpus") / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    corrupt = flacs(corpus, PARTS["train_clean_100"])[1]
    corrupt.write_bytes(b"this is not a flac file\x00\xff\xfe" * 64)
    empty = flacs(corpus, PARTS["dev_clean"])[1]
    rewrite_trans_line(empty, f"{empty.stem}\n")
    untranscribed = flacs(corpus, PARTS["test_clean"])[1]
    rewrite_trans_line(untranscribed, None)
    return {
        "corpus": corpus,
        "bad": {"train_clean_100": corrupt, "dev_clean": empty, "test_clean": untranscribed},
    }


def test_bad_utterances_are_skipped_and_named(broken_corpus, recipe_copy, run_recipe) -> None:
    corpus, bad = broken_corpus["corpus"], broken_corpus["bad"]
    recipe = recipe_copy("bad_input")
    run = run_recipe(recipe, "--stop_stage", "4", corpus=corpus, timeout=600)
    assert run.returncode == 0, run.tail()
    assert "Successfully finished stages 1-4" in run.output, run.tail()

    corrupt, empty, untranscribed = bad["train_clean_100"], bad["dev_clean"], bad["test_clean"]
    assert lines_with(run.output, corrupt.stem, corrupt.name), (
        f"corrupt {corrupt} not named\n{run.tail()}"
    )
    assert lines_with(run.output, empty.stem, "empty"), (
        f"empty transcript of {empty.stem} not named\n{run.tail()}"
    )
    assert lines_with(run.output, untranscribed.name, "transcript"), (
        f"{untranscribed} without transcript not named\n{run.tail()}"
    )

    for dset, part in PARTS.items():
        expected = {flac.stem for flac in flacs(corpus, part)} - {bad[dset].stem}
        for name in ("wav.scp", "text", "utt2spk", "utt2num_samples"):
            got = scp_keys(recipe / "dump/raw" / dset / name)
            assert got == expected, (
                f"dump/raw/{dset}/{name}: missing {sorted(expected - got)}, "
                f"unexpected {sorted(got - expected)}\n{run.tail()}"
            )


def test_valid_set_stays_duration_filtered(recipe_copy, run_recipe, tiny_corpus) -> None:
    min_duration = 3.0
    recipe = recipe_copy("valid_filter")
    run = run_recipe(
        recipe, "--stop_stage", "4", "--min_duration", str(min_duration),
        corpus=tiny_corpus, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.tail()
    for dset in ("train_clean_100", "dev_clean"):  # train and valid sets of run.sh
        org = recipe / "dump/raw/org" / dset / "utt2num_samples"
        samples = dict(line.split() for line in org.read_text().splitlines())
        expected = {k for k, n in samples.items() if int(n) >= min_duration * FS}
        assert expected and expected != set(samples), "corpus does not exercise the filter"
        assert scp_keys(recipe / "dump/raw" / dset / "wav.scp") == expected, dset
