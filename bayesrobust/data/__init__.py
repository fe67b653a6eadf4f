"""The data layer: ``load_dataset(name, split, root=None, download=False)``."""

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, load_dataset, stratified_split

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "load_dataset", "stratified_split"]
