"""``python -m nnscratch`` and the ``nnscratch`` command."""

import sys


def main() -> int:
    # before NumPy loads (the CLI imports it): the element-wise passes may then use both cores
    from .accel.threads import enable_threads

    enable_threads(quiet=True)
    from .cli import main as cli_main

    try:
        return cli_main()
    finally:
        # the command's work is done (files written, its line printed), or it is exiting (e.g.
        # --help): a Ctrl-C that lands while Python shuts down (its exit handlers run) ends the
        # process at once, without a traceback
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
