"""Generated inputs for the property-based tests (hypothesis): AnnData objects with
counts of any numeric dtype and storage, size factors, masks and flags in accepted and
refused forms, and the settings the property tests share."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse


def examples(n: int):
    """Reproducible settings (same examples on every run, no example database); a failure
    is shrunk but not "explained" (that phase alone can take minutes)."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


FAST = {"n_init": 1, "max_iter": 5}


@contextmanager
def quiet():
    """Silence the warnings expected on generated input: genes without any count (not
    fitted), anndata's notes on duplicate names and on a view becoming an AnnData.
    Everything else keeps its filter: RuntimeWarnings from scmix stay errors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*genes have no non-zero count", UserWarning)
        warnings.filterwarnings(
            "ignore", r"(Observation|Variable) names are not unique", UserWarning
        )
        warnings.filterwarnings("ignore", category=ad.ImplicitModificationWarning)
        yield


# --------------------------------------------------------------------------------------
# generated inputs
# --------------------------------------------------------------------------------------
DTYPES = ("int64", "int32", "uint16", "float16", "float32", "float64")
BAD_ENTRIES = {"nan": np.nan, "inf": np.inf, "negative": -1.0, "fractional": 0.5}
#: size-factor kinds: valid ones, bad values (with the word the error uses), bad types
VALID_SF = ("ok", "float32", "int", "nullable_int")
SF_LABEL = {"zero": "zero", "nan": "NaN", "negative": "negative", "inf": "infinite"}
BAD_SF_TYPES = ("bool", "string", "categorical")
PANDAS_ONLY_SF = ("nullable_int", "nullable_na", "categorical")
VALID_MASKS = (
    "none",
    "column",
    "nullable_column",
    "bool_array",
    "bool_list",
    "bool_series",
    "nullable_series",
    "names",
)
BAD_MASKS = (
    "str_column",
    "nullable_column_na",
    "missing_column",
    "bool_series_missing",
    "nullable_series_na",
    "wrong_length",
    "unknown_names",
    "positions",
    "nothing",
)


@dataclass
class Case:
    """A generated AnnData and the arguments that locate its counts, size factors and genes."""

    adata: ad.AnnData
    layer: str | None  # the layer= argument
    mask: object  # the mask_var= argument
    mask_kind: str
    mask_sel: np.ndarray | None  # the genes it selects (None: the mask is invalid)
    spike_kind: str  # .var["spike_in"]: bool, nullable, absent, string, nullable_na
    sf: object  # the size_factors= argument
    sf_mode: str  # key, array, list, series, none; series_missing, absent_key, short, masked, 2d
    sf_kind: str  # what the size factors hold (VALID_SF, SF_LABEL, BAD_SF_TYPES, ...)
    sf_pos: int  # the cell of a bad size factor
    sf_values: np.ndarray  # the valid size factors of the cells (float64)

    def fit_kwargs(self) -> dict:
        """layer, mask_var and size_factors, the defaults left out."""
        kwargs = {}
        if self.layer is not None:
            kwargs["layer"] = self.layer
        if self.mask_kind != "none":
            kwargs["mask_var"] = self.mask
        if self.sf_mode not in ("key", "absent_key"):
            kwargs["size_factors"] = self.sf
        return kwargs

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis prints falsifying examples so
        printer.text(repr(self))

    def __repr__(self) -> str:
        a = self.adata

        def kind(m):
            return "None" if m is None else f"{type(m).__name__}[{m.dtype}]"

        counts = a.X if self.layer is None or self.layer not in a.layers else a.layers[self.layer]
        with np.printoptions(threshold=10_000, linewidth=120):
            shown = "" if counts is None else f"\ncounts (cells x genes):\n{dense(counts)}"
            return (
                f"Case(AnnData {a.n_obs} x {a.n_vars}, X {kind(a.X)}, layers "
                f"{ {k: kind(v) for k, v in a.layers.items()} }\nobs_names {list(a.obs_names)}"
                f"\nvar:\n{a.var}\nobs['size_factors']: "
                f"{a.obs['size_factors'].to_numpy() if 'size_factors' in a.obs else None}"
                f"\nlayer={self.layer!r}, mask_var ({self.mask_kind})={self.mask!r}, "
                f"size_factors ({self.sf_mode}, {self.sf_kind})={self.sf!r}{shown})"
            )


def dense(matrix) -> np.ndarray:
    """A count matrix as a float64 numpy array (values as stored)."""
    matrix = matrix.toarray() if sparse.issparse(matrix) else matrix
    return np.asarray(matrix, dtype=np.float64)


STORAGES = ("dense", "csr", "csc", "csr_array", "csc_array")
#: how a sparse matrix holds its entries: canonical, every zero stored, or (also valid)
#: with the indices of each row / column in decreasing order
LAYOUTS = ("canonical", "stored_zeros", "unsorted")


def stored(values: np.ndarray, storage: str, layout: str = "canonical"):
    """``values`` dense, as a scipy sparse matrix / array in the given layout, as a dask
    array, or as a numpy masked array (which scmix refuses)."""
    if storage == "dense":
        return values
    if storage == "dask":
        import dask.array as da

        return da.from_array(values, chunks=(max(values.shape[0], 1), 2))
    if storage == "masked":
        return np.ma.masked_array(values, mask=values > 15)
    if layout == "canonical":
        matrix = sparse.csr_matrix(values)
    else:  # every entry stored, zeros included
        rows, cols = np.indices(values.shape).reshape(2, -1)
        matrix = sparse.csr_matrix(
            (values[rows, cols], (rows, cols)), shape=values.shape, dtype=values.dtype
        )
    matrix = matrix.tocsc() if storage.startswith("csc") else matrix
    if layout == "unsorted":
        for start, end in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True):
            matrix.indices[start:end] = matrix.indices[start:end][::-1]
            matrix.data[start:end] = matrix.data[start:end][::-1]
        matrix.has_sorted_indices = False
    if storage.endswith("_array"):
        array = sparse.csr_array if storage.startswith("csr") else sparse.csc_array
        matrix = array(matrix)
    return matrix


def one_in(draw, n: int, allowed: bool = True) -> bool:
    """True with probability 1/n (shrinks to False); always False unless ``allowed``."""
    return allowed and draw(st.sampled_from([False] * (n - 1) + [True]))


def sf_column(kind: str, base: np.ndarray, pos: int):
    """Size factors of the given kind built from the positive ``base``."""
    whole = np.ceil(base).astype(np.int64)
    if kind == "ok":
        return base
    if kind == "float32":
        return base.astype(np.float32)
    if kind == "int":
        return whole
    if kind == "nullable_int":
        return pd.array(whole, dtype="Int64")
    if kind == "nullable_na":
        values = pd.array(base, dtype="Float64")
        values[pos] = pd.NA
        return values
    if kind == "bool":
        return base > 1
    if kind == "string":
        return base.astype(str)
    if kind == "categorical":
        return pd.Categorical(base)
    values = base.copy()
    values[pos] = {"zero": 0.0, "nan": np.nan, "inf": np.inf, "negative": -values[pos]}[kind]
    return values


def sf_floats(kind: str, base: np.ndarray) -> np.ndarray:
    """The float64 size factors a valid kind stands for."""
    column = sf_column(kind, base, 0)
    return np.asarray(column, dtype=np.float64)


@st.composite
def counts_matrices(draw, n_obs: int, n_vars: int, problems: bool, bad_count: bool = False):
    """(valid integer values, the stored matrix) with at most one bad entry (exactly one
    with ``bad_count``)."""
    dtypes = [d for d in DTYPES if np.dtype(d).kind != "u"] if bad_count else DTYPES
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    kinds = STORAGES if dtype != np.float16 else ("dense",)  # scipy.sparse has no float16
    storage = "masked" if one_in(draw, 12, problems) else draw(st.sampled_from((*kinds, "dask")))
    values = draw(hnp.arrays(np.int64, (n_obs, n_vars), elements=st.integers(0, 20)))
    if one_in(draw, 3):  # no zero count
        values += 1
    if values.size and one_in(draw, 8):  # a cell with large counts (sums overflow float16)
        values[draw(st.integers(0, n_obs - 1))] = 30_000
    matrix = values.astype(np.float64)
    if storage == "dense" and dtype.kind == "f" and (values == 0).any() and one_in(draw, 8):
        matrix[np.nonzero(values == 0)[0][0], np.nonzero(values == 0)[1][0]] = -0.0  # valid
    allowed = list(BAD_ENTRIES) if dtype.kind == "f" else ["negative"] if dtype.kind == "i" else []
    if values.size and allowed and (bad_count or one_in(draw, 3, problems)):
        bad = draw(st.sampled_from(allowed))
        i, j = draw(st.integers(0, n_obs - 1)), draw(st.integers(0, n_vars - 1))
        matrix[i, j] = BAD_ENTRIES[bad]
    layout = "canonical" if storage in ("dense", "dask", "masked") else None
    layout = layout or draw(st.sampled_from(LAYOUTS))
    return values, stored(matrix.astype(dtype), storage, layout)


@st.composite
def cases(draw, problems: bool = True, empty_axes: bool = True, bad_count: bool = False) -> Case:
    """A small AnnData with counts in X or a layer, and the arguments to use them.

    ``problems``: may hold one bad count, duplicated names, bad size factors, a bad mask,
    a wrong layer, a bad spike-in column, or (``empty_axes``) no cells or no genes.
    ``bad_count``: exactly one bad count (NaN, inf, negative or fractional).
    """
    empty = None
    if problems and empty_axes:
        empty = draw(st.sampled_from([None] * 18 + ["obs", "var"]))
    n_obs = 0 if empty == "obs" else draw(st.integers(3, 40))
    n_vars = 0 if empty == "var" else draw(st.integers(1, 6))
    values, counts = draw(counts_matrices(n_obs, n_vars, problems, bad_count))

    spike = np.array(draw(st.lists(st.booleans(), min_size=n_vars, max_size=n_vars)), dtype=bool)
    var_names = [f"ERCC-{j:05d}" if s else f"g{j}" for j, s in enumerate(spike)]
    obs_names = [f"c{i}" for i in range(n_obs)]
    if n_obs >= 2 and one_in(draw, 8, problems):
        obs_names[-1] = obs_names[0]
    if n_vars >= 2 and one_in(draw, 8, problems):
        var_names[-1] = var_names[0]

    # where the counts are, and the layer argument
    in_layer = draw(st.booleans())
    layers = {"counts": counts} if in_layer else {}
    if in_layer:
        X = None if draw(st.booleans()) else (values / 2 + 0.25).astype(np.float32)
    else:
        X = counts
    layer = "counts" if in_layer else None
    if one_in(draw, 8, problems):
        layer = draw(st.sampled_from([None, "nope"] if in_layer else ["nope", "counts"]))

    # .var: spike-in flags and a gene mask column
    sel = np.array(draw(st.lists(st.booleans(), min_size=n_vars, max_size=n_vars)), dtype=bool)
    if n_vars and not sel.any():
        sel[draw(st.integers(0, n_vars - 1))] = True
    var = pd.DataFrame({"gene_ids": [f"id{j}" for j in range(n_vars)], "use": sel}, index=var_names)
    var["use_str"] = np.where(sel, "True", "False")
    var["use_nullable"] = pd.array(sel, dtype="boolean")
    with_na = pd.array(sel, dtype="boolean")
    if n_vars:
        with_na[0] = pd.NA
    var["use_na"] = with_na
    spike_kinds = ["bool", "bool", "bool", "nullable", "absent"]
    spike_kind = draw(
        st.sampled_from(spike_kinds + (["string", "nullable_na"] if problems else []))
    )
    if spike_kind == "bool":
        var["spike_in"] = spike
    elif spike_kind == "nullable":
        var["spike_in"] = pd.array(spike, dtype="boolean")
    elif spike_kind == "string":
        var["spike_in"] = spike.astype(str)
    elif spike_kind == "nullable_na":
        flags = pd.array(spike, dtype="boolean")
        if n_vars:
            flags[0] = pd.NA
        var["spike_in"] = flags

    # the gene mask argument
    mask_kind = "none"
    if n_vars:
        bad_mask = one_in(draw, 4, problems)
        mask_kind = draw(st.sampled_from(BAD_MASKS if bad_mask else ("none", *VALID_MASKS)))
    gene_order = draw(st.permutations(range(n_vars)))
    mask = {
        "none": None,
        "column": "use",
        "nullable_column": "use_nullable",
        "str_column": "use_str",
        "nullable_column_na": "use_na",
        "missing_column": "nope",
        "bool_array": sel,
        "bool_list": [bool(b) for b in sel],
        "wrong_length": np.append(sel, True),
        "bool_series": pd.Series(sel, index=var_names).iloc[gene_order],
        "nullable_series": pd.Series(pd.array(sel, dtype="boolean"), index=var_names).iloc[
            gene_order
        ],
        "nullable_series_na": pd.Series(with_na, index=var_names).iloc[gene_order],
        "bool_series_missing": pd.Series(sel, index=var_names).iloc[gene_order][1:],
        "names": [var_names[j] for j in gene_order if sel[j]],
        "unknown_names": [*(var_names[j] for j in gene_order if sel[j]), "nope"],
        "positions": np.flatnonzero(sel),
        "nothing": np.zeros(n_vars, dtype=bool),
    }[mask_kind]
    mask_sel = None
    if mask_kind in VALID_MASKS:
        mask_sel = sel if mask_kind != "none" else np.ones(n_vars, dtype=bool)

    # size factors: the .obs column and the argument
    base = draw(hnp.arrays(np.float64, n_obs, elements=st.floats(0.25, 4.0)))
    modes = ["key", "key", "key", "array", "array", "list", "series", "series", "none"]
    bad_modes = ["series_missing", "absent_key", "short", "masked", "2d"]
    sf_mode = "key"
    if n_obs:
        sf_mode = draw(st.sampled_from(bad_modes if one_in(draw, 4, problems) else modes))
    sf_kind = "ok"
    if sf_mode in ("key", "array", "list", "series"):
        bad_values = list(SF_LABEL) + list(BAD_SF_TYPES)
        valid = list(VALID_SF)
        if sf_mode in ("array", "list"):
            bad_values = [k for k in bad_values if k not in PANDAS_ONLY_SF]
            valid = [k for k in valid if k not in PANDAS_ONLY_SF]
        else:
            bad_values.append("nullable_na")
        if n_obs and one_in(draw, 3, problems):
            sf_kind = draw(st.sampled_from(bad_values))
        else:
            sf_kind = draw(st.sampled_from(valid))
    sf_pos = draw(st.integers(0, n_obs - 1)) if n_obs else 0
    column = sf_column(sf_kind, base, sf_pos)
    cell_order = list(draw(st.permutations(range(n_obs))))
    obs = pd.DataFrame(
        {"batch": pd.Categorical(["a", "b"] * (n_obs // 2) + ["a"] * (n_obs % 2))},
        index=obs_names,
    )
    if sf_mode != "absent_key":
        obs["size_factors"] = column
    shuffled = pd.Series(column, index=obs_names).iloc[cell_order]
    sf = {
        "key": "size_factors",
        "absent_key": "size_factors",
        "none": None,
        "array": np.asarray(column),
        "list": np.asarray(column).tolist(),
        "short": base[:-1],
        "masked": np.ma.masked_array(base, mask=base > 2),
        "2d": base[:, None],
        "series": shuffled,
        "series_missing": shuffled.iloc[1:],
    }[sf_mode]
    sf_values = sf_floats(sf_kind if sf_kind in VALID_SF else "ok", base)

    with quiet():
        adata = ad.AnnData(X=X, obs=obs, var=var, layers=layers)
    adata.obsm["X_pca"] = np.arange(2.0 * n_obs).reshape(n_obs, 2)
    adata.uns["note"] = {"kept": np.arange(3)}
    return Case(
        adata,
        layer,
        mask,
        mask_kind,
        mask_sel,
        spike_kind,
        sf,
        sf_mode,
        sf_kind,
        sf_pos,
        sf_values,
    )
