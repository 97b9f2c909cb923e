"""`python -m promptops` is the `promptops` command."""

from promptops.cli import main

main()
