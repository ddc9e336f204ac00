"""Preprocessing: flag spike-ins, compute size factors."""

from ._size_factors import flag_spike_ins, size_factors

__all__ = ["flag_spike_ins", "size_factors"]
