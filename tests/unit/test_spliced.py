"""A body rendered once with holes gives the bytes of the whole body rendered at once."""

from typing import Any

import orjson
import pytest
from hypothesis import given, strategies as st

from iotedge.edge.api.trusted import Spliced

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=True), st.text(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    body=st.dictionaries(st.text(max_size=6), _values, min_size=1, max_size=6),
    picks=st.lists(st.booleans(), min_size=6, max_size=6),
    fills=st.lists(_values, min_size=6, max_size=6),
)
def test_render_equals_the_whole_body(body: dict[str, Any], picks: list[bool], fills: list[Any]) -> None:
    holes = [name for name, pick in zip(body, picks, strict=False) if pick]
    values = fills[: len(holes)]
    whole = {name: values[holes.index(name)] if name in holes else value for name, value in body.items()}
    assert Spliced(body, holes).render(*values) == orjson.dumps(whole)


def test_holes_must_be_fields_in_order() -> None:
    with pytest.raises(ValueError, match="in order"):
        Spliced({"a": 1, "b": 2}, ["b", "a"])
    with pytest.raises(ValueError, match="'c'"):
        Spliced({"a": 1}, ["c"])
