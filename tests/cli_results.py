"""What a CliRunner result must look like, for the command-line tests."""


def ok(result) -> str:
    """The output of a command that succeeded."""
    assert result.exit_code == 0, result.output
    return result.output


def one_error_line(result) -> str:
    """The one line a failing command prints: exit code 1, no traceback, nothing else."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]
