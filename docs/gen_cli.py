"""Write docs/cli.md, the command-line reference, from nnscratch's own argument parser.

    python docs/gen_cli.py          # rewrite docs/cli.md
    python docs/gen_cli.py --check  # exit 1 if docs/cli.md differs (the tests do this)

The page is the parser's own ``--help`` of every subcommand, so it cannot disagree with it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "cli.md"


def render() -> str:
    os.environ["COLUMNS"] = "100"   # argparse wraps help at the terminal's width: fix it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from nnscratch.cli import build_parser

    parser = build_parser()
    parser.prog = "nnscratch"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = ["# Command line reference", "",
           "Generated from the argument parser by `python docs/gen_cli.py` (a test regenerates "
           "it and fails when this page differs). Every command ends a failure with one line on "
           "stderr and a non-zero exit status.", "", "## nnscratch", "", "```text",
           parser.format_help().rstrip(), "```", ""]
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, p in sub.choices.items():
        out += [f"## nnscratch {name}", "", helps.get(name) or "", "", "```text",
                p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
