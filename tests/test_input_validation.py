"""
Bad rows are refused before training, naming the row, the column and the fix (issue 18): P-DPO at parity with the
reward trainer (empty responses, plain and conversational; non-numeric or non-finite user features; a missing
feature column), and non-numeric margins in the reward trainer.

Issue 29: a `prompt`/`chosen`/`rejected` that is neither text nor messages is refused by both trainers in every split
(not an `AttributeError` inside TRL); the recipes check the whole source before the held-out split, so errors name
the row of the user's file and a bad held-out row fails before training.
"""

import copy
import json
import math

import pytest
from datasets import Dataset, IterableDataset, load_dataset
from toy import (
    conditioned_pairs,
    cpu_config,
    make_causal_lm,
    make_reward_model,
    make_tokenizer,
    save_reward_model,
    user_pairs,
)

from trl_custom import (
    CustomRewardConfig,
    CustomRewardTrainer,
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    RewardScorer,
)
from trl_custom.evaluation import evaluate_pairs
from trl_custom.scripts.dpo import DPOScriptArguments, build_dpo_data
from trl_custom.scripts.reward import RewardScriptArguments, build_reward_data


def pdpo_trainer(tmp_path, data, **kwargs):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    args = cpu_config(PersonalizedDPOConfig, tmp_path, **{"max_steps": 1, **kwargs})
    return PersonalizedDPOTrainer(
        model, ref_model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer
    )


def with_row(data, index, **values):
    return data.map(lambda row, i: values if i == index else {}, with_indices=True)


def conversational(data):
    rows = [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "user_id": row["user_id"],
        }
        for row in data
    ]
    return Dataset.from_list(rows)


@pytest.mark.parametrize("column", ["chosen", "rejected"])
def test_pdpo_refuses_empty_responses(tmp_path, column):
    with pytest.raises(ValueError, match=f"Row 3 of the train dataset has an empty '{column}' response. Remove the"):
        pdpo_trainer(tmp_path, with_row(user_pairs(8), 3, **{column: "   "}))
    data = conversational(user_pairs(8))
    rows = data.to_list()
    rows[5][column] = [{"role": "assistant", "content": " "}]
    with pytest.raises(ValueError, match=f"Row 5 of the train dataset has an empty '{column}' response"):
        pdpo_trainer(tmp_path, Dataset.from_list(rows))


def test_pdpo_refuses_bad_user_features(tmp_path):
    data = user_pairs(8).add_column("age", [float(i) for i in range(8)])
    pdpo_trainer(tmp_path, data, condition_feature_columns=["age"])  # good features pass
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match=f"Row 2 of the train dataset has age={bad!r}.*cast the column to float"):
            pdpo_trainer(tmp_path, with_row(data, 2, age=bad), condition_feature_columns=["age"])
    text = data.remove_columns("age").add_column("age", [str(i) for i in range(7)] + ["old"])
    with pytest.raises(ValueError, match="Row 0 of the train dataset has age='0', but user features"):
        pdpo_trainer(tmp_path, text, condition_feature_columns=["age"])
    with pytest.raises(
        ValueError, match="no user-feature column 'height'.*remove it from `condition_feature_columns`"
    ):
        pdpo_trainer(tmp_path, data, condition_feature_columns=["height"])


def test_pdpo_refuses_bad_rows_of_a_streaming_dataset_when_read(tmp_path):
    data = with_row(user_pairs(8), 1, chosen="").to_iterable_dataset()
    trainer = pdpo_trainer(tmp_path, data, conditions=["u1", "u2"])
    with pytest.raises(ValueError, match="Row 1 of the train dataset has an empty 'chosen' response"):
        trainer.train()


def test_reward_trainer_refuses_non_numeric_margins(tmp_path):
    path = save_reward_model(tmp_path)
    data = conditioned_pairs(6).add_column("margin", ["0.5", "1", "0", "0", "high", "0"])
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=1, max_length=64)
    with pytest.raises(ValueError, match=r"Row 0 of the train dataset has margin='0.5'.*cast the column to float"):
        CustomRewardTrainer(path, args=args, train_dataset=data, processing_class=make_tokenizer())


# ---------------------------------------------------------------------------------------------------- issue 29
def write_jsonl(path, rows):
    """`rows` as JSON lines at `path`, a new file each time (`path` is never rewritten: no stale dataset cache)."""
    assert not path.exists(), path
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def jsonl_dataset(tmp_path, rows):
    """Rows as a user's JSON-lines file gives them: a column of mixed types loads as it is written."""
    path = write_jsonl(tmp_path / f"rows-{len(list(tmp_path.glob('rows-*')))}.jsonl", rows)
    return load_dataset("json", data_files=str(path), split="train")


def with_value(data, index, column, value):
    rows = data.to_list()
    rows[index][column] = value
    return rows


