"""A fast positional constructor for the frozen event and action dataclasses.

Events and actions are frozen, slotted, keyword-only dataclasses: that is the
interface, and what policy authors and tests write. Their generated
``__init__`` parses keywords and sets every field through
``object.__setattr__`` (the price of ``frozen``), about 0.9 us per object
here; a simulated request makes three or four of them, so on the simulator's
hot path that is a third of the time per request. ``make`` builds the very
same object (equal, hashable, frozen afterwards) from positional arguments in
field order, setting the slots through their descriptors, in about 0.35 us
(both timed with ``python -m timeit`` on ``Request``; see BENCHMARKS.md).
The classes have no ``__post_init__``: there is nothing ``make`` skips.
"""

from __future__ import annotations

import dataclasses

__all__ = ["positional_make"]


def positional_make(cls: type) -> type:
    """Class decorator: give a frozen slotted dataclass ``cls.make(*fields)``.

    Arguments go in ``dataclasses.fields(cls)`` order (a base class's fields
    first), all of them, defaults included: ``make`` is for drivers' and the
    scheduler's hot paths, where the call site names the order once.
    """
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"positional_make needs a slotted dataclass, not {cls.__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    namespace = {"_new": object.__new__, "_cls": cls}
    for name in names:
        # the slot's member descriptor lives on the class that declared the field
        owner = next(k for k in cls.__mro__ if name in k.__dict__.get("__slots__", ()))
        namespace["_set_" + name] = owner.__dict__[name].__set__
    # generated once per class, as dataclasses generates __init__: a loop over setters costs twice as much
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n"
    exec(source, namespace)  # noqa: S102 (the source is built from field names only)
    make = namespace["make"]
    make.__qualname__ = f"{cls.__qualname__}.make"
    make.__doc__ = f"Build a {cls.__name__} from positional fields: {', '.join(names)}."
    cls.make = staticmethod(make)
    return cls
