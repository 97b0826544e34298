"""Streaming decoding of every TODM size: WER, real-time factor and first-token latency.

TODM (Shangguan et al., ICASSP 2024) deploys its sizes as on-device streaming
recognisers. For a trained ``supernet_transducer`` with an MH-SSM encoder (one model loaded
once, switched in place) each utterance of each test set is fed to
:class:`~espnet_supernet.decode.streaming_transducer.StreamingTransducer` as waveform
chunks of ``chunk_ms`` (the front end, the encoder and the search run per chunk, as they
would on a device), with ``threads`` torch threads, and per size:

- ``wer``: of the streamed hypotheses (equal to the whole-utterance frame-synchronous
  search of the same model);
- ``rtf``: the processing time of all chunks over the audio duration (the stream is fed
  as fast as it is processed, so this is compute, not waiting);
- ``first_token_ms``: per utterance, the audio time at the end of the chunk whose
  processing emitted the first symbol plus that chunk's processing time (what a live
  stream would wait from its start until the first symbol shows), median and 90th
  percentile over the utterances that emit one.

The record goes to ``streaming.json`` of the run's ``results/<exp>/``.
"""

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import soundfile
import torch
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter

from espnet_supernet.checkpoint import load_model
from espnet_supernet.data.scoring import read_test_set, score_pair
from espnet_supernet.decode.streaming_transducer import StreamingTransducer


def stream_utterance(stream: StreamingTransducer, speech: torch.Tensor, chunk: int,
                     fs: int) -> Dict:
    """Decode one waveform (S,) chunk by chunk; returns the symbols, the processing
    seconds and the first-token latency (ms, None if no symbol)."""
    stream.reset()
    busy, first = 0.0, None
    starts = list(range(0, speech.numel(), chunk)) or [0]
    for i, start in enumerate(starts):
        begin = time.perf_counter()
        piece = speech[start:start + chunk][None]
        symbols = stream.accept_audio(piece)
        if i == len(starts) - 1:
            symbols = stream.finish_audio()
        spent = time.perf_counter() - begin
        busy += spent
        if first is None and symbols:
            first = 1e3 * (min(start + chunk, speech.numel()) / fs + spent)
    return dict(symbols=symbols, seconds=busy, first_token_ms=first)


def _percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


@torch.no_grad()
def streaming_report(exp: Path, model_file: Path, test_sets: Sequence[str], dumpdir: Path,
                     sizes: Optional[Sequence[str]] = None, chunk_ms: float = 160.0,
                     beam_size: int = 1, threads: int = 1, fs: int = 16000,
                     max_utts: Optional[int] = None) -> Dict:
    """Stream-decode and score every size (see the module docstring); returns the record.

    Args:
        exp: the experiment (its ``config.yaml``).
        model_file: the weights to load.
        test_sets: data sets under ``dumpdir`` (``wav.scp`` and ``text``).
        dumpdir: e.g. ``dump/raw``.
        sizes: named sizes to decode (default: every one).
        chunk_ms: waveform chunk length.
        beam_size: 1 for greedy.
        threads: torch threads while decoding (restored afterwards).
        fs: the waveforms' sampling rate.
        max_utts: decode only the first utterances of each set (sorted by key).

    Raises:
        FileNotFoundError: a missing data file.
        ValueError: not a streaming transducer, an unknown size or a bad chunk.
    """
    model, args = load_model(exp / "config.yaml", model_file)
    model.eval()
    if getattr(model, "joint_network", None) is None or not hasattr(model.encoder,
                                                                    "forward_streaming"):
        raise ValueError(f"{exp} is not a streaming transducer (supernet_transducer with "
                         "an MH-SSM encoder): streaming_report decodes TODM models")
    sizes = list(sizes or model.subnet_names)
    unknown = [s for s in sizes if s not in model.subnet_names]
    if unknown:
        raise ValueError(f"unknown size(s) {unknown}; valid names: "
                         f"{', '.join(model.subnet_names)}")
    chunk = int(round(chunk_ms * fs / 1000))
    if chunk < 1:
        raise ValueError(f"chunk_ms={chunk_ms} is shorter than one sample")
    tokenizer = build_tokenizer(token_type=args.token_type,
                                bpemodel=getattr(args, "bpemodel", None))
    converter = TokenIDConverter(token_list=model.token_list)
    stream = StreamingTransducer(model, beam_size)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: List[Dict] = []
    try:
        for test_set in test_sets:
            wavs, refs = read_test_set(dumpdir, test_set)
            utts = sorted(wavs.items())[:max_utts]
            waves = {k: torch.from_numpy(soundfile.read(p, dtype="float32")[0])
                     for k, p in utts}
            audio = sum(w.numel() for w in waves.values()) / fs
            for size in sizes:
                model.set_subnet(size)
                hyps, busy, firsts = {}, 0.0, []
                for key, wave in waves.items():
                    out = stream_utterance(stream, wave, chunk, fs)
                    hyps[key] = tokenizer.tokens2text(
                        converter.ids2tokens(out["symbols"])).strip()
                    busy += out["seconds"]
                    if out["first_token_ms"] is not None:
                        firsts.append(out["first_token_ms"])
                wer = score_pair({k: refs[k] for k in hyps}, hyps).error_rate
                rows.append(dict(
                    size=size, test_set=test_set, utterances=len(hyps),
                    audio_seconds=round(audio, 2), wer=round(wer, 2),
                    rtf=round(busy / audio, 4),
                    first_token_ms_median=(round(statistics.median(firsts), 1)
                                           if firsts else None),
                    first_token_ms_p90=_percentile(firsts, 0.9),
                    utterances_with_a_token=len(firsts)))
                logging.info("streaming %s on %s: WER %.1f, RTF %.3f, first token %s ms",
                             size, test_set, rows[-1]["wer"], rows[-1]["rtf"],
                             rows[-1]["first_token_ms_median"])
    finally:
        torch.set_num_threads(previous)
        model.set_subnet(None)
    return dict(experiment=exp.name, model_file=model_file.name, chunk_ms=chunk_ms,
                beam_size=beam_size, threads=threads, sizes=sizes, rows=rows)


def write_streaming(record: Dict, results_dir: Path) -> Path:
    """``results_dir/<experiment>/streaming.json``."""
    out = results_dir / record["experiment"] / "streaming.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out
