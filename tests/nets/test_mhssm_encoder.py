"""``encoder: mhssm``: registered, causal, batch-consistent, trainable through the task."""

import torch

from espnet_supernet.nets.mhssm_encoder import MHSSMEncoder

TINY = dict(input_size=20, output_size=16, ssm_heads=2, ssm_state_size=8, linear_units=32,
            num_blocks=2, dropout_rate=0.0, cnn_module_kernel=5)


def test_registered_in_espnet():
    import espnet2.tasks.asr as espnet_asr

    from espnet_supernet.tasks.asr import ENCODERS  # importing registers

    assert espnet_asr.encoder_choices.get_class("mhssm") is MHSSMEncoder is ENCODERS["mhssm"]


def test_causal_and_batch_consistent():
    torch.manual_seed(0)
    enc = MHSSMEncoder(**TINY).eval()
    x = torch.randn(1, 200, 20)
    changed = x.clone()
    changed[:, 100:] = torch.randn(1, 100, 20)
    with torch.no_grad():
        a, alens, _ = enc(x, torch.tensor([200]))
        b, _, _ = enc(changed, torch.tensor([200]))
        # output frame t reads input frames 4t .. 4t + 6: t <= 23 sees only frames < 100
        assert torch.allclose(a[:, :24], b[:, :24], atol=1e-5)
        assert not torch.allclose(a[:, 24:], b[:, 24:], atol=1e-3)
        batch = torch.cat([x, torch.nn.functional.pad(x[:, :120], (0, 0, 0, 80))])
        out, olens, _ = enc(batch, torch.tensor([200, 120]))
        short, slens, _ = enc(x[:, :120], torch.tensor([120]))
    assert a.shape == (1, int(alens[0]), 16) and out.shape[0] == 2
    n = int(slens[0])
    assert torch.allclose(out[1, :n], short[0, :n], atol=1e-5)  # padding never leaks back


def test_trains_through_the_asr_task(tmp_path):
    from espnet_supernet.tasks.asr import SupernetASRTask

    args = SupernetASRTask.get_parser().parse_args([
        "--encoder", "mhssm", "--token_list", str(tmp_path / "t.txt"),
        "--output_dir", str(tmp_path), "--model_conf", "ctc_weight=1.0",
    ])  # fmt: skip
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    args.encoder_conf = {k: v for k, v in TINY.items() if k != "input_size"}
    args.input_size, args.frontend, args.specaug, args.normalize, args.decoder = (
        20, None, None, None, None)
    model = SupernetASRTask.build_model(args)
    loss, stats, _ = model(speech=torch.randn(2, 120, 20),
                           speech_lengths=torch.tensor([120, 90]),
                           text=torch.tensor([[2, 3, 2], [3, 2, -1]]),
                           text_lengths=torch.tensor([3, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.encoder.encoders[0].self_attn.mhssm.ssm.log_dt.grad is not None


def test_streaming_chunk_by_chunk_equals_the_whole_utterance():
    import pytest

    torch.manual_seed(0)
    enc = MHSSMEncoder(**TINY)
    enc.encoders[0].conv_module.norm.running_mean.normal_()  # non-trivial BatchNorm stats
    enc.eval()
    x = torch.randn(2, 203, 20)
    with torch.no_grad():
        whole, lens, _ = enc(x, torch.tensor([203, 203]))
    assert whole.size(1) == 50
    for chunk in (1, 6, 16, 80):
        outs, state = [], None
        for start in range(0, 203, chunk):
            out, state = enc.forward_streaming(x[:, start:start + chunk], state)
            outs.append(out)
        streamed = torch.cat(outs, dim=1)
        assert streamed.shape == whole.shape
        torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)
        assert state.features.size(1) == 203 - 4 * 50  # frames the next chunk will complete
    enc.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        enc.forward_streaming(x)
    centred = MHSSMEncoder(**TINY, causal_conv=False).eval()
    with pytest.raises(ValueError, match="causal_conv: true"):
        centred.forward_streaming(x)
