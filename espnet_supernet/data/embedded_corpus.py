"""Generate a small spoken English corpus in the LibriSpeech layout with espeak-ng.

The corpus stands in for LibriSpeech when the real one is not available: the text is
real English taken from Debian's ``fortunes`` databases, the speech is synthesised by
espeak-ng with one voice, variant, pitch and speed per speaker, and every file is laid
out exactly as in LibriSpeech::

    <outdir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt:04d>.flac
    <outdir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <outdir>/LibriSpeech/librispeech-lm-norm.txt.gz
    <outdir>/speakers.tsv
    <outdir>/embedded_corpus.json

Training, development and test parts get disjoint sentences and disjoint speakers.
Like LibriSpeech's LM corpus (openslr 11), ``librispeech-lm-norm.txt.gz`` holds the text for
language models: every usable fortune sentence except those of the held-out (dev, test) parts.
``embedded_corpus.json`` records the generation arguments and whether the run
finished: re-running with the same arguments resumes an interrupted run or does
nothing on a finished corpus; different arguments on the same directory are refused.
"""

import gzip
import json
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile

logger = logging.getLogger(__name__)

FORTUNE_DIR = Path("/usr/share/games/fortunes")
TRAIN_PART = "train-clean-100"
DEV_PART = "dev-clean"
TEST_PART = "test-clean"
SAMPLE_RATE = 16000
MIN_WORDS = 4
MAX_WORDS = 20
MARKER_NAME = "embedded_corpus.json"
LM_TEXT_NAME = "librispeech-lm-norm.txt.gz"

# espeak-ng variants that do not sound like a person speaking normally.
_UNNATURAL_VARIANTS = frozenset(
    {"whisper", "whisperf", "Demonic", "announcer", "UniRobot", "anikaRobot", "fast"}
)
_PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99, default 50
_SPEED_RANGE = (140, 190)  # espeak-ng -s, words per minute, default 175

# Text that is code, an address, a number or a symbol is not read the way it is written.
_UNSPEAKABLE = re.compile(r"[0-9<>/\\{}\[\]=_|@#$%^*~`+&]")
# Short all-caps words are usually acronyms, which espeak-ng spells letter by letter.
_ACRONYM = re.compile(r"(?<![A-Za-z'])[A-Z]{2,4}(?![A-Za-z'])")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_NOT_TRANSCRIPT = re.compile(r"[^A-Z' ]+")
_VOWEL = re.compile(r"[AEIOUY]")


