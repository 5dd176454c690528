"""Data sources: files by URL (download once into the HF cache, cache hit offline, offline error) and TRL's data
arguments (`dataset_name`: folder, file, save_to_disk folder; `datasets:` mixtures; the held-out split)."""

import http.server
import json
import threading
from pathlib import Path

import pytest
from datasets import DatasetDict
from toy import conditioned_pairs
from trl import DatasetMixtureConfig, ScriptArguments

from trl_custom.data.sources import (
    cached_path_for,
    load_data_source,
    load_dataset_name,
    resolve_data_file,
    train_test_split,
)
from trl_custom.scripts.reward import RewardScriptArguments, build_reward_data


DSP_ITEMS = [
    {"query": f"q{i}", "responses": {k: f"{k} {i}" for k in ["academy", "business", "entertainment", "literature"]}}
    for i in range(10)
]


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving `tmp_path/www`, counting its GET requests; stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed, into a cache of this test's own (`HF_HOME`)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return monkeypatch


def test_url_is_downloaded_once_then_read_from_the_cache_offline(server, online, tmp_path):
    base, root, requests = server
    (root / "dsp.train.json").write_text(json.dumps(DSP_ITEMS))
    url = f"{base}/dsp.train.json"
    path = resolve_data_file(url, "--dsp_file")
    assert Path(path).parent.parent == tmp_path / "hf_home" / "trl-custom" / "downloads"
    assert Path(path).name == "dsp.train.json" and json.loads(Path(path).read_text()) == DSP_ITEMS
    assert requests == ["/dsp.train.json"]
    assert resolve_data_file(url, "--dsp_file") == path and len(requests) == 1  # cache hit: no second request
    online.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_data_file(url, "--dsp_file") == path and len(requests) == 1  # offline: still the cached copy
    # and the recipe trains on it: the URL is a --dsp_file like a path
    args = RewardScriptArguments(dsp_file=url, test_size=0.2)
    data = build_reward_data(args, str(tmp_path / "eval"))
    assert len(data.eval_queries) == 2 and len(data.train) == 8 * 4 * 3
    assert url in data.source


def test_url_not_cached_offline_fails_naming_the_flag_and_the_alternatives(server, online):
    base, root, requests = server
    (root / "helpful.json").write_text("[]")
    online.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConnectionError, match=r"--general_files .*helpful.json: not in the cache.*local copy"):
        resolve_data_file(f"{base}/helpful.json", "--general_files")
    with pytest.raises(ConnectionError, match=r"--dsp_file .*or `demo`"):  # at argument parsing already
        RewardScriptArguments(dsp_file=f"{base}/helpful.json")
    assert requests == []


def test_failed_download_names_the_flag_and_leaves_no_file(server, online):
    base, _, _ = server
    url = f"{base}/missing.json"
    with pytest.raises(ConnectionError, match=r"--train_file .*missing.json: download failed \(HTTP Error 404"):
        resolve_data_file(url, "--train_file")
    assert not Path(cached_path_for(url)).exists()
    assert not list(Path(cached_path_for(url)).parent.glob("*.incomplete"))


def test_local_path_is_checked():
    with pytest.raises(FileNotFoundError, match="Data file not found: nowhere.json \\(--dsp_file\\)"):
        resolve_data_file("nowhere.json", "--dsp_file")


@pytest.fixture
def prefs_folder(tmp_path):
    folder = tmp_path / "prefs"
    folder.mkdir()
    conditioned_pairs(20, seed=0).to_json(folder / "train.jsonl")
    conditioned_pairs(6, seed=1).to_json(folder / "test.jsonl")
    return folder


def test_dataset_name_reads_a_folder_a_file_and_a_save_to_disk_folder(prefs_folder, tmp_path):
    from_folder = load_dataset_name(str(prefs_folder))
    assert {k: len(v) for k, v in from_folder.items()} == {"train": 20, "test": 6}
    assert from_folder["train"].column_names == ["prompt", "chosen", "rejected", "domain"]
    conditioned_pairs(8).to_parquet(tmp_path / "pairs.parquet")
    assert len(load_dataset_name(str(tmp_path / "pairs.parquet"))["train"]) == 8
    DatasetDict({"train": conditioned_pairs(5), "test": conditioned_pairs(3)}).save_to_disk(tmp_path / "saved")
    saved = load_dataset_name(str(tmp_path / "saved"))
    assert {k: len(v) for k, v in saved.items()} == {"train": 5, "test": 3}
    conditioned_pairs(4).save_to_disk(tmp_path / "saved_one")
    assert len(load_dataset_name(str(tmp_path / "saved_one"))["train"]) == 4


