"""The ``belong`` command line. Each area registers its commands from its own module (``register(app, bench)``).

Exit codes: 0 success, 2 bad input (the message names the field and the problem), 1 unexpected failure.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/implicit load (STACK_NOTES: BLAS threads)
os.environ.setdefault("MKL_NUM_THREADS", "1")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from belong.errors import BelongError  # noqa: E402

app = typer.Typer(
    name="belong",
    help="Recommendation engine for community platforms: communities to join, people you may know, content.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench = typer.Typer(help="Benchmarks: JSON figures with a same-run baseline.", no_args_is_help=True)
app.add_typer(bench, name="bench")

err_console = Console(stderr=True)

# Command modules. Each one owns its commands; importing registers them.
from belong.cli import bench_models as _bench_models  # noqa: E402
from belong.cli import data as _data  # noqa: E402
from belong.cli import demo as _demo  # noqa: E402
from belong.cli import evaluate as _evaluate  # noqa: E402
from belong.cli import experiment as _experiment  # noqa: E402
from belong.cli import features as _features  # noqa: E402
from belong.cli import forget as _forget  # noqa: E402
from belong.cli import recommend as _recommend  # noqa: E402
from belong.cli import scale as _scale  # noqa: E402
from belong.cli import serve as _serve  # noqa: E402
from belong.cli import soak as _soak  # noqa: E402
from belong.cli import store as _store  # noqa: E402
from belong.cli import token as _token  # noqa: E402
from belong.cli import train as _train  # noqa: E402

for _mod in (_store, _data, _evaluate, _recommend, _demo, _features, _serve, _train, _token, _forget, _soak,
             _experiment, _bench_models, _scale):
    _mod.register(app, bench)

from belong.cli import bench_experiments as _bench_experiments  # noqa: E402

_bench_experiments.register(app, bench)

from belong.cli import ope as _ope  # noqa: E402

_ope.register(app, bench)

from belong.cli import loop as _loop  # noqa: E402

_loop.register(app, bench)

from belong.cli import candidates as _candidates  # noqa: E402

_candidates.register(app, bench)

from belong.cli import bench_replicas as _bench_replicas  # noqa: E402

_bench_replicas.register(app, bench)

from belong.cli import batch as _batch  # noqa: E402

_batch.register(app, bench)


def main() -> None:
    try:
        # without standalone mode click *returns* the code of a ``typer.Exit(code)`` instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except BelongError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
