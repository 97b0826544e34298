"""The feature front end on a waveform in chunks: the whole utterance's frames (ESPnet's
DefaultFrontend + global_mvn), whatever the chunking; what cannot stream is refused."""

import numpy as np
import pytest
import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.layers.utterance_mvn import UtteranceMVN

from espnet_supernet.decode.streaming_features import StreamingFeatures


@pytest.fixture(scope="module")
def frontend():
    return DefaultFrontend(fs=16000, n_fft=512, win_length=400, hop_length=160,
                           n_mels=40).eval()


@pytest.fixture(scope="module")
def mvn(tmp_path_factory):
    path = tmp_path_factory.mktemp("mvn") / "feats_stats.npz"
    rng = np.random.default_rng(0)
    np.savez(path, count=np.array(100.0), sum=rng.normal(size=40) * 100,
             sum_square=rng.uniform(900, 1100, size=40) * 100)
    return GlobalMVN(str(path))


def _stream(features: StreamingFeatures, wav: torch.Tensor, chunk: int) -> torch.Tensor:
    pieces = [features.accept(wav[:, s:s + chunk]) for s in range(0, wav.size(1), chunk)]
    return torch.cat(pieces + [features.finish()], dim=1)


@pytest.mark.parametrize("samples, chunk", [(16000, 1600), (12345, 777), (900, 100),
                                            (5000, 5000)])
def test_chunks_give_the_whole_utterance_frames(frontend, mvn, samples, chunk):
    wav = torch.randn(1, samples, generator=torch.Generator().manual_seed(samples))
    with torch.no_grad():
        whole, lens = frontend(wav, torch.tensor([samples]))
        whole, _ = mvn(whole, lens)
    streamed = _stream(StreamingFeatures(frontend, mvn), wav, chunk)
    assert streamed.shape == whole.shape == (1, samples // 160 + 1, 40)
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)


def test_frames_come_as_soon_as_their_window_is_complete(frontend):
    features = StreamingFeatures(frontend)
    assert features.accept(torch.randn(256)).size(1) == 0  # the left reflection waits
    # 512 samples: frames whose 512-sample window (starting 256 before) fits: 0 .. 1
    assert features.accept(torch.randn(256)).size(1) == 2
    assert features.accept(torch.randn(160)).size(1) == 1
    assert features.finish().size(1) == 672 // 160 + 1 - 3
    with pytest.raises(RuntimeError, match="call reset"):
        features.accept(torch.randn(10))
    features.reset()
    features.accept(torch.randn(100))
    with pytest.raises(ValueError, match="needs more than 256"):
        features.finish()


def test_what_cannot_stream_is_refused(frontend):
    with pytest.raises(ValueError, match="cannot stream; train with global_mvn"):
        StreamingFeatures(frontend, UtteranceMVN())
    centred = DefaultFrontend(fs=16000, n_fft=512, hop_length=160, n_mels=40, center=False)
    with pytest.raises(ValueError, match="center: true"):
        StreamingFeatures(centred)
