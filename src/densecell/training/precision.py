"""How every candidate of a study computes: chosen once per study (and stored with it), so that one study never
mixes bf16- and fp16-trained trials; the proxy, the supernet and the search's workers all read it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Precision"]


@dataclass(frozen=True)
class Precision:
    """The autocast mode (``off`` is fp32) and the memory format of a candidate's inputs and weights."""

    amp: str = "off"
    channels_last: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format
