"""`python -m pil_kmq`: the `kmq` command line."""

from .cli import main

raise SystemExit(main(prog="python -m pil_kmq"))
