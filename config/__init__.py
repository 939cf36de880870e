"""Run configuration: the shipped ``Parameters.json`` defaults and their validation."""

from config.parameters import DEFAULTS_PATH, Parameters, load_parameters

__all__ = ["DEFAULTS_PATH", "Parameters", "load_parameters"]
