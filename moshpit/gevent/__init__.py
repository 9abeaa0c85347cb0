"""The gevent runtime: sockets, PTYs, signals and the clock live here and nowhere else."""
