"""The files of the batch commands (`rdsssl.ops.batch_input`): a users file (plain list or CSV
with a header) and a serials file, every problem named by its line."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rdsssl.errors import InputError
from rdsssl.models import KeyType
from rdsssl.ops.batch_input import UserLine, decode, read_serials, read_users

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def users(text: str) -> list[UserLine]:
    return read_users(text, source="u.txt", now=NOW)


def test_a_plain_list_skips_blank_lines_and_comments_and_strips_blanks() -> None:
    text = "# leavers of December\n\n  alice  \n\t# indented comment\nbob\nc#arol\n"
    assert users(text) == [
        UserLine("alice", None, None, "u.txt line 3"),
        UserLine("bob", None, None, "u.txt line 5"),
        UserLine("c#arol", None, None, "u.txt line 6"),  # '#' inside a name is no comment
    ]


def test_csv_with_a_header_takes_days_and_key_type_and_leaves_empty_cells_to_the_options() -> None:
    text = 'User, Days ,key-type\n# a comment\nalice,30,rsa-2048\nbob,,\n"carol",7\ndave,,ED25519\n'
    assert users(text) == [
        UserLine("alice", 30, KeyType.RSA_2048, "u.txt line 3"),
        UserLine("bob", None, None, "u.txt line 4"),
        UserLine("carol", 7, None, "u.txt line 5"),
        UserLine("dave", None, KeyType.ED25519, "u.txt line 6"),
    ]


def test_csv_columns_in_another_order_and_with_only_the_user() -> None:
    assert users("user,key_type\nalice,ec-p256\n") == [
        UserLine("alice", None, KeyType.EC_P256, "u.txt line 2")
    ]
    assert users("user\nalice\n") == [UserLine("alice", None, None, "u.txt line 2")]


def test_every_bad_line_is_named_in_one_refusal() -> None:
    text = (
        "user,days,key-type\n"
        "alice,30\n"
        "bob,thirty\n"
        "carol,0\n"
        "dave,99999999\n"
        "erin,,dsa\n"
        "frank,1,ec-p256,extra\n"
        ",5\n"
    )
    with pytest.raises(InputError) as refused:
        users(text)
    message = str(refused.value)
    assert message.startswith("nothing issued: 6 of 7 entries refused: ")
    assert "u.txt line 2" not in message
    assert "u.txt line 3: days 'thirty' is not a whole number of days" in message
    assert "u.txt line 4: certificate validity must be at least 1 day (got 0)" in message
    assert "u.txt line 5: certificate validity of 99999999 days would end after" in message
    assert "u.txt line 6: key-type 'dsa' is not one of ec-p256" in message
    assert "u.txt line 7: 4 cells, the header names 3 columns" in message
    assert "u.txt line 8: no user name in the first column" in message


def test_a_plain_line_with_a_comma_is_a_csv_file_missing_its_header() -> None:
    with pytest.raises(InputError, match=r"u.txt line 2: 'bob,30' holds a comma; a CSV file"):
        users("alice\nbob,30\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "u.txt names no users"),
        ("# nobody\n\n", "u.txt names no users"),
        ("user,days\n", "u.txt names no users (only its header line)"),
        ("user,days,days\nalice,1,2\n", "u.txt line 1: column days twice"),
    ],
)
def test_files_without_users_or_with_a_broken_header(text: str, problem: str) -> None:
    with pytest.raises(InputError) as refused:
        users(text)
    assert str(refused.value).startswith(problem)


def test_a_refusal_names_the_first_ten_problems_and_counts_the_rest() -> None:
    text = "".join(f"u{i},x\n" for i in range(25))
    with pytest.raises(InputError) as refused:
        users(text)
    message = str(refused.value)
    assert "25 of 25 entries refused" in message
    assert "u.txt line 10:" in message and "u.txt line 11:" not in message
    assert message.endswith("; and 15 more")


def test_decode_drops_a_byte_order_mark_and_refuses_what_is_not_utf8() -> None:
    assert decode("\ufeffuser\nalice\n".encode(), "u.txt") == "user\nalice\n"
    with pytest.raises(InputError, match=r"u.txt: not UTF-8 text \(byte 1\)"):
        decode(b"a\xff\n", "u.txt")


def test_serials_as_cert_list_and_openssl_print_them() -> None:
    text = "# leavers\n1f3a9c\n\n0xABCDEF\nserial=AB:CD:01\n"
    lines = read_serials(text, source="s.txt")
    assert [(s.serial, s.label) for s in lines] == [
        (0x1F3A9C, "s.txt line 2"),
        (0xABCDEF, "s.txt line 4"),
        (0xABCD01, "s.txt line 5"),
    ]


def test_bad_serials_are_named_by_line() -> None:
    with pytest.raises(InputError) as refused:
        read_serials("1f3a9c\nnot-hex\nabc\nzz\n", source="s.txt")
    message = str(refused.value)
    assert message.startswith("nothing revoked: 2 of 4 entries refused: ")
    assert "s.txt line 2: invalid serial 'not-hex'" in message
    assert "s.txt line 4: invalid serial 'zz'" in message
    with pytest.raises(InputError, match=r"s\.txt names no serials"):
        read_serials("# none\n", source="s.txt")
