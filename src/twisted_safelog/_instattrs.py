# -*- test-case-name: tests.test_instattrs -*-
"""
Reading and changing an application object's own attributes without
reading its C{__dict__}.

On CPython 3.11 and 3.12 an instance keeps its attributes in "inline
values" until something asks for its C{__dict__} (C{obj.__dict__},
C{vars(obj)}, C{hasattr(obj, "__dict__")}); from then on they live in a
real dict for the object's whole life, and every attribute access in its
methods takes a slower path. A stdlib handler whose C{__dict__} had been
read cost about 7,500 more instructions a record on 3.11 (5%: its
C{emit}, C{format}, C{flush} and C{handle} read a dozen attributes each),
10,600 on 3.12; 3.10 and 3.13 do not change. Hardening a handler in place
must not slow it down, so nothing here reads an application object's
C{__dict__}: plain C{setattr}-style stores keep the inline values, and the
values are found with C{gc.get_referents}, which visits them where they
are.
"""

from __future__ import annotations

import gc
from itertools import islice
from types import MethodType
from typing import Any

__all__ = [
    "attributeValues",
    "classAttribute",
    "declaredAttribute",
    "instanceAttribute",
    "removeInstanceAttribute",
    "setInstanceAttribute",
]

_MISSING: Any = object()


def declaredAttribute(cls: type, name: str) -> Any:
    """
    The attribute C{name} as C{cls} (or the first class of its MRO that has
    it) declares it: the function, descriptor or value itself, unbound.
    """
    for klass in cls.__mro__:
        attributes = klass.__dict__
        if name in attributes:
            return attributes[name]
    return _MISSING


def classAttribute(declared: Any, obj: object) -> Any:
    """
    C{declared} (see L{declaredAttribute}) as C{obj.name} gives it when the
    instance hides nothing: bound to C{obj} through its C{__get__} (a
    method, a static or class method, a C{functools.partialmethod}, a
    property's value), or the value itself.
    """
    get = getattr(type(declared), "__get__", None)
    return declared if get is None else get(declared, obj, type(obj))


def _isDataDescriptor(declared: Any) -> bool:
    kind = type(declared)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def _holds(obj: object, name: str, value: object) -> bool:
    """
    Does C{obj} hold C{value} itself (in an attribute, a slot, or in its
    dict under C{name} where its attributes live in one)? Its type's
    traversal visits them where they are, without making the dict.
    """
    for referent in gc.get_referents(obj):
        if referent is value:
            return True
        if type(referent) is dict and referent.get(name, _MISSING) is value:
            return True
    return False


def instanceAttribute(obj: object, name: str) -> Any:
    """
    The attribute C{name} that C{obj} holds itself (an instance attribute
    hiding its class's), or L{None} if it has none: C{obj.name} is then its
    class's (a method bound to C{obj}, or the class's value). A class's
    descriptor that makes a new object at each lookup (a
    C{functools.partialmethod}, a C{singledispatchmethod}, a decorator's
    C{__get__}) is the class's, and so is a property or a slot, which no
    instance attribute hides.
    """
    try:
        value = getattr(obj, name, _MISSING)
    except Exception:
        return None
    if value is _MISSING:
        return None
    declared = declaredAttribute(type(obj), name)
    if declared is not _MISSING:
        if _isDataDescriptor(declared):
            return None
        try:
            expected = classAttribute(declared, obj)
        except Exception:
            expected = _MISSING
        if value is expected:
            return None
        # A bound method is made anew at each lookup: the same function, bound
        # to the same object, is the class's.
        if (
            type(value) is MethodType
            and type(expected) is MethodType
            and value.__func__ is expected.__func__
            and value.__self__ is expected.__self__
        ):
            return None
    # Another object than the class's: the instance's own only if it holds
    # it (a descriptor may make a new one at each lookup, a __getattr__ or
    # __getattribute__ one of its own).
    return value if _holds(obj, name, value) else None


def setInstanceAttribute(obj: object, name: str, value: object) -> None:
    """
    Set C{obj}'s own attribute C{name}, hiding its class's, as an
    assignment to its C{__dict__} would (the class's C{__setattr__}, if it
    has one, is not called), without reading its C{__dict__}. A property or
    a slot of its class's, which an instance attribute cannot hide, is left
    alone (as it would hide a value put in the dict).
    """
    if _isDataDescriptor(declaredAttribute(type(obj), name)):
        return
    object.__setattr__(obj, name, value)


def removeInstanceAttribute(obj: object, name: str) -> None:
    """
    Remove C{obj}'s own attribute C{name}, if it has one, so that its
    class's shows again (never a property's or slot's value).
    """
    if _isDataDescriptor(declaredAttribute(type(obj), name)):
        return
    try:
        object.__delattr__(obj, name)
    except AttributeError:
        pass


def attributeValues(obj: object, limit: int = 20) -> list[Any]:
    """
    Up to C{limit} of the values C{obj} holds in its attributes (instance
    attributes and slots), without reading its C{__dict__}: the objects its
    type's traversal visits, but for the type itself (where the attributes
    are already in a dict, that dict's values).
    """
    values: list[Any] = []
    cls = type(obj)
    for referent in gc.get_referents(obj):
        if referent is cls:
            continue
        if type(referent) is dict and _isAttributeDict(obj, referent):
            values.extend(islice(referent.values(), limit))
        else:
            values.append(referent)
        if len(values) >= limit:
            break
    return values[:limit]


def _isAttributeDict(obj: object, referent: dict[Any, Any]) -> bool:
    """
    Is C{referent}, a dict C{obj}'s traversal visits, the dict its
    attributes live in? Where they are inline values (3.11 and later), a
    dict visited is the value of one of them (a table of files, say): one
    value, as on 3.10, where it is in the attributes' dict.
    """
    for key, value in referent.items():
        try:
            return isinstance(key, str) and getattr(obj, key, _MISSING) is value
        except Exception:
            return False
    return True
