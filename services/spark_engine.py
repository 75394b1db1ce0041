"""The refresh job's engine on Apache Spark (`python -m ml_service refresh --engine spark`).

The same model as the in-process engine (services/refresh.NumpyEngine) for the same data and
settings; only the sums that grow with the data are computed on the cluster, and the driver
builds the table from them with the same code (services/neighbours.assemble):

1. the interactions, from engagement_db over JDBC in parallel ranges of `id`, or from a Parquet
   snapshot of the `interaction` table, aggregated per (user, media) as
   EngagementRepository.user_media_pairs does, media not live in the catalog dropped;
2. per media, its liked and its positive users (one number each, to the driver); with
   NEIGHBOURS_USER_CAP, steps 2 to 4 count each user's most recent pairs only;
3. the co-occurrence counts XᵀX of the EASE media (users liking both of a pair): the liked
   pairs' matrices of those media go to the driver and, as files (executor_matrices), to every
   executor, where a task per block of rows counts them (neighbours.co_occurrence_rows, the
   in-process code) and sends the block back dense; the driver computes EASE's weights as
   in-process: the same counts, so the same weights;
4. the damped cosine neighbours of the scale sample and the tail against every media: the
   positive pairs' matrices go to the driver and, as files, to every executor, where a task
   per chunk of those media runs neighbours.cosine_rows (the in-process code) and sends back
   their top k only;
5. the decayed popularity counts per media.

pyspark is optional (requirements-spark.txt): only this module imports it, and only the
`--engine spark` refresh imports this module. The PostgreSQL JDBC driver is a jar on the driver
machine (Debian: libpostgresql-jdbc-java), given to Spark as `spark.jars` (under spark-submit,
as --jars).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import psycopg
from tqdm import tqdm

from services import neighbours
from services.refresh import MICROSECONDS_PER_DAY, RefreshFailed

log = logging.getLogger(__name__)

JDBC_JAR = "/usr/share/java/postgresql.jar"
JDBC_DRIVER = "org.postgresql.Driver"
MISSING = "pyspark is not installed: pip install -r requirements-spark.txt"
# Interaction rows per JDBC partition (each a range of `id` read by one task).
ROWS_PER_PARTITION = 2_000_000
# The EASE co-occurrence's blocks of head rows and the cosine step's chunks of media run in this
# many tasks per core of the cluster (spark.default.parallelism) at least.
PAIR_TASKS_PER_CORE = 4
# Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch, services/refresh.py's `newest`).
POSTGRES_EPOCH_MICROS = 946_684_800 * 1_000_000


def start_session(master: str | None = None, conf: dict[str, str] | None = None, jdbc_jar: str = JDBC_JAR):
    """A SparkSession with the JDBC driver and the Spark settings `conf` on `master`; without
    one, on the master spark-submit was given (--master), or else local[*] (this machine's
    cores). RefreshFailed when pyspark is missing."""
    try:
        from pyspark import cloudpickle
        from pyspark.sql import SparkSession
    except ImportError:
        raise RefreshFailed(MISSING) from None
    # The tasks run services/neighbours.py's functions: sent to the executors by value, so that
    # they need numpy, scipy and tqdm, not this project.
    cloudpickle.register_pickle_by_value(neighbours)
    options = {
        "spark.jars": jdbc_jar,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        **{key.strip(): value.strip() for key, value in (conf or {}).items()},  # the caller's win
    }
    if options["spark.jars"] == jdbc_jar and not os.path.exists(jdbc_jar):
        raise RefreshFailed(
            f"the PostgreSQL JDBC driver {jdbc_jar} is missing (Debian: apt-get install libpostgresql-jdbc-java; "
            "or name the jar with --conf spark.jars=PATH)"
        )
    # The executors' Python (the cosine step runs numpy there), which pyspark reads from
    # PYSPARK_PYTHON: this interpreter, which has the project's packages, unless it names
    # another (a packed environment shipped with spark.archives: docs/spark.md).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines say only that it connects and closes
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    builder = builder.appName(f"ml-service refresh ({socket.gethostname()}, pid {os.getpid()})")
    for key, value in options.items():
        builder = builder.config(key, value)
    with spark_step(f"starting Spark on {master or 'its default master'}"):
        return builder.getOrCreate()


@contextlib.contextmanager
def spark_step(what: str):
    """Turn a Spark (or JDBC, or Py4J) failure while doing `what` into a one-line RefreshFailed."""
    from py4j.protocol import Py4JError, Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except Py4JJavaError as error:
        reason = _first_line(str(error.java_exception.toString()))
        if JDBC_DRIVER in reason and "ClassNotFoundException" in reason:
            # spark-submit starts the driver's JVM before spark.jars is set: the jar must be named to it
            reason += f" (under spark-submit, name the jar with --jars {JDBC_JAR})"
        raise RefreshFailed(f"{what} failed: {reason}; nothing was published") from error
    except (PySparkException, Py4JError) as error:
        raise RefreshFailed(f"{what} failed: {_first_line(str(error))}; nothing was published") from error


def _login() -> str:
    """libpq's default user: the operating system's user name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


