# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`python -m trl_custom.augment`: forwards to [`trl_custom.scripts.augment`] (synthetic-judge augmentation)."""

from .scripts.augment import main


__all__ = ["main"]

if __name__ == "__main__":
    main()
