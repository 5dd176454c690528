# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Recipe and command-line glue: the recipes' data arguments and each `trl-custom <command>`'s `main`."""
