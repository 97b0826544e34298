"""The tiny end-to-end run shared by the recipe tests (see the ``trained`` fixture)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAIN_SET, VALID_SET = "train_clean_100", "dev_clean"
TEST_SETS = ("dev_clean", "test_clean")
ALL_SETS = (TRAIN_SET, "dev_clean", "test_clean")
ASR_EXP = "exp/asr_train_supernet_conformer_tiny"
INF_TAG = "decode_lm_tiny"
LM_EXP = "exp/lm_train_lm_tiny"
SIZES = ("4", "8")
FS = 16000
MIN_DURATION, MAX_DURATION = 0.1, 20  # supernet.sh defaults, also passed by run.sh
# Smoke-test training, LM and decoding configs (sizes 4 and 8, two epochs; beam 2 with
# the attention decoder and the LM).
TINY_ARGS = (
    "--asr_config", "conf/tuning/train_supernet_conformer_tiny.yaml",
    "--lm_config", "conf/tuning/train_lm_tiny.yaml",
    "--token_type", "bpe", "--nbpe", "50",
    "--inference_config", f"conf/tuning/{INF_TAG}.yaml",
)  # fmt: skip
# Stage 12 without BatchNorm re-estimation and with one decoding job: two Python start-ups
# fewer per run, for the recipe tests that check neither (test_recipe_e2e checks both).
QUICK_STAGE12 = ("--bn_calibration_batches", "0", "--inference_nj", "1")


@dataclass
class Prepared:
    """A recipe copy after stages 1-10 (data, dump, BPE, LM, feature statistics).

    Attributes:
        recipe: The recipe directory.
        corpus: LIBRISPEECH of the run.
        run: The stages 1-10 run (conftest.RecipeRun).
    """

    recipe: Path
    corpus: Path
    run: Any


@dataclass
class Trained:
    """The prepared copy after stages 11-14 of the tiny supernet.

    Attributes:
        recipe: The recipe directory.
        corpus: LIBRISPEECH of the run.
        prepare_run: The stages 1-10 run.
        run: The stages 11-14 run.
        train_log: train.log as the training wrote it (later runs overwrite it).
    """

    recipe: Path
    corpus: Path
    prepare_run: Any  # conftest.RecipeRun
    run: Any
    train_log: str

    @property
    def exp(self) -> Path:
        return self.recipe / ASR_EXP
