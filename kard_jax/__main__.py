"""`python -m kard_jax ...` is the `kard` command."""

import sys

from kard_jax.cli.main import main

if __name__ == "__main__":
  sys.exit(main())
