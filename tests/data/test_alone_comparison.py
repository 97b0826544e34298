"""One job vs each size alone: grouping of run records, means / ranges, RESULTS.md sections."""

import json
import shutil
from pathlib import Path

import pytest

from espnet_supernet.bin.compare_alone import main as compare_main
from espnet_supernet.data.alone_comparison import (
    comparison_markdown,
    comparison_rows,
    comparisons,
    update_results_md,
)
from espnet_supernet.data.scoring import read_results_md

SETTINGS = dict(config="conf/demo.yaml", model="supernet", selection="static", max_epoch=6,
                model_conf=dict(ctc_weight=1.0, largest_warmup_steps=10),
                encoder_conf=dict(num_blocks=6, subnet_sizes=[8, 24]))


def record(results: Path, name: str, seed: int, wer: dict, train_only=None, updates=100,
           seconds=600.0, decoding="decode_ctc_lm", config=None, model_conf=None,
           selection=None, cost=None, encoder_conf=None):
    settings = json.loads(json.dumps(SETTINGS))
    settings["seed"] = seed
    settings["config"] = config or settings["config"]
    settings["model_conf"].update(model_conf or {})
    if train_only is not None:
        settings["model_conf"]["train_only"] = train_only
    if selection is not None:  # a learned selection: (name, selection_conf)
        settings["selection"], settings["selection_conf"] = selection
        settings["encoder_conf"] = dict(num_blocks=6, ffn_chunks=4, prune_heads=True)
    settings["encoder_conf"].update(encoder_conf or {})
    out = results / name
    out.mkdir(parents=True)
    (out / "training.json").write_text(json.dumps(
        dict(settings=settings, updates=updates, train_seconds=seconds)))
    cost = cost or {}
    rows = [dict(size=size, test_set=test_set, wer=w, decoding=decoding, lm=True,
                 encoder_params=cost.get(size, (0, 0))[0],
                 encoder_gflops_per_sec=cost.get(size, (0, 0))[1])
            for (size, test_set), w in wer.items()]
    (out / "scores.json").write_text(json.dumps(dict(rows=rows)))


@pytest.fixture
def results(tmp_path):
    res = tmp_path / "results"
    # one job, seeds 1 and 2 (sizes 8 and 24, two test sets)
    record(res, "demo_seed1", 1, {("8", "dev"): 60.0, ("24", "dev"): 40.0,
                                  ("8", "test"): 62.0, ("24", "test"): 41.0}, seconds=1200)
    record(res, "demo_seed2", 2, {("8", "dev"): 58.0, ("24", "dev"): 44.0,
                                  ("8", "test"): 61.0, ("24", "test"): 45.0}, seconds=1000)
    # alone: size 8 with both seeds, 24 with seed 1 only; a sandwich setting that
    # train_only ignores (largest_warmup_steps) and another config name do not matter
    record(res, "alone8_seed1", 1, {("8", "dev"): 50.0, ("8", "test"): 52.0}, train_only="8",
           seconds=300, config="conf/other_name.yaml", model_conf=dict(largest_warmup_steps=0))
    record(res, "alone8_seed2", 2, {("8", "dev"): 54.0, ("8", "test"): 55.0}, train_only="8",
           seconds=500)
    record(res, "alone24_seed1", 1, {("24", "dev"): 42.0, ("24", "test"): 43.0},
           train_only="24", seconds=700)
    return res