def test_test_split_or_a_seeded_held_out_fraction(prefs_folder):
    dataset = load_dataset_name(str(prefs_folder))
    train, test, described = train_test_split(dataset, "train", "test", test_size=0.5)
    assert (len(train), len(test), described) == (20, 6, "the `test` split")
    only_train = DatasetDict({"train": dataset["train"]})
    a = train_test_split(only_train, "train", "test", test_size=0.25, seed=3)
    b = train_test_split(only_train, "train", "test", test_size=0.25, seed=3)
    assert (len(a[0]), len(a[1])) == (15, 5) and a[1]["prompt"] == b[1]["prompt"]  # same split in every process
    with pytest.raises(ValueError, match="--dataset_train_split 'training'.*splits: \\['train', 'test'\\]"):
        train_test_split(dataset, "training", "test")


def test_mixture_and_its_errors(prefs_folder, tmp_path):
    mixture = DatasetMixtureConfig(
        datasets=[
            {"path": "json", "data_files": str(prefs_folder / "train.jsonl"), "split": "train"},
            {"path": "json", "data_files": str(prefs_folder / "test.jsonl"), "split": "train"},
        ]
    )
    loaded = load_data_source(ScriptArguments(), mixture)
    assert len(loaded["train"]) == 26
    with pytest.raises(ValueError, match="Both `dataset_name`.*keep one"):
        load_data_source(ScriptArguments(dataset_name=str(prefs_folder)), mixture)
    with pytest.raises(ValueError, match="`dataset_streaming: true` is not supported"):
        load_data_source(ScriptArguments(dataset_name=str(prefs_folder), dataset_streaming=True), None)
    conditioned_pairs(4).save_to_disk(tmp_path / "saved")
    saved = DatasetMixtureConfig(datasets=[{"path": str(tmp_path / "saved")}])
    with pytest.raises(ValueError, match=r"datasets\[0\].path=.*save_to_disk.*give it as `dataset_name`"):
        load_data_source(ScriptArguments(), saved)


def test_build_reward_data_from_a_dataset_holds_out_test_split_size_with_the_seed(prefs_folder):
    mixture = DatasetMixtureConfig(
        datasets=[{"path": "json", "data_files": str(prefs_folder / "train.jsonl")}], test_split_size=0.25
    )
    args = RewardScriptArguments()
    first = build_reward_data(args, "unused", seed=1, dataset_args=mixture)
    again = build_reward_data(args, "unused", seed=1, dataset_args=mixture)
    assert (len(first.train), len(first.eval_dataset)) == (15, 5)
    assert first.eval_dataset["prompt"] == again.eval_dataset["prompt"]  # TRL's get_dataset would split unseeded
    assert mixture.test_split_size == 0.25  # the caller's config is left as it was
    with pytest.raises(ValueError, match="Give training data: --dataset_name"):
        build_reward_data(RewardScriptArguments(), "unused")
    with pytest.raises(ValueError, match="two data sources"):
        RewardScriptArguments(dataset_name=str(prefs_folder), dsp_file="demo")


def test_hub_id_goes_to_load_dataset_which_fails_offline_with_its_name(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="trl-lib/no-such-dataset"):
        load_dataset_name("trl-lib/no-such-dataset")


def test_missing_dataset_path_is_named_not_sent_to_the_hub(monkeypatch, tmp_path):
    """Issue 29 item 11: a path that does not exist fails as a missing file, not as the Hub's ConnectionError."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    fix = f"Fix the path \\(relative to {tmp_path}\\)."
    for name in ("data/nope.jsonl", "nope.parquet", "data/nope"):  # a data file's extension, or a folder that exists
        with pytest.raises(
            FileNotFoundError, match=f"^dataset_name: no such file or folder: {name}; it is not a Hub id either "
            f"\\(offline\\). {fix}$"
        ):  # fmt: skip
            load_dataset_name(name)
    for name in ("./nope", "data/sub/nope", str(tmp_path / "nope.jsonl")):  # not shaped as a Hub id
        with pytest.raises(FileNotFoundError, match=f"^dataset_name: no such file or folder: {name}; it is not a Hub"):
            load_dataset_name(name)
    with pytest.raises(
        ConnectionError, match="^dataset_name=org/name: not a local file or folder, and the Hub is offline "
        "\\(HF_HUB_OFFLINE=1.*\\) with no cached copy of it"
    ):  # fmt: skip
        load_dataset_name("org/name")
    with pytest.raises(FileNotFoundError, match="^dataset_name: no such file or folder: data/nope.jsonl; it is not"):
        build_reward_data(RewardScriptArguments(dataset_name="data/nope.jsonl"), "unused")
