"""cursor.json reading and its errors (miner.cursor)."""

from __future__ import annotations

import pytest

from miner.cursor import encode_cursor, id_tuple, read_cursor
from miner.errors import CursorError


def test_missing_cursor_is_empty_and_round_trips(tmp_path):
    path = tmp_path / "cursor.json"
    assert read_cursor(path) == {}
    path.write_bytes(encode_cursor({"rl_actions": "1759700000000-3", "other": "5-0"}))
    assert read_cursor(path) == {"rl_actions": "1759700000000-3", "other": "5-0"}


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"rl_actions": 5}', '{"rl_actions": "abc"}'])
def test_malformed_cursor_names_the_file_and_the_fix(tmp_path, text):
    path = tmp_path / "cursor.json"
    path.write_text(text)
    with pytest.raises(CursorError, match="cursor.json: .*(fix it|delete it)"):
        read_cursor(path)


def test_id_order():
    assert id_tuple("10-2") < id_tuple(b"10-10") < id_tuple("11-0")
