"""The package's shape, checked as scanpy checks its own: the engine in ``scmix._core``
knows nothing of AnnData and imports only itself; ``import scmix`` stays light; public
functions take their options by keyword after the data; ``copy=False`` returns ``None``."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from adata_helpers import assert_adata_unchanged, fast, make_adata

import scmix

PACKAGE = Path(scmix.__file__).parent
#: the one argument a function may take by position after the data: what it is about
SECOND_POSITIONAL = {"n_components", "method", "prefix", "gene", "genes"}


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the modules imported by the file at ``path`` (in ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
    return names


def _engine_files():
    for path in sorted((PACKAGE / "_core").rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        yield path, ".".join(parts[:-1])  # the package a relative import starts from


@pytest.mark.parametrize(("path", "package"), list(_engine_files()), ids=lambda v: str(v))
def test_engine_imports_no_anndata_and_nothing_above_it(path, package):
    imports = _imports(path, package)
    heavy = {name for name in imports if name.split(".")[0] in ("anndata", "scanpy", "matplotlib")}
    assert not heavy, f"{path.name} imports {heavy}: the engine works on arrays only"
    upward = {n for n in imports if n.startswith("scmix") and not n.startswith("scmix._core")}
    assert not upward, f"{path.name} imports {upward}: imports point downwards only"


#: Most parameters of any function of the engine: kernels take named structures
#: (counts, quadrature, outputs), fits a FitSettings, not long lists.
MAX_PARAMETERS = 12


@pytest.mark.parametrize(("path", "package"), list(_engine_files()), ids=lambda v: str(v))
def test_engine_functions_take_at_most_twelve_parameters(path, package):
    too_many = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            count += (args.vararg is not None) + (args.kwarg is not None)
            if count > MAX_PARAMETERS:
                too_many.append(f"{node.name} ({count})")
    assert not too_many, f"{path.name}: {too_many} take more than {MAX_PARAMETERS} parameters"


def test_engine_package_imports_have_no_cycle():
    """Subpackages of the engine import one another in one direction only."""
    edges = {}
    for path, package in _engine_files():
        source = package.split(".")[2] if package.count(".") >= 2 else path.stem
        for name in _imports(path, package):
            parts = name.split(".")
            if name.startswith("scmix._core.") and len(parts) > 2:
                target = parts[2]
                if target != source:
                    edges.setdefault(source, set()).add(target)

    def reaches(start, goal, seen=()):
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt)))
            for nxt in edges.get(start, ())
        )

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a))
    assert not cycles, f"import cycles between engine packages: {cycles}"


def test_import_scmix_is_light():
    code = (
        "import sys, scmix; "
        "print([m for m in ('scanpy', 'anndata', 'matplotlib', 'numba') if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def _public_functions():
    for module in ("pp", "tl", "pl", "get"):
        namespace = getattr(scmix, module)
        for name in namespace.__all__:
            yield f"{module}.{name}", getattr(namespace, name)


@pytest.mark.parametrize(("name", "function"), list(_public_functions()), ids=lambda v: str(v))
def test_options_are_keyword_only_after_the_data(name, function):
    positional = [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert positional[0] == "adata", name
    assert set(positional[1:]) <= SECOND_POSITIONAL and len(positional) <= 2, (
        f"{name} takes {positional} by position: options after the data are keyword-only"
    )


def _fitted():
    adata = make_adata()
    scmix.tl.fit_mixture(adata, **fast())
    return adata


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("fit_mixture", lambda a, c: scmix.tl.fit_mixture(a, copy=c, key_added="new", **fast())),
        ("select_n_components", lambda a, c: scmix.tl.select_n_components(a, [1, 2], copy=c)),
        ("size_factor_modes", lambda a, c: scmix.tl.size_factor_modes(a, copy=c)),
        ("goodness_of_fit", lambda a, c: scmix.tl.goodness_of_fit(a, copy=c)),
    ],
)
def test_copy_false_returns_none_and_copy_true_leaves_the_input(name, call):
    import copy

    adata = _fitted()
    before = copy.deepcopy(adata)
    result = call(adata, True)
    assert isinstance(result, type(adata)) and result is not adata, name
    assert_adata_unchanged(before, adata)
    assert call(adata, False) is None, name
    assert not np.array_equal(list(adata.var.columns), list(before.var.columns)) or (
        list(adata.obs.columns) != list(before.obs.columns)
    ), f"{name}(copy=False) wrote nothing"


def test_every_tool_has_copy_and_documents_it():
    for name in scmix.tl.__all__:
        function = getattr(scmix.tl, name)
        parameters = inspect.signature(function).parameters
        assert "copy" in parameters and parameters["copy"].default is False, name
        assert "copy" in (function.__doc__ or ""), name


#: import name -> distribution name, where they differ
_DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def test_every_third_party_import_is_a_declared_dependency():
    """What scmix imports it declares (matplotlib was only present through scanpy);
    optional ones (dask, imported where a dask array is given) are in an extra."""
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {r.split(">")[0].split("[")[0].split("=")[0].strip() for r in requirements}

    required = names(project["dependencies"])
    optional = names(project["optional-dependencies"]["dask"])
    standard = set(sys.stdlib_module_names) | {"scmix"}
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
        imported |= {name.split(".")[0] for name in _imports(path, package)}
    third_party = {_DISTRIBUTIONS.get(name, name) for name in imported - standard - {""}}
    assert "matplotlib" in third_party  # the probe sees what it checks
    assert third_party - required - optional == set()


def test_the_package_ships_its_type_hints_and_a_changelog():
    assert (PACKAGE / "py.typed").is_file()
    changelog = (PACKAGE.parent / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog") and "## [Unreleased]" in changelog
