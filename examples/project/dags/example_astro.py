"""A small, network-free DAG used by the end-to-end tests and the benchmarks.

hello (bash) -> shape (python, uses the project's requirements.txt) -> jq (bash, uses the project's packages.txt)
"""

from __future__ import annotations

import socket
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator


def _shape(**context):
    import humanize  # from requirements.txt

    size = humanize.naturalsize(1_380_000_000)
    print(f"run {context['run_id']} on {socket.gethostname()}: the base image goal is {size}")
    return size


with DAG(
    dag_id="example_astro",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example"],
) as dag:
    hello = BashOperator(task_id="hello", bash_command='echo "hello from $(id -un) (uid $(id -u))"')
    shape = PythonOperator(task_id="shape", python_callable=_shape)
    parse = BashOperator(task_id="jq", bash_command="echo '{\"airflow\": \"ok\"}' | jq -r .airflow")

    hello >> shape >> parse
