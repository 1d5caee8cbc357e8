"""One lazy-command mechanism for every group: the root group's commands and `crl refresh` are
imported on first use, so local commands never pay for the cloud modules' imports."""

from __future__ import annotations

import importlib.util

import click

__all__ = ["LazyGroup"]


def _available(target: str) -> bool:
    """True when the module behind a table entry is installed (checked without importing it)."""
    return importlib.util.find_spec(target.partition(":")[0]) is not None


class LazyGroup(click.Group):
    """A group whose sub-commands in `lazy` (name -> ("module:attribute", one-line help)) are
    imported on first use; commands added the usual way are listed with them."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = {n for n, (target, _) in self.lazy.items() if _available(target)}
        return sorted(names | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        target = self.lazy[cmd_name][0]
        if not _available(target):
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wiring bug
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self._short_help(ctx, name)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str) -> str:
        if name in self.lazy:
            return self.lazy[name][1]
        command = super().get_command(ctx, name)
        return command.get_short_help_str() if command is not None else ""
