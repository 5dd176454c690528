# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Where the recipes' data comes from: files given as a local path or an `https://` URL (downloaded once into the Hugging
Face cache), and any `datasets` source given with TRL's data arguments (`dataset_name`, or a `datasets:` mixture of
[`~trl.DatasetMixtureConfig`]).

- [`resolve_data_file`]: a local path (checked), or a URL, downloaded on first use to
  `$HF_HOME/trl-custom/downloads/<hash of the URL>/<file name>` (`HF_HOME` defaults to `~/.cache/huggingface`) and read
  from there afterwards, online or offline (`HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1`). For example the DSP
  repository's query file (CC BY-NC 4.0): [`DSP_TRAIN_URL`].
- [`load_data_source`]: TRL's `dataset_name` (a Hub id, a local folder or file of json/jsonl/parquet/csv, a folder
  written by `save_to_disk`) or `datasets:` mixture, as a [`~datasets.DatasetDict`].
- [`train_test_split`]: the training split and the evaluation split (the test split, else a held-out fraction).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk


logger = logging.getLogger(__name__)

DSP_BASE_URL = "https://raw.githubusercontent.com/Linear95/DSP/main/data/"
DSP_TRAIN_URL = DSP_BASE_URL + "domain_specific_preference.train.json"
DSP_TEST_URL = DSP_BASE_URL + "domain_specific_preference.test.json"
URL_SCHEMES = ("https://", "http://")
LOCAL_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
SAVED_DATASET_FILES = ("dataset_dict.json", "state.json")  # written by `save_to_disk`
DOWNLOAD_TIMEOUT_S = 60


# ---------------------------------------------------------------------------------------------------- files or URLs
def is_url(value) -> bool:
    return isinstance(value, str) and value.startswith(URL_SCHEMES)


