"""The package's command-line tools explain themselves.

For every module in ``CLI_MODULES``, ``python -m dmbir_edu.<module> --help`` must

- name the command as it is typed (``usage: python -m dmbir_edu.<module>``, not ``train.py``);
- give every option a help text, and show the option's default (argparse's
  ``ArgumentDefaultsHelpFormatter``) wherever the option has one to show.

The help is parsed as argparse prints it; ``test_the_check_catches_...`` runs the same parser on
help with a gap in it, so the check is known to be able to fail.
"""

import argparse
import os
import re
import subprocess
import sys

import pytest

# Modules run as ``python -m dmbir_edu.<name>``; a new command-line tool is appended here.
CLI_MODULES = ["train", "prior_quality", "experiments", "bench", "data"]

SECTION = re.compile(r"^(options|optional arguments|positional arguments):$")   # 3.10+ / older spelling


def help_entries(text):
    """``{invocation: help text}`` for every entry of the option and positional sections.

    argparse prints an entry as two spaces and the invocation (``-h, --help``, ``--run RUN``),
    then the help text on the same line after two or more spaces, or on the lines below, indented
    further. An entry with no help text is the invocation alone. A section ends at a blank line.
    """
    entries, current, in_section = {}, None, False
    for line in text.splitlines():
        if SECTION.match(line):
            in_section, current = True, None
        elif not line.strip() or not line.startswith(" "):
            in_section, current = False, None
        elif in_section and re.match(r"  \S", line):                  # a new entry
            invocation, *first = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            current = invocation
            entries[current] = first[0] if first else ""
        elif in_section and current is not None:                    # its help text, continued
            entries[current] = (entries[current] + " " + line.strip()).strip()
    return entries


def check_help(text, prog):
    """The problems of one help text, as a list of sentences (empty: all good)."""
    problems = []
    usage = text.splitlines()[0] if text else ""
    if not re.match(rf"usage: {re.escape(prog)}(\s|$)", usage):
        problems.append(f"usage line does not start with 'usage: {prog}': {usage!r}")
    entries = help_entries(text)
    if not any(inv.startswith("-") for inv in entries):
        problems.append("no option found in the help (is the parser of this test out of date?)")
    for invocation, help_text in entries.items():
        if not help_text:
            problems.append(f"{invocation!r} has no help text")
        elif invocation.startswith("-") and "--help" not in invocation and "(default:" not in help_text:
            problems.append(f"{invocation!r} does not show its default: {help_text!r}")
    return problems


def cli_help(module):
    env = dict(os.environ, COLUMNS="100")          # argparse wraps to the terminal width
    done = subprocess.run([sys.executable, "-m", f"dmbir_edu.{module}", "--help"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", CLI_MODULES)
def test_help_names_the_command_and_explains_every_option(module):
    text = cli_help(module)
    assert check_help(text, f"python -m dmbir_edu.{module}") == [], text


def test_the_check_catches_an_option_without_help_or_default():
    p = argparse.ArgumentParser(prog="python -m dmbir_edu.example",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--explained", type=int, default=3, help="an option with a help text")
    p.add_argument("--a-long-option-name", metavar="A_LONG_METAVAR", help="its help starts on the next line")
    p.add_argument("--silent", type=int, default=5)
    problems = check_help(p.format_help(), "python -m dmbir_edu.example")
    assert problems == ["'--silent SILENT' has no help text"], problems
    entries = help_entries(p.format_help())
    assert entries["--a-long-option-name A_LONG_METAVAR"].startswith("its help starts on the next line")

    plain = argparse.ArgumentParser(prog="example.py")          # argparse's defaults: no prog, no defaults
    plain.add_argument("--steps", type=int, default=10, help="steps")
    problems = check_help(plain.format_help(), "python -m dmbir_edu.example")
    assert len(problems) == 2 and "usage line" in problems[0] and "default" in problems[1], problems
