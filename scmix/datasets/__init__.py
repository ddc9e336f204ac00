"""Datasets: published ERCC spike-in data, the embedded demo, and simulation from the model.

Loaders read the files in their published formats from ``data_dir=``,
``$SCMIX_DATA_DIR`` or a cache, downloading them when possible, and verify each
file against the sha256 recorded in the registry (``data/registry.json``).
"""

from ._loaders import demo, ercc_reference, macosko2015, svensson2017, tung2017, zeisel2015
from ._registry import ChecksumError, DatasetNotFoundError, cache_dir
from ._simulate import simulate

__all__ = [
    "ChecksumError",
    "DatasetNotFoundError",
    "cache_dir",
    "demo",
    "ercc_reference",
    "macosko2015",
    "simulate",
    "svensson2017",
    "tung2017",
    "zeisel2015",
]
