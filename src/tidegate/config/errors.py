"""The one error a config file can raise: it names the file, the line and the key path."""

from __future__ import annotations


class ConfigError(Exception):
    def __init__(self, problems: list[tuple[str, int | None, str, str]]) -> None:
        # (file, line, key.path, message), sorted the way they appear in the file.
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        out = []
        for file, line, key, message in self.problems:
            where = f"{file}:{line}" if line is not None else file
            out.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        return "\n".join(out)