def test_rows_mean_range_and_paired_difference(results):
    (comp,) = comparisons(results)
    assert comp.title == "conf/demo.yaml"
    assert sorted(comp.onejob) == [1, 2] and sorted(comp.alone) == ["24", "8"]
    rows = {(r["size"], r["test_set"]): r for r in comparison_rows(comp)}
    assert list(rows) == [("8", "dev"), ("8", "test"), ("24", "dev"), ("24", "test")]
    assert rows["8", "dev"]["onejob"] == [60.0, 58.0]
    assert rows["8", "dev"]["alone"] == [50.0, 54.0]
    assert rows["8", "dev"]["diff"] == [10.0, 4.0]  # per seed
    assert rows["24", "test"]["diff"] == [-2.0]  # seed 1 only on both sides
    text = comparison_markdown(comp)
    assert "| 8 | dev | 59.0 [58.0, 60.0] | 52.0 [50.0, 54.0] | +7.0 [+4.0, +10.0] | alone better in every seed | 1,2 / 1,2 |" in text
    assert "| 24 | test | 43.0 [41.0, 45.0] | 43.0 | -2.0 | one seed: no claim | 1,2 / 1 |" in text
    assert "100 updates" in text and "decode_ctc_lm` with the LM" in text
    # seed 1 is the only seed with every alone job: 300 + 700 s; one job mean 1100 s
    assert "one job 18.3 min; the 2 alone jobs together 16.7 min (one job / sum = 1.10)" in text


def test_unequal_budget_or_decoding_is_not_compared(results, caplog):
    record(results, "alone8_seed3", 3, {("8", "dev"): 1.0}, train_only="8", updates=50)
    assert comparisons(results) == []
    assert "not an equal budget" in caplog.text and "alone8_seed3: 50 updates" in caplog.text


def test_a_run_that_only_trained_the_largest_is_not_a_one_job(tmp_path):
    res = tmp_path / "results"
    record(res, "largest_only", 1, {("24", "dev"): 40.0}, model_conf=dict(largest_warmup_steps=100))
    record(res, "alone24", 1, {("24", "dev"): 40.0}, train_only="24")
    assert comparisons(res) == []


def test_results_md_section_replaced_and_kept_out_of_the_experiments(results, tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n\n## Environments\n- date\n\n## Comparison\nWER\n\n"
                  "## exp_a\nWER\n\n| size | test set | WER | CER |\n|---|---|---:|---:|\n"
                  "| 8 | dev | 1.00 | 2.00 |\n")
    compare_main(["--results_dir", str(results), "--results_md", str(md)])
    text = md.read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Environments", "## Comparison",
                        "## One job vs each size alone: conf/demo.yaml", "## exp_a"]
    # rewriting replaces the section (no duplicate) and the experiments stay readable
    record(results, "alone24_seed2", 2, {("24", "dev"): 46.0, ("24", "test"): 47.0},
           train_only="24", seconds=800)
    update_results_md(md, results)
    text = md.read_text()
    assert text.count("## One job vs each size alone") == 1
    assert "| 24 | test | 43.0 [41.0, 45.0] | 45.0 [43.0, 47.0] | -2.0 [-2.0, -2.0] | one job better in every seed |" in text
    assert list(read_results_md(str(md))) == ["exp_a"]
    assert read_results_md(str(md))["exp_a"].cells == {("8", "dev"): "1.00 / 2.00"}


def test_missing_results_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match="run stage 13"):
        compare_main(["--results_dir", str(tmp_path / "nope"),
                      "--results_md", str(tmp_path / "R.md")])


def test_verdict_needs_two_seeds_on_one_side():
    from espnet_supernet.data.alone_comparison import verdict

    assert verdict([-1.0]) == "one seed: no claim"
    assert verdict([-1.0, -0.1]) == "one job better in every seed"
    assert verdict([0.5, 2.0, 0.1]) == "alone better in every seed"
    assert verdict([-1.0, 1.0]) == "mixed: within seed variation"
    assert verdict([0.0, 1.0]) == "mixed: within seed variation"


STATIC_COST = {"8": (1.4e6, 0.16), "24": (3.4e6, 0.29)}  # static sizes (selection: static)


