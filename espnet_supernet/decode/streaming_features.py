"""ESPnet's feature front end on a waveform that arrives in chunks.

A streaming recogniser must compute its features as the audio comes in. ESPnet's
``DefaultFrontend`` (STFT with ``center: true``, power spectrum, log-mel) and a
``global_mvn`` normalisation are frame-wise, so each frame can be computed as soon as the
samples its window covers have arrived: frame ``i`` of the centred STFT is the window at
``i * hop`` of the signal padded by ``n_fft // 2`` reflected samples on each side. The left
padding needs the first ``n_fft // 2 + 1`` samples, the right padding is added when the
stream ends (:meth:`StreamingFeatures.finish`). The frames equal the whole utterance's
(``model.encode``'s features) up to float rounding of the FFT.
"""

from typing import Optional

import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN


class StreamingFeatures:
    """Chunks of a 16 kHz (or the model's rate) waveform -> feature frames.

    Args:
        frontend: the model's ``DefaultFrontend`` (single channel, no enhancement
            front end); ``None`` when the model takes features.
        normalize: the model's ``GlobalMVN`` or None (``utterance_mvn`` needs the whole
            utterance and is refused).

    Raises:
        ValueError: a front end or normalisation that cannot stream.
    """

    def __init__(self, frontend: Optional[torch.nn.Module],
                 normalize: Optional[torch.nn.Module] = None):
        if frontend is not None and not isinstance(frontend, DefaultFrontend):
            raise ValueError(f"streaming features need ESPnet's default front end, not "
                             f"{type(frontend).__name__}")
        enhancement = getattr(frontend, "frontend", None)  # identity on one channel
        if frontend is not None and (frontend.stft is None or enhancement is not None and (
                enhancement.use_wpe or enhancement.use_beamformer)):
            raise ValueError("streaming features need a plain STFT front end (no WPE or "
                             "beamformer front end)")
        if frontend is not None and not frontend.stft.center:
            raise ValueError("streaming features expect the STFT's center: true")
        if normalize is not None and not isinstance(normalize, GlobalMVN):
            raise ValueError(f"{type(normalize).__name__} normalises with statistics of the "
                             "whole utterance and cannot stream; train with global_mvn")
        self.frontend, self.normalize = frontend, normalize
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.samples = torch.zeros(0)
        self.frames_done = 0
        self.finished = False

    @property
    def _half(self) -> int:
        return self.frontend.stft.n_fft // 2

    def _frames(self, padded: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Frames [first, last) of the padded signal (1-D) -> features (1, n, F)."""
        stft = self.frontend.stft
        hop, n_fft = stft.hop_length, stft.n_fft
        piece = padded[first * hop:(last - 1) * hop + n_fft]
        window = None if stft.window is None else getattr(torch, f"{stft.window}_window")(
            stft.win_length, dtype=piece.dtype)
        spec = torch.stft(piece.float()[None], n_fft=n_fft, win_length=stft.win_length,
                          hop_length=hop, center=False, window=window,
                          normalized=stft.normalized, onesided=stft.onesided,
                          return_complex=True).transpose(1, 2)  # (1, n, F)
        power = spec.real ** 2 + spec.imag ** 2
        lens = torch.tensor([power.size(1)])
        feats, _ = self.frontend.logmel(power, lens)
        if self.normalize is not None:
            feats, _ = self.normalize(feats, lens)
        return feats

    @torch.no_grad()
    def accept(self, chunk: torch.Tensor) -> torch.Tensor:
        """The next samples (1, S) or (S,) -> the feature frames now complete (1, n, F)."""
        if self.finished:
            raise RuntimeError("the stream has finished: call reset() for a new one")
        chunk = chunk.reshape(-1)
        if self.frontend is None:  # the model takes features: nothing to compute
            raise ValueError("this model has no front end: pass features to the encoder")
        self.samples = torch.cat([self.samples, chunk.to(self.samples.dtype)])
        half, hop = self._half, self.frontend.stft.hop_length
        if self.samples.numel() <= half:  # the left reflection needs samples 1 .. half
            return self._empty()
        padded = torch.cat([self.samples[1:half + 1].flip(0), self.samples])
        ready = (padded.numel() - self.frontend.stft.n_fft) // hop + 1
        return self._emit(padded, ready)

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        """The frames that the end of the stream completes (right reflection)."""
        self.finished = True
        half = self._half
        if self.samples.numel() <= half:
            raise ValueError(f"the stream has {self.samples.numel()} samples; the STFT's "
                             f"reflection padding needs more than {half}")
        padded = torch.cat([self.samples[1:half + 1].flip(0), self.samples,
                            self.samples[-half - 1:-1].flip(0)])
        total = self.samples.numel() // self.frontend.stft.hop_length + 1
        return self._emit(padded, total)

    def _emit(self, padded: torch.Tensor, ready: int) -> torch.Tensor:
        if ready <= self.frames_done:
            return self._empty()
        feats = self._frames(padded, self.frames_done, ready)
        self.frames_done = ready
        return feats

    def _empty(self) -> torch.Tensor:
        return torch.zeros(1, 0, self.frontend.logmel.mel_options["n_mels"]
                           if hasattr(self.frontend.logmel, "mel_options") else 0)
