import json
import os

from ssmzoo.text import count, in_brief, one_line, readable, readable_data


def test_count_names_one_thing_in_the_singular_and_any_other_number_in_the_plural():
    assert [count(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]
    assert count(1, "pass", "passes") == "1 pass" and count(3, "pass", "passes") == "3 passes"


def test_one_line_keeps_a_file_name_as_it_is_with_its_control_characters_escaped():
    assert one_line("a  b.jpg: empty file") == "a  b.jpg: empty file"  # spaces are part of a name
    assert one_line("bad\nname.jpg\t\x1b[31m") == "bad\\nname.jpg\\t\\x1b[31m"
    assert one_line(one_line("bad\nname.jpg")) == "bad\\nname.jpg"


def test_one_line_with_join_folds_prose_lines_and_escapes_what_is_left():
    text = "Trying to resume download...\n\n   Retrying   in 1s\r\n"
    assert one_line(text, join="; ") == "Trying to resume download...; Retrying in 1s"
    assert one_line(text, join=" ") == "Trying to resume download... Retrying in 1s"
    assert one_line("a\x1bb\n", join=" ") == "a\\x1bb" and one_line(" \n ", join="; ") == ""


def test_in_brief_is_one_spaced_line_cut_to_its_limit():
    assert in_brief("x" * 120) == "x" * 120 and in_brief("x" * 121) == "x" * 119 + "…"
    assert in_brief("unexpected\n  end of\tfile", 80) == "unexpected end of file"
    assert len(in_brief("word " * 50, 80)) == 80


def test_a_file_names_bytes_that_are_not_utf8_are_written_as_hex_escapes():
    # os.listdir gives b'caf\xe9.jpg' as 'caf\udce9.jpg': a lone surrogate, which UTF-8 files cannot hold
    # and strict JSON readers reject; messages and outputs show the byte instead
    name = os.fsdecode(b"caf\xe9.jpg")
    assert one_line(f"{name}: empty file") == "caf\\xe9.jpg: empty file"
    assert readable(name) == "caf\\xe9.jpg" and readable("café.jpg") == "café.jpg"
    assert readable_data({name: [name, (1, None)]}) == {"caf\\xe9.jpg": ["caf\\xe9.jpg", [1, None]]}
    assert json.loads(json.dumps(readable_data({"path": name})))["path"].encode("utf-8") == b"caf\\xe9.jpg"


def test_rates_keep_three_significant_digits_however_slow_the_run():
    from ssmzoo.text import rate_text, round_rate
    assert round_rate(1 / 206.6) == 0.00484  # one video in 206.6 s is not 0.0 videos/s
    assert round_rate(1234.5678) == 1234.57 and round_rate(0.5) == 0.5 and round_rate(0.0) == 0.0
    assert round_rate(None) is None
    assert rate_text(1 / 206.6) == "0.00484" and rate_text(1234.5678) == "1234.6" and rate_text(0.0) == "0.0"
    assert rate_text(1 / 206.6, 2) == "0.00484" and rate_text(12.345, 2) == "12.35"
