"""A click group with this issue's commands, until the lead adds them to ``lithotse``."""

from __future__ import annotations

from lithotse_desktop.cli import main as lithotse_main
from lithotse_desktop.excel.cli import excel_group
from lithotse_desktop.serve.cli import serve_cmd, token_cmd


def main_with_cells():
    for command in (serve_cmd, token_cmd, excel_group):
        if command.name not in lithotse_main.commands:
            lithotse_main.add_command(command)
    return lithotse_main


if __name__ == "__main__":
    main_with_cells()()
