"""`python -m revetl` is the `revetl` command."""

from revetl.cli import main

main()
