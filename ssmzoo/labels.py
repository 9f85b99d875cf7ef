"""Class names for each label set a model can predict."""

from __future__ import annotations

from functools import lru_cache

from .errors import ManifestError

NUM_CLASSES = {"imagenet-1k": 1000, "kinetics-400": 400, "ssv2": 174}


@lru_cache(maxsize=None)
def class_names(label_set: str) -> tuple[str, ...]:
    """Short human-readable names in the dataset's official index order."""
    if label_set == "imagenet-1k":
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes()))
    if label_set in ("kinetics-400", "ssv2"):
        from .video import load_class_names

        return tuple(load_class_names(label_set))
    raise ManifestError(f"unknown label set '{label_set}'")


@lru_cache(maxsize=None)
def class_ids(label_set: str) -> tuple[str, ...]:
    """Stable identifiers (ImageNet synsets; the names themselves for the video sets)."""
    if label_set == "imagenet-1k":
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_label_name(i) for i in range(info.num_classes()))
    return class_names(label_set)
