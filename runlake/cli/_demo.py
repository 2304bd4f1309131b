"""`runlake demo`: train a small real sweep on CPU and fill the default store."""

from __future__ import annotations

from runlake.cli._common import subcommand


def register(sub) -> None:
    p = subcommand(
        sub, "demo",
        "train MLPs on scikit-learn digits (one unstable, one crashed and resumed), ingest, analyse",
        "runlake demo            # writes ./runlake-data/digits/... and ./runlake-data/runlake.duckdb",
    )
    p.add_argument("--root", help="storage root (default $RUNLAKE_DIR or ./runlake-data)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        from runlake.schemas.errors import ConfigError

        raise ConfigError(
            f"the demo needs {exc.name}: pip install 'runlake[all]' torch==2.13.0"
        ) from None
    from runlake.demo import main

    return main(args.root)