@dataclass(frozen=True)
class CorpusConfig:
    """Arguments that determine the content of an embedded corpus.

    Attributes:
        num_train_utts: Utterances in ``train-clean-100``.
        num_dev_utts: Utterances in ``dev-clean``.
        num_test_utts: Utterances in ``test-clean``.
        num_train_speakers: Speakers in ``train-clean-100``.
        num_dev_speakers: Held-out speakers in ``dev-clean``.
        num_test_speakers: Held-out speakers in ``test-clean``.
        chapters_per_speaker: Chapter directories per speaker.
        seed: Seed of every random choice (sentences, speakers, ids).
        fortune_dir: Directory with the fortune databases.
    """

    num_train_utts: int = 3300
    num_dev_utts: int = 200
    num_test_utts: int = 200
    num_train_speakers: int = 12
    num_dev_speakers: int = 3
    num_test_speakers: int = 3
    chapters_per_speaker: int = 2
    seed: int = 0
    fortune_dir: str = str(FORTUNE_DIR)

    def __post_init__(self) -> None:
        """Checks that every chapter of every speaker gets at least one utterance.

        Raises:
            ValueError: If a part has no speaker or fewer utterances than chapters.
        """
        if self.chapters_per_speaker < 1:
            raise ValueError("chapters_per_speaker must be at least 1.")
        for part, (num_utts, num_spk) in self.part_sizes().items():
            if num_spk < 1 or num_utts < num_spk * self.chapters_per_speaker:
                raise ValueError(
                    f"{part}: need at least one speaker and one utterance per chapter "
                    f"(got {num_utts} utterances, {num_spk} speakers, "
                    f"{self.chapters_per_speaker} chapters per speaker)."
                )

    def part_sizes(self) -> dict[str, tuple[int, int]]:
        """Returns ``{part: (num_utts, num_speakers)}`` in generation order."""
        return {
            TRAIN_PART: (self.num_train_utts, self.num_train_speakers),
            DEV_PART: (self.num_dev_utts, self.num_dev_speakers),
            TEST_PART: (self.num_test_utts, self.num_test_speakers),
        }


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Attributes:
        speaker_id: LibriSpeech-style numeric speaker id.
        voice: espeak-ng English voice, e.g. ``en-us``.
        variant: espeak-ng voice variant, e.g. ``m3``.
        pitch: espeak-ng pitch (``-p``).
        speed: espeak-ng speed in words per minute (``-s``).
        part: Corpus part the speaker belongs to.
        chapters: The speaker's chapter ids.
    """

    speaker_id: int
    voice: str
    variant: str
    pitch: int
    speed: int
    part: str
    chapters: tuple[int, ...]


@dataclass(frozen=True)
class Utterance:
    """One utterance to synthesise.

    Attributes:
        speaker: Who speaks it.
        chapter: Chapter id.
        index: Index within the chapter.
        text: Transcript in LibriSpeech style (upper case).
    """

    speaker: Speaker
    chapter: int
    index: int
    text: str

    @property
    def utt_id(self) -> str:
        """LibriSpeech utterance id ``<spk>-<chapter>-<index:04d>``."""
        return f"{self.speaker.speaker_id}-{self.chapter}-{self.index:04d}"

    def chapter_dir(self, librispeech_dir: Path) -> Path:
        """Returns the chapter directory under ``<outdir>/LibriSpeech``."""
        speaker = self.speaker
        return librispeech_dir / speaker.part / str(speaker.speaker_id) / str(self.chapter)


def normalize_sentence(sentence: str) -> str | None:
    """Normalises one written sentence to a LibriSpeech-style transcript.

    The transcript is upper case and holds only ``A``-``Z``, apostrophes and single
    spaces. Sentences that espeak-ng would not read as written (digits, symbols, code,
    acronyms, words without a vowel) or that have fewer than ``MIN_WORDS`` or more than
    ``MAX_WORDS`` words are rejected.

    Args:
        sentence: One sentence of running text.

    Returns:
        The transcript, or None if the sentence is rejected.
    """
    text = unicodedata.normalize("NFKD", sentence.replace("\u2019", "'").replace("\u2018", "'"))
    text = "".join(char for char in text if not unicodedata.combining(char))
    if _UNSPEAKABLE.search(text) or _ACRONYM.search(text):
        return None
    text = _NOT_TRANSCRIPT.sub(" ", text.replace("-", " ").upper())
    words = [word.strip("'") for word in text.split()]
    words = [word for word in words if word]
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    if not all(_VOWEL.search(word) for word in words):
        return None
    return " ".join(words)


def _fortune_files(fortune_dir: Path) -> list[Path]:
    """Lists the fortune text databases (not the index files or subdirectories)."""
    if not fortune_dir.is_dir():
        return []
    return sorted(
        path
        for path in fortune_dir.iterdir()
        if path.is_file() and not path.is_symlink() and path.suffix not in (".dat", ".u8")
    )


def _fortune_entries(path: Path) -> Iterator[str]:
    """Yields the entries of one fortune database without their attribution lines."""
    content = path.read_text(encoding="utf-8", errors="replace")
    for entry in re.split(r"^%\s*$", content, flags=re.MULTILINE):
        lines = []
        for line in entry.splitlines():
            if line.lstrip().startswith("--"):
                break
            lines.append(line.strip())
        yield " ".join(line for line in lines if line)


def extract_sentences(fortune_dir: Path) -> list[str]:
    """Collects the distinct normalised sentences of all fortune databases.

    Args:
        fortune_dir: Directory with the fortune databases.

    Returns:
        Distinct transcripts, sorted.

    Raises:
        FileNotFoundError: If the directory has no fortune databases.
    """
    files = _fortune_files(fortune_dir)
    if not files:
        raise FileNotFoundError(
            f"No fortune databases found in {fortune_dir}: run `apt-get install fortunes` "
            "(Debian) or pass the directory that holds them."
        )
    sentences = set()
    for path in files:
        for entry in _fortune_entries(path):
            for sentence in _SENTENCE_END.split(entry):
                normalized = normalize_sentence(sentence)
                if normalized is not None:
                    sentences.add(normalized)
    logger.info("Read %d usable sentences from %d fortune files.", len(sentences), len(files))
    return sorted(sentences)


def _espeak_listing(voices_arg: str) -> list[str]:
    """Returns the body lines of ``espeak-ng --voices=<voices_arg>``."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng not found: run `apt-get install espeak-ng`.")
    listing = subprocess.run(
        ["espeak-ng", f"--voices={voices_arg}"], check=True, capture_output=True, text=True
    ).stdout
    return listing.splitlines()[1:]


