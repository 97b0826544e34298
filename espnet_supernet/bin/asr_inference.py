#!/usr/bin/env python3
"""Decode with named subnets of a trained supernet.

Usage:
    python -m espnet_supernet.bin.asr_inference --subnet 16 \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/test_clean/wav.scp,speech,sound \\
        --output_dir exp/asr/decode_16/test_clean
        (other arguments as ``python -m espnet2.bin.asr_inference``)

    # every size in one process (Python, ESPnet and the LM are loaded once, not per size):
    python -m espnet_supernet.bin.asr_inference --subnet 8 16 24 \\
        --output_dir 'exp/asr/decode_{subnet}/test_clean' ...

``--ctc_greedy true`` (set in ``conf/decode_ctc_greedy.yaml``) decodes a CTC model with the
CTC best path instead of ESPnet's beam search with the CTC prefix scorer, which rescores the
whole utterance for every output token even with ``beam_size: 1``.

Python API: :func:`espnet_supernet.decode.speech2text.speech2text`.
"""

import sys

from espnet_supernet.checkpoint import load_state_dict_file
from espnet_supernet.decode.speech2text import ctc_greedy_decoding, subnet_model_loading
from espnet2.bin import asr_inference as stock  # noqa: E402  (after the registration)
from espnet.utils.cli_utils import get_commandline_args  # noqa: E402
from espnet2.utils.types import str2bool  # noqa: E402


def get_parser():
    """ESPnet's ASR inference parser plus ``--subnet``."""
    parser = stock.get_parser()
    parser.add_argument(
        "--subnet",
        type=str,
        nargs="+",
        default=None,
        help="Named subnet(s) to decode with (e.g. 16, or 8 16 24); default: the largest. "
        "The names are the supernet's subnet sizes (encoder_conf subnet_sizes/subnet_masks). "
        "With several, --output_dir holds {subnet}, replaced by each name in turn.",
    )
    parser.add_argument(
        "--ctc_greedy",
        type=str2bool,
        default=False,
        help="Decode with the CTC best path (argmax per frame; needs a CTC branch) instead "
        "of the beam search; much faster on CPU than beam_size 1 with the CTC prefix scorer.",
    )
    return parser


def main(cmd=None):
    """Decode a data set with each chosen subnet in turn."""
    print(get_commandline_args(), file=sys.stderr)
    kwargs = vars(get_parser().parse_args(cmd))
    kwargs.pop("config", None)
    subnets, ctc_greedy = kwargs.pop("subnet") or [None], kwargs.pop("ctc_greedy")
    output_dir = kwargs.pop("output_dir")
    if len(subnets) > 1 and "{subnet}" not in output_dir:
        sys.exit(f"asr_inference: --subnet {' '.join(subnets)} writes one output directory "
                 f"per subnet: put {{subnet}} in --output_dir (got {output_dir})")
    if ctc_greedy and (kwargs.get("lm_train_config") or kwargs.get("ngram_file")):
        sys.exit("asr_inference: --ctc_greedy decodes without a language model; use a beam "
                 "search config (e.g. conf/decode_ctc_lm.yaml) with --lm_train_config, or "
                 "drop the LM (supernet.sh --use_lm false)")
    try:
        if kwargs.get("lm_file"):  # ESPnet reads the LM itself: check the file first
            load_state_dict_file(kwargs["lm_file"])
        for subnet in subnets:
            out = output_dir.replace("{subnet}", str(subnet))
            print(f"asr_inference: decoding with subnet {subnet} -> {out}", file=sys.stderr)
            with subnet_model_loading(subnet), ctc_greedy_decoding(ctc_greedy):
                stock.inference(output_dir=out, **kwargs)
    except (FileNotFoundError, ValueError) as e:  # a missing, unreadable or unfitting
        # model file, an unknown subnet, not a supernet, no CTC for --ctc_greedy
        sys.exit(f"asr_inference: {e}")


if __name__ == "__main__":
    main()
