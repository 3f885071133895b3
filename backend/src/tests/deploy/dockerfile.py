"""A Dockerfile read into its stages, enough for the deploy tests to state what each holds.

Instructions are taken as Docker takes them: continued lines joined, comment lines dropped,
ENV and ARG split like a shell would (quotes kept together). Nothing is evaluated: `$PATH` in
a value stays as written.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    name: str
    base: str
    instructions: tuple[Instruction, ...]

    def arguments(self, keyword: str) -> list[str]:
        """The arguments of every `keyword` instruction of the stage, in order."""
        return [i.arguments for i in self.instructions if i.keyword == keyword.upper()]

    def variables(self, keyword: str) -> dict[str, str]:
        """ENV (or ARG) names and values; a later definition wins, as in Docker."""
        values: dict[str, str] = {}
        for arguments in self.arguments(keyword):
            words = shlex.split(arguments)
            if words and "=" not in words[0] and keyword.upper() == "ENV":
                values[words[0]] = " ".join(words[1:])  # the old `ENV NAME value` form
                continue
            for word in words:
                name, _, value = word.partition("=")
                values[name] = value
        return values

    @property
    def user(self) -> str:
        """Who the stage's processes run as: its last USER, else root."""
        users = self.arguments("USER")
        return users[-1] if users else "root"

    @property
    def text(self) -> str:
        """Every instruction of the stage, one a line, as Docker reads them."""
        return "\n".join(f"{i.keyword} {i.arguments}" for i in self.instructions)


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return found


def stages(text: str) -> list[Stage]:
    """The stages in file order; the last one is what a build without --target makes."""
    result: list[Stage] = []
    current: tuple[str, str, list[Instruction]] | None = None
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            if current:
                result.append(Stage(current[0], current[1], tuple(current[2])))
            words = instruction.arguments.split()
            words = [word for word in words if not word.startswith("--")]  # --platform=...
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))
            current = (name, words[0], [])
        elif current:
            current[2].append(instruction)
    if current:
        result.append(Stage(current[0], current[1], tuple(current[2])))
    return result


def is_under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))
