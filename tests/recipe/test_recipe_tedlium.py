"""End to end: stages 1-13 of the TED-LIUM release 2 recipe (egs2/tedlium2/supernet) on a
tiny generated corpus in TED-LIUM's layout, and its errors for a missing corpus.

The corpus: 3 talks in train (and one stm without its sph), 2 in dev (one stm line ending
after its talk), 2 in test, each talk one 16 kHz sph of espeak-ng sentences between
silences, with stm times that match (and ``ignore_time_segment_in_scoring`` gaps, ``<unk>``,
``(2)`` and ``'s`` in the transcripts). The run: the tiny supernet (sizes 4 and 8) for one
epoch on the 9 training segments (dev validates), greedy CTC decoding of test without LM,
scoring. About 1.5 minutes on 2 cores.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import soundfile

TEDLIUM2_REL = Path("egs2/tedlium2/supernet")  # the recipe, relative to the repository

FS = 16000
SIZES = ("4", "8")
TEST_SETS = ("test",)  # run.sh's "dev test" would decode dev too: +2 processes, ~40 s
ASR_EXP = "exp/asr_train_supernet_conformer_tiny"
INF_TAG = "decode_ctc_greedy"
TINY_ARGS = (
    "--asr_config", "conf/tuning/train_supernet_conformer_tiny.yaml",
    "--asr_args", "--max_epoch 1", "--token_type", "char", "--use_lm", "false",
    "--inference_config", f"conf/{INF_TAG}.yaml", "--nj", "1", "--inference_nj", "1",
    "--bn_calibration_batches", "0", "--test_sets", " ".join(TEST_SETS),
)  # fmt: skip
# Every ESPnet process (stats, training, cost report, each size x test set decoded) spends
# ~15 s importing on 2 busy cores: the run is kept to the fewest processes.
# set -> talk -> (stm words, spoken text) of each segment; the talk is its own speaker
TALKS = {
    "train": {
        "TrainOne_2010": [("hello world", "hello world"), ("the cat sat on the mat", None),
                          ("it 's a good day", "it's a good day")],
        "TrainTwo_2011": [("one two three", None), ("good morning everyone", None),
                          ("i 'm here today", "i'm here today")],
        "TrainThree_2012": [("open the door", None), ("we like music(2)", "we like music"),
                            ("thank you <unk> much", "thank you very much")],
    },
    "dev": {
        "DevOne_2014": [("see you later", None), ("how are you", None)],
        "DevTwo_2015": [("the sun is bright", None), ("good <sil> night", "good night")],
    },
    "test": {
        "TestOne_2016": [("a new day", None), ("the dog runs", None)],
        "TestTwo_2017": [("happy birthday", None), ("it 's time", "it's time")],
    },
}  # fmt: skip
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3")
GAP = 0.3  # seconds of silence before, between and after the sentences
NO_SPH = ("train", "TrainGhost_2013")  # an stm whose sph is missing
PAST_END = ("dev", "DevOne_2014")  # this talk's stm gets one line ending after the talk


@dataclass
class Corpus:
    """The generated corpus.

    Attributes:
        root: What TEDLIUM2 names (contains TEDLIUM_release2/).
        segments: ``{set: {utt id: (talk, start s, end s, expected text)}}`` of the
            segments stage 1 must keep.
        past_end: Utterance id of the segment ending after its talk.
    """

    root: Path
    segments: Dict[str, Dict[str, Tuple[str, float, float, str]]]
    past_end: str


EXPECTED_TEXT = {"it 's a good day": "it's a good day", "i 'm here today": "i'm here today",
                 "we like music(2)": "we like music", "thank you <unk> much": "thank you much",
                 "good <sil> night": "good night", "it 's time": "it's time"}


def _talk(workdir: Path, sph: Path, sentences: List[str], voice: str) -> List[Tuple[float, ...]]:
    """Speaks the sentences with espeak-ng and concatenates them with silences into one
    16 kHz sph (sox); returns each sentence's (start, end) in seconds."""
    wavs, times, offset = [], [], GAP
    for i, sentence in enumerate(sentences):
        raw, wav = workdir / f"{sph.stem}_{i}.raw.wav", workdir / f"{sph.stem}_{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), sentence], check=True)
        subprocess.run(["sox", str(raw), "-r", str(FS), "-b", "16", "-c", "1", str(wav)],
                       check=True)
        seconds = soundfile.info(str(wav)).frames / FS
        times.append((offset, offset + seconds))
        wavs.append(str(wav))
        offset += seconds + GAP
    silence = workdir / "silence.wav"
    subprocess.run(["sox", "-n", "-r", str(FS), "-b", "16", "-c", "1", str(silence), "trim",
                    "0", str(GAP)], check=True)
    parts = [str(silence)]
    for wav in wavs:
        parts += [wav, str(silence)]
    subprocess.run(["sox", *parts, str(sph)], check=True)
    return times


