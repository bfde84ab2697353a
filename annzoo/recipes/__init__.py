"""The recipes annzoo ships: one YAML file per recipe, installed with the package.

Each ``annzoo/recipes/NAME.yaml`` holds a recipe (``recipe:``, the sections
of `annzoo.training.Recipe`) and the result measured with it (``measured:``,
the row of ``recipes/README.md``'s table, which a test keeps in agreement).
``annzoo train NAME`` and ``annzoo tune NAME`` find them from any directory
(`annzoo.training.find_recipe`); ``annzoo recipes`` lists them; in a source
checkout, ``recipes/NAME.py`` runs the same file as a script.

This module reads plain data only (YAML, and the model table of
`annzoo.registry.plain_info`): listing recipes imports no Keras.

>>> from annzoo import recipes
>>> recipes.path("digits_cnn").name
'digits_cnn.yaml'
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from pathlib import Path
from typing import Any

from annzoo._checks import check_choice
from annzoo.errors import AnnzooError

__all__ = ["DIRECTORY", "catalog", "find", "names", "path", "read"]

DIRECTORY = Path(__file__).resolve().parent


def names() -> list[str]:
    """The sorted names of the packaged recipes."""
    return sorted(p.stem for p in DIRECTORY.glob("*.yaml"))


def path(name: str) -> Path:
    """The packaged file of recipe ``name`` (`load_recipe` reads it)."""
    check_choice("recipe", name, names())
    return DIRECTORY / f"{name}.yaml"


def find(source: str | os.PathLike) -> Path:
    """A recipe file: ``source`` itself, else the recipe annzoo ships under that
    name, else ``recipes/NAME.py`` in the working directory.

    A shipped name comes before the working directory's ``recipes/``, so that
    ``annzoo train NAME`` trains the same recipe from any directory (in a
    source checkout ``recipes/NAME.py`` loads that same file anyway); give a
    path to run a file of your own with a shipped name.
    """
    given = Path(source)
    if given.is_file():
        return given
    shipped = names()
    if str(source) in shipped:
        return path(str(source))
    local = Path.cwd() / "recipes" / f"{source}.py"
    if local.is_file():
        return local
    own = local.parent.glob("*.py") if local.parent.is_dir() else ()
    known = sorted({*shipped, *(p.stem for p in own)})
    close = difflib.get_close_matches(str(source), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise AnnzooError(
        "`recipe` must be a recipe file (.py, .json, .yaml), the name of a recipe "
        "annzoo ships (`annzoo recipes` lists them) or of a file in ./recipes/ "
        f"(known: {known}).{hint} Received: {str(source)!r}"
    )


def read(name: str) -> dict[str, Any]:
    """The packaged file of ``name`` as plain data (``recipe``, ``measured``)."""
    # Deferred: PyYAML is only needed once a recipe file is read.
    import yaml

    data = yaml.safe_load(path(name).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
        raise AnnzooError(
            f"The packaged recipe file {str(path(name))!r} must hold a `recipe:` "
            f"mapping. Received: {type(data).__name__}"
        )
    return data


def catalog(pattern: str = "*") -> list[dict[str, Any]]:
    """One plain row per packaged recipe matching ``pattern``, for ``annzoo recipes``.

    Each row has ``name``, ``family`` (of the model the recipe builds),
    ``model`` (preset or family name), ``dataset``, ``measured`` (a result
    such as ``"accuracy 0.9815"``, or ``None``) and ``description`` (first
    line).
    """
    from annzoo import registry

    rows = []
    for name in names():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        data = read(name)
        recipe = data["recipe"]
        model = recipe["model"]["name"]
        measured = data.get("measured")
        rows.append(
            {
                "name": name,
                "family": registry.plain_family(model),
                "model": model,
                "dataset": recipe["data"]["dataset"],
                "measured": f"{measured['metric']} {measured['result']}"
                if measured
                else None,
                "description": (recipe.get("description") or "").split("\n")[0],
            }
        )
    return rows
