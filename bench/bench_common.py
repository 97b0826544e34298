"""What the CPU benchmarks share: the bench encoder configs, timing, inputs, results.

Every ``bench/bench_*.py`` imports this module (``sys.path`` gets ``bench/``) and none
imports another bench script. Timing: ``interleaved`` runs the compared variants
round-robin (order reversed on odd repeats) and ``median_ratio`` pairs them per repeat;
``set_clock`` picks wall or process CPU time. ``write_result`` writes one JSON file under
``bench/results/`` (or ``--output``).
"""

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

CONFIGS: Dict[str, dict] = {
    "demo": dict(input_size=40, output_size=144, attention_heads=4, linear_units=576,
                 num_blocks=6, cnn_module_kernel=15, subnet_sizes=[8, 16, 24]),  # 40 mels
    "paper": dict(output_size=512, attention_heads=8, linear_units=2048, num_blocks=12,
                  cnn_module_kernel=31, subnet_sizes=[16, 32, 48]),
    "stock12x256": dict(output_size=256, attention_heads=4, linear_units=1024,
                        num_blocks=12, cnn_module_kernel=31, subnet_sizes=[16, 32, 48]),
}
COMMON = dict(
    input_size=80,
    dropout_rate=0.1,
    positional_dropout_rate=0.1,
    attention_dropout_rate=0.1,
    input_layer="conv2d",
    normalize_before=True,
    macaron_style=True,
    rel_pos_type="latest",
    pos_enc_layer_type="rel_pos",
    selfattention_layer_type="rel_selfattn",
    activation_type="swish",
    use_cnn_module=True,
)
FRAMES_PER_SECOND = 100
VOCAB = 300  # the CTC bench models' vocabulary
QUICK = dict(batch=2, seconds=2.0, repeats=3, warmup=1, train_repeats=2)
DEFAULTS = dict(batch=4, seconds=6.0, repeats=7, warmup=2, train_repeats=None)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every export bench shares (None: the --quick or default value)."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny batch, few repeats")
    parser.add_argument("--output", type=Path, default=None)


def fill_timing_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Options left at None take the ``QUICK`` or ``DEFAULTS`` value."""
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def write_result(res: dict, args: argparse.Namespace, stem: str,
                 print_table: Callable[[dict], None]) -> dict:
    """Write ``res`` to ``--output`` or ``bench/results/<stem>[_quick].json``, print it."""
    out = args.output or Path(__file__).resolve().parent / "results" / \
        f"{stem}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"wrote {out}")
    return res


def set_clock(name: str) -> None:
    """Time with ``CLOCKS[name]`` from now on (``wall`` is the default)."""
    global _clock
    _clock = CLOCKS[name]


def _ms(fn: Callable[[], object]) -> float:
    start = _clock()
    fn()
    return (_clock() - start) * 1e3


def interleaved(
    items: Sequence[Tuple[str, Callable[[], None], Callable[[], object]]],
    repeats: int,
    warmup: int,
    reference: Optional[str] = None,
) -> Dict[str, List[float]]:
    """Time ``(key, prepare, run)`` items round-robin; returns ms per key per repeat.

    ``prepare`` (untimed) runs right before each ``run``; on odd repeats the order is
    reversed so that a steady drift does not favour the items that come first. With
    ``reference`` (one of the keys), that item also runs between every two others and
    ``times[f"{reference}@{key}"]`` gets the mean of the two reference runs around each
    run of ``key``: a ratio to it compares runs a second apart, not a whole round apart
    (on a shared 2-core VM, drift within a 20-item round reached 7%).
    """
    times: Dict[str, List[float]] = {key: [] for key, _, _ in items}
    ref = next((item for item in items if item[0] == reference), None)
    others = [item for item in items if item is not ref]

    def timed(item) -> float:
        item[1]()
        return _ms(item[2])

    for r in range(warmup + repeats):
        order = others if r % 2 == 0 else list(reversed(others))
        before = timed(ref) if ref else None
        if ref and r >= warmup:
            times[reference].append(before)
        for item in order:
            t = timed(item)
            if ref:
                after = timed(ref)
                if r >= warmup:
                    times.setdefault(f"{reference}@{item[0]}", []).append((before + after) / 2)
                before = after
            if r >= warmup:
                times[item[0]].append(t)
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of per-repeat ratios (paired, so drift between repeats cancels)."""
    return statistics.median(n / d for n, d in zip(num, den))


