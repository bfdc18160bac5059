"""``python -m nnscratch`` and the ``nnscratch`` command."""

import sys


def main() -> int:
    # before NumPy loads (the CLI imports it): the element-wise passes may then use both cores
    from .accel.threads import enable_threads

    enable_threads(quiet=True)
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
