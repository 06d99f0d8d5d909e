# The pipeline image: the official Airflow image, our pinned requirements, the include package installed as a regular
# (non-editable) package, and the DAG and plugin folders. Tests, benchmarks, scripts and dev tooling stay out.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /tmp/reserving/requirements.txt
# Installing apache-airflow at the image's own version keeps pip from moving Airflow itself.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/reserving/requirements.txt

# include/ lands in site-packages: every Airflow component imports include.reserving the same way.
COPY --chown=airflow:root pyproject.toml /tmp/reserving/pyproject.toml
COPY --chown=airflow:root include /tmp/reserving/include
RUN pip install --no-cache-dir --no-deps /tmp/reserving && rm -rf /tmp/reserving

COPY --chown=airflow:root dags /opt/airflow/project/dags
COPY --chown=airflow:root plugins /opt/airflow/project/plugins

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/project/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    RESERVING_DATA_DIR=/opt/airflow/data
