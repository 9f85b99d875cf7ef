from ssmzoo.text import count


def test_count_names_one_thing_in_the_singular_and_any_other_number_in_the_plural():
    assert [count(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]
    assert count(1, "pass", "passes") == "1 pass" and count(3, "pass", "passes") == "3 passes"