def component_masks(supernet, seed: int) -> Dict[str, List[int]]:
    """Unit masks keeping a share of every FFN's chunks and every block's heads."""
    layout = supernet.layout
    gen = random.Random(seed)
    masks: Dict[str, List[int]] = {}
    for label, share in (("1/4", 0.25), ("1/2", 0.5), ("3/4", 0.75), ("mixed", None)):
        mask = []
        for m in range(layout.num_modules):
            units = layout.per_module[m % 4]
            keep = units if units == 1 else max(1, round(units * (
                share if share is not None else gen.choice([0.25, 0.5, 0.75, 1.0]))))
            mask += [1] * keep + [0] * (units - keep)
        masks[f"components {label}"] = mask
    return masks


def make_batch(batch: int, seconds: float, input_size: int = 80):
    """Random features (B, L, 80) with descending lengths (the longest is L)."""
    frames = int(round(seconds * FRAMES_PER_SECOND))
    xs = torch.randn(batch, frames, input_size)
    ilens = torch.tensor(
        [frames - (i * frames) // (4 * batch) for i in range(batch)], dtype=torch.long
    )
    return xs, ilens


def machine_info(threads: int, loadavg_start: Sequence[float]) -> dict:
    """The machine, the library versions, the load before and after the run."""
    import espnet

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                         "")
    except OSError:
        model = ""
    return {
        "processor": cpu or platform.machine(),
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "espnet": espnet.__version__,
        "python": platform.python_version(),
        "loadavg_start": list(loadavg_start),
        "loadavg_end": list(os.getloadavg()),
        "torch_threads": threads,
    }


