"""
`trl-custom serve-reward` and `ConditionedRewardFunction.from_url`: a tiny conditioned reward model served on
127.0.0.1 (a server thread, or the command in a subprocess), scored over HTTP exactly as locally, in GRPO too;
dynamic batching that keeps concurrent clients apart; bad requests, API keys, timeouts, a server down and a server
restarted mid-run.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from toy import make_causal_lm, make_reward_model, make_tokenizer
from transformers import AutoModelForSequenceClassification

from trl_custom import ConditionedRewardFunction, ConditioningSpec, RewardScorer, save_reward_model
from trl_custom.record import ModelRecord
from trl_custom.serving import (
    DynamicBatcher,
    RemoteRewardError,
    RemoteRewardScorer,
    RequestLimits,
    RewardServer,
    ServeRewardConfig,
    parse_score_request,
)
from trl_custom.serving.protocol import RequestError
from trl_custom.soft_tokens import attach_soft_tokens, new_soft_tokens


pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ["casual", "formal"]
PROMPTS = ["question about t1 ", "question about t2 ", "question about t3 "]
COMPLETIONS = ["answer alpha w1", "answer beta w2 w3", "answer"]


def save_conditioned_rm(folder: Path, mode: str, lora: bool = False) -> str:
    """A tiny Llama reward model (its saved tokenizer reloads with AutoTokenizer), conditioned on `domain`."""
    tokenizer = make_tokenizer()
    model = make_reward_model("llama", tokenizer, seed=1)
    if lora:
        model.save_pretrained(folder / "base")
        base = AutoModelForSequenceClassification.from_pretrained(folder / "base")
        model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"))
        for name, param in model.named_parameters():  # as if training had moved the adapter and the head
            if "lora_B" in name or "modules_to_save" in name:
                torch.nn.init.normal_(param, std=0.5)
    spec = ConditioningSpec(mode=mode, column="domain", conditions=CONDITIONS, template="domain is {condition} ")
    if spec.uses_soft_tokens:
        torch.manual_seed(1)
        attach_soft_tokens(model, new_soft_tokens(model, spec.tokens, len(CONDITIONS)))
    ModelRecord(kind="reward_model", conditioning=spec, max_length=64).attach(model)
    return save_reward_model(model.eval(), tokenizer, folder / "rm")


def serve(folder, scorer=None, **config):
    """A started server thread on a free port of 127.0.0.1 (quiet logs)."""
    config = ServeRewardConfig(str(folder), **{"port": 0, "log_level": "warning", **config})
    return RewardServer(scorer or RewardScorer.from_pretrained(folder), config).start()


@pytest.fixture(scope="module")
def embedding_rm(tmp_path_factory):
    return save_conditioned_rm(tmp_path_factory.mktemp("serve-embedding"), "embedding")


@pytest.fixture(scope="module")
def server(embedding_rm):
    server = serve(embedding_rm, max_wait_ms=20.0, max_batch_size=16, max_request_items=32, max_item_chars=200)
    yield server
    server.stop()


def post(url, body: bytes, headers=None):
    """Raw `POST /score`: (status, answer as JSON)."""
    request = urllib.request.Request(url + "/score", data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------- same rewards
@pytest.mark.parametrize("mode, lora", [("text", False), ("embedding", False), ("text+embedding", True)])
@pytest.mark.parametrize("conversational", [False, True])
def test_remote_rewards_equal_the_local_function(tmp_path, mode, lora, conversational):
    folder = save_conditioned_rm(tmp_path, mode, lora=lora)
    local = ConditionedRewardFunction.from_pretrained(folder)
    prompts, completions = PROMPTS * 3, COMPLETIONS * 3
    if conversational:
        prompts = [[{"role": "user", "content": p.strip()}] for p in prompts]
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    domains = ["formal"] * 3 + ["casual"] * 3 + [None, "unseen", None]
    with serve(folder) as server:
        remote = ConditionedRewardFunction.from_url(server.url, batch_size=4)  # 3 requests for 9 completions
        assert remote.conditioning == local.conditioning and remote.condition_column == "domain"
        got = remote(prompts=prompts, completions=completions, completion_ids=None, domain=domains, topic=["x"] * 9)
        assert server.app.state.metrics.requests == 3
    expected = local(prompts=prompts, completions=completions, domain=domains)
    assert got == pytest.approx(expected, abs=1e-5)
    assert len({round(r, 5) for r in expected[:6]}) == 6  # conditions and completions all score differently


def test_missing_condition_column_fails_as_locally(server):
    remote = ConditionedRewardFunction.from_url(server.url)
    with pytest.raises(ValueError, match=r"needs the 'domain' column.*\['topic'\].*condition_column="):
        remote(prompts=PROMPTS, completions=COMPLETIONS, topic=["t"] * 3)
    with pytest.raises(AttributeError, match="served by http://127.0.0.1"):
        remote.model  # nothing to fit or move here: the model is in the server


def test_grpo_trains_two_steps_with_the_served_reward(tmp_path, embedding_rm, server):
    from trl import GRPOConfig, GRPOTrainer

    remote = ConditionedRewardFunction.from_url(server.url, batch_size=3)
    local = RewardScorer.from_pretrained(embedding_rm)
    calls = []

    def recorded(prompts, completions, **columns):  # what GRPO passed and got (TRL itself is not mocked)
        rewards = remote(prompts, completions, **columns)
        calls.append((list(prompts), list(completions), list(columns["domain"]), rewards))
        return rewards

    recorded.__name__ = "served_reward"
    rows = [{"prompt": f"question about t{i} ", "domain": CONDITIONS[i % 2]} for i in range(8)]
    tokenizer = make_tokenizer()
    args = GRPOConfig(
        str(tmp_path / "grpo"), max_completion_length=4, num_generations=2, per_device_train_batch_size=2,
        use_cpu=True, bf16=False, report_to="none", max_steps=2, logging_steps=1, save_strategy="no",
    )  # fmt: skip
    from datasets import Dataset

    trainer = GRPOTrainer(
        make_causal_lm("qwen2", tokenizer),
        reward_funcs=recorded,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 2 and len(calls) == 2
    for prompts, completions, domains, rewards in calls:
        assert domains == [CONDITIONS[int(p.split()[2][1:]) % 2] for p in prompts]
        assert rewards == pytest.approx(local.score(prompts, completions, domains), abs=1e-5)
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert "rewards/served_reward/mean" in logged and logged & {
        "conditioned_reward/formal",
        "conditioned_reward/casual",
    }


# ---------------------------------------------------------------------------------------------------- batching
def test_batcher_merges_waiting_requests_keeps_order_and_isolates_a_failure():
    """Requests queued within max_wait_ms share one call, up to max_batch_size completions; each gets its own
    rewards back; a request that makes the merged call fail fails alone."""
    calls = []

    def score(prompts, completions, conditions):
        calls.append(list(completions))
        if "boom" in completions:
            raise ValueError("cannot score 'boom'")
        return [float(len(c)) + (0.5 if d == "formal" else 0.0) for c, d in zip(completions, conditions)]

    batcher = DynamicBatcher(score, max_batch_size=6, max_wait_ms=200)
    futures = [batcher.submit(None, ["a" * i, "b"], ["formal", None]) for i in range(1, 5)]
    assert [f.result(10) for f in futures] == [[i + 0.5, 1.0] for i in range(1, 5)]
    assert [len(c) for c in calls] == [6, 2]  # 3 requests merged (6 completions), the 4th carried to the next batch
    assert batcher.metrics.requests_per_batch == {3: 1, 1: 1}

    calls.clear()
    good, bad, other = (batcher.submit(None, [c], None) for c in ("xy", "boom", "xyz"))
    assert good.result(10) == [2.0] and other.result(10) == [3.0]
    with pytest.raises(ValueError, match="cannot score 'boom'"):
        bad.result(10)
    assert calls[0] == ["xy", "boom", "xyz"] and sorted(calls[1:]) == [["boom"], ["xy"], ["xyz"]]
    batcher.close()
    assert not batcher.alive


def test_concurrent_clients_are_batched_and_never_mixed(embedding_rm, server):
    local = RewardScorer.from_pretrained(embedding_rm)
    before = server.app.state.metrics.snapshot()["requests_per_batch"]
    results, errors = {}, []

    def client(k):
        try:
            remote = RemoteRewardScorer(server.url)
            for m in range(4):
                completions = [f"answer w{k} w{m}", f"answer alpha w{k}"]
                domains = [CONDITIONS[k % 2], CONDITIONS[m % 2]]
                results[k, m] = (completions, domains, remote.score([PROMPTS[0]] * 2, completions, domains))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(results) == 32
    for completions, domains, got in results.values():
        assert got == pytest.approx(local.score([PROMPTS[0]] * 2, completions, domains), abs=1e-5)
    after = server.app.state.metrics.snapshot()
    merged = {int(k): n - before.get(k, 0) for k, n in after["requests_per_batch"].items()}
    assert sum(k * n for k, n in merged.items()) == 32 and max(k for k, n in merged.items() if n) > 1
    assert after["batch_size"]["max"] <= 16 and after["latency_ms"]["p99"] >= after["latency_ms"]["p50"] > 0


# ---------------------------------------------------------------------------------------------------- bad requests
def test_request_checks_name_the_field_and_the_fix():
    spec = ConditioningSpec(mode="embedding", conditions=CONDITIONS, strict=True)
    limits = RequestLimits(max_items=3, max_item_chars=20, max_bytes=500)

    def refused(body, status, message, conditioning=spec):
        with pytest.raises(RequestError, match=message) as info:
            parse_score_request(body if isinstance(body, bytes) else json.dumps(body).encode(), limits, conditioning)
        assert info.value.status == status

    refused(b"{not json", 400, "not JSON")
    refused(["a"], 422, "JSON list; send an object")
    refused({"completions": ["a"], "scores": [1]}, 422, r"Unknown field\(s\) \['scores'\]")
    refused({"prompts": ["p"]}, 422, "'completions' is missing")
    refused({"completions": ["a", 5]}, 422, r"completions\[1\]: expected a string or a non-empty list of chat")
    refused({"completions": ["a", "b"], "prompts": ["p"]}, 422, "'prompts' has 1 values for 2 completions")
    refused({"completions": ["a"] * 4}, 413, r"4 completions in one request; .* at most 3 \(--max_request_items\)")
    refused({"completions": ["a" * 21]}, 413, r"completions\[0\] has 21 characters.*--max_item_chars")
    refused(b" " * 501, 413, "--max_request_bytes")
    refused({"completions": ["a", "b"], "conditions": ["formal", "legal"]}, 422, r"Unknown domain='legal' in cond")
    refused({"completions": ["a"], "conditions": [["x"]]}, 422, r"conditions\[0\]: expected a string, a number")
    refused({"completions": ["a"], "conditions": ["x"]}, 422, "not conditioned", ConditioningSpec(mode="none"))
    ok = parse_score_request(json.dumps({"completions": ["a"], "conditions": ["formal"]}).encode(), limits, spec)
    assert ok == (None, ["a"], ["formal"])


def test_bad_requests_among_good_ones_get_4xx_and_the_server_keeps_serving(embedding_rm, server):
    local = RewardScorer.from_pretrained(embedding_rm)
    good = json.dumps({"prompts": PROMPTS, "completions": COMPLETIONS, "conditions": ["formal", None, "casual"]})
    bad = [
        (b"{oops", 400, "not JSON"),
        (json.dumps({"completions": ["x"] * 33}).encode(), 413, "at most 32"),
        (json.dumps({"completions": ["x" * 201]}).encode(), 413, "at most 200 per item"),
        (json.dumps({"completions": [{"role": "user"}]}).encode(), 422, r"completions\[0\]"),
    ]
    answers = {}

    def send(key, body):
        answers[key] = post(server.url, body)

    threads = [threading.Thread(target=send, args=(("good", i), good.encode())) for i in range(3)]
    threads += [threading.Thread(target=send, args=(("bad", i), body)) for i, (body, _, _) in enumerate(bad)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    expected = local.score(PROMPTS, COMPLETIONS, ["formal", None, "casual"])
    for i in range(3):
        status, answer = answers["good", i]
        assert status == 200 and answer["rewards"] == pytest.approx(expected, abs=1e-5)
    for i, (_, status, message) in enumerate(bad):
        assert answers["bad", i][0] == status and answers["bad", i][1]["error"], answers["bad", i]
        assert __import__("re").search(message, answers["bad", i][1]["error"])
    with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    errors = server.app.state.metrics.snapshot()["errors"]
    assert errors.get("400", 0) >= 1 and errors.get("413", 0) >= 2 and errors.get("422", 0) >= 1


def test_strict_model_refuses_unknown_conditions_in_the_client_message(embedding_rm):
    scorer = RewardScorer.from_pretrained(embedding_rm)
    scorer.conditioning = dataclasses.replace(scorer.conditioning, strict=True)
    with serve(embedding_rm, scorer) as server:
        remote = ConditionedRewardFunction.from_url(server.url)
        with pytest.raises(RemoteRewardError, match=r"refused with HTTP 422: Unknown domain='legal' in conditions\[1"):
            remote(prompts=PROMPTS[:2], completions=COMPLETIONS[:2], domain=["formal", "legal"])


# ---------------------------------------------------------------------------------------------------- safety
def test_binding_beyond_loopback_needs_an_api_key(monkeypatch, capsys):
    monkeypatch.delenv("TRL_CUSTOM_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"--host 0.0.0.0 .* needs an API key: pass --api_key"):
        ServeRewardConfig("rm", host="0.0.0.0")
    assert ServeRewardConfig("rm", host="0.0.0.0", api_key="k").api_key == "k"
    assert ServeRewardConfig("rm", host="10.1.2.3", allow_unauthenticated=True).api_key is None
    monkeypatch.setenv("TRL_CUSTOM_API_KEY", "from-env")
    assert ServeRewardConfig("rm", host="::").api_key == "from-env"
    monkeypatch.delenv("TRL_CUSTOM_API_KEY")
    from trl_custom import cli

    with pytest.raises(SystemExit, match="needs an API key"):  # before any model is loaded
        cli.main(["serve-reward", "--model_name_or_path", "rm", "--host", "0.0.0.0"])


def test_api_key_is_checked_on_every_endpoint_but_health(embedding_rm, monkeypatch):
    monkeypatch.delenv("TRL_CUSTOM_API_KEY", raising=False)
    with serve(embedding_rm, api_key="s3cret") as server:
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(RemoteRewardError, match=r"refused with HTTP 401: Missing or wrong API key"):
            RemoteRewardScorer(server.url)
        with pytest.raises(RemoteRewardError, match="HTTP 401"):
            RemoteRewardScorer(server.url, api_key="wrong")
        body = json.dumps({"completions": ["answer"]}).encode()
        assert post(server.url, body)[0] == 401
        assert post(server.url, body, {"Authorization": "Bearer s3cret"})[0] == 200
        monkeypatch.setenv("TRL_CUSTOM_API_KEY", "s3cret")
        assert RemoteRewardScorer(server.url).score(None, ["answer"]) == pytest.approx(
            RewardScorer.from_pretrained(embedding_rm).score(None, ["answer"]), abs=1e-5
        )


# ---------------------------------------------------------------------------------------------------- faults
def test_server_down_fails_after_bounded_retries_naming_the_server():
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(RemoteRewardError) as info:
        ConditionedRewardFunction.from_url(url, max_retries=2, retry_backoff=0.05)
    message = str(info.value)
    assert message.startswith(f"Reward server {url}: GET /info failed 3 times (max_retries=2")
    assert message.count("connection refused") == 3 and "trl-custom serve-reward" in message
    assert time.monotonic() - start < 5


def test_a_silent_server_times_out_with_bounded_retries():
    """A socket that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(RemoteRewardError, match=r"failed 2 times .*timeout=0.3 s") as info:
            RemoteRewardScorer(url, timeout=0.3, max_retries=1, retry_backoff=0.0)
        assert str(info.value).count("no answer within the timeout of 0.3 s") == 2
        assert time.monotonic() - start < 5


