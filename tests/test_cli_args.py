"""The command lines' argument checks: a mistake is named in one line, never docopt's internals."""

import pytest

from moshpit.cli import keygen, mp, mps
from moshpit.cli.common import UsageError, parse_args


def parse(doc, *argv, **kw):
    return parse_args(doc.__doc__, list(argv), prog="x", version="x 0", **kw)


def test_ssh_letters_mean_what_they_mean_to_ssh():
    args = parse(mp, "-l", "alice", "-p", "2222", "-i", "key", "host")
    assert (args["-l"], args["--port"], args["-i"], args["DEST"]) == ("alice", "2222", "key", "host")
    args = parse(mp, "-lbob", "--port=40555", "-vv", "host")
    assert (args["-l"], args["--port"], args["-v"]) == ("bob", "40555", 2)


@pytest.mark.parametrize("doc, argv, message", [
    (mp, ["--frobnicate", "host"], "unknown option --frobnicate"),
    (mp, ["-vZ", "host"], "unknown option -Z"),
    (mp, ["-X", "host"], "unknown option -X: mp forwards no X11"),
    (mp, ["-l"], "option -l needs a value"),
    (mp, ["host", "--port"], "option --port needs a value"),
    (mps, ["--bogus"], "unknown option --bogus"),
    (keygen, ["generate", "-x"], "unknown option -x"),
])
def test_a_mistake_is_named(doc, argv, message):
    with pytest.raises(UsageError) as caught:
        parse(doc, *argv, hints=mp.SSH_HABITS if doc is mp else None)
    assert str(caught.value) == message


def test_a_value_that_looks_like_an_option_is_a_value_and_dash_dash_ends_options():
    assert parse(mp, "-i", "-weird-name", "host")["-i"] == "-weird-name"
    assert parse(mp, "--", "-host")["DEST"] == "-host"


def test_a_remote_command_is_refused_with_a_reason():
    with pytest.raises(UsageError, match="unexpected argument 'ls': mp opens a login shell"):
        parse(mp, "host", "ls", "/tmp", max_positional=1, extra_hint=mp.REMOTE_COMMAND_HINT)


def test_anything_else_shows_the_usage_not_docopt_internals():
    with pytest.raises(UsageError) as caught:
        parse(mp, "--local", "host")
    assert "Usage:" in str(caught.value) and "Option(" not in str(caught.value)


@pytest.mark.parametrize("base, verbosity, level", [
    ("info", 0, "INFO"), ("error", 0, "ERROR"), ("warning", 1, "INFO"), ("debug", -2, "WARNING"),
    ("error", -1, "ERROR"), ("info", 5, "DEBUG"),
])
def test_log_level_setting_moved_by_v_and_q(base, verbosity, level):
    import logging
    from moshpit.cli.common import setup_logging
    setup_logging(True, "", verbosity, base)
    assert logging.getLevelName(logging.getLogger().level) == level