def list_english_voices() -> list[str]:
    """Lists the English espeak-ng voices that need no extra synthesiser.

    MBROLA voices are left out: they need the separate ``mbrola`` program and data.

    Returns:
        Distinct voice names usable with ``espeak-ng -v``, in listing order.
    """
    voices = []
    for line in _espeak_listing("en"):
        fields = line.split()
        language, voice_file = fields[1], fields[4]
        if language != "variant" and not voice_file.startswith("mb/") and language not in voices:
            voices.append(language)
    return voices


def list_variants() -> list[str]:
    """Lists the espeak-ng voice variants that sound like a person speaking normally.

    Returns:
        Variant names usable as ``espeak-ng -v <voice>+<variant>``, in listing order.
    """
    variants = []
    for line in _espeak_listing("variant"):
        match = re.search(r"!v/(.+?)\s*(?:\(|$)", line)
        if match is None:
            continue
        name = match.group(1)
        if " " not in name and name not in _UNNATURAL_VARIANTS and name not in variants:
            variants.append(name)
    return variants


def make_speakers(
    config: CorpusConfig, voices: Sequence[str], variants: Sequence[str]
) -> list[Speaker]:
    """Draws the speakers of all parts.

    Every speaker has its own variant, so no two speakers sound alike and the
    development and test speakers are held out from training. Voices (accents) are
    spread evenly over all speakers.

    Args:
        config: Corpus arguments.
        voices: Available espeak-ng voices.
        variants: Available espeak-ng variants.

    Returns:
        Speakers of all parts, training speakers first.

    Raises:
        ValueError: If there are no voices or fewer variants than speakers.
    """
    sizes = config.part_sizes()
    num_speakers = sum(num_spk for _, num_spk in sizes.values())
    if not voices or len(variants) < num_speakers:
        raise ValueError(
            f"Need at least one espeak-ng voice and {num_speakers} variants, found "
            f"{len(voices)} voices and {len(variants)} variants."
        )
    rng = random.Random(config.seed)
    voices = rng.sample(list(voices), len(voices))
    variants = rng.sample(list(variants), num_speakers)
    speaker_ids = rng.sample(range(10, 10000), num_speakers)
    chapter_ids = rng.sample(range(1000, 300000), num_speakers * config.chapters_per_speaker)
    parts = [part for part, (_, num_spk) in sizes.items() for _ in range(num_spk)]
    cpp = config.chapters_per_speaker
    return [
        Speaker(
            speaker_id=speaker_ids[i],
            voice=voices[i % len(voices)],
            variant=variants[i],
            pitch=rng.randint(*_PITCH_RANGE),
            speed=rng.randint(*_SPEED_RANGE),
            part=parts[i],
            chapters=tuple(chapter_ids[i * cpp : (i + 1) * cpp]),
        )
        for i in range(num_speakers)
    ]


