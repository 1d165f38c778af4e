import pytest

from llm_launch.config.api_keys import ApiKeyConfigError, parse_api_keys

KEY_A = "a" * 20
KEY_B = "b" * 20


def test_keys_map_to_their_owners_and_unknown_keys_to_none() -> None:
    keys = parse_api_keys(f"# comment\nalice:{KEY_A}\n\nbob:{KEY_B}  # trailing\n", source="f")
    assert keys.owner_for(KEY_A) == "alice"
    assert keys.owner_for(KEY_B) == "bob"
    assert keys.owner_for("c" * 20) is None
    assert keys.owners == {"alice", "bob"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("alice", "OWNER:KEY"),
        (f"Alice Smith:{KEY_A}", "owner"),
        ("alice:short", "shorter than"),
        (f"alice:{KEY_A}\nbob:{KEY_A}", "twice"),
    ],
)
def test_malformed_entries_are_refused_without_echoing_keys(text: str, words: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=words) as error:
        parse_api_keys(text, source="keys.txt")
    assert KEY_A not in str(error.value)
