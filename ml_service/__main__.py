"""The command line: `python -m ml_service COMMAND` (`--help` on any of them).

One function per command; the work itself is in ml_service/jobs.py (and the demo in
ml_service/demo.py). A failure is one line on stderr, never a traceback: exit code 2 when the
command line or the configuration is wrong, 1 when the run failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import timezone
from pathlib import Path

import click
import psycopg

from ml_service import SERVICE_NAME, __version__
from settings import ConfigError, Settings, logging_options

log = logging.getLogger("ml_service.cli")

DEFAULT_MOVIELENS = Path("data/ml-latest-small")


class Failed(click.ClickException):
    """The run failed (exit code 1); the message is the whole story."""

    exit_code = 1


class Misconfigured(click.ClickException):
    """The configuration or the command line is wrong (exit code 2)."""

    exit_code = 2


def settings() -> Settings:
    """Settings from the environment; Misconfigured naming what is wrong."""
    try:
        return Settings.from_env()
    except ConfigError as error:
        raise Misconfigured(f"configuration error: {error}") from None


def show_progress() -> bool:
    """Progress bars on a terminal only, and not when logs are JSON for a machine to read."""
    return sys.stderr.isatty() and os.environ.get("LOG_FORMAT", "text") != "json"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=SERVICE_NAME)
def cli() -> None:
    """ml-service: hybrid media recommendations. The commands read the database URLs
    (USER_DB_URL, CATALOG_DB_URL, ENGAGEMENT_DB_URL, MODEL_DB_URL) and settings from the
    environment; see docs/configuration.md."""


@cli.command("init-db")
@click.option(
    "--sources",
    is_flag=True,
    help="Also create the source tables (user_db, catalog_db, engagement_db) that are missing: "
    "for development and demos; production source databases belong to their own services.",
)
def init_db(sources: bool) -> None:
    """Create the model schema `ml` (idempotent); needs only the rights of docs/source-databases.md."""
    from database.schema import SchemaError
    from ml_service.jobs import init_db as run_init

    try:
        applied = run_init(settings().databases, sources=sources)
    except SchemaError as error:
        raise Failed(str(error)) from None
    for filename in applied:
        click.echo(f"applied {filename}")


@cli.command("import-movielens")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def import_movielens(directory: Path) -> None:
    """Load a MovieLens directory (ratings.csv, movies.csv) into the source databases."""
    from services.movielens_import import import_movielens as run_import

    try:
        summary = run_import(directory, settings().databases, progress=show_progress())
    except FileNotFoundError as error:
        missing = Path(error.filename).name
        raise Misconfigured(f"{directory} is not a MovieLens directory: {missing} is missing") from None
    click.echo(f"imported {summary.media} media, {summary.users} users, {summary.interactions} interactions")


@cli.command("generate-synthetic")
@click.option("--users", type=click.IntRange(1), default=162_000, show_default=True)
@click.option("--media", type=click.IntRange(1), default=59_000, show_default=True)
@click.option("--interactions", type=click.IntRange(1), default=25_000_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--replace", is_flag=True, help="Empty the source tables first instead of refusing.")
def generate_synthetic(users: int, media: int, interactions: int, seed: int, replace: bool) -> None:
    """Write a synthetic data set of production size (MovieLens-25M by default) into empty databases."""
    from services.synthetic import generate_synthetic as generate

    try:
        summary = generate(
            settings().databases, users, media, interactions, seed, replace=replace, progress=show_progress()
        )
    except ValueError as error:
        raise Misconfigured(str(error)) from None
    click.echo(
        f"generated {summary.media} media, {summary.users} users, {summary.interactions} interactions "
        f"({summary.pairs} user-media pairs)"
    )


@cli.command()
@click.option(
    "--force", is_flag=True, help="Publish even a model with no media, or one that shrank more than MODEL_MAX_SHRINK."
)
@click.option("--engine", type=click.Choice(["numpy", "spark"]), default="numpy", show_default=True,
              help="Build in this process (numpy) or on Apache Spark (requirements-spark.txt); the same model.")
@click.option("--master", help="Spark master URL (--engine spark; default: spark-submit's --master, "
                                "else local[*]: this machine's cores).")
@click.option("--conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
              help="A Spark setting, as spark-submit's --conf (--engine spark; repeatable), "
                   "e.g. --conf spark.driver.memory=8g.")
@click.option("--source", type=click.Choice(["jdbc", "parquet"]),
              help="--engine spark reads engagement_db's interactions over JDBC (the default), "
                   "or a Parquet snapshot of the interaction table: --source parquet PATH.")
@click.option("--no-publish", "no_publish", is_flag=True,
              help="Keep the new version without serving it: for an experiment's variant (model=VERSION), "
                   "or to serve later with `publish VERSION`.")
@click.argument("path", required=False)
def refresh(force: bool, engine: str, master: str | None, spark_conf: tuple[str, ...], source: str | None,
            no_publish: bool, path: str | None) -> None:
    """Rebuild the neighbours and popularity and publish them as a new model version."""
    from ml_service.jobs import run_refresh, spark_engine
    from services.refresh import RefreshFailed

    if engine == "numpy" and (master or spark_conf or source or path):
        raise click.UsageError("--master, --conf, --source and PATH are for --engine spark")
    malformed = [item for item in spark_conf if "=" not in item or not item.split("=", 1)[0].strip()]
    if malformed:
        raise click.UsageError(f"--conf takes KEY=VALUE, not {malformed[0]!r}")
    if source == "parquet" and not path:
        raise click.UsageError("--source parquet needs the snapshot's PATH")
    if path and source != "parquet":
        raise click.UsageError(f"unexpected argument {path!r} (a PATH goes with --source parquet)")
    if path and "://" not in path and not Path(path).exists():
        raise Misconfigured(f"{path} does not exist (--source parquet PATH: a Parquet snapshot of the interaction table)")
    config = settings()
    try:
        if engine == "spark":
            conf = dict(item.split("=", 1) for item in spark_conf)
            with spark_engine(config, master, parquet=path, conf=conf) as spark:
                version = run_refresh(config, progress=show_progress(), force=force, engine=spark,
                                      publish=not no_publish)
        else:
            version = run_refresh(config, progress=show_progress(), force=force, publish=not no_publish)
    except RefreshFailed as error:
        raise Failed(str(error)) from None
    if no_publish:
        click.echo(f"kept model version {version}, not serving (serve it: publish {version}; "
                   f"try it on some users: experiments start NAME --variant control --variant new:model={version})")
    else:
        click.echo(f"published model version {version}")


@cli.command()
def models() -> None:
    """List the kept models (newest first) and which one serves."""
    from ml_service.jobs import model_history

    builds, serving = model_history(settings())
    if not builds:
        click.echo("no model is published yet (run: python -m ml_service refresh)")
        return
    click.echo(f"{'':2}{'version':>7}  {'built at (UTC)':19}  {'media':>8}  {'users':>9}  {'interactions':>12}  "
               f"{'build':>7}  {'NDCG@10':>7}  {'recall@10':>9}  settings")
    for info in builds:
        quality = info.validation or {}
        click.echo(
            f"{'*' if info.version == serving else '':2}{info.version:>7}  "
            f"{info.built_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}  {info.media_count:>8,}  "
            f"{info.users_count:>9,}  {info.interactions_count:>12,}  {info.build_seconds:>6.1f}s  "
            f"{_figure(quality.get('ndcg')):>7}  {_figure(quality.get('recall')):>9}  {_settings_text(info.settings)}"
        )
    click.echo("* serving (workers switch within MODEL_RELOAD_INTERVAL). NDCG@10 and recall@10: on the refresh's "
               "validation slice; settings: what it built and serves the version with (* tuned, the others given)")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _settings_text(recorded: dict | None) -> str:
    """A version's recorded settings in one short line (services/model_settings.py)."""
    if not recorded:
        return "-"
    tuned = set(recorded.get("tuned", ()))

    def mark(name: str) -> str:
        return "*" if name in tuned else ""

    return (f"lambda={recorded['ease_lambda']:g}{mark('ease_lambda')} k={recorded['neighbours_k']}{mark('neighbours_k')} "
            f"blend={recorded['content_weight']:g}/{recorded['collaborative_weight']:g}{mark('blend')} "
            f"{recorded['history_weighting']}{mark('history_weighting')}")


