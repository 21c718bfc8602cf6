"""``python -m audiogmm``: the same as the ``audiogmm`` command."""

from .cli import main

if __name__ == "__main__":
    main()