TYPE = "must be text \\(str\\) or a list of messages \\({'role': ..., 'content': ...} dicts\\)"
BAD_TEXT = [  # (column, value, the message after "Row 3 of the <split> dataset ")
    ("chosen", 42, f"has chosen=42 \\(int\\): chosen {TYPE}. Fix the row \\(a number in a JSON file must be quoted"),
    ("prompt", ["a", "b"], f"has prompt=\\['a', 'b'\\] \\(list of str\\): prompt {TYPE}. Fix the row, or drop it."),
    ("prompt", None, f"has prompt=None \\(missing\\): prompt {TYPE}. Fill it in \\('' for a row without a prompt\\)"),
    ("rejected", None, f"has rejected=None \\(missing\\): rejected {TYPE}. Fill it in, or drop the row."),
    ("chosen", [{"text": "hi"}], "has chosen=\\[{'text': 'hi'}\\] \\(list of dict\\).*Message 0 .* has no 'role'"),
    (
        "rejected",
        [{"role": "assistant", "content": "x"}],
        "mixes text and messages \\(prompt is text, chosen is text, rejected is messages\\). Give prompt, chosen",
    ),
]


def reward_trainer(tmp_path, train, eval_dataset=None):
    tokenizer = make_tokenizer()
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=1, max_length=64)
    return CustomRewardTrainer(
        make_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=train,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )


