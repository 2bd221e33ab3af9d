"""tidegate: traffic scheduling across the many instances of a server program."""

__version__ = "0.1.0"
