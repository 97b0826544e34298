"""Streaming transducer decoding: a stream of chunks gives the whole-utterance hypotheses
at every size, greedy equal to ESPnet's greedy search, beam search merging paths."""

import pytest
import torch
from espnet2.asr.transducer.beam_search_transducer import BeamSearchTransducer

from espnet_supernet.decode.streaming_transducer import (
    StreamingTransducer,
    StreamingTransducerSearch,
)
from tiny_models import make_transducer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    _, model = make_transducer(tmp_path_factory.mktemp("streaming"))
    with torch.no_grad():  # random weights: make symbols as likely as blank, so that the
        model.joint_network.lin_out.bias[0] -= 2.0  # hypotheses are not all empty
    return model.eval()


def _feats(seed: int, frames: int = 120) -> torch.Tensor:
    return torch.randn(1, frames, 20, generator=torch.Generator().manual_seed(seed))


def _whole(model, feats, beam_size):
    with torch.no_grad():
        enc = model.encoder(feats, torch.tensor([feats.size(1)]))[0][0]
    search = StreamingTransducerSearch(model.decoder, model.joint_network, beam_size)
    return search.best(search.advance(search.start(), enc)), enc


def _streamed(model, feats, beam_size, chunk):
    stream = StreamingTransducer(model, beam_size)
    for start in range(0, feats.size(1), chunk):
        stream.accept(feats[:, start:start + chunk])
    return stream


@pytest.mark.parametrize("size", ["small", "mid", "full"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_stream_equals_whole_utterance_at_every_size(model, size, beam_size):
    model.encoder.set_named_subnet(size)
    for seed in range(3):
        feats = _feats(seed)
        whole, _ = _whole(model, feats, beam_size)
        assert len(whole) >= 3, whole  # the check is not on empty hypotheses
        for chunk in (16, 37):  # 16 frames = 160 ms; 37 not aligned with the subsampling
            stream = _streamed(model, feats, beam_size, chunk)
            assert stream.search.best(stream.search_state) == whole, (seed, chunk)
            assert stream.search_state.frames == 29  # ((120 - 1) // 2 - 1) // 2
    model.encoder.set_named_subnet("full")


def test_greedy_equals_espnet_greedy_search(model):
    espnet_greedy = BeamSearchTransducer(model.decoder, model.joint_network, beam_size=1)
    for size in ("small", "full"):
        model.encoder.set_named_subnet(size)
        for seed in range(3):
            ours, enc = _whole(model, _feats(seed), 1)
            (hyp,) = espnet_greedy(enc)
            assert ours == hyp.yseq[1:], (size, seed)


def test_beam_search_keeps_the_best_merged_hypotheses(model):
    model.encoder.set_named_subnet("full")
    feats = _feats(0)
    with torch.no_grad():
        enc = model.encoder(feats, torch.tensor([120]))[0][0]
    search = StreamingTransducerSearch(model.decoder, model.joint_network, beam_size=4)
    state = search.advance(search.start(), enc)
    yseqs = [tuple(h.yseq) for h in state.hyps]
    scores = [h.score for h in state.hyps]
    assert len(yseqs) == 4 and len(set(yseqs)) == 4  # merged: no label sequence twice
    assert scores == sorted(scores, reverse=True)
    # the best merged score is a log-probability at least that of greedy's single path
    greedy = StreamingTransducerSearch(model.decoder, model.joint_network, 1)
    greedy_state = greedy.advance(greedy.start(), enc)
    assert scores[0] >= greedy_state.hyps[0].score - 1e-4
    assert all(s <= 0 for s in scores)


def test_first_token_frame_and_bad_input(model):
    stream = _streamed(model, _feats(1), 1, 16)
    first = stream.search_state.first_token_frame
    assert first is not None and 0 <= first < stream.search_state.frames
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        StreamingTransducerSearch(model.decoder, model.joint_network, 0)
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval mode"):
            StreamingTransducer(model)
    finally:
        model.eval()


def _audio_whole(model, wav, beam_size):
    with torch.no_grad():
        enc, _ = model.encode(wav, torch.tensor([wav.size(1)]))
    search = StreamingTransducerSearch(model.decoder, model.joint_network, beam_size)
    return search.best(search.advance(search.start(), enc[0]))


def _audio_streamed(model, wav, beam_size, chunk):
    stream = StreamingTransducer(model, beam_size)
    for start in range(0, wav.size(1), chunk):
        stream.accept_audio(wav[:, start:start + chunk])
    return stream.finish_audio()


@pytest.mark.parametrize("size", ["small", "full"])
def test_a_waveform_stream_equals_the_whole_utterance(model, size):
    """Audio in 100 ms (and unaligned) chunks through the streaming front end, encoder and
    search: the hypotheses of ``encode`` on the whole waveform."""
    model.encoder.set_named_subnet(size)
    try:
        for seed in range(2):
            wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(seed))
            whole = _audio_whole(model, wav, 2)
            assert len(whole) >= 2, whole
            for chunk in (1600, 1234):
                assert _audio_streamed(model, wav, 2, chunk) == whole, (seed, chunk)
    finally:
        model.encoder.set_named_subnet("full")


def test_an_exported_size_streams_like_its_whole_utterance(model, tmp_path):
    from espnet_supernet.export.model_export import export_model
    from espnet_supernet.tasks.asr import SupernetASRTask
    from tiny_models import make_transducer

    args, supernet = make_transducer(tmp_path)
    with torch.no_grad():
        supernet.joint_network.lin_out.bias[0] -= 2.0
    export_model(supernet.eval(), vars(args), tmp_path / "small", "small", pack_zip=False)
    exported, _ = SupernetASRTask.build_model_from_file(
        tmp_path / "small" / "config.yaml", tmp_path / "small" / "model.pth", "cpu")
    exported.eval()
    assert len(exported.encoder.encoders) < len(supernet.encoder.encoders)
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(5))
    whole = _audio_whole(exported, wav, 1)
    assert len(whole) >= 2 and _audio_streamed(exported, wav, 1, 1600) == whole
    supernet.encoder.set_named_subnet("small")
    assert _audio_whole(supernet, wav, 1) == whole  # the exported size is the size
