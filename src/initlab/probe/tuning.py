"""The probe's tuning knobs, in one frozen config: they change how fast it runs, not what it
records (beyond float rounding; the tests swap :data:`TUNING` for a :func:`dataclasses.replace`d
copy to compare the paths).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """How the probe's reductions run.

    Attributes:
        cpu_shortcuts: CPU tensors take the host path (see
            :func:`~initlab.probe.partials._host_partials`), the one-pass sum of squares and
            NumPy's sort (see :func:`~initlab.probe.reductions._sort_rows`); ``False`` sends them
            down the device path (the tests compare the two).
        slice_entries: the host path reduces a tensor larger than this in slices of this many
            entries (1 MiB of float32, inside a core's L2 cache): the first reduction over a slice
            reads it from memory, the others from cache, so a tensor larger than the cache is read
            from memory once, not three times.
        aminmax_from: from this many entries one ``aminmax`` instead of ``amin`` + ``amax`` (same
            values; on the CPU the pair is faster below ~1M entries).
        batch_entries: most sample entries (rows x padded length) one batch of
            :func:`~initlab.probe.reductions._reduce` holds at once.
        shared_cache: entries of the sample indices and projection directions shared by all probes
            (:class:`~initlab.probe.partials._Sampler`) beyond which the cache is cleared.
    """

    cpu_shortcuts: bool = True
    slice_entries: int = 1 << 18
    aminmax_from: int = 1 << 20
    batch_entries: int = 1 << 22
    shared_cache: int = 512


#: The knobs every reduction reads (as ``tuning.TUNING``, so that replacing it here reaches them).
TUNING = Tuning()
