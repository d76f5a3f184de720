"""Finding and reading datasets. Knows nothing of tasks or models."""

from lmgauge.data.sources import (
    CsvSource,
    DataError,
    DataNotFound,
    DiskSource,
    HubSource,
    JsonlDocsSource,
    Source,
    data_roots,
    locate,
    package_data_dir,
)

__all__ = [
    "CsvSource",
    "DataError",
    "DataNotFound",
    "DiskSource",
    "HubSource",
    "JsonlDocsSource",
    "Source",
    "data_roots",
    "locate",
    "package_data_dir",
]
