"""A small, network-free DAG used by the end-to-end tests and the benchmarks.

hello (bash) -> shape (python, uses the project's requirements.txt) -> jq (bash, uses the project's packages.txt)
"""

from __future__ import annotations

import socket
from datetime import datetime

try:  # Airflow 3: DAG authors import from the Task SDK; the standard operators are a provider.
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator


def _shape(**context):
    from toolz import pipe  # from requirements.txt

    words = pipe(["dags", "plugins", "packages", "requirements"], sorted, ", ".join)
    print(f"run {context['run_id']} on {socket.gethostname()}: the project has {words}")
    return words


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
