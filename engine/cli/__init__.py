"""The command line (``python -m engine``): argument parsing, the commands, terminal progress. A leaf:
the library never imports it."""
from engine.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