@cli.command()
@click.argument("version", type=int, required=False)
def rollback(version: int | None) -> None:
    """Serve an earlier kept model: VERSION, or by default the one before the serving one."""
    from database.model_repository import NoSuchModel, RefreshInProgress
    from ml_service.jobs import rollback as run_rollback

    try:
        previous, serving = run_rollback(settings(), version)
    except (NoSuchModel, RefreshInProgress) as error:
        raise Failed(str(error)) from None
    click.echo(f"serving model version {serving} instead of {previous}; workers switch within MODEL_RELOAD_INTERVAL")


@cli.command()
@click.argument("version", type=click.IntRange(1))
def publish(version: int) -> None:
    """Serve the kept model VERSION (e.g. one built by `refresh --no-publish`) to every user."""
    from database.model_repository import NoSuchModel, RefreshInProgress
    from ml_service.jobs import publish as run_publish

    try:
        previous, serving = run_publish(settings(), version)
    except (NoSuchModel, RefreshInProgress) as error:
        raise Failed(str(error)) from None
    instead = f" instead of {previous}" if previous is not None else ""
    click.echo(f"serving model version {serving}{instead}; workers switch within MODEL_RELOAD_INTERVAL")


@contextlib.contextmanager
def experiment_errors():
    """The experiment commands' failures as one line each."""
    from database.experiment_repository import ExperimentExists, NoSuchExperiment
    from services.experiments.assignment import ExperimentError

    try:
        yield
    except ExperimentError as error:
        raise Misconfigured(str(error)) from None
    except (ExperimentExists, NoSuchExperiment) as error:
        raise Failed(str(error)) from None
    except psycopg.errors.UndefinedTable:
        raise Failed("the model database has no experiment tables; run: python -m ml_service init-db") from None


