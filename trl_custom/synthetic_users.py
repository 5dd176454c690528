# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""`python -m trl_custom.synthetic_users`: forwards to [`trl_custom.scripts.synthetic_users`]."""

from .scripts.synthetic_users import main


__all__ = ["main"]

if __name__ == "__main__":
    main()
