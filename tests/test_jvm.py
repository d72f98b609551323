"""The preprocessing job's driver JVM options (recdp.jobs.jvm): the class archive's life and the JIT choice,
and that this machine's JDK accepts them (a real java, dumping and then mapping an archive)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from recdp.jobs.jvm import (
    C1_ONLY_BELOW_ROWS,
    JAVA_OPTIONS_KEY,
    DriverJvm,
    drop_dump,
    java_home,
    keep_archive,
    plan_driver_jvm,
    properties_java_options,
    read_properties,
    runtime_key,
)

PROPERTIES = Path(__file__).resolve().parents[1] / "include" / "spark" / "spark-defaults.conf"


@pytest.fixture
def fake_runtime(tmp_path):
    java, spark = tmp_path / "jdk", tmp_path / "spark"
    java.mkdir()
    spark.mkdir()
    (java / "release").write_text('JAVA_VERSION="17.0.1"\n')
    return {"java": java, "spark": spark}


def test_the_first_run_dumps_the_archive_to_a_file_of_its_own(tmp_path, fake_runtime):
    jvm = plan_driver_jvm(tmp_path / "cache", rows=None, base_options="-XX:+UseParallelGC", run="run-1",
                          **fake_runtime)
    assert not jvm.archive.exists() and jvm.dumping is not None and jvm.dumping.parent == jvm.archive.parent
    assert jvm.java_options == f"-XX:+UseParallelGC -XX:ArchiveClassesAtExit={jvm.dumping}"
    other = plan_driver_jvm(tmp_path / "cache", rows=None, base_options="", run="run-2", **fake_runtime)
    assert other.archive == jvm.archive and other.dumping != jvm.dumping  # concurrent runs never share a dump


def test_a_dump_becomes_the_archive_only_when_kept(tmp_path, fake_runtime):
    cache = tmp_path / "cache"
    failed = plan_driver_jvm(cache, rows=None, base_options="", run="failed", **fake_runtime)
    failed.dumping.write_bytes(b"half written")
    drop_dump(failed)
    assert not failed.dumping.exists() and not failed.archive.exists()

    empty = plan_driver_jvm(cache, rows=None, base_options="", run="nothing-dumped", **fake_runtime)
    assert keep_archive(empty) is False and not empty.archive.exists()  # the JVM wrote nothing: nothing to keep

    jvm = plan_driver_jvm(cache, rows=None, base_options="", run="run", **fake_runtime)
    jvm.dumping.write_bytes(b"archive")
    assert keep_archive(jvm) and jvm.archive.read_bytes() == b"archive" and not jvm.dumping.exists()
    mapped = plan_driver_jvm(cache, rows=None, base_options="-XX:+UseParallelGC", run="next", **fake_runtime)
    assert mapped.dumping is None and keep_archive(mapped) is False
    assert mapped.java_options == f"-XX:+UseParallelGC -XX:SharedArchiveFile={jvm.archive}"


def test_dumps_left_by_crashed_runs_are_removed_after_a_day(tmp_path, fake_runtime):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale, recent = cache / "a.jsa.1.dumping", cache / "a.jsa.2.dumping"
    stale.write_bytes(b"x")
    recent.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    plan_driver_jvm(cache, rows=None, base_options="", run="run", **fake_runtime)
    assert not stale.exists() and recent.exists()  # a recent one may be a running job's


def test_small_days_run_c1_only(tmp_path, fake_runtime):
    def options(rows):
        return plan_driver_jvm(tmp_path, rows=rows, base_options="", run="r", **fake_runtime).java_options.split()

    assert "-XX:TieredStopAtLevel=1" in options(200_000)
    assert "-XX:TieredStopAtLevel=1" not in options(C1_ONLY_BELOW_ROWS)
    assert "-XX:TieredStopAtLevel=1" not in options(None)  # unknown size: the default JIT


def test_the_archive_belongs_to_one_jdk_and_one_spark(tmp_path, fake_runtime):
    key = runtime_key(fake_runtime["java"], fake_runtime["spark"])
    assert key == runtime_key(fake_runtime["java"], fake_runtime["spark"])
    (fake_runtime["java"] / "release").write_text('JAVA_VERSION="17.0.2"\n')  # a JDK update
    assert runtime_key(fake_runtime["java"], fake_runtime["spark"]) != key
    assert runtime_key(fake_runtime["java"], tmp_path) != runtime_key(fake_runtime["java"], fake_runtime["spark"])


def test_the_properties_file_is_read_as_spark_reads_it(tmp_path):
    assert read_properties(PROPERTIES)[JAVA_OPTIONS_KEY] == properties_java_options(PROPERTIES) == "-XX:+UseParallelGC"
    written = tmp_path / "spark.conf"
    written.write_text("# comment\n! also a comment\n\nspark.a   1\nspark.b=two words\nspark.c\n")
    assert read_properties(written) == {"spark.a": "1", "spark.b": "two words", "spark.c": ""}


def test_this_jdk_dumps_and_maps_the_archive(tmp_path):
    """The options the plan writes, given to this machine's java: the dump is kept and then mapped (-Xshare:on
    fails the JVM's start unless the archive maps)."""
    java = str(java_home() / "bin" / "java")  # the JDK spark-submit runs (Java 17 is required)
    first = plan_driver_jvm(tmp_path, rows=1000, base_options="-XX:+UseParallelGC", run="first")
    subprocess.run([java, *first.java_options.split(), "-version"], check=True, capture_output=True)
    assert keep_archive(first)
    second = plan_driver_jvm(tmp_path, rows=1000, base_options="-XX:+UseParallelGC", run="second")
    assert second.dumping is None
    mapped = subprocess.run([java, "-Xshare:on", *second.java_options.split(), "-Xlog:cds=info", "-version"],
                            capture_output=True, text=True)
    assert mapped.returncode == 0, mapped.stdout + mapped.stderr
    assert str(second.archive) in mapped.stdout + mapped.stderr


def test_a_stale_archive_is_a_warning_not_a_failure(tmp_path):
    """An archive of another JDK (here: garbage) must not stop the job under the default -Xshare:auto."""
    jvm = DriverJvm("", tmp_path / "x.jsa")
    jvm.archive.write_bytes(b"not an archive" * 100)
    java = str(java_home() / "bin" / "java")
    run = subprocess.run([java, f"-XX:SharedArchiveFile={jvm.archive}", "-version"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