def _stm_line(talk: str, start: float, end: float, words: str) -> str:
    return f"{talk} 1 {talk} {start:.2f} {end:.2f} <o,f0,male> {words}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("tedlium2")
    workdir = root / "work"
    workdir.mkdir()
    segments: Dict[str, Dict[str, Tuple[str, float, float, str]]] = {}
    past_end = ""
    for index, (dset, talks) in enumerate(TALKS.items()):
        set_dir = root / "TEDLIUM_release2" / dset
        (set_dir / "sph").mkdir(parents=True)
        (set_dir / "stm").mkdir()
        segments[dset] = {}
        for number, (talk, rows) in enumerate(talks.items()):
            sph = set_dir / "sph" / f"{talk}.sph"
            times = _talk(workdir, sph, [spoken or words for words, spoken in rows],
                          VOICES[(index + number) % len(VOICES)])
            lines = []
            previous_end = 0.0
            for (words, _), (start, end) in zip(rows, times):
                start, end = round(start - 0.1, 2), round(end + 0.1, 2)  # in the silences
                lines.append(f"{talk} 1 inter_segment_gap {previous_end:.2f} {start:.2f} "
                             "<o,,unknown> ignore_time_segment_in_scoring")
                lines.append(_stm_line(talk, start, end, words))
                utt = f"{talk}-{round(start * 100):07d}-{round(end * 100):07d}"
                segments[dset][utt] = (talk, start, end, EXPECTED_TEXT.get(words, words))
                previous_end = end
            if (dset, talk) == PAST_END:
                duration = soundfile.info(str(sph)).duration
                start, end = round(duration - 0.2, 2), round(duration + 1.0, 2)
                lines.append(_stm_line(talk, start, end, "past the end"))
                past_end = f"{talk}-{round(start * 100):07d}-{round(end * 100):07d}"
            (set_dir / "stm" / f"{talk}.stm").write_text("\n".join(lines) + "\n")
    ghost_dset, ghost = NO_SPH
    (root / "TEDLIUM_release2" / ghost_dset / "stm" / f"{ghost}.stm").write_text(
        _stm_line(ghost, 0.5, 1.5, "no audio") + "\n" + _stm_line(ghost, 2, 3, "at all") + "\n")
    return Corpus(root, segments, past_end)


def _table(path: Path) -> Dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def recipe_run(corpus: Corpus, recipe_copy, run_recipe):
    recipe = recipe_copy("tedlium2", recipe=TEDLIUM2_REL)
    run = run_recipe(recipe, *TINY_ARGS, "--stop_stage", "13",
                     env={"TEDLIUM2": str(corpus.root)}, log_name="run_1-13.log", timeout=600)
    return recipe, run


def test_exit_status(recipe_run) -> None:
    _, run = recipe_run
    assert run.returncode == 0, run.tail()
    assert "Successfully finished stages 1-13" in run.output, run.tail()


def test_data_dirs(recipe_run, corpus: Corpus) -> None:
    recipe, run = recipe_run
    for dset, expected in corpus.segments.items():
        data = recipe / "data" / dset
        assert list(_table(data / "segments")) == sorted(expected, key=str.encode)
        assert _table(data / "segments") == {
            utt: f"{talk} {start:.2f} {end:.2f}" for utt, (talk, start, end, _) in
            expected.items()}
        assert _table(data / "text") == {utt: row[3] for utt, row in expected.items()}
        assert _table(data / "utt2spk") == {utt: row[0] for utt, row in expected.items()}
        sph_dir = corpus.root.resolve() / "TEDLIUM_release2" / dset / "sph"
        assert _table(data / "wav.scp") == {
            talk: str(sph_dir / f"{talk}.sph") for talk in TALKS[dset]}
        assert _table(data / "spk2utt") == {
            talk: " ".join(sorted((u for u, r in expected.items() if r[0] == talk),
                                  key=str.encode)) for talk in TALKS[dset]}
    assert [len(corpus.segments[d]) for d in ("train", "dev", "test")] == [9, 4, 4]
    stm = corpus.root / "TEDLIUM_release2/train/stm/TrainGhost_2013.stm"
    sph = corpus.root / "TEDLIUM_release2/train/sph/TrainGhost_2013.sph"
    assert f"Skipping the 2 segments of TrainGhost_2013 in {stm}: no {sph}." in run.output
    assert f"Skipping {corpus.past_end} (" in run.output
    assert "after the end of DevOne_2014" in run.output
    assert "train: wrote 9 segments of 3 recordings" in run.output
    assert "dev: wrote 4 segments of 2 recordings" in run.output
    assert "test: wrote 4 segments of 2 recordings" in run.output