@cli.group()
def experiments() -> None:
    """A/B experiments: users split into variants by a hash of their id, each variant served with
    its own settings; what was shown is recorded, and `report` attributes what users did after.
    See docs/experiments.md."""


def _split(ctx, param, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not comma-separated numbers, e.g. 50,50") from None


@experiments.command("start")
@click.argument("name")
@click.option("--variant", "variants", multiple=True, required=True, metavar="NAME[:KEY=VALUE,...]",
              help="A variant (repeat; the first is the control). KEY: CONTENT_WEIGHT, COLLABORATIVE_WEIGHT, "
                   "HISTORY_WEIGHTING, diversity, popular_only (true), model (a kept version).")
@click.option("--split", callback=_split, metavar="P1,P2,...", help="Shares of the variants (default: equal).")
@click.option("--salt", help="Hash salt of the assignment (default: a new random one; the same salt and "
                             "users give the same variants).")
def experiments_start(name: str, variants: tuple[str, ...], split: list[float] | None, salt: str | None) -> None:
    """Start experiment NAME; every worker serves it within MODEL_RELOAD_INTERVAL."""
    from ml_service.jobs import start_experiment

    with experiment_errors():
        experiment = start_experiment(settings(), name, list(variants), split, salt)
    shares = ", ".join(f"{v.name} {v.share:.0%}" for v in experiment.variants)
    click.echo(f"started experiment {experiment.name} ({shares}); workers serve it within MODEL_RELOAD_INTERVAL")


@experiments.command("list")
def experiments_list() -> None:
    """List the experiments, the most recent first."""
    from ml_service.jobs import list_experiments

    with experiment_errors():
        found = list_experiments(settings())
    if not found:
        click.echo("no experiments yet (start one: python -m ml_service experiments start NAME --variant ...)")
        return
    for experiment in found:
        state = "running" if experiment.stopped_at is None else \
            f"stopped {experiment.stopped_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"
        click.echo(f"{experiment.name}  started {experiment.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"
                   f" UTC  {state}")
        for i, variant in enumerate(experiment.variants):
            overrides = ",".join(f"{k}={v}" for k, v in variant.overrides.items())
            overrides = overrides or ("(control)" if i == 0 else "(no overrides)")
            click.echo(f"  {variant.name:<16} {variant.share:>6.1%}  {overrides}")


@experiments.command("stop")
@click.argument("name")
def experiments_stop(name: str) -> None:
    """Stop experiment NAME: every user gets the default settings again (its report stays)."""
    from ml_service.jobs import stop_experiment

    with experiment_errors():
        stop_experiment(settings(), name)
    click.echo(f"stopped experiment {name}; workers stop serving it within MODEL_RELOAD_INTERVAL")


@experiments.command("report")
@click.argument("name")
@click.option("--window", type=click.FloatRange(0, min_open=True), default=24.0, show_default=True,
              help="Hours after a page is shown within which a like or watch of its media counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for report.md, report.json and conversion.svg.")
def experiments_report(name: str, window: float, as_json: bool, out: Path | None) -> None:
    """Per variant: exposed users, impressions, conversions with 95 % intervals, lift and p-value
    against the control, and the split check."""
    import json

    from ml_service.jobs import experiment_report
    from services.experiments.report import text, write

    with experiment_errors():
        result = experiment_report(settings(), name, window)
    if out is not None:
        try:
            write(result, out)
        except OSError as error:
            raise Failed(f"cannot write the report to {out}: {error.strerror or error}") from None
    click.echo(json.dumps(result, indent=2) if as_json else text(result), nl=as_json)
    for warning in result["warnings"]:
        if as_json:
            click.echo(f"WARNING: {warning}", err=True)


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_MOVIELENS,
              show_default=True, help="MovieLens directory to import.")
