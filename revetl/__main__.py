"""`python -m revetl` is the `revetl` command."""

from revetl.launch import main

main()
