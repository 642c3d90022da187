"""Any connector name becomes a valid Table key, and comes back unchanged from Azurite."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from grading.storage.keys import MAX_KEY_CHARS, decode_key, encode_key

HOSTILE = ['a/b\\c#d?e', "x\" | take 1 //", "line\nbreak\r\t", "100%", "", "\x00\x1f\x7f\x9f",
           "<script>window.__pwned=1</script>", "Ünïcødé ✉", "%2F"]


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_encoded_keys_are_valid_and_round_trip(name):
    key = encode_key(name)
    assert not any(ch in key for ch in "/\\#?")
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in key)
    assert decode_key(key) == name


def test_a_name_too_long_for_a_key_is_cut_with_a_hash_and_stays_distinct():
    a, b = "x" * 2000 + "a", "x" * 2000 + "b"
    assert len(encode_key(a)) <= MAX_KEY_CHARS
    assert encode_key(a) != encode_key(b)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_stored_and_read_back_from_azurite(storage_connection_string, unique_name, name):
    table = TableServiceClient.from_connection_string(storage_connection_string).create_table_if_not_exists(
        unique_name)
    table.upsert_entity({"PartitionKey": "connectors", "RowKey": encode_key(name), "Connector": name})
    entity = table.get_entity("connectors", encode_key(name))
    assert entity["Connector"] == name
    assert decode_key(entity["RowKey"]) == name
