"""The ``scmix`` command: fit mixtures to an ``.h5ad`` (or the embedded demo) from the shell.

Input errors (a missing file, an unknown key, bad counts, an output that cannot be
written: everything scmix raises as :class:`~scmix._core.errors.InputError`) print one
line to stderr and exit with status 2, before the fit where they can be known before
it; nothing is written then. A failed write prints one line and exits with status 1,
leaving any earlier file at the output path as it was (files are written to a
temporary file beside it and then renamed). Any other exception is a bug: it keeps
its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from functools import partial
from pathlib import Path

from ._core.errors import InputError
from ._io import atomic_path, check_writable_folder

SIZE_FACTOR_METHODS = ("spike_in", "library", "median_ratio")
EXIT_USER_ERROR = 2
EXIT_WRITE_ERROR = 1


class UserError(InputError):
    """A problem with the user's input: reported in one line, exit status 2."""


class WriteError(Exception):
    """An output could not be written (disk full, file-size limit, ...): one line, status 1."""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (status 2), like every other user error."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scmix",
        description="Mixtures of negative binomials (or Poissons) with size-factor offsets "
        "for single-cell counts: is a gene bimodal, or are the size factors?",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    fit = commands.add_parser(
        "fit",
        help="fit a K-component mixture to every selected gene and write the annotated AnnData",
        description="Fit a K-component count mixture with size-factor offsets to every "
        "selected gene (scmix.tl.fit_mixture), print a summary and write the AnnData "
        "with the results in .var, .layers (responsibilities) and .uns.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_argument(
        "input",
        nargs="?",
        metavar="INPUT.h5ad",
        help="cells x genes AnnData with raw counts; without it, the embedded demo data "
        "(simulated, calibrated on the Svensson 2017 ERCC sample 20312)",
    )
    fit.add_argument(
        "-o",
        "--output",
        metavar="OUT.h5ad",
        help="where to write the annotated AnnData (default: INPUT.scmix.h5ad beside the "
        "input, or scmix_demo.h5ad in the current folder for the demo)",
    )
    fit.add_argument("--layer", help="layer holding the counts (default: X)")
    fit.add_argument(
        "--size-factors",
        default="auto",
        metavar="KEY|spike_in|library|median_ratio|none|auto",
        help="an .obs column; a method of scmix.pp.size_factors (computed into "
        ".obs['size_factors']); 'none' for no offsets; 'auto' uses .obs['size_factors'] "
        "when present, else spike_in when the data have ERCC spike-ins, else library",
    )
    fit.add_argument(
        "--exclude-zero-cells",
        action="store_true",
        help="drop cells whose computed size factor is zero (otherwise an error names them)",
    )
    fit.add_argument(
        "--genes",
        default="all",
        metavar="all|spike_in|FILE",
        help="genes to fit: all, the spike-ins (names starting with ERCC-, or "
        ".var['spike_in']), or a text file with one gene name per line",
    )
    fit.add_argument(
        "--covariates",
        nargs="+",
        metavar="COLUMN",
        help=".obs columns whose effects on the mean the components of a gene share "
        "(e.g. batch): a shift between batches is then not a second component",
    )
    fit.add_argument("-k", "--n-components", type=int, default=2, metavar="K", help="K")
    fit.add_argument("--family", choices=("nb", "poisson"), default="nb", help="count model")
    fit.add_argument(
        "--n-init", type=int, default=3, metavar="N", help="label-based starts per gene"
    )
    fit.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the starts")
    fit.add_argument("--key", default="scmix", help="prefix of the result keys (key_added)")
    fit.add_argument(
        "--plots",
        metavar="DIR",
        help="also write PNG figures there: the bimodality overview and the top genes' mixtures",
    )
    fit.add_argument("--top", type=int, default=10, metavar="N", help="genes listed / plotted")
    fit.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no information lines"
    )
    return parser


