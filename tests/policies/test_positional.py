"""``make``, the positional constructor of events and actions, builds the same objects as the keywords do."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from policies import actions, events
from policies.positional import positional_make


def message_classes():
    found = []
    for module in (events, actions):
        for name in module.__all__:
            cls = getattr(module, name)
            # every concrete one: the bases Event and Action are never sent
            if inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls not in (events.Event, actions.Action):
                found.append(cls)
    return found


def sample_values(cls) -> dict:
    # distinct values per field, so a swapped pair of arguments shows
    return {field.name: f"{field.name}-{index}" for index, field in enumerate(dataclasses.fields(cls))}


@pytest.mark.parametrize("cls", message_classes(), ids=lambda c: c.__name__)
def test_make_equals_the_keyword_constructor(cls):
    values = sample_values(cls)
    made = cls.make(*values.values())
    assert made == cls(**values)
    assert type(made) is cls
    assert hash(made) == hash(cls(**values))
    assert {f.name: getattr(made, f.name) for f in dataclasses.fields(cls)} == values


@pytest.mark.parametrize("cls", message_classes(), ids=lambda c: c.__name__)
def test_made_objects_stay_frozen(cls):
    made = cls.make(*sample_values(cls).values())
    field = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, field, "changed")


def test_make_takes_every_field_in_order():
    with pytest.raises(TypeError):
        events.Request.make(1, "cam", 0.5, 100)  # deadline_s too: make has no defaults
    request = events.Request.make(1, "cam", 0.5, 100, 2.5)
    arrived = events.RequestArrived.make(0.75, request)  # the base class's now_s comes first
    assert arrived.now_s == 0.75 and arrived.request is request


def test_positional_make_refuses_a_class_without_slots():
    @dataclasses.dataclass(frozen=True)
    class Loose:
        x: int

    with pytest.raises(TypeError, match="slotted dataclass"):
        positional_make(Loose)
