"""Name <-> function tables shared by activations, losses and metrics: lookup with a clear error, and the
reverse lookup used when a model is saved."""


def lookup(table: dict, identifier, what: str, aliases=None):
    """``table[identifier]`` (after ``aliases``), a callable as is; ValueError listing the known names."""
    if callable(identifier):
        return identifier
    aliases = aliases or {}
    name = aliases.get(identifier, identifier) if isinstance(identifier, str) else None
    if name in table:
        return table[name]
    known = ", ".join([*table, *aliases])
    raise ValueError(f"unknown {what} {identifier!r}; known: {known} (or a function)")


def name_of(table: dict, function, what: str) -> str:
    """The name under which ``function`` is saved; ValueError for a function the table does not hold."""
    name = getattr(function, "__name__", None)
    if table.get(name) is not function:
        raise ValueError(f"cannot save the custom {what} {function!r}: only {', '.join(table)} "
                         f"can be written to a model file")
    return name
