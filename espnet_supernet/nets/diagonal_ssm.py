"""Diagonal state-space layer (S4D; Gu et al., "On the Parameterization and Initialization
of Diagonal State Space Models", NeurIPS 2022), the per-head core of MH-SSM (Fathullah et
al., Interspeech 2023) and of TODM's encoder (Shangguan et al., ICASSP 2024).

Each of C channels is a continuous-time diagonal SSM with N complex modes (N/2 stored,
their conjugates implied), discretised with zero-order hold at step ``exp(log_dt)``:

    s_n(t) = exp(dt A_n) s_n(t-1) + (exp(dt A_n) - 1) / A_n * u(t)
    y(t)   = 2 Re sum_n C_n s_n(t) + D u(t)

which is the causal convolution of u with K_l = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n
exp(dt A_n l), plus D u. Initialisation S4D-Lin: A_n = -1/2 + i pi n, log_dt ~
U[log 1e-3, log 1e-1], C ~ CN(0, 1). Three equal ways to run it: :meth:`forward` (FFT
convolution, training), :meth:`step` (one frame, recurrent) and :meth:`forward_chunk`
(a chunk with the state carried over, streaming).
"""

import math
from typing import Optional, Tuple

import torch


class DiagonalSSM(torch.nn.Module):
    """C independent causal diagonal SSMs on (B, T, C).

    Args:
        channels: C.
        state_size: N complex modes per channel (N // 2 stored: conjugate pairs).
        dt_min, dt_max: range of the initial discretisation steps.
    """

    def __init__(self, channels: int, state_size: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        half = max(1, state_size // 2)
        self.channels, self.modes = channels, half
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = torch.nn.Parameter(log_dt)
        self.log_a_real = torch.nn.Parameter(torch.full((channels, half), math.log(0.5)))
        self.a_imag = torch.nn.Parameter(math.pi * torch.arange(half).float().repeat(channels, 1))
        c = torch.randn(channels, half, 2) * math.sqrt(0.5)
        self.c = torch.nn.Parameter(c)  # real and imaginary parts
        self.d = torch.nn.Parameter(torch.randn(channels))

    # ---------------------------------------------------------------- parameters
    def discrete(self, channels: Optional[torch.Tensor] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dtA, B_bar, C) as complex (C', N/2) of ``channels`` (default all): exp(dtA) is
        the transition, B_bar the input gain ((exp(dtA) - 1) / A), C the output weights."""
        log_dt, log_a_real, a_imag, c = self.log_dt, self.log_a_real, self.a_imag, self.c
        if channels is not None:  # a narrower subnet: only these channels' parameters
            log_dt, log_a_real, a_imag, c = (p.index_select(0, channels)
                                             for p in (log_dt, log_a_real, a_imag, c))
        a = torch.complex(-log_a_real.exp(), a_imag)
        dt_a = a * log_dt.exp()[:, None]
        b_bar = (dt_a.exp() - 1.0) / a
        return dt_a, b_bar, torch.view_as_complex(c.contiguous())

    def kernel(self, length: int, channels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """K (C', L): the impulse response over ``length`` frames (of ``channels``)."""
        dt_a, b_bar, c = self.discrete(channels)
        steps = torch.arange(length, device=dt_a.device, dtype=torch.float32)
        # 2 Re sum_n w_n exp(dtA_n l) in real arithmetic, w = C B_bar: with dtA = r + i q,
        # exp(dtA l) = e^(r l) (cos(q l) + i sin(q l)); real exp/cos/sin and their
        # gradients run about 3x faster on CPU than the complex exp and its gradient.
        w = c * b_bar
        magnitude = torch.exp(dt_a.real[..., None] * steps)  # (C, N/2, L)
        angle = dt_a.imag[..., None] * steps
        return 2.0 * (torch.einsum("cn,cnl->cl", w.real, magnitude * torch.cos(angle))
                      - torch.einsum("cn,cnl->cl", w.imag, magnitude * torch.sin(angle)))

    # ---------------------------------------------------------------- forward forms
    def forward(self, u: torch.Tensor, channels: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """Causal convolution form (FFT): (B, T, C') -> (B, T, C'); zero initial state.
        ``channels`` (C',) selects the channels ``u`` holds (default: all C)."""
        length = u.size(1)
        k = self.kernel(length, channels)
        d = self.d if channels is None else self.d.index_select(0, channels)
        n = 2 * length
        y = torch.fft.irfft(torch.fft.rfft(u.transpose(1, 2).float(), n=n)
                            * torch.fft.rfft(k, n=n), n=n)[..., :length]
        return (y.transpose(1, 2) + u * d).to(u.dtype)

    def initial_state(self, batch: int) -> torch.Tensor:
        """A zero state (B, C, N/2), complex."""
        return torch.zeros(batch, self.channels, self.modes, dtype=torch.complex64,
                           device=self.log_dt.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Recurrent form, one frame: u_t (B, C), state (B, C, N/2) -> y_t, new state."""
        dt_a, b_bar, c = self.discrete()
        state = dt_a.exp() * state + b_bar * u_t[..., None]
        y = 2.0 * (c * state).sum(-1).real + self.d * u_t
        return y, state

    def forward_chunk(self, u: torch.Tensor, state: Optional[torch.Tensor] = None,
                      channels: Optional[torch.Tensor] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Streaming form: a chunk (B, L, C') after ``state`` (B, C', N/2) -> (B, L, C'),
        the state after it; ``channels`` (C',) as in :meth:`forward`.

        The output is the chunk's own convolution plus the carried state's decay into
        it, so chunk by chunk equals :meth:`forward` on the whole sequence.
        """
        if state is None:
            state = self.initial_state(u.size(0))
            if channels is not None:
                state = state[:, : channels.numel()]
        length = u.size(1)
        dt_a, b_bar, c = self.discrete(channels)
        steps = torch.arange(length, device=u.device, dtype=torch.float32)
        decay = torch.exp(dt_a[..., None] * (steps + 1.0))  # (C, N/2, L): A^(l+1)
        carried = 2.0 * torch.einsum("cn,bcn,cnl->blc", c, state, decay).real
        y = self.forward(u, channels) + carried
        # new state: A^L s + sum_j A^(L-1-j) B_bar u_j
        back = torch.exp(dt_a[..., None] * (length - 1.0 - steps))  # (C, N/2, L)
        new_state = decay[..., -1] * state + torch.einsum(
            "cn,cnl,blc->bcn", b_bar, back, u.to(torch.complex64))
        return y, new_state
