# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Using trained models downstream: reward functions for TRL's online trainers, export with a model card."""