def _load(path: str | None):
    import anndata

    from . import datasets

    if path is None:
        return datasets.demo(), "the embedded demo data"
    file = Path(path)
    if not file.is_file():
        raise UserError(f"input file {path!r} does not exist.")
    try:
        return anndata.read_h5ad(file), str(file)
    except Exception as error:  # h5py / anndata raise many types for a bad file
        raise UserError(f"cannot read {path!r} as an .h5ad file: {error}") from error


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    if args.input is None:
        return Path("scmix_demo.h5ad")
    source = Path(args.input)
    return source.with_name(source.name.removesuffix(".h5ad") + ".scmix.h5ad")


def _check_output(output: Path) -> None:
    """Before any work: the output is not a folder and its folder takes a new file."""
    if output.is_dir():
        raise UserError(f"the output {str(output)!r} is a folder: give a file name (-o OUT.h5ad).")
    if not output.parent.is_dir():
        raise UserError(f"the folder of the output {str(output)!r} does not exist.")
    try:
        check_writable_folder(output.parent)
    except OSError as error:
        raise UserError(
            f"cannot write the output {str(output)!r}: its folder takes no new file "
            f"({error.strerror or error})."
        ) from None


def _check_plots_folder(folder: Path) -> None:
    """Before any work: ``--plots`` is a folder (or can become one) that takes files."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--plots {str(folder)!r}: {str(existing)!r} is not a folder.")
    try:
        check_writable_folder(existing)
    except OSError as error:
        raise UserError(
            f"--plots {str(folder)!r}: the folder {str(existing)!r} takes no new file "
            f"({error.strerror or error})."
        ) from None


def _write(path: Path, write) -> None:
    """``write(temporary_path)``, then the temporary file replaces ``path``."""
    try:
        with atomic_path(path) as temporary:
            write(temporary)
    except OSError as error:
        raise WriteError(
            f"writing {str(path)!r} failed ({error.strerror or error}); "
            "any earlier file there is unchanged."
        ) from error


def _has_spike_ins(adata) -> bool:
    if "spike_in" in adata.var.columns:
        return bool(adata.var["spike_in"].any())
    return bool(adata.var_names.str.startswith("ERCC-").any())


def _ensure_spike_in_flags(adata) -> None:
    from . import pp

    if "spike_in" not in adata.var.columns:
        if not adata.var_names.str.startswith("ERCC-").any():
            raise UserError(
                "no spike-ins: no gene name starts with 'ERCC-' and .var has no 'spike_in' column."
            )
        pp.flag_spike_ins(adata)


def _size_factors(adata, args) -> tuple[str | None, str]:
    """The ``size_factors`` argument of fit_mixture (computed when a method is named)
    and a description for the summary."""
    from . import pp

    choice = args.size_factors
    if choice == "none":
        return None, "none (no offsets)"
    if choice == "auto":
        if "size_factors" in adata.obs.columns:
            return "size_factors", ".obs['size_factors'] of the input"
        choice = "spike_in" if _has_spike_ins(adata) else "library"
    if choice in SIZE_FACTOR_METHODS:
        if choice == "spike_in" or _has_spike_ins(adata):
            _ensure_spike_in_flags(adata)  # library sums the other genes
        pp.size_factors(
            adata, method=choice, layer=args.layer, exclude_zero=args.exclude_zero_cells
        )
        return "size_factors", f"{choice} (scmix.pp.size_factors, in .obs['size_factors'])"
    if choice not in adata.obs.columns:
        raise UserError(
            f"--size-factors {choice!r} is neither a method ({', '.join(SIZE_FACTOR_METHODS)}, "
            f"none, auto) nor a column of .obs (columns: {list(adata.obs.columns)})."
        )
    return choice, f".obs[{choice!r}]"


def _genes(adata, choice: str):
    """The ``mask_var`` argument of fit_mixture."""
    if choice == "all":
        return None
    if choice == "spike_in":
        _ensure_spike_in_flags(adata)
        return "spike_in"
    file = Path(choice)
    if not file.is_file():
        raise UserError(f"--genes {choice!r} is not 'all', 'spike_in' or an existing file.")
    names = [
        line.strip()
        for line in file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if not names:
        raise UserError(f"--genes file {choice!r} lists no gene.")
    return names


def _summary(adata, key: str, source: str, offsets: str, seconds: float, top: int, output) -> str:
    from .get import mixture_df  # the one reader of the per-gene results

    table = mixture_df(adata, key=key)  # fitted genes, largest delta BIC first
    params = adata.uns[key]["params"]
    n_comp = params["n_components"]
    lines = [
        f"scmix fit: {source}, {adata.n_obs} cells x {adata.n_vars} genes",
        f"  model: K={n_comp} {params['family']}, size factors: {offsets}",
        f"  genes fitted: {len(table)}, converged: {int(table['converged'].sum())}, "
        f"called bimodal: {int(table['bimodal'].sum())} (delta BIC > "
        f"{params['bic_threshold']:g}, weights >= {params['min_weight']:g})",
        f"  top {min(top, len(table))} genes by delta BIC:",
    ]
    for name, row in table.head(top).iterrows():
        means = " / ".join(f"{row[f'mean_{k}']:.3g}" for k in range(n_comp))
        weights = " / ".join(f"{row[f'weight_{k}']:.2f}" for k in range(n_comp))
        flag = "bimodal" if row["bimodal"] else ""
        lines.append(
            f"    {name:<16} delta BIC {row['delta_bic']:10.1f}  means {means}  "
            f"weights {weights}  {flag}"
        )
    lines.append(f"  time: {seconds:.1f} s; written to {output}")
    return "\n".join(lines)


def _write_plots(adata, key: str, folder: Path, top: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import pl

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    ax = pl.bimodality(adata, key=key, show=False)
    written.append(folder / f"{key}_bimodality.png")
    _write(written[-1], partial(ax.figure.savefig, dpi=120, bbox_inches="tight"))
    plt.close(ax.figure)
    var = adata.var[adata.var[f"{key}_loglik"].notna()]
    for name in var.sort_values(f"{key}_delta_bic", ascending=False).index[:top]:
        ax = pl.mixture(adata, name, key=key, show=False)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        written.append(folder / f"{key}_mixture_{safe}.png")
        _write(written[-1], partial(ax.figure.savefig, dpi=120, bbox_inches="tight"))
        plt.close(ax.figure)
    return written


def run_fit(args) -> int:
    from . import tl

    if args.n_components < 1:
        raise UserError(f"-k must be at least 1, got {args.n_components}.")
    if args.n_init < 1:
        raise UserError(f"--n-init must be at least 1, got {args.n_init}.")
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}.")
    if args.top < 0:
        raise UserError(f"--top must be a non-negative integer, got {args.top}.")
    output = _output_path(args)
    _check_output(output)
    if args.plots:
        _check_plots_folder(Path(args.plots))
    # on a fresh installation, kernels start compiling on a second core while the data load
    from ._core.fit.warmup import compile_in_background

    compile_in_background(args.family)
    adata, source = _load(args.input)
    mask = _genes(adata, args.genes)
    size_factors, offsets = _size_factors(adata, args)
    start = time.perf_counter()
    tl.fit_mixture(
        adata,
        n_components=args.n_components,
        family=args.family,
        size_factors=size_factors,
        covariates=args.covariates,
        layer=args.layer,
        mask_var=mask,
        n_init=args.n_init,
        random_state=args.seed,
        key_added=args.key,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - start
    _write(output, adata.write_h5ad)
    print(_summary(adata, args.key, source, offsets, seconds, args.top, output))
    if args.plots:
        written = _write_plots(adata, args.key, Path(args.plots), args.top)
        print(f"  plots: {len(written)} PNG files in {args.plots}")
    return 0


def _show_info_lines() -> None:
    """Print the ``scmix`` logger's INFO lines to stderr, as ``scmix: message``."""
    import logging

    logger = logging.getLogger("scmix")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("scmix: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"scmix: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scmix`` console script and of ``python -m scmix``."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if not args.quiet:  # e.g. that the first fit compiles the kernels
        _show_info_lines()
    from .datasets import DatasetNotFoundError

    try:
        return run_fit(args)
    except (InputError, DatasetNotFoundError) as error:
        print(f"scmix: error: {_message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except WriteError as error:
        print(f"scmix: error: {_message(error)}", file=sys.stderr)
        return EXIT_WRITE_ERROR


def _message(error: Exception) -> str:
    return str(error.args[0]) if error.args else repr(error)
