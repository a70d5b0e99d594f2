"""The event catalog is consistent with itself.

tests/test_events.py holds each event to docs/events.md; here are the
rules the table must keep whatever events it holds, so that an event added
or edited later cannot quietly break the checker, the argv parser or
``router events``, which all read it.
"""

from __future__ import annotations

import pytest

from router.catalog import (
    ALIASES,
    BYTES_FIELD,
    CATALOG,
    DERIVED_FIELDS,
    EVENTS,
    FIELD_TYPES,
    HISTORY_FIELDS,
    INTERVENTION_FILE,
    canonical_name,
    fields_of,
)

NAMES = [spec.name for spec in CATALOG]


def test_numbers_count_up_from_one_and_names_are_unique() -> None:
    assert [spec.number for spec in CATALOG] == list(range(1, len(CATALOG) + 1))
    assert len(set(NAMES)) == len(NAMES) == len(EVENTS)


@pytest.mark.parametrize("spec", CATALOG, ids=NAMES)
def test_fields_are_typed_and_named_once(spec) -> None:
    names = spec.field_names
    assert len(set(names)) == len(names)
    computed = {f.name for f in (*DERIVED_FIELDS, BYTES_FIELD, *HISTORY_FIELDS)}
    assert not set(names) & computed, "a field Retrospect sends would hide a computed one"
    for field in spec.fields:
        assert field.type in FIELD_TYPES
        assert field.doc
        assert (field.unit in ("seconds", "minutes")) == (field.type == "duration")


@pytest.mark.parametrize("spec", CATALOG, ids=NAMES)
def test_an_intervention_effect_exactly_where_there_is_an_intervention_file(spec) -> None:
    """The intervention file is always the last argument, and the catalog
    says what writing it does exactly for the events that pass one."""
    assert spec.has_intervention_file == (spec.intervention is not None)
    if spec.has_intervention_file:
        assert spec.field_names[-1] == INTERVENTION_FILE
        assert spec.fields[-1].type == "path"


@pytest.mark.parametrize("spec", CATALOG, ids=NAMES)
def test_required_arguments_are_a_prefix_of_the_fields(spec) -> None:
    assert 0 < spec.min_args <= len(spec.fields)


def test_aliases_lead_to_events_and_hide_none() -> None:
    assert set(ALIASES.values()) <= set(EVENTS)
    assert not {alias.lower() for alias in ALIASES} & {name.lower() for name in NAMES}


@pytest.mark.parametrize("name", [*NAMES, *ALIASES])
def test_every_name_and_alias_is_found_whatever_its_case(name: str) -> None:
    expected = ALIASES.get(name, name)
    assert canonical_name(name) == canonical_name(name.upper()) == expected


@pytest.mark.parametrize("spec", CATALOG, ids=NAMES)
def test_fields_of_has_every_field_a_rule_may_test(spec) -> None:
    fields = fields_of(spec.name)
    assert set(spec.field_names) | {f.name for f in DERIVED_FIELDS} <= set(fields)
    assert {f.name for f in HISTORY_FIELDS} <= set(fields)
    assert (BYTES_FIELD.name in fields) == (spec.name == "EndSource")
