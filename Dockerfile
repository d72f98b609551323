# The Airflow image for docker-compose.yaml: the official Airflow 3.3 image plus Java (for spark-submit)
# and this package's pinned requirements.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
USER airflow
COPY requirements.txt requirements-nodeps.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps -r /tmp/requirements-nodeps.txt
COPY --chown=airflow:root scripts/check_env.py /tmp/check_env.py
RUN python /tmp/check_env.py
