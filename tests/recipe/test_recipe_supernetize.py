"""A stock ESPnet Conformer model turned into a supernet in the recipe: supernetize, then
stages 11-13 fine-tune it (frozen-teacher KD) and decode and score every size.

Starts from the ``prepared`` fixture (data, BPE, statistics). The stock model is built
from the recipe's token list and feature statistics with random weights (supernetize does
not care whether it was trained; the unit tests check the conversion itself).
"""

import re
import subprocess

import torch
import yaml
from e2e_run import INF_TAG, QUICK_STAGE12, TINY_ARGS

from conftest import python_exe

SIZES = ("4", "8")


def test_a_stock_model_is_fine_tuned_into_every_size(prepared, run_recipe):
    recipe = prepared.recipe
    stock = yaml.safe_load((recipe / "conf/tuning/train_supernet_conformer_tiny.yaml").read_text())
    stock.update(encoder="conformer", model="espnet")
    stock["encoder_conf"] = {k: v for k, v in stock["encoder_conf"].items()
                             if not k.startswith("subnet")}
    stock["encoder_conf"]["macaron_style"] = True
    stock["model_conf"] = {"ctc_weight": 0.5}
    exp = recipe / "exp/asr_stock"
    exp.mkdir(parents=True)
    (exp / "train.yaml").write_text(yaml.safe_dump(stock))
    from espnet_supernet.tasks.asr import SupernetASRTask

    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(exp / "train.yaml"),
        "--token_list", "data/token_list/bpe_unigram50/tokens.txt",
        "--token_type", "bpe", "--bpemodel", "data/token_list/bpe_unigram50/bpe.model",
        "--normalize", "global_mvn",
        "--normalize_conf", "stats_file=exp/asr_stats_bpe50/train/feats_stats.npz",
        "--output_dir", "exp/asr_stock",
    ])  # fmt: skip
    tokens = (recipe / args.token_list).read_text().split()
    args.token_list = tokens
    args.normalize_conf["stats_file"] = str(recipe / args.normalize_conf["stats_file"])
    torch.manual_seed(0)
    model = SupernetASRTask.build_model(args)
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), exp / "valid.acc.ave.pth")

    convert = subprocess.run(
        [python_exe(), "-m", "espnet_supernet.bin.supernetize", "--asr_train_config",
         "exp/asr_stock/config.yaml", "--asr_model_file", "exp/asr_stock/valid.acc.ave.pth",
         "--subnet_sizes", *SIZES, "--outdir", "exp/asr_supernetized"],
        cwd=recipe, capture_output=True, text=True, check=False)
    assert convert.returncode == 0, convert.stderr[-3000:]
    args = [*TINY_ARGS, *QUICK_STAGE12]
    args[args.index("--asr_config") + 1] = "exp/asr_supernetized/config.yaml"
    run = run_recipe(recipe, *args, "--stage", "11", "--stop_stage", "13",
                     "--test_sets", "test_clean", "--asr_tag", "tiny_supernetized",
                     "--asr_args", "--init_param exp/asr_supernetized/model.pth --max_epoch 1",
                     log_name="run_supernetized.log")
    assert run.returncode == 0, run.tail()
    out = recipe / "exp/asr_tiny_supernetized"
    log = (out / "train.log").read_text()
    assert "loss_kd=" in log and "loss_min=" in log
    assert re.search(r"\[valid\].*loss_4=[\d.]+.*loss_8=", log)
    results = (out / "RESULTS.md").read_text()
    for size in SIZES:
        assert (out / f"{INF_TAG}_size{size}" / "test_clean" / "text").is_file()
        assert re.search(rf"\| {size} \| test_clean \|.*\| \d+\.\d+ \|", results)
    # the fine-tuning started from the converted weights: the frozen teacher kept them
    start = torch.load(recipe / "exp/asr_supernetized/model.pth")
    trained = torch.load(out / "valid.loss.best.pth")
    key = "kd_teacher.encoder.encoders.0.feed_forward.w_1.weight"
    assert torch.equal(trained[key], start[key])
