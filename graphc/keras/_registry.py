"""Name <-> function tables shared by activations, losses and metrics: lookup with a clear error, and the
reverse lookup used when a model is saved; and the ``{"class_name", "config"}`` form every configurable object
(layer, loss, optimizer, schedule, initializer, regularizer) is saved in."""


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


def to_config(instance) -> dict:
    """``{"class_name": ..., "config": ...}``: how an object of a known class is saved."""
    return {"class_name": type(instance).__name__, "config": instance.get_config()}


def from_config(classes: dict, config, what: str):
    """The object a ``to_config`` dict describes, made by ``classes[class_name].from_config``; ValueError naming
    the class and the known ones when it is not in ``classes``."""
    name = config.get("class_name") if isinstance(config, dict) else config
    if not isinstance(config, dict) or name not in classes:
        raise ValueError(f"unknown {what} class {name!r}; known: {', '.join(classes)}")
    return classes[name].from_config(config.get("config", {}))
