"""``python -m vsrkit`` runs the command-line interface."""

from vsrkit.cli import main

if __name__ == "__main__":
    main()
