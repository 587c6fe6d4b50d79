"""``belong loop run SCENARIO``: the closed loop (docs/LOOP.md)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    loop_app = typer.Typer(help="The closed loop: simulated people respond to belong, estimates against the truth.",
                           no_args_is_help=True)
    app.add_typer(loop_app, name="loop")

    @loop_app.command("run")
    def run_cmd(
        scenario: str = typer.Argument(..., help="A shipped scenario (belong loop list) or a scenario TOML file."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
        report: Path = typer.Option(None, "--report", help="Write an HTML report here."),
        users: int = typer.Option(None, "--users", help="Override the world's people."),
        communities: int = typer.Option(None, "--communities", help="Override the world's communities."),
        days: int = typer.Option(None, "--days", help="Override the simulated days."),
        seed: int = typer.Option(None, "--seed", help="Override the seed."),
        truth_sample: int = typer.Option(None, "--truth-sample", help="People whose truth is computed (0: all)."),
        partial: Path = typer.Option(None, "--partial", help="After every simulated day, write the result so far "
                                     "(JSON) here: a long run's figures survive an interruption."),
        no_timings: bool = typer.Option(False, "--no-timings", help="Leave wall-clock figures out of the report "
                                        "(then the same seed gives a byte-identical report)."),
        mode: str = typer.Option("http", "--mode", help="http: the people call a real `belong serve` on 127.0.0.1 "
                                 "(trained by `belong train`, retrains hot-swapped); inprocess: served in this "
                                 "process as that server serves (the same lists, no transport); direct: the arms' "
                                 "pipelines on the loop's own state (fastest; other lists)."),
        workdir: Path = typer.Option(None, "--workdir", help="--mode http / inprocess: keep the store, artifacts "
                                     "(and the server log) here (default: a temporary directory, removed at the "
                                     "end)."),
        concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="--mode http: requests in flight."),
    ) -> None:
        """Run a scenario: serve, respond, retrain; estimate each arm's effect and hold it against the truth."""
        from belong.errors import ValidationError
        from belong.loop import report as rep
        from belong.loop import runner
        from belong.loop import scenario as scen

        if mode not in scen.MODES:
            raise ValidationError("mode", f"must be one of {', '.join(scen.MODES)}, got {mode!r}")
        sc = scen.load(scenario).with_overrides(users=users, communities=communities, days=days, seed=seed,
                                                truth_sample=truth_sample, mode=mode)
        backend = None
        if mode == "http":
            from belong.loop.http import factory

            backend = factory(workdir, concurrency)
        elif mode == "inprocess":
            from belong.loop import twin

            backend = twin.factory(workdir)
        with err.status(f"loop {sc.name}: {sc.users} people, {sc.days} days") as status:
            def say(msg: str) -> None:
                status.update(f"loop {sc.name}: {msg}")
                err.log(msg)

            def save(res: dict) -> None:
                tmp = partial.with_suffix(".tmp")
                tmp.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
                tmp.replace(partial)

            result = runner.run_all(sc, say, backend, partial=save if partial is not None else None)
        if report is not None:
            rep.write(result, report, timings=not no_timings)
            err.print(f"report: {report}")
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
            return
        for e in result["effects"]:
            err.print(f"{e['arm']} − {e['control']}: {e['effect']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]"
                      f"  truth {e['true_effect']:+.4f}  bias {e['bias']:+.4f}  covers truth: {e['covers_truth']}")
        for v in result.get("variants", [result]):
            err.print(f"{v['scenario']['unit']}: seconds per simulated day: {v['seconds_per_day']}")

    @loop_app.command("list")
    def list_cmd() -> None:
        """The shipped scenarios."""
        from belong.loop import scenario as scen

        for name in scen.names():
            typer.echo(name)