def build_encoders(config: str, components: bool = False):
    """(stock ConformerEncoder, SupernetConformerEncoder with the stock's weights)."""
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder

    arch = dict(CONFIGS[config])
    sizes = arch.pop("subnet_sizes")
    stock = ConformerEncoder(**{**COMMON, **arch})
    # Non-trivial BatchNorm statistics, so that the output comparison covers them.
    with torch.no_grad():
        for layer in stock.encoders:
            bn = layer.conv_module.norm
            bn.running_mean.normal_(0.0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    elastic = dict(ffn_chunks=4, prune_heads=True) if components else {}
    supernet = SupernetConformerEncoder(
        **{**COMMON, **arch}, subnet_sizes=sizes, subnet_rule="layers", bn_stats="per_size",
        **elastic,
    )
    supernet.load_state_dict(stock.state_dict(), strict=True)
    return stock, supernet


def build_supernet(config: str, components: bool):
    """A ``SupernetASRModel`` (CTC, no frontend) of the bench config, eval mode."""
    from espnet2.asr.ctc import CTC

    from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
    from espnet_supernet.train.supernet_asr_model import SupernetASRModel

    arch = dict(CONFIGS[config])
    sizes = arch.pop("subnet_sizes")
    elastic = dict(ffn_chunks=4, prune_heads=True) if components else {}
    torch.manual_seed(0)
    encoder = SupernetConformerEncoder(**{**COMMON, **arch}, subnet_sizes=sizes, **elastic)
    vocab = 300
    model = SupernetASRModel(
        vocab_size=vocab, token_list=[f"t{i}" for i in range(vocab)], frontend=None,
        specaug=None, normalize=None, preencoder=None, encoder=encoder, postencoder=None,
        decoder=None, ctc=CTC(vocab, encoder.output_size()), joint_network=None,
        ctc_weight=1.0)
    with torch.no_grad():
        for layer in encoder.encoders:
            norm = layer.conv_module.norm
            norm.slot_running_mean.normal_(0, 0.1)
            norm.slot_running_var.uniform_(0.5, 1.5)
    return model.eval()


def train_config(config: str, components: bool) -> dict:
    """The config dict of the bench supernet, as export_subnet needs it."""
    arch = dict(CONFIGS[config])
    encoder_conf = {**COMMON, **arch}
    input_size = encoder_conf.pop("input_size")
    if components:
        encoder_conf.update(ffn_chunks=4, prune_heads=True)
    return dict(input_size=input_size, encoder="supernet_conformer",
                encoder_conf=encoder_conf, model="supernet", model_conf={"ctc_weight": 1.0},
                frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
                normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={},
                postencoder=None, postencoder_conf={}, decoder=None, decoder_conf={},
                ctc_conf={}, joint_net_conf=None, token_list=[f"t{i}" for i in range(300)],
                init=None, aux_ctc_tasks=[])


def ctc_supernet(config: str, front: Optional[List[int]] = None, **model_conf):
    """A CTC-only SupernetASRModel of the bench config (conv2d, or vgg4 with channels),
    vocabulary ``VOCAB``, seed 0."""
    from espnet2.asr.ctc import CTC

    from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
    from espnet_supernet.train.supernet_asr_model import SupernetASRModel

    arch = dict(CONFIGS[config])
    sizes = arch.pop("subnet_sizes")
    frontend = {} if front is None else dict(input_layer="vgg4", vgg_channels=front)
    torch.manual_seed(0)
    encoder = SupernetConformerEncoder(**{**COMMON, **arch, **frontend}, subnet_sizes=sizes)
    return SupernetASRModel(
        vocab_size=VOCAB, token_list=["<blank>"] + [f"t{i}" for i in range(1, VOCAB - 1)]
        + ["<sos/eos>"], frontend=None, specaug=None, normalize=None, preencoder=None,
        encoder=encoder, postencoder=None, decoder=None,
        ctc=CTC(VOCAB, encoder.output_size()), joint_network=None, ctc_weight=1.0,
        **model_conf)


def random_targets(model, xs, ilens):
    """(B, n) random token ids and their lengths (B,) that CTC can align to the frames."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        frames = int(model.encoder.forward_frontend(xs, ilens).masks.sum(-1).min())
    n = max(2, min(20, frames // 3))
    return torch.randint(1, VOCAB - 1, (xs.size(0), n), generator=gen), \
        torch.full((xs.size(0),), n, dtype=torch.long)


def training_update(model, optim, xs, ilens, text, lens, step: int):
    """One training update at sandwich/selection step ``step``."""
    def run() -> None:
        model.sandwich_step.fill_(step)
        optim.zero_grad(set_to_none=True)
        loss, _, _ = model(xs, ilens, text.clone(), lens)
        loss.backward()
        optim.step()
    return run


def build_transducer(config: Path, tmp: Path, tokens: Sequence[str],
                     model_conf: Optional[dict] = None):
    """``supernet_transducer`` (training mode) and its optimizer from a recipe config, with
    ``tokens`` as the token list and ``model_conf`` entries overriding the config's."""
    import yaml

    from espnet_supernet.tasks.asr import SupernetASRTask

    conf = yaml.safe_load(Path(config).read_text())
    conf["model_conf"] = {**conf.get("model_conf", {}), **(model_conf or {})}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(conf))
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(path), "--token_list", str(tmp / "tokens.txt"),
        "--output_dir", str(tmp), "--normalize", "none", "--token_type", "char",
    ])  # fmt: skip
    args.token_list = list(tokens)
    torch.manual_seed(0)
    model = SupernetASRTask.build_model(args).train()
    optimizer = SupernetASRTask.build_optimizers(args, model)[0]
    return model, optimizer


def transducer_batch(batch: int, seconds: float, tokens_per_second: float, vocab: int):
    """Random speech (16 kHz, lengths descending to 0.75 of ``seconds``) and random token
    targets (ids 2 .. vocab - 2), ``tokens_per_second`` per utterance second."""
    gen = torch.Generator().manual_seed(0)
    lens = [int(16000 * seconds * (1 - 0.25 * i / max(1, batch - 1))) for i in range(batch)]
    speech = torch.randn(batch, lens[0], generator=gen) * 0.1
    for i, n in enumerate(lens):
        speech[i, n:] = 0
    counts = [max(1, int(n / 16000 * tokens_per_second)) for n in lens]
    text = torch.full((batch, max(counts)), -1, dtype=torch.long)
    for i, n in enumerate(counts):
        text[i, :n] = torch.randint(2, vocab - 1, (n,), generator=gen)
    return dict(speech=speech, speech_lengths=torch.tensor(lens), text=text,
                text_lengths=torch.tensor(counts))