def jdbc_options(url: str, environ=os.environ) -> tuple[str, dict[str, str]]:
    """The JDBC URL and connection properties of the libpq URL (or conninfo string) `url`;
    what it leaves out comes from PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE as
    libpq takes it. JDBC connects over TCP only: a Unix socket directory raises RefreshFailed."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise RefreshFailed(f"ENGAGEMENT_DB_URL is not a PostgreSQL URL: {_first_line(str(error))}") from None

    def value(key: str, env: str, default: str | None = None) -> str | None:
        given = params.get(key)
        return str(given) if given not in (None, "") else environ.get(env, default)

    host = value("host", "PGHOST") or value("hostaddr", "PGHOSTADDR")
    if not host or host.startswith("/") or host.startswith("@"):
        raise RefreshFailed(
            f"--source jdbc needs a TCP host in ENGAGEMENT_DB_URL, not a Unix socket ({host or 'the default socket'}); "
            "or use --source parquet PATH"
        )
    if "," in host:
        raise RefreshFailed("--source jdbc takes one host in ENGAGEMENT_DB_URL")
    port = value("port", "PGPORT", "5432")
    user = value("user", "PGUSER") or _login()
    database = value("dbname", "PGDATABASE", user)
    address = f"[{host}]" if ":" in host else host
    properties = {"driver": JDBC_DRIVER, "user": user or ""}
    password = value("password", "PGPASSWORD")
    if password is not None:
        properties["password"] = password
    sslmode = value("sslmode", "PGSSLMODE")
    if sslmode:
        properties["sslmode"] = sslmode
    return f"jdbc:postgresql://{address}:{port}/{quote(database or '', safe='')}", properties


@dataclass(frozen=True)
class JdbcSource:
    """The `interaction` table of engagement_db (a libpq URL), read in ranges of `id` in parallel
    (`partitions`; default one per ROWS_PER_PARTITION rows, at least the cluster's parallelism)."""

    url: str
    partitions: int | None = None

    def describe(self) -> str:
        return "reading interactions from engagement_db over JDBC"

    def load(self, spark):
        jdbc_url, properties = jdbc_options(self.url)
        properties = {**properties, "fetchsize": "10000", "preferTimestampNTZ": "true"}
        bounds = spark.read.jdbc(
            jdbc_url, "(SELECT min(id) AS low, max(id) AS high, count(*) AS n FROM interaction) AS bounds",
            properties=properties,
        ).collect()[0]
        if bounds["n"] == 0:
            return spark.read.jdbc(jdbc_url, "interaction", properties=properties)
        partitions = self.partitions or max(spark.sparkContext.defaultParallelism, -(-bounds["n"] // ROWS_PER_PARTITION))
        return spark.read.jdbc(
            jdbc_url, "interaction", column="id", lowerBound=int(bounds["low"]), upperBound=int(bounds["high"]) + 1,
            numPartitions=int(partitions), properties=properties,
        )


@dataclass(frozen=True)
class ParquetSource:
    """A Parquet snapshot of the `interaction` table (its columns, uuids as strings)."""

    path: str

    def describe(self) -> str:
        return f"reading interactions from {self.path}"

    def load(self, spark):
        return spark.read.parquet(self.path)


class SparkEngine:
    """services.refresh.Engine on Spark: `spark` a SparkSession, `source` a JdbcSource or ParquetSource,
    `weights` the InteractionWeights (LIKE_WEIGHT, WATCH_WEIGHT)."""

    def __init__(self, spark, source, weights) -> None:
        self.spark = spark
        self.source = source
        self.weights = weights

    def read(self, media_ids: np.ndarray, progress: bool) -> SparkRead:
        started = time.perf_counter()
        # The aggregated pairs are cached; without this, every query over them keeps the cached
        # plan's spark.sql.shuffle.partitions (200) tasks, uncoalesced by adaptive execution:
        # 4 times slower on ml-latest-small in local mode.
        self.spark.conf.set("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "true")
        with spark_step(self.source.describe()):
            read = SparkRead(self.spark, self.source.load(self.spark), media_ids, self.weights)
        log.info("Spark: %s interactions of %s users read and aggregated in %.1f s",
                 read.interactions_count, read.users_count, time.perf_counter() - started)
        return read


def media_uuid_strings(media_ids: np.ndarray) -> list[str]:
    """The model's media ids (V16, uuid bytes) as Spark reads uuid columns: lowercase strings."""
    return [str(uuid.UUID(bytes=raw)) for raw in media_ids.tolist()]


def _arrays(frame) -> dict[str, np.ndarray]:
    """A (small) DataFrame's columns as numpy arrays, through Arrow."""
    table = frame.toArrow()
    return {name: table.column(name).to_numpy() for name in table.column_names}


class SparkRead:
    """The interactions aggregated per (user, media) (cached on the cluster) and their counts."""

    def __init__(self, spark, interactions, media_ids: np.ndarray, weights) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        self.spark = spark
        self.media_count = len(media_ids)
        kind = F.col("type")
        is_positive_type = kind.isin("LIKE", "WATCH")
        # services/engagement_repository.WEIGHTED_VALUE
        weighted = F.greatest(F.coalesce(F.col("interaction_value").cast("double"), F.lit(1.0)), F.lit(0.0)) * F.when(
            kind == "LIKE", F.lit(float(weights.like))
        ).otherwise(F.lit(float(weights.watch)))
        # EngagementRepository.user_media_pairs, per (user, media)
        per_pair = interactions.groupBy(
            F.lower(F.col("user_id").cast("string")).alias("user_id"),
            F.lower(F.col("media_id").cast("string")).alias("media_id"),
        ).agg(
            F.max((kind == "DISLIKE").cast("int")).alias("disliked"),
            F.max(((kind == "LIKE") & (weighted > 0)).cast("int")).alias("liked"),
            F.coalesce(F.max(F.when(is_positive_type, weighted)), F.lit(0.0)).alias("positive_value"),
            # micros since 2000-01-01 of the newest interaction (a `timestamp` is read as UTC wall-clock)
            (F.unix_micros(F.max(F.col("timestamp")).cast("timestamp")) - F.lit(POSTGRES_EPOCH_MICROS)).alias("newest"),
            F.count(F.lit(1)).alias("interactions"),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        totals = per_pair.agg(F.sum("interactions").alias("n"), F.countDistinct("user_id").alias("users")).collect()[0]
        self.interactions_count = int(totals["n"] or 0)
        self.users_count = int(totals["users"] or 0)
        media = spark.createDataFrame(
            list(zip(media_uuid_strings(media_ids), range(self.media_count))), "media_id string, m int"
        )
        positive = (F.col("disliked") == 0) & (F.col("positive_value") > 0)
        self.pairs = (
            per_pair.join(F.broadcast(media), "media_id")
            .select("user_id", "m", positive.alias("positive"), (positive & (F.col("liked") == 1)).alias("liked"), "newest")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        # One pass for every per-media number; the newest interactions are their maxima.
        per_media = _arrays(
            self.pairs.groupBy("m").agg(
                F.sum(F.col("liked").cast("long")).alias("likes"),
                F.sum(F.col("positive").cast("long")).alias("positives"),
                F.max("newest").alias("newest"),
                F.coalesce(F.max(F.when(F.col("positive"), F.col("newest"))), F.lit(-(2**63))).alias(
                    "newest_positive"
                ),
            )
        )
        self.likes = np.zeros(self.media_count, dtype=np.int64)
        self.positives = np.zeros(self.media_count, dtype=np.int64)
        self.newest = self._newest_positive = None
        if len(per_media.get("m", ())):
            self.likes[per_media["m"]] = per_media["likes"]
            self.positives[per_media["m"]] = per_media["positives"]
            self.newest = int(per_media["newest"].max())
            if self.positives.any():
                self._newest_positive = int(per_media["newest_positive"].max())
        per_pair.unpersist()

    def popularity(self, half_life_days: float) -> np.ndarray:
        """services/refresh.popularity_scores: the positive pairs' decay, 0.5 per `half_life_days` of age."""
        from pyspark.sql import functions as F

        scores = np.zeros(self.media_count, dtype=np.float64)
        if self._newest_positive is None:
            return scores.astype(np.float32)
        age_days = (F.lit(self._newest_positive) - F.col("newest")) / F.lit(float(MICROSECONDS_PER_DAY))
        with spark_step("computing popularity on Spark"):
            sums = _arrays(
                self.pairs.where("positive").groupBy("m").agg(
                    F.sum(F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days)))).alias("score")
                )
            )
        scores[sums["m"]] = sums["score"]
        return scores.astype(np.float32)

    def sums(self, settings: neighbours.NeighbourSettings) -> neighbours.Sums:
        return SparkSums(self, settings)


class SparkSums:
    """services.neighbours.Sums computed on Spark from a SparkRead's pairs: with a `user_cap`,
    each user's most recent liked and positive pairs only (neighbours.most_recent's rule)."""

    def __init__(self, read: SparkRead, settings: neighbours.NeighbourSettings) -> None:
        self._read = read
        self._settings = settings
        # As MatrixSums: the liked pairs, or the positive ones when nothing is liked.
        any_liked = read.likes.any()
        self._positive = self._capped("positive")
        self._liked = self._capped("liked") if any_liked else self._positive
        if settings.user_cap:
            with spark_step("capping each user's media on Spark"):
                self._positives = self._per_media(self._positive)
                self._likes = self._per_media(self._liked) if any_liked else self._positives
        else:
            self._positives = read.positives
            self._likes = read.likes if any_liked else read.positives

    def likes(self) -> np.ndarray:
        return self._likes

    def positives(self) -> np.ndarray:
        return self._positives

    def _capped(self, column: str):
        """(user_id, m) of the pairs where `column`; with a user_cap, each user's most recent."""
        from pyspark import StorageLevel
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        pairs = self._read.pairs.where(F.col(column))
        cap = self._settings.user_cap
        if cap:
            recent = F.row_number().over(Window.partitionBy("user_id").orderBy(F.col("newest").desc(), F.col("m")))
            pairs = pairs.withColumn("recent", recent).where(F.col("recent") <= cap).persist(StorageLevel.MEMORY_AND_DISK)
        return pairs.select("user_id", "m")

    def _per_media(self, pairs) -> np.ndarray:
        counts = np.zeros(self._read.media_count, dtype=np.int64)
        found = _arrays(pairs.groupBy("m").count())
        if len(found.get("m", ())):
            counts[found["m"]] = found["count"]
        return counts

    def co_occurrence(self, head: np.ndarray, progress: bool) -> np.ndarray:
        """XᵀX over `head`, X the liked pairs: the head's users × media matrix goes to the driver
        and, as files (executor_matrices), to every executor, where a task per block of head rows
        counts that block (neighbours.co_occurrence_rows, the in-process code) and sends it
        back dense.
        A row per pair of a user's liked head media instead, counted in a shuffle, is the
        slowest way: 163 s of a 25M refresh's 449 s, where this takes 22 s (docs/spark.md)."""
        from pyspark.sql import functions as F

        size = len(head)
        spark = self._read.spark
        started = time.perf_counter()
        with spark_step("EASE: co-occurrence on Spark"):
            positions = spark.createDataFrame([(int(m), p) for p, m in enumerate(head)], "m int, h int")
            users = self._user_matrix(self._liked.join(F.broadcast(positions), "m"), "h", size)
            operands = neighbours.co_occurrence_operands(users.astype(np.float32))  # as binary_matrix's
            tasks = max(spark.sparkContext.defaultParallelism * PAIR_TASKS_PER_CORE,
                        -(-size * size // neighbours.BLOCK_CELLS))
            bounds = np.linspace(0, size, min(tasks, size) + 1).astype(np.int64)
            blocks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
            gram = np.empty((size, size), dtype=np.float64)
            with executor_matrices(spark, operands) as mapped:
                on_driver = time.perf_counter() - started  # collecting, building and writing the matrices
                co_occurrence_rows = neighbours.co_occurrence_rows

                def block_counts(block: tuple[int, int]):
                    by_media, user_media = mapped()
                    return block[0], co_occurrence_rows(by_media, user_media, block[0], block[1])

                found = spark.sparkContext.parallelize(blocks, len(blocks)).map(block_counts)
                for first, counts in tqdm(found.toLocalIterator(), total=len(blocks), desc="EASE: co-occurrence",
                                          unit=" tasks", disable=not progress):
                    gram[first : first + len(counts)] = counts
        log.info("EASE: co-occurrence of %s media (%s liked pairs) counted on Spark in %.1f s (%s tasks; the "
                 "matrices collected, built and written on the driver in %.1f s of it)",
                 size, users.nnz, time.perf_counter() - started, len(blocks), on_driver)
        return gram

    def cosine(self, row_sets: list[np.ndarray | None], progress: bool) -> list[neighbours.Table]:
        """neighbours.cosine_neighbours of each set of rows, from one Spark job over their union.

        The rows are cut into PAIR_TASKS_PER_CORE chunks per core of the cluster, a task each: a
        task runs the numpy engine's own `cosine_rows` on its rows against the positive pairs'
        matrices (sent to each executor once, as files: executor_matrices) and sends back only
        each row's k best.
        Emitting a row per pair of media instead, to be summed in a shuffle, makes 1.2 billion
        rows at 25M interactions (600 million distinct pairs: bench/spark_tail_rows.py), where
        this sends 5 million. The executors run Python (numpy, scipy): docs/spark.md says how
        to ship this project's environment to them.
        """
        s = self._settings
        media_count = self._read.media_count
        keep = min(s.k, media_count - 1)
        given = [rows for rows in row_sets if rows is not None]
        every = len(given) < len(row_sets)
        rows = np.arange(media_count) if every else (np.unique(np.concatenate(given)) if given else np.zeros(0, np.int64))
        if keep <= 0 or not self._positives.any() or len(rows) == 0:
            return [_empty() for _ in row_sets]
        spark = self._read.spark
        started = time.perf_counter()
        with spark_step("cosine neighbours on Spark"):
            operands = neighbours.cosine_operands(self._user_matrix(self._positive, "m", media_count), s.user_damping)
            tasks = min(len(rows), spark.sparkContext.defaultParallelism * PAIR_TASKS_PER_CORE)
            chunks = np.array_split(rows, tasks)
            with executor_matrices(spark, operands) as mapped:
                on_driver = time.perf_counter() - started
                k, shrinkage = s.k, s.shrinkage
                cosine_rows = neighbours.cosine_rows

                def chunk_neighbours(chunk: np.ndarray):
                    weighted, by_media = mapped()
                    return cosine_rows(weighted, by_media, k, shrinkage, chunk)

                found = spark.sparkContext.parallelize(chunks, tasks).map(chunk_neighbours)
                parts = list(tqdm(found.toLocalIterator(), total=tasks, desc="cosine neighbours", unit=" tasks",
                                  disable=not progress))
        media = np.concatenate([np.zeros(0, np.int32)] + [i for i, _, _ in parts])
        idx = np.concatenate([np.zeros(0, np.int32)] + [j for _, j, _ in parts])
        sim = np.concatenate([np.zeros(0, np.float32)] + [w for _, _, w in parts])
        log.info("cosine: %s neighbours of %s media (%s positive pairs) found on Spark in %.1f s (%s tasks; the "
                 "matrices collected, built and written on the driver in %.1f s of it)",
                 len(media), "every" if every else len(rows), operands[0].nnz, time.perf_counter() - started, tasks,
                 on_driver)
        tables = []
        for rows_set in row_sets:
            mask = np.ones(len(media), dtype=bool) if rows_set is None else np.isin(media, rows_set)
            tables.append((media[mask], idx[mask], sim[mask]))
        return tables

    def _user_matrix(self, pairs, column: str, width: int):
        """The binary users × `width` matrix (float64, sorted indices) of `pairs`' `column`, on
        the driver: a row per user, in no particular order."""
        import scipy.sparse as sparse
        from pyspark.sql import functions as F

        table = pairs.groupBy("user_id").agg(F.collect_list(column).alias("ms")).select("ms").toArrow()
        lists = table.column("ms").combine_chunks()
        indptr = lists.offsets.to_numpy().astype(np.int64)
        indices = lists.values.to_numpy().astype(np.int32)
        indptr = indptr - indptr[0]
        matrix = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(lists), width))
        matrix.sort_indices()
        return matrix


@contextlib.contextmanager
def executor_matrices(spark, matrices):
    """Sparse matrices that every task of a job reads from files on its own machine: written
    on the driver (.npy, one per array), sent to each executor once (SparkContext.addFile),
    and mapped read-only by the tasks (numpy's mmap_mode), so that a machine holds their pages
    once, in its page cache, however many Python workers (one per core) read them; a broadcast
    value is unpickled into every Python worker instead, a copy per core. Yields the function
    that gives them back in a task (a local function: cloudpickle sends it by value, so the
    executors need numpy and scipy, not this project). The driver's files are removed at the end."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="ml-service-matrices-")
    tag = uuid.uuid4().hex  # SparkContext.addFile refuses a name it was given before
    layout = []
    try:
        for n, matrix in enumerate(matrices):
            names = tuple(f"{tag}-{n}-{part}.npy" for part in ("data", "indices", "indptr"))
            for name, array in zip(names, (matrix.data, matrix.indices, matrix.indptr)):
                np.save(os.path.join(directory, name), array)
                spark.sparkContext.addFile(os.path.join(directory, name))
            layout.append((names, matrix.shape))

        def mapped() -> list:
            import scipy.sparse as sparse
            from pyspark import SparkFiles

            return [sparse.csr_matrix(tuple(np.load(SparkFiles.get(name), mmap_mode="r") for name in names),
                                      shape=shape, copy=False)
                    for names, shape in layout]

        yield mapped
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _empty() -> neighbours.Table:
    return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
