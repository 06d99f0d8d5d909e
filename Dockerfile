# The pipeline image: the official Airflow image plus our pinned requirements and the include/ package.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /opt/airflow/project/requirements.txt
# Installing apache-airflow at the image's own version keeps pip from moving Airflow itself.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/airflow/project/requirements.txt

COPY --chown=airflow:root pyproject.toml /opt/airflow/project/pyproject.toml
COPY --chown=airflow:root include /opt/airflow/project/include
COPY --chown=airflow:root dags /opt/airflow/project/dags
COPY --chown=airflow:root plugins /opt/airflow/project/plugins
COPY --chown=airflow:root scripts /opt/airflow/project/scripts
# include/ becomes importable the same way for every Airflow component (as in the venv of `make`).
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/project

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/project/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    RESERVING_DATA_DIR=/opt/airflow/data
