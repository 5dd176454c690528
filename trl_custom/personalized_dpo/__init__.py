# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Personalized DPO (P-RLHF): a user model (generic + individual soft tokens) prepended to the policy's input, its
trainer and config, inference and cold start for new users, and the synthetic length-preference users.
"""
