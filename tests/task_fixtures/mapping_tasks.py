"""Node-style ``tasks = {name: function}``, which we reject with a hint."""

from __future__ import annotations


def hello(payload: object) -> None:
    pass


tasks = {"hello": hello}
