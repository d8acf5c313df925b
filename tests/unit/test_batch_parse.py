"""A batch's namespaces, checked by one match of them all, are refused exactly where the
single-namespace rule refuses them (``service.api.batch.parse_increments``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.batch import parse_increments
from service.keys import INVALID_NAMESPACE, is_valid_namespace

# Names near the rule's edges: valid characters, newlines, a dot, a non-ASCII letter,
# lengths around 64.
NAMES = st.one_of(
    st.text(alphabet="ab_-9\n.é", min_size=0, max_size=6),
    st.integers(min_value=60, max_value=70).map(lambda n: "x" * n),
    st.lists(st.sampled_from(["a", "b-c", "x" * 64]), min_size=2, max_size=3).map("\n".join),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=40))
def test_each_namespace_is_judged_as_the_single_rule_judges_it(names: list[str]) -> None:
    slots, items = parse_increments({"increments": [{"namespace": ns} for ns in names]})
    accepted = {item.index for item in items}
    for i, ns in enumerate(names):
        if is_valid_namespace(ns):
            assert i in accepted and slots[i] is None, (i, ns)
        else:
            assert i not in accepted, (i, ns)
            assert slots[i] == {
                "namespace": ns,
                "error": {"error": "bad_request", "message": INVALID_NAMESPACE},
            }
    assert [item.namespace for item in items] == [ns for ns in names if is_valid_namespace(ns)]
