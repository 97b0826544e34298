"""A broken model file gets a clear error: every entry point that loads a model exits with
a message naming the file and what to do (no traceback) and rewrites none of its outputs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_supernet.bin import (
    asr_inference,
    calibrate_batch_norm,
    deploy_report,
    export,
    select_subnet,
    sparsity_search,
    subnet_report,
)
from espnet_supernet.checkpoint import (
    CheckpointError,
    check_fits,
    load_model,
    load_state_dict_file,
)
from espnet_supernet.export.model_export import export_checkpoint
from espnet_supernet.export.sparse_storage import compress_state_dict
from tiny_models import make_task_supernet

ROOT = Path(__file__).resolve().parents[2]
TRUNCATED = "is truncated or not a PyTorch checkpoint"
OTHER = "not trained with"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny supernet (2 blocks, sizes 4 and 8) with an export of size 4, the first half
    of its model file, and the model file of another config (3 blocks, sizes 4, 8, 12)."""
    exp = tmp_path_factory.mktemp("exp")
    make_task_supernet(exp)
    other = tmp_path_factory.mktemp("other")
    make_task_supernet(other, num_blocks=3, subnet_sizes=[4, 8, 12])
    data = (exp / "model.pth").read_bytes()
    (exp / "truncated.pth").write_bytes(data[: len(data) // 2])
    shutil.copyfile(other / "model.pth", exp / "other.pth")
    export_checkpoint(exp / "config.yaml", exp / "model.pth", exp / "export/size4", "4",
                      pack_zip=False, onnx=False)
    return exp, other


def command(tool: str, exp: Path, model: Path) -> tuple:
    """``(main, argv, outputs)``: the entry point, its arguments loading ``model`` with the
    experiment's config, and the files it would write."""
    config, out = str(exp / "config.yaml"), exp / f"out_{tool}"
    common = ["--asr_train_config", config, "--asr_model_file", str(model)]
    speech = f"{exp / 'wav.scp'},speech,sound"
    if tool == "asr_inference":
        return asr_inference.main, common + [
            "--subnet", "8", "--data_path_and_name_and_type", speech,
            "--output_dir", str(out)], [out / "1best_recog/text"]
    if tool == "export":
        return export.main, common + ["--subnet", "4", "--outdir", str(out), "--pack",
                                      "false", "--onnx", "false"], [out / "export.json"]
    if tool == "select_subnet":
        return select_subnet.main, ["--exp", str(exp), "--asr_model_file", str(model),
                                    "--max_params", "1.0", "--outdir", str(out),
                                    "--onnx", "false"], [out / "selection.json"]
    if tool == "sparsity_search":
        return sparsity_search.main, common + [
            "--data_path_and_name_and_type", speech, "--data_path_and_name_and_type",
            f"{exp / 'text'},text,text", "--budget", "0.5", "--output",
            str(out / "search.yaml")], [out / "search.yaml"]
    if tool == "calibrate_batch_norm":
        return calibrate_batch_norm.main, common + [
            "--data_path_and_name_and_type", speech, "--output",
            str(out / "bncal.pth")], [out / "bncal.pth"]
    if tool == "subnet_report":
        return subnet_report.main, common + ["--output", str(out / "subnets.json")], \
            [out / "subnets.json"]
    assert tool == "deploy_report"
    return deploy_report.main, ["--exp", str(exp), "--asr_model_file", str(model),
                                "--dumpdir", str(exp / "dump")], \
        [exp / "deploy.json", exp / "RESULTS.md"]


TOOLS = ["asr_inference", "export", "select_subnet", "sparsity_search",
         "calibrate_batch_norm", "subnet_report", "deploy_report"]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("broken", ["truncated.pth", "other.pth"])
def test_entry_point_names_the_broken_file_and_keeps_its_outputs(files, tool, broken,
                                                                 capsys):
    exp, _ = files
    main, argv, outputs = command(tool, exp, exp / broken)
    for path in outputs:  # as an earlier run left them
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("earlier output\n")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = exit_info.value.code
    assert isinstance(message, str), message  # sys.exit("<tool>: ..."): exit status 1
    assert message.startswith(f"{tool}: ") and str(exp / broken) in message, message
    assert (TRUNCATED if broken == "truncated.pth" else OTHER) in message, message
    assert "Traceback" not in capsys.readouterr().err
    for path in outputs:
        assert path.read_text() == "earlier output\n", f"{path} was rewritten"


def test_deploy_report_checks_every_export_before_decoding_any(files, tmp_path):
    exp, _ = files
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy, ignore=shutil.ignore_patterns("out_*"))
    export_checkpoint(copy / "config.yaml", copy / "model.pth", copy / "export/size8", "8",
                      pack_zip=False, onnx=False)
    model = copy / "export/size8/model.pth"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(SystemExit) as exit_info:  # not at the missing dump of size 4
        deploy_report.main(["--exp", str(copy), "--asr_model_file", str(copy / "model.pth"),
                            "--dumpdir", str(tmp_path / "dump")])
    message = exit_info.value.code
    assert str(model) in message and TRUNCATED in message, message
    assert "re-run the export (stage 14" in message, message
    assert not (copy / "export/size4/model_int8.pth").exists()  # size 4 not started


def test_the_command_line_exits_without_a_traceback(files):
    """The issue's case, as the recipe runs it: ``asr_inference --subnet 8`` on a
    truncated ``valid.loss.ave.pth``."""
    exp, _ = files
    model = exp / "valid.loss.ave.pth"
    shutil.copyfile(exp / "truncated.pth", model)
    _, argv, _ = command("asr_inference", exp, model)
    out = subprocess.run([sys.executable, "-m", "espnet_supernet.bin.asr_inference", *argv],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1, out.stderr[-3000:]
    assert f"asr_inference: {model} (" in out.stderr and TRUNCATED in out.stderr
    assert "re-run the training stage that wrote it (stage 11" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-3000:]


def test_errors_say_what_does_not_fit(files):
    exp, other = files
    model, _ = load_model(exp / "config.yaml", None)
    with pytest.raises(CheckpointError) as error:
        check_fits(model, load_state_dict_file(other / "model.pth"), exp / "config.yaml",
                   other / "model.pth")
    message = str(error.value)
    assert f"{other / 'model.pth'} does not fit the model of {exp / 'config.yaml'}" in message
    assert "keys unexpected (encoder.encoders.2." in message  # the third block
    assert "of another shape (" in message  # per-size BatchNorm statistics of 3 sizes
    assert "slot_running_mean 3x32 in the file vs 2x32 in the model" in message
    assert ", ...)" in message  # a few keys named, not all
    assert f"pass the config.yaml of the experiment that wrote it (e.g. {other}" in message
    state = load_state_dict_file(exp / "model.pth")
    del state["encoder.embed.out.0.bias"]
    with pytest.raises(CheckpointError, match=r"1 key missing \(encoder.embed.out.0.bias\)"):
        check_fits(model, state, exp / "config.yaml", exp / "model.pth")


def test_model_files_that_load_and_those_that_do_not(files, tmp_path):
    exp, _ = files
    state = torch.load(exp / "model.pth")
    torch.save(compress_state_dict(state), tmp_path / "sparse.pth")  # sparse format
    model, _ = load_model(exp / "config.yaml", tmp_path / "sparse.pth")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    torch.save({"model": state, "optimizers": [], "reporter": {}}, tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError, match=r"is a training checkpoint .*\(valid.loss.ave.pth\)"):
        load_state_dict_file(tmp_path / "checkpoint.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pth \(0 bytes\) is truncated"):
        load_state_dict_file(tmp_path / "empty.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.pth .* is truncated or not a PyTorch"):
        load_state_dict_file(tmp_path / "text.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a model state dict"):
        load_state_dict_file(tmp_path / "tensor.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        load_model(exp / "config.yaml", tmp_path / "missing.pth")
    data = (exp / "model.pth").read_bytes()
    (tmp_path / "valid.loss.ave.bncal.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="re-run stage 12"):
        load_state_dict_file(tmp_path / "valid.loss.ave.bncal.pth")
