"""moshpit: a mobile shell that survives loss, roaming and sleep."""

__version__ = "0.1.0.dev0"
