"""TRL's private seams (`trl_custom/trl_seams.py`) checked against the installed TRL: the private methods we override
still exist with the parameters we pass, the TRL blocks we mirror are unchanged (fingerprints), and the TRL method we
call on a stand-in reads nothing else from it. A TRL upgrade that moves one fails here, naming the code to re-check."""

import importlib
import inspect
import re

import pytest

from trl_custom import trl_seams


def resolve(path: str):
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


@pytest.mark.parametrize("owner", list(trl_seams.OVERRIDDEN))
def test_overridden_private_methods_exist_with_our_parameters(owner):
    cls = resolve(owner)
    for method, parameters in trl_seams.OVERRIDDEN[owner].items():
        assert hasattr(cls, method), f"{owner}.{method} is gone: re-check trl-custom's override of it"
        signature = inspect.signature(getattr(cls, method))
        missing = [p for p in parameters if p not in signature.parameters]
        assert not missing, f"{owner}.{method}{signature} lost {missing}"


@pytest.mark.parametrize("target", list(trl_seams.MIRRORED))
def test_mirrored_trl_blocks_are_unchanged(target):
    expected, ours = trl_seams.MIRRORED[target]
    got = trl_seams.fingerprint(trl_seams.source_of(target))
    assert got == expected, (
        f"TRL's {target} changed (fingerprint {got}, recorded {expected}): re-check {ours} against it, then record "
        "the new fingerprint in trl_custom/trl_seams.py MIRRORED."
    )


def test_a_fingerprint_sees_code_changes_but_not_comments():
    source = trl_seams.source_of("trl.trainer.reward_trainer:RewardTrainer.compute_loss")
    base = trl_seams.fingerprint(source)
    assert trl_seams.fingerprint(source.replace("logsigmoid", "sigmoid")) != base  # an edited line
    edited = source.replace("\n        mode = ", "\n        # a new comment\n\n        mode = ", 1)
    assert edited != source and trl_seams.fingerprint(edited) == base  # comments and blank lines don't count


@pytest.mark.parametrize("target", list(trl_seams.STAND_IN_CALLS))
def test_stand_in_calls_read_only_what_the_stand_in_holds(target):
    used = set(re.findall(r"\bself\.(\w+)", trl_seams.source_of(target)))
    assert used <= set(trl_seams.STAND_IN_CALLS[target]), f"{target} now reads self.{used}"


def test_tokenize_preferences_is_trls_dpo_tokenization():
    from datasets import Dataset
    from toy import make_tokenizer

    tokenizer = make_tokenizer()
    pairs = Dataset.from_list([{"prompt": "question about t1 ", "chosen": "answer short", "rejected": "answer w1 w2"}])
    row = trl_seams.tokenize_preferences(pairs, tokenizer)[0]
    prompt = tokenizer("question about t1 ")["input_ids"]
    assert row["prompt_ids"] == prompt and row["chosen_ids"][-1] == tokenizer.eos_token_id
    assert row["chosen_ids"] == tokenizer("question about t1 answer short<eos>")["input_ids"][len(prompt) :]


PRIVATE_NAMES = re.compile(
    r"\._(metrics|total_train_tokens|tp_size|is_vision_dataset|signature_columns|name_or_path|attn_implementation"
    r"|ddp_params_and_buffers_to_ignore)\b|\b_tokenize\b|_IncompatibleKeys"
)


def test_private_names_are_used_in_the_seams_module_only():
    from pathlib import Path

    package = Path(trl_seams.__file__).parent
    for path in sorted(package.rglob("*.py")):
        if path.name == "trl_seams.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            assert not PRIVATE_NAMES.search(code), f"{path.relative_to(package)}:{number}: {line.strip()}"
