"""How the preprocessing job's driver JVM starts: class-data sharing always, C1-only JIT on small days.

On a small day the JVM's start (loading and verifying Spark's classes, then compiling them with both JIT tiers)
costs far more CPU than the tasks: 22 CPU-s for a 200k-row day, of which the tasks' own executor time is 2-3 s.
Two standard HotSpot (Java 13+) options cut it:

- an application class-data sharing archive (AppCDS): the classes a run loaded, dumped once with
  `-XX:ArchiveClassesAtExit` and mapped by every later run with `-XX:SharedArchiveFile`. The default
  `-Xshare:auto` makes a stale or foreign archive (another JDK, another Spark) a warning, never a failure, and the
  archive's name carries the JDK's and Spark's identity so that an upgrade dumps a new one;
- `-XX:TieredStopAtLevel=1` (C1 only) below `C1_ONLY_BELOW_ROWS`: C2's optimizing compiles do not pay back
  on a job this short, and do on a long one.

Measured with spark-submit of this job on generated days at full Criteo cardinalities (CPU of the whole process
tree, this 2-core machine): 200k rows 22.1 CPU-s by default, 16.3 with the archive, 11.0 with the archive and
C1 only; 2M rows 31.0, 24.7 and 25.7. Dumping the archive costs one run about 15 CPU-s more.

The archive is dumped to a file of the run's own (`DriverJvm.dumping`) and moved into place by `keep_archive`
only after the job succeeded, so that no JVM ever maps a half-written archive and concurrent runs never collide.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Between the two measured day sizes (200k rows: C1 only 5.3 CPU-s cheaper; 2M: 1.0 dearer), nearer the first.
C1_ONLY_BELOW_ROWS = 1_000_000
STALE_DUMP_SECONDS = 24 * 3600
JAVA_OPTIONS_KEY = "spark.driver.extraJavaOptions"


@dataclass(frozen=True)
class DriverJvm:
    """The driver's Java options for one run, and where (if anywhere) this run dumps the class archive."""

    java_options: str
    archive: Path
    dumping: Path | None = None


def java_home() -> Path | None:
    """The JDK spark-submit runs: JAVA_HOME's, else the `java` on PATH's (links resolved)."""
    if home := os.environ.get("JAVA_HOME"):
        return Path(home).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def spark_home() -> Path:
    """The Spark spark-submit runs: SPARK_HOME's, else the installed pyspark's."""
    if home := os.environ.get("SPARK_HOME"):
        return Path(home).resolve()
    return Path(str(metadata.distribution("pyspark").locate_file("pyspark"))).resolve()


def runtime_key(java: Path | None, spark: Path) -> str:
    """Names the JDK (its build, from its `release` file) and the Spark (its version and class path) an archive
    belongs to: a dynamic archive is valid only for the JVM and class path that dumped it."""
    release = java / "release" if java else None
    identity = [str(java), release.read_text() if release and release.is_file() else "",
                str(spark), metadata.version("pyspark")]
    return hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]


def read_properties(path: Path) -> dict[str, str]:
    """A Spark properties file (`key value` or `key=value` lines, `#` comments) as a dict."""
    properties: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.replace("=", " ", 1).partition(" ")
        properties[key] = value.strip()
    return properties


def properties_java_options(path: Path) -> str:
    """The driver's Java options a Spark properties file sets (empty when it sets none)."""
    return read_properties(path).get(JAVA_OPTIONS_KEY, "")


def plan_driver_jvm(cache: Path, rows: int | None, base_options: str, run: str,
                    java: Path | None = None, spark: Path | None = None) -> DriverJvm:
    """The driver's Java options for a day of `rows` rows (None: unknown, so the default JIT): `base_options`
    (the properties file's), the class archive in `cache` when it is there, else this run's dump of it."""
    archive = cache / f"spark-driver-{runtime_key(java or java_home(), spark or spark_home())}.jsa"
    options = base_options.split()
    dumping = None
    if archive.is_file():
        options.append(f"-XX:SharedArchiveFile={archive}")
    else:
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale_dumps(cache)
        token = hashlib.sha256(run.encode()).hexdigest()[:12]
        dumping = archive.with_name(f"{archive.name}.{token}.dumping")
        options.append(f"-XX:ArchiveClassesAtExit={dumping}")
    if rows is not None and rows < C1_ONLY_BELOW_ROWS:
        options.append("-XX:TieredStopAtLevel=1")
    return DriverJvm(java_options=" ".join(options), archive=archive, dumping=dumping)


def keep_archive(jvm: DriverJvm) -> bool:
    """After the job succeeded (its JVM has exited): move this run's dump into place. True when it did."""
    if jvm.dumping is None or not jvm.dumping.is_file() or jvm.dumping.stat().st_size == 0:
        return False
    os.replace(jvm.dumping, jvm.archive)
    return True


def drop_dump(jvm: DriverJvm) -> None:
    """After the job failed: its dump, whole or not, is never used."""
    if jvm.dumping is not None:
        jvm.dumping.unlink(missing_ok=True)


def _remove_stale_dumps(cache: Path) -> None:
    """Dumps left by runs that crashed before `keep_archive` or `drop_dump` ran."""
    for dump in cache.glob("*.dumping"):
        try:
            if time.time() - dump.stat().st_mtime > STALE_DUMP_SECONDS:
                dump.unlink()
        except FileNotFoundError:  # another run removed or installed it meanwhile
            pass
