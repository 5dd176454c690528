"""
Bad rows are refused before training, naming the row, the column and the fix (issue 18): P-DPO at parity with the
reward trainer (empty responses, plain and conversational; non-numeric or non-finite user features; a missing
feature column), and non-numeric margins in the reward trainer.
"""

import copy
import math

import pytest
from datasets import Dataset
from toy import conditioned_pairs, cpu_config, make_causal_lm, make_tokenizer, save_reward_model, user_pairs

from trl_custom import CustomRewardConfig, CustomRewardTrainer, PersonalizedDPOConfig, PersonalizedDPOTrainer


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
    trainer = pdpo_trainer(tmp_path, data, users=["u1", "u2"])
    with pytest.raises(ValueError, match="Row 1 of the train dataset has an empty 'chosen' response"):
        trainer.train()


def test_reward_trainer_refuses_non_numeric_margins(tmp_path):
    path = save_reward_model(tmp_path)
    data = conditioned_pairs(6).add_column("margin", ["0.5", "1", "0", "0", "high", "0"])
    args = cpu_config(CustomRewardConfig, tmp_path, max_steps=1, max_length=64)
    with pytest.raises(ValueError, match=r"Row 0 of the train dataset has margin='0.5'.*cast the column to float"):
        CustomRewardTrainer(path, args=args, train_dataset=data, processing_class=make_tokenizer())
