"""The streaming report of a TODM experiment (espnet_supernet.deploy.streaming_report):
every size streamed from waveform chunks, scored, with RTF and first-token latency."""

import json

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_supernet.bin.streaming_report import main as report_main
from espnet_supernet.decode.streaming_transducer import (
    StreamingTransducer,
    StreamingTransducerSearch,
)
from espnet_supernet.deploy.streaming_report import stream_utterance, streaming_report

from tiny_models import make_task_supernet, make_transducer


@pytest.fixture(scope="module")
def todm_exp(tmp_path_factory):
    """exp/ (config.yaml, model.pth) of the tiny TODM supernet and dump/raw/test/ with
    3 utterances (wav.scp, text)."""
    root = tmp_path_factory.mktemp("streaming_report")
    args, model = make_transducer(root)
    with torch.no_grad():  # symbols about as likely as blank: non-empty hypotheses
        model.joint_network.lin_out.bias[0] -= 2.0
    exp = root / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), exp / "model.pth")
    data = root / "dump" / "test"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(data / "wav.scp", "w") as scp, open(data / "text", "w") as text:
        for i, seconds in enumerate((0.5, 0.8, 0.3)):
            path = data / f"u{i}.wav"
            soundfile.write(path, rng.normal(size=int(16000 * seconds)).astype("float32"),
                            16000)
            scp.write(f"u{i} {path}\n")
            text.write(f"u{i} a b c\n")
    return exp, root / "dump", model.eval()


def test_a_streamed_utterance_is_the_whole_utterance_search(todm_exp):
    _, dump, model = todm_exp
    wave = torch.from_numpy(soundfile.read(dump / "test" / "u1.wav", dtype="float32")[0])
    with torch.no_grad():
        enc, _ = model.encode(wave[None], torch.tensor([wave.numel()]))
    search = StreamingTransducerSearch(model.decoder, model.joint_network, 1)
    whole = search.best(search.advance(search.start(), enc[0]))
    out = stream_utterance(StreamingTransducer(model), wave, 2560, 16000)
    assert out["symbols"] == whole and len(whole) >= 2 and out["seconds"] > 0
    # the first symbol shows after at least the first chunk's audio (160 ms) has arrived
    assert out["first_token_ms"] >= 160.0


def test_every_size_is_streamed_scored_and_timed(todm_exp, tmp_path):
    exp, dump, _ = todm_exp
    report_main(["--exp", str(exp), "--model_file", str(exp / "model.pth"), "--test_sets",
                 "test", "--dumpdir", str(dump), "--chunk_ms", "100", "--results_dir",
                 str(tmp_path)])
    record = json.loads((tmp_path / "exp" / "streaming.json").read_text())
    assert record["chunk_ms"] == 100 and record["threads"] == 1
    assert [r["size"] for r in record["rows"]] == ["small", "mid", "full"]
    for row in record["rows"]:
        assert row["utterances"] == 3 and row["audio_seconds"] == 1.6
        assert row["rtf"] > 0 and row["wer"] >= 0
        if row["utterances_with_a_token"]:
            assert row["first_token_ms_median"] >= 100.0
    one = streaming_report(exp, exp / "model.pth", ["test"], dump, sizes=["mid"],
                           max_utts=1)
    assert [(r["size"], r["utterances"]) for r in one["rows"]] == [("mid", 1)]


def test_bad_input_says_what_to_do(todm_exp, tmp_path):
    exp, dump, _ = todm_exp
    with pytest.raises(ValueError, match="unknown size.*valid names: small, mid, full"):
        streaming_report(exp, exp / "model.pth", ["test"], dump, sizes=["huge"])
    with pytest.raises(FileNotFoundError, match="wav.scp is missing: run stages 1-4"):
        streaming_report(exp, exp / "model.pth", ["nope"], dump)
    _, _, path = make_task_supernet(tmp_path)  # a CTC supernet
    ctc = tmp_path / "ctc"
    ctc.mkdir()
    (ctc / "config.yaml").write_text(path.read_text())
    with pytest.raises(ValueError, match="not a streaming transducer"):
        streaming_report(ctc, tmp_path / "model.pth", ["test"], dump)
