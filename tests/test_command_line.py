"""Issue 8, item 2: Retrospect for Windows writes its command line with every
argument in double quotes and backslashes unescaped; ``"C:\\"`` must not
shift the arguments after it. The splitter is a plain function, tested here
on every platform with command lines as Retrospect writes them."""

from __future__ import annotations

import pytest

from router.commandline import arguments_after_program, split_command_line
from router.events import event_from_argv

HANDLER = r"C:\ProgramData\Retrospect\RetroEventHandler.exe"


def retrospect(*args: str) -> str:
    """A command line as Retrospect for Windows builds it: each in quotes, nothing escaped."""
    return " ".join(f'"{a}"' for a in (HANDLER, *args))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            retrospect("EndScript", "Nightly", "0", "0", "successful"),
            [HANDLER, "EndScript", "Nightly", "0", "0", "successful"],
        ),
        (
            retrospect(
                "StartSource", "Nightly", "My Computer/C:\\", "C:\\", "My Computer", "x.txt"
            ),
            [HANDLER, "StartSource", "Nightly", "My Computer/C:\\", "C:\\", "My Computer", "x.txt"],
        ),
        (
            retrospect("StartSource", "N", "FS01/Data", "\\\\fs01\\data\\", "FS01", "i"),
            [HANDLER, "StartSource", "N", "FS01/Data", "\\\\fs01\\data\\", "FS01", "i"],
        ),
        (
            retrospect("MediaRequest", "Backup Set A", "", "false", "5", "C:\\Temp\\if 1.txt"),
            [HANDLER, "MediaRequest", "Backup Set A", "", "false", "5", "C:\\Temp\\if 1.txt"],
        ),
        # The program path unquoted, tabs, and an unterminated last quote.
        (
            'C:\\R\\RetroEventHandler.exe\t"EndApp"  "2/10/2017 15:39"',
            ["C:\\R\\RetroEventHandler.exe", "EndApp", "2/10/2017 15:39"],
        ),
        ('"x.exe" "EndApp" "C:\\', ["x.exe", "EndApp", "C:\\"]),
        ('"x.exe" "" ""', ["x.exe", "", ""]),
        ("", []),
    ],
)
def test_split_command_line(line: str, expected: list[str]) -> None:
    assert split_command_line(line) == expected


def test_a_drive_root_does_not_shift_the_arguments_after_it() -> None:
    fields = [
        "Nightly",
        "My Computer/C:\\",
        "C:\\",
        "My Computer",
        "1024",
        "12",
        "60",
        "2/10/2017 15:39",
        "2/10/2017 15:40",
        "2/10/2017 15:00",
        "Set A",
        "Normal",
        "C:\\",
        "0",
        "0",
        "successful",
        "true",
    ]
    args = arguments_after_program(retrospect("EndSource", *fields), HANDLER)
    assert args == ["EndSource", *fields]
    event = event_from_argv(args, host="h")
    assert event.fields["source_path"] == "C:\\" and event.fields["client"] == "My Computer"
    assert event.fields["kb"] == 1024 and event.fields["error_message"] == "successful"
    assert event.fields["parent_volume"] == "C:\\"
    # Client 7.7 and later append "true": kept in args, no warning.
    assert event.args[-1] == "true" and event.warnings == []


@pytest.mark.parametrize(
    "prefix",
    [
        f'"{HANDLER}"',  # the copied console-script .exe, as Retrospect starts it
        '"C:\\Python312\\python.exe" "C:\\ProgramData\\Retrospect\\RetroEventHandler-script.py"',
        '"C:\\venv\\Scripts\\python.exe" -I "C:\\ProgramData\\Retrospect\\retroeventhandler"',
    ],
)
def test_the_arguments_follow_the_program_however_it_was_started(prefix: str) -> None:
    line = prefix + ' "StartSource" "N" "My Computer/D:\\" "D:\\" "My Computer" "C:\\if.txt"'
    args = arguments_after_program(line, HANDLER)
    assert args == ["StartSource", "N", "My Computer/D:\\", "D:\\", "My Computer", "C:\\if.txt"]


def test_a_command_line_without_the_program_is_left_to_sys_argv() -> None:
    assert arguments_after_program('"other.exe" "EndApp"', HANDLER) is None


def test_one_extra_argument_that_is_not_true_still_warns() -> None:
    event = event_from_argv(["EndSource", *["x"] * 16, "surprise"], host="h")
    assert any("extra ones are kept in args" in w for w in event.warnings)