def test_a_learned_selection_is_compared_with_the_static_size_of_nearest_cost(results):
    # the static alone runs carry their costs; an OrthoSoftmax one job (FLOPs budgets) with
    # seeds 1 and 2 learns sizes 0.55 and 1.0 whose FLOPs are near 8's and 24's
    for name in ("alone8_seed1", "alone8_seed2", "alone24_seed1"):
        shutil.rmtree(results / name)
    record(results, "alone24_seed1", 1, {("24", "dev"): 42.0}, train_only="24", seconds=700,
           cost=STATIC_COST)
    record(results, "alone8_seed1", 1, {("8", "dev"): 50.0}, train_only="8", seconds=300,
           cost=STATIC_COST)
    record(results, "alone8_seed2", 2, {("8", "dev"): 54.0}, train_only="8", seconds=500,
           cost=STATIC_COST)
    ortho = ("ortho_softmax", dict(criterion="flops", budgets=[0.55, 1.0]))
    for seed, w_small, f_small in ((1, 57.0, 0.150), (2, 55.0, 0.156)):
        record(results, f"ortho_seed{seed}", seed, {("0.55", "dev"): w_small,
                                                    ("1.0", "dev"): 41.0},
               config="conf/ortho.yaml", selection=ortho, seconds=900,
               cost={"0.55": (2.0e6, f_small), "1.0": (3.4e6, 0.29)})
    comps = {c.title: c for c in comparisons(results)}
    assert sorted(comps) == ["conf/demo.yaml", "conf/ortho.yaml"]
    comp = comps["conf/ortho.yaml"]
    assert comp.learned and comp.pairs == {"0.55": "8", "1.0": "24"}
    rows = {r["size"]: r for r in comparison_rows(comp)}
    assert rows["0.55"]["alone_size"] == "8" and rows["0.55"]["diff"] == [7.0, 1.0]
    assert rows["0.55"]["cost"] == ((2.0e6, pytest.approx(0.153)), (1.4e6, 0.16))
    text = comparison_markdown(comp)
    assert ("| 0.55 vs 8 (2.00M / 1.40M, 0.153 / 0.160) | dev | 56.0 [55.0, 57.0] | "
            "52.0 [50.0, 54.0] | +4.0 [+1.0, +7.0] | alone better in every seed |") in text
    # 24 alone has seed 1 only: seed 1 pairs both sizes, 300 + 700 s against 900 s
    assert "one job 15.0 min; the 2 alone jobs together 16.7 min" in text
    # a params-aware selection pairs by parameters: 3.0M is nearest 24's 3.4M, although its
    # 0.16 GFLOPs/s equal size 8's
    ortho_params = ("ortho_softmax", dict(criterion="params"))
    record(results, "orthop_seed1", 1, {("0.55", "dev"): 50.0}, config="conf/op.yaml",
           selection=ortho_params, cost={"0.55": (3.0e6, 0.16)})
    comp = {c.title: c for c in comparisons(results)}["conf/op.yaml"]
    assert comp.pairs == {"0.55": "24"}


def test_a_learned_size_with_a_static_name_is_paired_by_name(results):
    record(results, "topk_seed1", 1, {("8", "dev"): 61.0, ("24", "dev"): 40.5},
           config="conf/topk.yaml", selection=("simple_topk", {}),
           cost={"8": (3.3e6, 0.28), "24": (3.4e6, 0.29)})
    comp = {c.title: c for c in comparisons(results)}["conf/topk.yaml"]
    assert comp.pairs == {"8": "8", "24": "24"}  # module counts, whatever their cost


def test_a_learned_selection_needs_the_same_encoder(results):
    record(results, "wide_seed1", 1, {("0.55", "dev"): 50.0}, config="conf/w.yaml",
           selection=("ortho_softmax", {}), encoder_conf=dict(output_size=512))
    assert "conf/w.yaml" not in {c.title for c in comparisons(results)}


