"""WER and compute of early-exit decoding against every fixed size, on the test sets.

For a trained Conformer CTC supernet (one model loaded once), every utterance of each test
set is decoded with CTC best path by each named size (switched in place) and by
:class:`~espnet_supernet.decode.early_exit.EarlyExitDecoder` at each confidence
threshold. Compute is the cost model's encoder FLOPs (what ran: the front end, every block
of every size tried, shared blocks once), per second of audio over the whole set (total
FLOPs / total seconds) and per utterance; the record goes to ``early_exit.json`` of the
run's ``results/<exp>/``.
"""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import soundfile
import torch
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter

from espnet_supernet.checkpoint import load_model
from espnet_supernet.data.scoring import read_test_set, score_pair
from espnet_supernet.decode.early_exit import EarlyExitDecoder, decode_fixed


def _text_of(ids: Sequence[int], converter, tokenizer) -> str:
    return tokenizer.tokens2text(converter.ids2tokens(list(ids))).strip()


def early_exit_report(exp: Path, model_file: Path, test_sets: Sequence[str], dumpdir: Path,
                      thresholds: Sequence[float], sizes: Optional[Sequence[str]] = None,
                      fs: int = 16000) -> Dict:
    """Decode and score (see the module docstring); returns the record.

    Args:
        exp: the experiment (its ``config.yaml``).
        model_file: the model to load (e.g. ``valid.loss.ave.bncal.pth``).
        test_sets: data sets under ``dumpdir`` (``wav.scp`` and ``text``).
        dumpdir: e.g. ``dump/raw``.
        thresholds: early-exit confidence thresholds.
        sizes: the sizes early exit tries, smallest first (default: all).
        fs: the waveforms' sampling rate (utterance durations).
    """
    model, args = load_model(exp / "config.yaml", model_file)
    model.eval()
    tokenizer = build_tokenizer(token_type=args.token_type, bpemodel=getattr(args, "bpemodel", None))
    converter = TokenIDConverter(token_list=model.token_list)
    sizes = list(sizes or model.subnet_names)
    decoders = {t: EarlyExitDecoder(model, sizes, threshold=t) for t in thresholds}
    any_decoder = next(iter(decoders.values())) if decoders else EarlyExitDecoder(model, sizes)
    largest = any_decoder.size_flops(sizes[-1])
    rows: List[Dict] = []
    for test_set in test_sets:
        wavs, refs = read_test_set(dumpdir, test_set)
        hyps: Dict[str, Dict[str, str]] = {}
        flops: Dict[str, List[float]] = {}
        seconds: List[float] = []
        answered: Dict[str, Dict[str, int]] = {}
        for key, path in sorted(wavs.items()):
            wave, _ = soundfile.read(path, dtype="float32")
            speech = torch.from_numpy(wave)
            seconds.append(len(wave) / fs)
            for size in sizes:
                ids, _ = decode_fixed(model, size, speech)
                mode = f"size {size}"
                hyps.setdefault(mode, {})[key] = _text_of(ids, converter, tokenizer)
                flops.setdefault(mode, []).append(any_decoder.size_flops(size))
            for threshold, decoder in decoders.items():
                result = decoder(speech)
                mode = f"early exit {threshold:g}"
                hyps.setdefault(mode, {})[key] = _text_of(result.tokens, converter, tokenizer)
                flops.setdefault(mode, []).append(result.flops_per_second)
                counts = answered.setdefault(mode, dict.fromkeys(sizes, 0))
                counts[result.size] += 1
        total = sum(seconds)
        for mode, by_utt in hyps.items():
            wer = score_pair({k: refs[k] for k in by_utt}, by_utt).error_rate
            per_second = sum(f * s for f, s in zip(flops[mode], seconds)) / total
            rows.append(dict(
                mode=mode, test_set=test_set, wer=round(wer, 2),
                encoder_gflops_per_sec=round(per_second / 1e9, 4),
                fraction_of_largest=round(per_second / largest, 4),
                gflops_per_utterance=round(per_second * total / len(seconds) / 1e9, 4),
                answered=answered.get(mode)))
        logging.info(f"early exit on {test_set}: " + "; ".join(
            f"{r['mode']} WER {r['wer']:.1f} at {r['fraction_of_largest']:.2f}" for r in rows
            if r["test_set"] == test_set))
    return dict(experiment=exp.name, model_file=model_file.name, sizes=sizes,
                thresholds=list(thresholds), decoding="ctc_greedy",
                prefix_blocks={f"{a}->{b}": n for (a, b), n in any_decoder.prefix.items()},
                rows=rows)


def write_early_exit(record: Dict, results_dir: Path) -> Path:
    """``results_dir/<experiment>/early_exit.json``."""
    out = results_dir / record["experiment"] / "early_exit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out