def _split_evenly(items: Sequence, num_chunks: int) -> list[Sequence]:
    """Splits a sequence into ``num_chunks`` contiguous chunks of near-equal size."""
    bounds = [len(items) * k // num_chunks for k in range(num_chunks + 1)]
    return [items[bounds[k] : bounds[k + 1]] for k in range(num_chunks)]


def plan_corpus(
    config: CorpusConfig, sentences: Sequence[str], speakers: Sequence[Speaker]
) -> list[Utterance]:
    """Assigns shuffled sentences to parts, speakers and chapters.

    Each part gets its own sentences; within a part, the sentences are shared evenly
    among its speakers and each speaker's among their chapters.

    Args:
        config: Corpus arguments.
        sentences: Distinct transcripts.
        speakers: Speakers of all parts.

    Returns:
        All utterances of the corpus.

    Raises:
        ValueError: If there are fewer sentences than utterances requested.
    """
    sizes = config.part_sizes()
    needed = sum(num_utts for num_utts, _ in sizes.values())
    if needed > len(sentences):
        raise ValueError(f"Asked for {needed} utterances; only {len(sentences)} sentences exist.")
    shuffled = random.Random(config.seed).sample(list(sentences), needed)
    utterances: list[Utterance] = []
    start = 0
    for part, (num_utts, _) in sizes.items():
        part_sentences = shuffled[start : start + num_utts]
        start += num_utts
        part_speakers = [speaker for speaker in speakers if speaker.part == part]
        for speaker, spk_sentences in zip(
            part_speakers, _split_evenly(part_sentences, len(part_speakers))
        ):
            for chapter, chapter_sentences in zip(
                speaker.chapters, _split_evenly(spk_sentences, len(speaker.chapters))
            ):
                utterances.extend(
                    Utterance(speaker, chapter, index, text)
                    for index, text in enumerate(chapter_sentences)
                )
    return utterances


def synthesize(text: str, voice: str, pitch: int, speed: int, flac_path: str) -> int:
    """Speaks a text with espeak-ng and stores it as 16 kHz mono 16-bit flac.

    The flac file appears atomically, so an interrupted run leaves no partial file, and
    an existing one (from an interrupted run) is kept as it is.

    Args:
        text: Text to speak; lower case, because espeak-ng spells all-caps words.
        voice: espeak-ng voice with variant, e.g. ``en-us+m3``.
        pitch: espeak-ng pitch (``-p``).
        speed: espeak-ng speed in words per minute (``-s``).
        flac_path: Output file.

    Returns:
        Number of samples in the flac file.
    """
    if os.path.exists(flac_path):
        return soundfile.info(flac_path).frames
    partial = f"{flac_path}.part"
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "espeak.wav")
        espeak = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", wav, text]
        subprocess.run(espeak, check=True, capture_output=True)
        sox = ["sox", wav, "-r", str(SAMPLE_RATE), "-b", "16", "-c", "1", "-t", "flac", partial]
        subprocess.run(sox, check=True, capture_output=True)
    os.replace(partial, flac_path)
    return soundfile.info(flac_path).frames


def _write_transcripts(utterances: Sequence[Utterance], librispeech_dir: Path) -> None:
    """Writes one ``<spk>-<chapter>.trans.txt`` per chapter directory."""
    chapters: dict[Path, list[Utterance]] = {}
    for utt in utterances:
        chapters.setdefault(utt.chapter_dir(librispeech_dir), []).append(utt)
    for chapter_dir, chapter_utts in chapters.items():
        first = chapter_utts[0]
        trans = chapter_dir / f"{first.speaker.speaker_id}-{first.chapter}.trans.txt"
        lines = sorted(f"{utt.utt_id} {utt.text}\n" for utt in chapter_utts)
        trans.write_text("".join(lines), encoding="utf-8")


def write_lm_text(librispeech_dir: Path, sentences: Sequence[str]) -> Path:
    """Writes the language-model text: ``sentences`` minus every transcript of the
    held-out parts (all parts but ``train-*``), one per line, gzipped.

    Args:
        librispeech_dir: The corpus's ``LibriSpeech`` directory (transcripts written).
        sentences: Candidate sentences (normalised transcripts).

    Returns:
        The path of ``librispeech-lm-norm.txt.gz``.
    """
    held_out = set()
    for part in librispeech_dir.iterdir():
        if part.is_dir() and not part.name.startswith("train"):
            for trans in part.glob("*/*/*.trans.txt"):
                held_out.update(line.rstrip("\n").split(" ", 1)[1]
                                for line in trans.open() if " " in line)
    kept = [s for s in sentences if s not in held_out]
    path = librispeech_dir / LM_TEXT_NAME
    with gzip.open(path, "wt") as f:
        f.writelines(s + "\n" for s in kept)
    logger.info("LM text: %d sentences (%d held-out transcripts excluded) -> %s",
                len(kept), len(sentences) - len(kept), path)
    return path


