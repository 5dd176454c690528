"""Offline test kit: tiny models built from config, a word-level tokenizer with a chat template, toy preference data.

Nothing here touches the Hugging Face hub.
"""

import os
import random
import subprocess

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
)


WORDS = (
    "alpha beta gamma delta question about topic answer please explain tell me more short long very "
    "formal casual generic user: assistant: system: domain is the a and of for".split()
    + [f"t{i}" for i in range(20)]
    + [f"w{i}" for i in range(40)]
)
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + ' <eos> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


CPU_TRAINING_DEFAULTS = dict(
    use_cpu=True,
    bf16=False,
    report_to="none",
    save_strategy="no",
    disable_tqdm=True,
    per_device_train_batch_size=8,
    learning_rate=1e-2,
)


def cpu_config(config_class, tmp_path, **kwargs):
    """A `config_class` (TRL or trl-custom config) for tiny CPU runs writing to `tmp_path/out`; `kwargs` override."""
    return config_class(**{"output_dir": str(tmp_path / "out"), **CPU_TRAINING_DEFAULTS, **kwargs})


def make_tokenizer(kind: str = "causal") -> PreTrainedTokenizerFast:
    """Word-level tokenizer. `causal`: `<eos>`/`<pad>` and a chat template; `bert`: `[CLS] ... [SEP]`, no EOS."""
    if kind == "causal":
        specials = ["<pad>", "<unk>", "<eos>"]
    else:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "causal":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
        )
        fast.chat_template = CHAT_TEMPLATE
        return fast
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def make_reward_model(
    arch: str,
    tokenizer,
    seed: int = 0,
    tie_word_embeddings: bool = True,
    hidden_size: int = 16,
    intermediate_size: int = 32,
    max_position_embeddings: int | None = None,
):
    """Tiny sequence-classification reward model (`qwen2`, `llama` or `bert`) with `num_labels=1`; 256 positions
    (`bert`: 128) unless `max_position_embeddings` is given."""
    torch.manual_seed(seed)
    positions = max_position_embeddings
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "qwen2":
        config = Qwen2Config(
            num_key_value_heads=1,
            max_position_embeddings=positions or 256,
            tie_word_embeddings=tie_word_embeddings,
            **common,
        )
        model = Qwen2ForSequenceClassification(config)
    elif arch == "llama":
        config = LlamaConfig(
            num_key_value_heads=1,
            max_position_embeddings=positions or 256,
            tie_word_embeddings=tie_word_embeddings,
            **common,
        )
        model = LlamaForSequenceClassification(config)
    elif arch == "bert":
        config = BertConfig(max_position_embeddings=positions or 128, **common)
        model = BertForSequenceClassification(config)
    else:
        raise ValueError(arch)
    return model


def save_reward_model(tmp_path, arch: str = "qwen2", kind: str | None = None, seed: int = 0, **kwargs) -> str:
    """
    Save a tiny reward model + tokenizer to a folder, for trainers that take a model path.

    Pass `processing_class=make_tokenizer(...)` along with the path: transformers 5's `AutoTokenizer` picks the
    tokenizer class from the model type (Qwen2Tokenizer for a Qwen2 config) and misreads this word-level tokenizer.
    """
    tokenizer = make_tokenizer(kind or ("bert" if arch == "bert" else "causal"))
    model = make_reward_model(arch, tokenizer, seed=seed, **kwargs)
    path = str(tmp_path / f"tiny-{arch}")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def conditioned_pairs(
    n: int = 32, seed: int = 0, column: str = "domain", conversational: bool = False, implicit: bool = False
) -> Dataset:
    """
    Toy customized preferences that only a conditioned model can fit: under `formal` the answer containing `alpha`
    wins, under `casual` the one containing `beta` wins (same prompts, same answers, opposite labels).
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        domain = "formal" if i % 2 == 0 else "casual"
        topic = f"t{rng.randrange(20)}"
        prompt = f"question about {topic}"
        filler = " ".join(f"w{rng.randrange(40)}" for _ in range(rng.randrange(1, 5)))
        alpha, beta = f"answer alpha {filler}", f"answer beta {filler}"
        chosen, rejected = (alpha, beta) if domain == "formal" else (beta, alpha)
        if conversational:
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        else:
            row = {"prompt": prompt + " ", "chosen": chosen, "rejected": rejected}
        if implicit:
            if conversational:
                row = {"chosen": row["prompt"] + row["chosen"], "rejected": row["prompt"] + row["rejected"]}
            else:
                row = {"chosen": row["prompt"] + chosen, "rejected": row["prompt"] + rejected}
        row[column] = domain
        rows.append(row)
    return Dataset.from_list(rows)


def make_causal_lm(arch: str, tokenizer, seed: int = 0, hidden_size: int = 16, intermediate_size: int = 32):
    """Tiny causal LM (`qwen2` or `llama`) with tied embeddings."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=intermediate_size,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    raise ValueError(arch)


def user_pairs(n: int = 32, seed: int = 0, users=("u1", "u2")) -> Dataset:
    """Toy P-DPO data: user u1 prefers short answers, u2 long ones, on the same prompts."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        user = users[i % len(users)]
        prompt = f"question about t{rng.randrange(20)} "
        short = "answer short"
        long = "answer " + " ".join(f"w{rng.randrange(40)}" for _ in range(4))
        chosen, rejected = (short, long) if user == users[0] else (long, short)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "user_id": user})
    return Dataset.from_list(rows)


def run_offline(command: list[str], cwd) -> subprocess.CompletedProcess:
    """Run a script with the hub switched off; fail with the end of its stderr when it fails."""
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
