"""Command lines: mp, mps and mp-keygen (docopt-ng). Each ``main`` returns an exit code."""
