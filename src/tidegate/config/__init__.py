"""The config file: a typed model, and its loader whose errors name file, line and key."""

from tidegate.config.errors import ConfigError
from tidegate.config.load import load_config, parse_config
from tidegate.config.model import Config, split_address

__all__ = ["Config", "ConfigError", "load_config", "parse_config", "split_address"]