def test_server_restart_mid_run_is_retried_and_a_server_gone_is_an_error(embedding_rm):
    port = free_port()
    scorer = RewardScorer.from_pretrained(embedding_rm)
    expected = scorer.score(PROMPTS, COMPLETIONS, ["formal", "casual", None])
    first = serve(embedding_rm, scorer, port=port)
    remote = ConditionedRewardFunction.from_url(first.url, max_retries=6, retry_backoff=0.1)
    kwargs = dict(prompts=PROMPTS, completions=COMPLETIONS, domain=["formal", "casual", None])
    assert remote(**kwargs) == pytest.approx(expected, abs=1e-5)
    first.stop()
    restarted = {}
    restart = threading.Timer(0.5, lambda: restarted.setdefault("server", serve(embedding_rm, scorer, port=port)))
    restart.start()
    try:
        assert remote(**kwargs) == pytest.approx(expected, abs=1e-5)  # refused, retried, answered by the new server
        assert restarted["server"].app.state.metrics.requests == 1
    finally:
        restart.join()
        restarted["server"].stop()
    remote.scorer.max_retries = 1
    with pytest.raises(RemoteRewardError, match=r"(?s)POST /score failed 2 times.*connection refused.*no reward"):
        remote(**kwargs)  # gone for good: an error, never a made-up reward


def test_serve_reward_command_serves_until_interrupted(embedding_rm):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TRL_CUSTOM_API_KEY", None)
    command = [sys.executable, "-m", "trl_custom.cli", "serve-reward", "--model_name_or_path", embedding_rm]
    command += ["--port", str(port), "--max_batch_size", "8", "--log_level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        remote = RemoteRewardScorer(f"http://127.0.0.1:{port}", max_retries=60, retry_backoff=0.5)  # while it loads
        assert remote.info["max_batch_size"] == 8 and remote.conditioning.conditions == CONDITIONS
        got = remote.score(PROMPTS, COMPLETIONS, ["formal", "casual", None])
        expected = RewardScorer.from_pretrained(embedding_rm).score(PROMPTS, COMPLETIONS, ["formal", "casual", None])
        assert got == pytest.approx(expected, abs=1e-5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-2000:]
    assert f"Serving the reward model {embedding_rm} (embedding mode on 'domain', 2 conditions)" in out
