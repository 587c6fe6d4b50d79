"""``belong bench replicas``: event-stream propagation on Redis Streams and NATS JetStream, and ``belong serve
--workers 2`` against ``--workers 1`` in the same run (:mod:`belong.bench.replicas`)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("replicas")
    def bench_replicas_cmd(
        users: int = typer.Option(20_000, help="Simulated users."),
        communities: int = typer.Option(4_000, help="Simulated communities."),
        store: Path = typer.Option(Path(".belong/bench-replicas"), help="Where the simulated store is kept."),
        redis: str = typer.Option("redis://127.0.0.1:6379/0", help="Redis: online features and the event stream."),
        nats: str = typer.Option("nats://127.0.0.1:4222", help="NATS with JetStream (propagation compared)."),
        rates: str = typer.Option("250,500,1000,1500,2000,2500,3000,4000,5000", help="Request rates to try."),
        seconds: float = typer.Option(6.0, help="Seconds at each rate."),
        working_set: int = typer.Option(1_000, help="Distinct users of the load."),
        p99_ms: float = typer.Option(25.0, help="Latency budget a rate must hold."),
        seed: int = typer.Option(0, help="Random seed."),
        messages: int = typer.Option(2_000, help="Messages per broker in the propagation test."),
        message_rate: float = typer.Option(500.0, help="Messages per second in the propagation test."),
        events_per_s: float = typer.Option(20.0, help="Events posted per second during the load."),
        json_out: bool = typer.Option(False, "--json", help="Print only the JSON result."),
        models: Path = typer.Option(None, "--models", help="Serve this belong train output (its newest artifact and "
                                    "the snapshot beside it) instead of STORE/models (trained when missing)."),
    ) -> None:
        """Replicas: broker propagation (p50/p99) and throughput of 2 workers against 1, same run."""
        from belong.bench.replicas import bench_replicas
        from belong.errors import ValidationError

        try:
            rate_list = sorted(float(r) for r in rates.split(",") if r.strip())
        except ValueError:
            raise ValidationError("rates", f"must be comma-separated numbers, got {rates!r}") from None
        if not rate_list or rate_list[0] <= 0 or messages < 1 or message_rate <= 0 or events_per_s <= 0:
            raise ValidationError("rates", "rates, messages, message-rate and events-per-s must be positive")
        result = bench_replicas(users, communities, store, redis, nats, rate_list, seconds, working_set, p99_ms,
                                seed, messages, message_rate, events_per_s, models=models)
        typer.echo(orjson.dumps(result, option=0 if json_out else orjson.OPT_INDENT_2).decode())