def pdpo_trainer_with_eval(tmp_path, train, eval_dataset=None, **kwargs):
    tokenizer = make_tokenizer()
    model = make_causal_lm("qwen2", tokenizer)
    args = cpu_config(PersonalizedDPOConfig, tmp_path, **{"max_steps": 1, **kwargs})
    return PersonalizedDPOTrainer(
        model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=train,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("column, value, message", BAD_TEXT, ids=lambda v: str(v)[:20])
def test_both_trainers_refuse_a_response_that_is_not_text_or_messages_in_each_split(tmp_path, column, value, message):
    pairs, users = conditioned_pairs(8), user_pairs(8)
    bad_pairs = jsonl_dataset(tmp_path, with_value(pairs, 3, column, value))
    bad_users = jsonl_dataset(tmp_path, with_value(users, 3, column, value))
    with pytest.raises(ValueError, match=f"^Row 3 of the train dataset {message}"):
        reward_trainer(tmp_path, bad_pairs)
    with pytest.raises(ValueError, match=f"^Row 3 of the eval dataset {message}"):
        reward_trainer(tmp_path, pairs, eval_dataset=bad_pairs)
    with pytest.raises(ValueError, match=f"^Row 3 of the train dataset {message}"):
        pdpo_trainer_with_eval(tmp_path, bad_users)
    with pytest.raises(ValueError, match=f"^Row 3 of the held_out dataset {message}"):
        pdpo_trainer_with_eval(tmp_path, users, eval_dataset={"held_out": bad_users})


def test_listwise_rows_are_checked_as_lists_of_responses(tmp_path):
    rows = [{**row, "rejected": [row["rejected"], row["rejected"] + " w1"]} for row in conditioned_pairs(6)]
    reward_trainer(tmp_path, Dataset.from_list(rows))  # listwise text rows pass
    bad = [dict(row) for row in rows]
    bad[2]["rejected"] = [bad[2]["rejected"][0], 42]
    with pytest.raises(
        ValueError, match=f"^Row 2 of the train dataset has rejected\\[1\\]=42 \\(int\\): rejected\\[1\\] {TYPE}"
    ):
        reward_trainer(tmp_path, jsonl_dataset(tmp_path, bad))
    bad[2]["rejected"] = "a single response"
    listwise = "^Row 2 of the train dataset has rejected='a single response' \\(str\\), but this dataset is listwise"
    with pytest.raises(ValueError, match=f"{listwise}.*Wrap single responses in a list"):
        reward_trainer(tmp_path, jsonl_dataset(tmp_path, bad))
    # a pairwise dataset (first row) with a list of responses further down: named, with what listwise needs
    pairwise = with_value(conditioned_pairs(6), 4, "rejected", ["b1", "b2"])
    hint = "A list of rejected responses is a listwise row, which only the reward trainer.*the first row decides"
    with pytest.raises(
        ValueError, match=f"^Row 4 of the train dataset has rejected=\\['b1', 'b2'\\] \\(list of str\\).*{hint}"
    ):
        reward_trainer(tmp_path, jsonl_dataset(tmp_path, pairwise))
    with pytest.raises(ValueError, match=f"^Row 4 of the train dataset has rejected=.*{hint}"):
        pdpo_trainer_with_eval(
            tmp_path, jsonl_dataset(tmp_path, with_value(user_pairs(8), 4, "rejected", ["b1", "b2"]))
        )


def test_a_streamed_row_that_is_not_text_is_refused_when_read(tmp_path):
    rows = with_value(conditioned_pairs(8), 5, "chosen", ["a", "b"])
    trainer = reward_trainer(tmp_path, IterableDataset.from_generator(lambda: iter(rows)))
    with pytest.raises(ValueError, match="Row 5 of the train dataset has chosen=\\['a', 'b'\\] \\(list of str\\)"):
        trainer.train()


def test_evaluate_pairs_refuses_a_response_that_is_not_text(tmp_path):
    tokenizer = make_tokenizer()
    scorer = RewardScorer(make_reward_model("qwen2", tokenizer), tokenizer, max_length=64)
    pairs = conditioned_pairs(6)
    assert evaluate_pairs(scorer, pairs, None, progress=False)["counts"]["pairs"]["all"] == 6
    bad = jsonl_dataset(tmp_path, with_value(pairs, 4, "prompt", 3))
    with pytest.raises(ValueError, match=f"^Row 4 of the evaluation dataset has prompt=3 \\(int\\): prompt {TYPE}"):
        evaluate_pairs(scorer, bad, None, progress=False)


def numbered_rows(n=20):
    """Pairs whose `id` is their row in the file."""
    return [{**row, "id": i, "margin": 0.5} for i, row in enumerate(conditioned_pairs(n).to_list())]


def held_out_ids(path, seed=0, test_size=0.2):
    """The file rows that the recipes' held-out split (`test_size` of `train`, `seed`) puts in the evaluation part."""
    data = load_dataset("json", data_files=str(path), split="train")
    return sorted(data.train_test_split(test_size=test_size, seed=seed)["test"]["id"])


def test_reward_recipe_names_the_row_of_the_file_not_of_the_shuffled_split(tmp_path):
    rows = numbered_rows()
    rows[7]["chosen"] = 42
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    args = RewardScriptArguments(dataset_name=str(path), test_size=0.2)
    with pytest.raises(ValueError, match=f"^Row 7 of the `train` split of {path} has chosen=42 \\(int\\)"):
        build_reward_data(args, str(tmp_path / "eval"), seed=0)
    rows[7]["chosen"] = "   "
    path = write_jsonl(tmp_path / "prefs-empty.jsonl", rows)
    args = RewardScriptArguments(dataset_name=str(path), test_size=0.2)
    with pytest.raises(ValueError, match=f"^Row 7 of the `train` split of {path} has an empty 'chosen' response"):
        build_reward_data(args, str(tmp_path / "eval"), seed=0)


def test_reward_recipe_refuses_a_bad_margin_in_the_held_out_part_before_training(tmp_path):
    row = held_out_ids(write_jsonl(tmp_path / "good.jsonl", numbered_rows()))[0]  # only the evaluation reads it
    rows = numbered_rows()
    rows[row]["margin"] = math.nan
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    assert row in held_out_ids(path)
    args = RewardScriptArguments(dataset_name=str(path), test_size=0.2)
    with pytest.raises(ValueError, match=f"^Row {row} of the `train` split of {path} has margin=nan. Margins must"):
        build_reward_data(args, str(tmp_path / "eval"), seed=0)
    folder = tmp_path / "splits"  # a dataset with a test split: its rows are named in it
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", numbered_rows())
    test_rows = numbered_rows(6)
    test_rows[2]["margin"] = None
    write_jsonl(folder / "test.jsonl", test_rows)
    with pytest.raises(ValueError, match=f"^Row 2 of the `test` split of {folder} has margin=None"):
        build_reward_data(RewardScriptArguments(dataset_name=str(folder)), str(tmp_path / "eval"))


def test_reward_recipe_train_file_is_checked_as_the_rows_of_the_file(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "domain"} for row in numbered_rows()]
    rows[11]["margin"] = "high"  # mixed types: pyarrow refused the file (ArrowInvalid) before
    path = write_jsonl(tmp_path / "augmented.jsonl", rows)
    with pytest.raises(ValueError, match="^Row 11 of augmented.jsonl has margin='high'. Margins must"):
        build_reward_data(RewardScriptArguments(train_file=str(path)), str(tmp_path / "eval"))
    rows[11]["margin"], rows[5]["chosen"] = 0.5, 42
    (tmp_path / "second").mkdir()
    path = write_jsonl(tmp_path / "second" / "augmented.jsonl", rows)
    with pytest.raises(ValueError, match=f"^Row 5 of augmented.jsonl has chosen=42 \\(int\\): chosen {TYPE}"):
        build_reward_data(RewardScriptArguments(train_file=str(path)), str(tmp_path / "eval"))


def test_dpo_recipe_names_the_row_of_the_file_and_checks_the_held_out_part(tmp_path):
    rows = [{**row, "id": i, "age": 30.0} for i, row in enumerate(user_pairs(20).to_list())]
    rows[7]["prompt"] = ["not", "text"]
    path = write_jsonl(tmp_path / "users.jsonl", rows)
    with pytest.raises(ValueError, match=f"^Row 7 of {path} has prompt=\\['not', 'text'\\] \\(list of str\\)"):
        build_dpo_data(DPOScriptArguments(dataset_file=str(path), test_size=0.2))
    rows[7]["prompt"] = "question "
    row = held_out_ids(write_jsonl(tmp_path / "good.jsonl", rows))[0]
    rows[row]["age"] = math.inf
    path = write_jsonl(tmp_path / "features.jsonl", rows)
    with pytest.raises(ValueError, match=f"^Row {row} of the `train` split of {path} has age=inf, but user features"):
        build_dpo_data(DPOScriptArguments(dataset_name=str(path), test_size=0.2), feature_columns=["age"])