@click.option("--pgdata", type=click.Path(file_okay=False, path_type=Path), default=Path(".demo/pgdata"),
              show_default=True, help="Data directory of the embedded PostgreSQL.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="Port to serve on.")
@click.option("--yes", is_flag=True, help="Import into the databases named by *_DB_URL even when they hold data.")
def demo(data: Path, pgdata: Path, host: str, port: int, yes: bool) -> None:
    """Import MovieLens into an embedded PostgreSQL (or empty *_DB_URL databases), refresh, serve."""
    from ml_service.demo import DemoRefused, run_demo

    try:
        code = run_demo(data, pgdata, host, port, yes)
    except DemoRefused as error:
        raise Misconfigured(str(error)) from None
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_MOVIELENS,
              show_default=True, help="A MovieLens directory.")
@click.option("--k", type=click.IntRange(1), default=10, show_default=True,
              help="List length the metrics are computed at.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for metrics.json, report.md and ndcg.png.")
@click.option("--pgdata", type=click.Path(file_okay=False, path_type=Path), default=Path(".eval/pgdata"),
              show_default=True, help="Embedded server directory (unless USER_DB_URL names a server).")
@click.option("--test-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Share of each user's newest ratings held out.")
@click.option("--users", "user_sample", type=click.Choice(["all", "odd", "even"]), default="all", show_default=True,
              help="Evaluate every user, or only those with an odd or an even id.")
@click.option("--validation", is_flag=True,
              help="Score on a validation split cut from the train ratings (the test ratings are never read): "
                   "for choosing settings.")
def evaluate(data: Path, k: int, out: Path | None, pgdata: Path, test_share: float, user_sample: str,
             validation: bool) -> None:
    """Offline evaluation of the service against baselines on a temporal split (requirements-eval.txt)."""
    from ml_service.jobs import evaluate as run_evaluation

    run_evaluation(data, k, out, pgdata, progress=show_progress(), test_share=test_share, user_sample=user_sample,
                   validation=validation)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code. Every failure is one line on stderr."""
    try:
        level, log_format = logging_options(os.environ)
    except ConfigError as error:
        click.echo(f"{SERVICE_NAME}: configuration error: {error}", err=True)
        return 2
    configure_logging(level, log_format)
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), "")
    prefix = f"{SERVICE_NAME} {command}".strip()
    try:
        cli.main(args, prog_name="python -m ml_service", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version, or a command's own exit code
        return done.exit_code
    except click.exceptions.Abort:
        click.echo(f"{prefix}: interrupted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as error:  # no command: the help, then exit 2
        click.echo(error.format_message(), err=True)
        return 2
    except click.UsageError as error:
        click.echo(f"{prefix}: {error.format_message()} (see --help)", err=True)
        return 2
    except click.ClickException as error:
        click.echo(f"{prefix}: {error.format_message()}", err=True)
        return error.exit_code
    except psycopg.OperationalError as error:
        click.echo(f"{prefix}: database error: {_first_line(error)}", err=True)
        return 1
    except Exception as error:  # a bug: the one line says so, the log has the traceback at DEBUG
        log.debug("unexpected error", exc_info=True)
        click.echo(f"{prefix}: unexpected error: {type(error).__name__}: {_first_line(error)} "
                   "(LOG_LEVEL=DEBUG shows the traceback)", err=True)
        return 1
    return 0


def configure_logging(level: str, log_format: str) -> None:
    """Offline commands log to stderr as text lines, or as the service's JSON lines (LOG_FORMAT=json)."""
    if log_format == "json":
        from ml_service.request_log import configure_logging as json_logging

        json_logging(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The pool warns of each failed connection attempt over several lines; a command that
    # cannot connect fails with one line saying so.
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, logging.getLogger().level))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