def is_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE` forbids downloads (read at call time)."""
    return bool(_offline_variables())


def _offline_variables() -> list[str]:
    """The variables that switch downloads off, as `NAME=value`."""
    values = {name: os.environ.get(name, "") for name in _OFFLINE_VARIABLES}
    return [f"{name}={value}" for name, value in values.items() if value.upper() in ("1", "ON", "YES", "TRUE")]


_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def download_cache_dir() -> str:
    """`$HF_HOME/trl-custom/downloads`; `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface` or ~/.cache/huggingface."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "trl-custom", "downloads")


def cached_path_for(url: str) -> str:
    """Where `url` is (or will be) cached: one folder per URL, the file keeps its name (and so its `.json[l]`)."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "data"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return os.path.join(download_cache_dir(), digest, name)


def _alternatives(flag: str) -> str:
    demo = " or `demo` (the built-in synthetic demo set)" if flag in ("--dsp_file", "--synthetic_dsp_file") else ""
    return (
        f"download it once while online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for that run; it is cached in "
        f"{download_cache_dir()}), or give {flag} a local copy of the file{demo}"
    )


def check_data_file(value: str, flag: str) -> None:
    """
    Fails early (at argument parsing) on a data file that cannot be read: a missing local file, or a URL that is not
    cached while offline. Names `flag` and the fix.
    """
    if is_url(value):
        if not os.path.isfile(cached_path_for(value)) and is_offline():
            raise ConnectionError(
                f"{flag} {value}: not in the cache and downloads are switched off (offline mode). To use it, "
                + _alternatives(flag)
                + "."
            )
    elif not os.path.isfile(value):
        raise FileNotFoundError(
            f"Data file not found: {value} ({flag}). Fix the path in the YAML or on the command line, or give an "
            "https:// URL."
        )


def resolve_data_file(value: str | os.PathLike, flag: str) -> str:
    """
    The local path of a data file given as a path or as an `https://`/`http://` URL (downloaded on first use into
    [`download_cache_dir`], then always read from there).

    Args:
        value (`str` or `os.PathLike`): A local path or a URL.
        flag (`str`): The argument that gave it (e.g. `"--dsp_file"`), for the error messages.

    Returns:
        `str`: A local file path.

    Raises:
        `FileNotFoundError`: A local file that does not exist.
        `ConnectionError`: A URL not cached while offline, or a download that failed; the message names `flag` and
            the offline alternatives.
    """
    value = os.fspath(value)
    check_data_file(value, flag)
    if not is_url(value):
        return value
    path = cached_path_for(value)
    if os.path.isfile(path):
        logger.info(f"{flag}: {value} read from the cache ({path})")
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.incomplete"
    logger.info(f"{flag}: downloading {value} to {path}")
    try:
        with urllib.request.urlopen(value, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(partial):
            os.remove(partial)
        raise ConnectionError(f"{flag} {value}: download failed ({e}). Check the URL, or " + _alternatives(flag) + ".")
    os.replace(partial, path)  # atomic: concurrent processes never read a half-written file
    return path


# ---------------------------------------------------------------------------------------------------- datasets
def is_saved_dataset(path: str) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in SAVED_DATASET_FILES)


def load_dataset_name(name: str, config: str | None = None) -> DatasetDict:
    """
    TRL's `dataset_name` as a [`~datasets.DatasetDict`]: a folder written by `save_to_disk`, a local data file
    (json, jsonl, parquet, csv: one `train` split), or anything [`~datasets.load_dataset`] reads (a Hub id, a local
    folder of data files, with `config` as its configuration name).

    Raises:
        `FileNotFoundError`: A name that is not on disk and is either not a Hub id (`./x`, `/x`, `a/b/c`) or looks
            like a path (a data-file extension, a first folder that exists) and is not found on the Hub (or the Hub
            is offline).
        `ConnectionError`: A Hub id while offline, not in the cache.
    """
    if is_saved_dataset(name):
        if config is not None:
            raise ValueError(
                f"--dataset_config {config!r}: {name} is a folder written by save_to_disk, which has no configs."
            )
        loaded = load_from_disk(name)
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    extension = os.path.splitext(name)[1].lower()
    if os.path.isfile(name) and extension in LOCAL_FILE_BUILDERS:
        return load_dataset(LOCAL_FILE_BUILDERS[extension], data_files={"train": name})
    if os.path.exists(name):
        return load_dataset(name, name=config)
    missing = f"dataset_name: no such file or folder: {name}"
    fix = "Fix the path" + ("" if os.path.isabs(name) else f" (relative to {os.getcwd()})") + "."
    if not is_hub_id(name):
        raise FileNotFoundError(f"{missing}; it is not a Hub id either. {fix}")
    try:
        return load_dataset(name, name=config)  # a Hub id (offline: read from the cache, when it is there)
    except Exception as e:
        if looks_like_a_path(name):
            how = "it is not a Hub id either (offline)" if is_offline() else f"trying it as a Hub id failed: {e}"
            raise FileNotFoundError(f"{missing}; {how}. {fix}") from e
        if is_offline() and isinstance(e, ConnectionError):
            raise ConnectionError(
                f"dataset_name={name}: not a local file or folder, and the Hub is offline "
                f"({', '.join(_offline_variables())}) with no cached copy of it. {fix[:-1]} if it is a local "
                "dataset, or load the Hub dataset once while online (it is then read from the cache offline)."
            ) from e
        raise


def is_hub_id(name: str) -> bool:
    """Whether `name` is shaped as a Hub repository id (`name` or `org/name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def looks_like_a_path(name: str) -> bool:
    """Whether a name that is not on disk was meant as a local path: a data-file extension, or a first folder that
    exists here (`data/nope` next to a `data/` folder)."""
    extension = os.path.splitext(name)[1].lower()
    head = name.split("/")[0]
    return extension in (*LOCAL_FILE_BUILDERS, ".arrow") or ("/" in name and os.path.isdir(head))


def load_data_source(script_args, dataset_args) -> DatasetDict:
    """
    The dataset of TRL's data arguments: `script_args.dataset_name` (+ `dataset_config`) or the mixture
    `dataset_args.datasets` (loaded by TRL's `get_dataset`, `test_split_size` included).

    Raises:
        `ValueError`: Both or neither are given, streaming is asked for, or a mixture entry is a `save_to_disk` folder.
    """
    mixture = list(getattr(dataset_args, "datasets", None) or [])
    if mixture and script_args.dataset_name:
        raise ValueError(
            f"Both `dataset_name` ({script_args.dataset_name}) and a `datasets:` mixture are given: keep one (TRL "
            "would ignore dataset_name)."
        )
    if script_args.dataset_streaming or getattr(dataset_args, "streaming", False):
        flag = "dataset_streaming" if script_args.dataset_streaming else "streaming"
        raise ValueError(
            f"`{flag}: true` is not supported by the trl-custom recipes: they read the condition/user values of the "
            "training set and hold out an evaluation split. Remove it (the dataset is loaded into memory-mapped "
            "Arrow files, which handles large datasets)."
        )
    if script_args.dataset_name:
        return load_dataset_name(script_args.dataset_name, script_args.dataset_config)
    if not mixture:
        raise ValueError("No dataset: give `dataset_name` or a `datasets:` mixture.")
    from trl import get_dataset

    for index, entry in enumerate(mixture):
        if is_saved_dataset(entry.path):
            raise ValueError(
                f"datasets[{index}].path={entry.path} is a folder written by save_to_disk, which `load_dataset` (and "
                "so a `datasets:` mixture) cannot read: give it as `dataset_name`, or save it as parquet/jsonl files "
                "(`dataset.to_parquet(...)`)."
            )
    return get_dataset(dataset_args)


def train_test_split(
    dataset: DatasetDict,
    train_split: str = "train",
    test_split: str = "test",
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[Dataset, Dataset, str]:
    """
    The training split and the evaluation split of `dataset`: `test_split` if the dataset has it, else `test_size` of
    the training split held out (never trained on).

    Returns:
        `tuple`: `(train, test, description of the evaluation split)`.
    """
    if train_split not in dataset:
        raise ValueError(
            f"--dataset_train_split {train_split!r}: the dataset has no such split (splits: {list(dataset)}). Set "
            "`dataset_train_split` to one of them."
        )
    train = dataset[train_split]
    if test_split in dataset and test_split != train_split:
        return train, dataset[test_split], f"the `{test_split}` split"
    fraction = isinstance(test_size, float) and 0.0 < test_size < 1.0
    if not (fraction or (isinstance(test_size, int) and 1 <= test_size < len(train))):
        raise ValueError(
            f"The dataset has no {test_split!r} split (splits: {list(dataset)}), so `test_size` of the training split "
            f"is held out for evaluation: it must be a fraction in (0, 1) or a count in [1, {len(train)}), got "
            f"{test_size!r}."
        )
    split = train.train_test_split(test_size=test_size, seed=seed)
    held_out = f"{test_size:.0%}" if fraction else str(test_size)
    return split["train"], split["test"], f"{held_out} of `{train_split}` held out (seed {seed})"


def describe_source(script_args, dataset_args) -> str:
    """One line naming the dataset source, for the model card."""
    mixture = list(getattr(dataset_args, "datasets", None) or [])
    if script_args.dataset_name:
        config = f" (configuration `{script_args.dataset_config}`)" if script_args.dataset_config else ""
        return f"`{script_args.dataset_name}`{config}"
    parts = []
    for entry in mixture:
        details = [f"split `{entry.split}`"] + ([f"fraction {entry.fraction}"] if entry.fraction is not None else [])
        parts.append(f"`{entry.path}`" + (f" `{entry.name}`" if entry.name else "") + f" ({', '.join(details)})")
    return "mixture of " + ", ".join(parts)
