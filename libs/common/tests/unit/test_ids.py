import uuid

from lastmile.common.ids import new_id, new_ids, uuid4_strings


def test_ids_made_in_bulk_are_uuid7_with_the_prefix_and_sort_in_the_order_given() -> None:
    earlier = new_id("ord")
    ids = new_ids("ord", 500)
    assert len(set(ids)) == 500
    assert ids == sorted(ids)
    for id_ in ids:
        prefix, _, hex_ = id_.partition("_")
        value = uuid.UUID(hex_)
        assert (prefix, value.version, value.variant, value.hex) == ("ord", 7, uuid.RFC_4122, hex_)
        assert id_[:16] >= earlier[:16]  # the same or a later millisecond


def test_uuid4_strings_are_canonical_random_uuids() -> None:
    texts = uuid4_strings(500)
    assert len(set(texts)) == 500
    for text in texts:
        value = uuid.UUID(text)
        assert (str(value), value.version, value.variant) == (text, 4, uuid.RFC_4122)
