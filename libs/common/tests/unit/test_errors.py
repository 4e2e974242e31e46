from lastmile.common.errors import pointer


def test_pointer_names_the_field_in_the_body() -> None:
    assert pointer(("body", "recipient", "phone")) == "#/recipient/phone"
    assert pointer(("body", "time_windows", 0, "end")) == "#/time_windows/0/end"


def test_pointer_escapes_slashes_and_tildes() -> None:
    assert pointer(("body", "metadata", "a/b~c")) == "#/metadata/a~1b~0c"


def test_pointer_keeps_where_a_query_parameter_came_from() -> None:
    assert pointer(("query", "limit")) == "#/query/limit"
