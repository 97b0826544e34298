#!/usr/bin/env python3
"""Find per-layer sparsities of an Omni-sparsity model that meet a parameter budget.

Usage:
    python -m espnet_supernet.bin.sparsity_search \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/dev_clean/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/dev_clean/text,text,text \\
        --budget 0.5 --output exp/asr/sparsity_search.yaml [--num_utts 100]
        [--search evolutionary greedy] [--population 16 --generations 8 --parents 4]

``--budget`` counts the encoder's nonzero parameters: a fraction of the dense encoder
(``0.5``) or an absolute number (``1.2M``). Every block can take any trained level (the
masks are nested), so candidates need no retraining: each is scored by its loss on
``--num_utts`` dev utterances (drawn with ``--seed``). ``--search`` runs the evolutionary
search (Omni-sparsity's: population, elitism, mutation, crossover) and / or the greedy one
of :mod:`espnet_supernet.sparsity.layerwise_search`, both logging their progress. The
output YAML holds the best search's level per block (``block_sparsity``, what ``export
--sparsity_search`` reads), its parameters and dev loss, each search's result, number of
configurations scored, time and history (``searches``), and the same for the densest
uniform level within the budget.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.deploy.sparsity_search import sparsity_search


def search(args: argparse.Namespace) -> dict:
    """Run the search; returns the record written to ``--output``."""
    return sparsity_search(args.asr_train_config, args.asr_model_file,
                           args.data_path_and_name_and_type, args.budget, args.output,
                           num_utts=args.num_utts, batch_size=args.batch_size, seed=args.seed,
                           searches=args.search,
                           evolution=dict(population=args.population,
                                          generations=args.generations, parents=args.parents,
                                          mutation_prob=args.mutation_prob, seed=args.seed))


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--data_path_and_name_and_type", action="append", required=True,
                        help="dev speech and text, e.g. dump/raw/dev/wav.scp,speech,sound "
                        "and dump/raw/dev/text,text,text")
    parser.add_argument("--budget", required=True,
                        help="encoder nonzero parameters: a fraction of the dense encoder "
                        "(0.5) or absolute (1.2M)")
    parser.add_argument("--output", type=Path, required=True, help="YAML to write")
    parser.add_argument("--num_utts", type=int, default=100,
                        help="dev utterances scoring each candidate")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0,
                        help="draws the dev utterances and seeds the evolution")
    parser.add_argument("--search", nargs="+", default=["evolutionary", "greedy"],
                        choices=["evolutionary", "greedy"], help="searches to run")
    parser.add_argument("--population", type=int, default=16,
                        help="evolution: configurations per generation")
    parser.add_argument("--generations", type=int, default=8,
                        help="evolution: generations after the first")
    parser.add_argument("--parents", type=int, default=4,
                        help="evolution: best configurations kept and bred")
    parser.add_argument("--mutation_prob", type=float, default=0.2,
                        help="evolution: probability a child redraws a block's level")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Search and write the per-layer sparsities."""
    run_cli("sparsity_search", get_parser(), cmd, search, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
