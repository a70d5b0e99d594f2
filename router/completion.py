"""``router completion SHELL``: completion scripts for bash, zsh and fish.

Generated from the command line parser itself, so a new command or option
completes as soon as it exists: command names, each command's options, the
values of options with choices, event names where an event is asked for,
files where a path is.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from router.catalog import ALIASES, CATALOG

#: Option names whose value is a path (completed as files).
PATH_OPTIONS = frozenset(
    {"--config", "--rules", "--prefix", "--rules-dir", "--state-dir", "--expect", "--save-expect"}
)
#: Where an event name is asked for: (command, positional dest) and options.
EVENT_POSITIONALS = frozenset({("test", "event"), ("events", "name")})
EVENT_OPTIONS = frozenset({"--event"})
EVENT_NAMES = [spec.name for spec in CATALOG] + sorted(ALIASES)


@dataclass
class Command:
    name: str
    help: str
    options: dict[str, str] = field(default_factory=dict)  # option -> help
    choices: dict[str, list[str]] = field(default_factory=dict)  # option -> its values
    positional_choices: list[str] = field(default_factory=list)
    wants_event: bool = False


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The parser's commands (``outbox retry`` as a word of ``outbox``)."""
    found = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for choice in action._choices_actions:  # the help of each command
            sub = action.choices[choice.dest]
            command = Command(choice.dest, choice.help or "")
            for sub_action in sub._actions:
                if isinstance(sub_action, argparse._SubParsersAction):
                    command.positional_choices += list(sub_action.choices)
                    for nested in sub_action.choices.values():
                        _options(nested, command)
                elif not sub_action.option_strings:
                    if sub_action.choices:
                        command.positional_choices += list(sub_action.choices)
                    if (command.name, sub_action.dest) in EVENT_POSITIONALS:
                        command.wants_event = True
            _options(sub, command)
            found.append(command)
    return found


def _options(parser: argparse.ArgumentParser, command: Command) -> None:
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                command.options[option] = (action.help or "").replace("%(default)s", "")
                if action.choices:
                    command.choices[option] = [str(c) for c in action.choices]


def _words(items: list[str]) -> str:
    return " ".join(items)


def bash(parser: argparse.ArgumentParser) -> str:
    cmds = commands(parser)
    cases = []
    for command in cmds:
        values = [
            f'            "{option}") COMPREPLY=($(compgen -W "{_words(choices)}" -- "$cur"));'
            " return ;;"
            for option, choices in command.choices.items()
        ]
        positional = list(command.positional_choices)
        if command.wants_event:
            positional += EVENT_NAMES
        cases.append(
            f"        {command.name})\n"
            f'            case "$prev" in\n' + "\n".join(values) + "\n"
            "            esac\n"
            f'            if [[ "$cur" == -* ]]; then words="{_words(list(command.options))}";'
            f' else words="{_words(positional)}"; fi ;;'
        )
    events = _words(EVENT_NAMES)
    return f"""\
# bash completion for router (retro-router): eval "$(router completion bash)"
_router_complete() {{
    local cur prev cmd words i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config) ((i++)) ;;
            -*) ;;
            *) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$prev" in
        {"|".join(sorted(PATH_OPTIONS))}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        {"|".join(sorted(EVENT_OPTIONS))}) COMPREPLY=($(compgen -W "{events}" -- "$cur")); return ;;
    esac
    case "$cmd" in
        "") words="{_words([c.name for c in cmds])} --config --version --help" ;;
{chr(10).join(cases)}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _router_complete router
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    return (
        "#compdef router\n"
        '# zsh completion for router (retro-router): eval "$(router completion zsh)"\n'
        "autoload -U +X compinit && compinit -u\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser).split("\n", 1)[1]
    )


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(parser: argparse.ArgumentParser) -> str:
    cmds = commands(parser)
    lines = [
        "# fish completion for router (retro-router): router completion fish | source",
        "complete -c router -f",
        "complete -c router -n __fish_use_subcommand -l config -r -F -d 'router.toml to use'",
        "complete -c router -n __fish_use_subcommand -l version -d 'the version'",
    ]
    for command in cmds:
        seen = f"'__fish_seen_subcommand_from {command.name}'"
        lines.append(
            f"complete -c router -n __fish_use_subcommand -a {command.name}"
            f" -d {_fish_quote(command.help)}"
        )
        for option, help_text in command.options.items():
            name = option[2:]
            extra = ""
            if option in command.choices:
                extra = f" -x -a {_fish_quote(_words(command.choices[option]))}"
            elif option in PATH_OPTIONS:
                extra = " -r -F"
            elif option in EVENT_OPTIONS:
                extra = f" -x -a {_fish_quote(_words(EVENT_NAMES))}"
            lines.append(
                f"complete -c router -n {seen} -l {name}{extra} -d {_fish_quote(help_text)}"
            )
        positional = list(command.positional_choices)
        if command.wants_event:
            positional += EVENT_NAMES
        if positional:
            lines.append(f"complete -c router -n {seen} -a {_fish_quote(_words(positional))}")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser).rstrip("\n")