def test_dump_dirs_hold_the_cut_segments(recipe_run, corpus: Corpus) -> None:
    recipe, _ = recipe_run
    for dset, expected in corpus.segments.items():
        org = recipe / "dump/raw/org" / dset
        wavs = _table(org / "wav.scp")
        assert wavs == {utt: str(org.resolve() / "data" / f"{utt}.flac") for utt in expected}
        assert _table(org / "utt2num_samples") == {
            utt: str(round(end * FS) - round(start * FS))
            for utt, (_, start, end, _) in expected.items()}
        for utt, path in wavs.items():
            assert soundfile.info(path).frames == int(_table(org / "utt2num_samples")[utt])
        assert not (org / "segments").exists()
        assert _table(recipe / "dump/raw" / dset / "text") == {
            utt: row[3] for utt, row in expected.items()}  # all within 0.1-20 s


def test_every_size_decoded_and_scored(recipe_run) -> None:
    recipe, _ = recipe_run
    exp = recipe / ASR_EXP
    assert list(json.loads((exp / "subnets.json").read_text())) == list(SIZES)
    for size in SIZES:
        for dset in TEST_SETS:
            hyp = exp / f"{INF_TAG}_size{size}" / dset / "text"
            refs = _table(recipe / "dump/raw" / dset / "text")
            assert [line.split(" ", 1)[0] for line in hyp.read_text().splitlines()] == list(
                refs)
    rows = [json.loads(line) for line in (exp / "score_summary.jsonl").read_text().splitlines()]
    assert sorted((row["size"], row["test_set"]) for row in rows) == sorted(
        (size, dset) for size in SIZES for dset in TEST_SETS)
    for results in (exp / "RESULTS.md", recipe / "RESULTS.md"):
        text = results.read_text()
        section = text.split(f"## {exp.name}\n", 1)[-1].split("\n## ", 1)[0]
        table = [line for line in section.splitlines() if line.startswith("|")]
        header = [cell.strip() for cell in table[0].strip("|").split("|")]
        cells = [dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
                 for line in table[2:]]
        assert sorted((row["size"], row["test set"]) for row in cells) == sorted(
            (size, dset) for size in SIZES for dset in TEST_SETS), text
        for row in cells:
            assert float(row["WER"]) >= 0, row
            assert int(row["words"]) == sum(
                len(t.split()) for t in _table(recipe / "dump/raw" / row["test set"] / "text")
                .values()), row


def test_missing_corpus_is_a_clear_error(recipe_copy, run_recipe) -> None:
    recipe = recipe_copy("tedlium2_no_corpus", recipe=TEDLIUM2_REL)
    run = run_recipe(recipe, "--stop_stage", "1", env={"TEDLIUM2": ""}, timeout=120)
    assert run.returncode != 0, run.tail()
    assert ("local/data.sh: TEDLIUM2 is empty: set TEDLIUM2 in db.sh (or the environment) to "
            "the directory that contains TEDLIUM_release2/ (openslr.org/19); there is no "
            "embedded TED-LIUM corpus.") in run.output, run.tail()
    assert not (recipe / "data").exists()
    wrong = recipe / "nowhere"
    run = run_recipe(recipe, "--stop_stage", "1", env={"TEDLIUM2": str(wrong)}, timeout=120,
                     log_name="run_wrong.log")
    assert run.returncode != 0, run.tail()
    assert (f"prepare_tedlium: TED-LIUM root {wrong} does not exist: set TEDLIUM2 in db.sh to "
            "the directory that contains TEDLIUM_release2/.") in run.output, run.tail()
    assert not (recipe / "data").exists()


def test_paper_config_builds(tmp_path: Path) -> None:
    """The TED-LIUM-v2 paper config: 12 blocks of d=384 (6 heads, FFN 1536, kernel 31),
    sizes 12/24/36/48 of the 48 prunable modules."""
    import yaml

    from espnet_supernet.tasks.asr import SupernetASRTask

    config = Path(__file__).resolve().parents[2] / TEDLIUM2_REL / "conf" / (
        "train_supernet_conformer_paper.yaml")
    tokens = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens))
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(config), "--token_list", str(tmp_path / "tokens.txt"),
        "--output_dir", str(tmp_path / "exp"), "--normalize", "none"])
    args.token_list = tokens
    model = SupernetASRTask.build_model(args)
    assert model.subnet_names == ["12", "24", "36", "48"]
    conf = yaml.safe_load(config.read_text())["encoder_conf"]
    assert (conf["num_blocks"], conf["output_size"], conf["linear_units"],
            conf["attention_heads"], conf["cnn_module_kernel"]) == (12, 384, 1536, 6, 31)
    assert model.encoder.output_size() == 384
    assert len(model.encoder.encoders) == 12