def test_a_learned_size_is_compared_with_its_own_subnet_alone(results):
    # an OrthoSoftmax one job with seeds 1 and 2, and its learned subnet 0.55 of each seed
    # trained alone (data/alone_config.py: selection static, the one job's masks)
    ortho = ("ortho_softmax", dict(criterion="flops", budgets=[0.55, 1.0]))
    for seed, params in ((1, 2.0e6), (2, 2.1e6)):
        record(results, f"ortho_seed{seed}", seed, {("0.55", "dev"): 50.0 + seed,
                                                    ("1.0", "dev"): 41.0},
               config="conf/ortho.yaml", selection=ortho, seconds=900,
               cost={"0.55": (params, 0.15), "1.0": (3.4e6, 0.29)})
        record(results, f"ortho_alone0.55_seed{seed}", seed, {("0.55", "dev"): 54.0 - seed},
               train_only="0.55", seconds=400, config="exp/alone_conf/ortho_seed{seed}.yaml",
               cost={"0.55": (params, 0.15)},
               encoder_conf=dict(ffn_chunks=4, prune_heads=True, subnet_masks={"0.55": [1, 0]}))
    # seed 2's mask trained under seed 1's name: another parameter count, not its subnet
    record(results, "ortho_alone1.0_seed1", 1, {("1.0", "dev"): 30.0}, train_only="1.0",
           cost={"1.0": (3.0e6, 0.2)},
           encoder_conf=dict(ffn_chunks=4, prune_heads=True, subnet_masks={"1.0": [1, 1]}))
    comps = {c.title: c for c in comparisons(results)}
    own = comps["conf/ortho.yaml, each learned subnet alone"]
    assert own.own_masks and own.pairs == {"0.55": "0.55"}  # 1.0's run left out
    (row,) = comparison_rows(own)
    assert row["onejob"] == [51.0, 52.0] and row["alone"] == [53.0, 52.0]
    assert row["diff"] == [-2.0, 0.0]
    text = comparison_markdown(own)
    assert ("| 0.55 (2.05M, 0.150) | dev | 51.5 [51.0, 52.0] | 52.5 [52.0, 53.0] | "
            "-1.0 [-2.0, +0.0] | mixed: within seed variation | 1,2 / 1,2 |") in text
    assert "its own subnet" in text and "one job 15.0 min; the 1 alone jobs together 6.7 min" in text
    # the own-mask runs are not static sizes: the nearest-cost comparison (static alone runs
    # of the fixture, sizes 8 and 24, no costs recorded) pairs by name only, so none here
    assert "conf/ortho.yaml" not in comps or not comps["conf/ortho.yaml"].own_masks
    md = results.parent / "RESULTS.md"
    update_results_md(md, results)
    assert "## One job vs each size alone: conf/ortho.yaml, each learned subnet alone" in md.read_text()


def test_an_omni_level_is_compared_with_that_level_pruned_alone(results):
    # an Omni-sparsity one job (levels 0, 0.5, 0.85) with seeds 1 and 2 and level 0.85
    # pruned alone (the same config with levels: [0.85]); a one-level run with another
    # pruning schedule is not the same budget's alone run
    omni = dict(levels=[0.0, 0.5, 0.85], warmup_steps=50, per_level_bn=True)
    for seed in (1, 2):
        record(results, f"omni_seed{seed}", seed, {("sp0", "dev"): 40.0, ("sp85", "dev"): 60.0 + seed},
               config="conf/omni.yaml", seconds=900)
        record(results, f"omni_alonesp85_seed{seed}", seed, {("sp85", "dev"): 50.0},
               config="conf/omni.yaml", seconds=300)
    record(results, "omni_other_schedule", 1, {("sp50", "dev"): 1.0}, config="conf/omni.yaml")
    for name in ("omni_seed1", "omni_seed2", "omni_alonesp85_seed1", "omni_alonesp85_seed2",
                 "omni_other_schedule"):
        path = results / name / "training.json"
        train = json.loads(path.read_text())
        train["settings"]["sparsity"] = "omni"
        levels = [0.85] if "alone" in name else [0.5] if "other" in name else omni["levels"]
        train["settings"]["sparsity_conf"] = dict(
            omni, levels=levels, warmup_steps=10 if "other" in name else 50)
        path.write_text(json.dumps(train))
    comps = {c.title: c for c in comparisons(results)}
    comp = comps["conf/omni.yaml"]
    assert sorted(comp.onejob) == [1, 2] and list(comp.alone) == ["sp85"]
    assert comp.pairs == {"sp85": "sp85"}
    (row,) = comparison_rows(comp)
    assert row["onejob"] == [61.0, 62.0] and row["alone"] == [50.0, 50.0]
    assert row["diff"] == [11.0, 12.0]
    assert "alone better in every seed" in comparison_markdown(comp)
