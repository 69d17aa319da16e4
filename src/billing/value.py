"""Value objects built per fee and per invoice: immutable to the type checker, plain to build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    """A slotted dataclass that mypy treats as frozen (assigning a field is a type error;
    change one with `dataclasses.replace`), without `frozen=True` at run time: a frozen
    dataclass sets each field through `object.__setattr__`, which made building a fee of 19
    fields 3.7 times slower than plain assignments (14 against 3.9 us, measured). Not
    hashable (use `frozen=True` for anything used as a key or cached on)."""
    return dataclass(slots=True)(cls)
