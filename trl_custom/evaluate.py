# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`python -m trl_custom.evaluate`: forwards to [`trl_custom.scripts.evaluate`] (the evaluation CLI)."""

from .scripts.evaluate import main


__all__ = ["main"]

if __name__ == "__main__":
    main()
