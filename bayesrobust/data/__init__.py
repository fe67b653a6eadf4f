"""The data layer: ``load_dataset(name, split, root=None, download=False)``."""

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, load_dataset, stratified_split
from bayesrobust.registry import import_submodules

import_submodules(__name__)  # each dataset module registers its sets

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "load_dataset", "stratified_split"]
