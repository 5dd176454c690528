# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`python -m trl_custom.fit_condition`: forwards to [`trl_custom.scripts.fit_condition`] (few-shot new condition)."""

from .scripts.fit_condition import main


__all__ = ["main"]

if __name__ == "__main__":
    main()