def _write_speakers(speakers: Sequence[Speaker], path: Path) -> None:
    """Writes the speaker table (LibriSpeech's SPEAKERS.TXT, as TSV)."""
    rows = ["speaker_id\tvoice\tvariant\tpitch\tspeed\tpart\tchapters\n"]
    rows.extend(
        f"{s.speaker_id}\t{s.voice}\t{s.variant}\t{s.pitch}\t{s.speed}\t{s.part}\t"
        f"{','.join(map(str, s.chapters))}\n"
        for s in speakers
    )
    path.write_text("".join(rows), encoding="utf-8")


def _write_marker(path: Path, config: CorpusConfig, done: bool) -> None:
    """Records the generation arguments and whether the corpus is complete."""
    path.write_text(json.dumps({"args": asdict(config), "done": done}, indent=2) + "\n")


def generate_corpus(
    outdir: Path, config: CorpusConfig, nj: int = 2, log_interval: int = 500
) -> Path:
    """Generates (or completes) an embedded corpus.

    Args:
        outdir: Corpus root; ``LibriSpeech/`` is created inside it.
        config: Corpus arguments.
        nj: Parallel synthesis processes.
        log_interval: Log progress every this many utterances.

    Returns:
        The ``<outdir>/LibriSpeech`` directory.

    Raises:
        FileExistsError: If ``outdir`` holds a corpus made with other arguments, or a
            ``LibriSpeech`` directory that this generator did not make.
        FileNotFoundError: If fortune databases, espeak-ng or sox are missing.
        ValueError: If the arguments ask for more speakers or sentences than exist.
    """
    librispeech_dir = outdir / "LibriSpeech"
    marker_path = outdir / MARKER_NAME
    marker = json.loads(marker_path.read_text()) if marker_path.exists() else None
    if marker is None and librispeech_dir.exists():
        raise FileExistsError(f"{librispeech_dir} exists but was not made by this generator.")
    if marker is not None and marker["args"] != asdict(config):
        raise FileExistsError(
            f"{outdir} holds a corpus made with other arguments ({marker_path}): "
            "remove it or choose another output directory."
        )
    if marker is not None and marker["done"]:
        logger.info("Embedded corpus in %s is complete; nothing to do.", outdir)
        if not (librispeech_dir / LM_TEXT_NAME).exists():  # corpora of older versions
            write_lm_text(librispeech_dir, extract_sentences(Path(config.fortune_dir)))
        return librispeech_dir
    if shutil.which("sox") is None:
        raise FileNotFoundError("sox not found: run `apt-get install sox`.")

    sentences = extract_sentences(Path(config.fortune_dir))
    speakers = make_speakers(config, list_english_voices(), list_variants())
    utterances = plan_corpus(config, sentences, speakers)
    outdir.mkdir(parents=True, exist_ok=True)
    _write_marker(marker_path, config, done=False)
    for utt in utterances:
        utt.chapter_dir(librispeech_dir).mkdir(parents=True, exist_ok=True)

    samples = dict.fromkeys(config.part_sizes(), 0)
    with ProcessPoolExecutor(max_workers=nj) as pool:
        results = pool.map(
            synthesize,
            [utt.text.lower() for utt in utterances],
            [f"{utt.speaker.voice}+{utt.speaker.variant}" for utt in utterances],
            [utt.speaker.pitch for utt in utterances],
            [utt.speaker.speed for utt in utterances],
            [str(utt.chapter_dir(librispeech_dir) / f"{utt.utt_id}.flac") for utt in utterances],
            chunksize=16,
        )
        for count, (utt, num_samples) in enumerate(zip(utterances, results), start=1):
            samples[utt.speaker.part] += num_samples
            if count % log_interval == 0 or count == len(utterances):
                logger.info("Synthesised %d/%d utterances.", count, len(utterances))

    _write_transcripts(utterances, librispeech_dir)
    write_lm_text(librispeech_dir, sentences)
    _write_speakers(speakers, outdir / "speakers.tsv")
    _write_marker(marker_path, config, done=True)
    for part, (num_utts, num_spk) in config.part_sizes().items():
        hours = samples[part] / SAMPLE_RATE / 3600
        logger.info("%s: %d utterances, %d speakers, %.2f h.", part, num_utts, num_spk, hours)
    return librispeech_dir
